from __future__ import annotations

import pytest

from gorelay_kombu import InvalidURL
from gorelay_kombu.priority import HIGH, LOW, NORMAL, lane_for_priority
from gorelay_kombu.url import parse_store_url


@pytest.mark.parametrize(
    ("priority", "lane"),
    [(0, HIGH), (1, HIGH), (2, HIGH), (3, NORMAL), (4, NORMAL), (5, NORMAL), (6, NORMAL),
     (7, LOW), (8, LOW), (9, LOW), (None, NORMAL), (-3, HIGH), (42, LOW), ("7", LOW),
     ("junk", NORMAL), (True, NORMAL)],
)
def test_celery_priority_maps_onto_three_lanes(priority, lane):
    assert lane_for_priority(priority) == lane


def test_lanes_sort_in_service_order():
    assert sorted([LOW, HIGH, NORMAL]) == [HIGH, NORMAL, LOW]


@pytest.mark.parametrize(
    ("url", "kind", "location"),
    [
        ("gorelay://", "sqlite", "relay.db"),
        ("gorelay+sqlite:///rel/path.db", "sqlite", "rel/path.db"),
        ("sqlite:///rel/path.db", "sqlite", "rel/path.db"),
        ("gorelay+sqlite:////abs/path.db", "sqlite", "/abs/path.db"),
        ("gorelay:///x.db", "sqlite", "x.db"),
        ("gorelay+memory://jobs", "memory", "jobs"),
        ("gorelay+postgresql://u:p@db:5432/app", "postgresql", "postgresql://u:p@db:5432/app"),
        ("gorelay+postgres://db/app", "postgresql", "postgres://db/app"),
        ("gorelay+redis://h:6379/0", "redis", "redis://h:6379/0"),
    ],
)
def test_url_forms(url, kind, location):
    parsed = parse_store_url(url)
    assert (parsed.kind, parsed.location) == (kind, location)


def test_query_string_sets_options():
    assert parse_store_url("gorelay+sqlite:///x.db?synchronous=FULL").options == {
        "synchronous": "FULL"
    }


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("relay.db", "Use one of"),
        ("gorelay+mysql://h/db", "Unknown gorelay store 'mysql'"),
        ("gorelay+sqlite://host/x.db", "three slashes"),
        ("gorelay+sqlite:///data/", "names a directory"),
        ("gorelay+sqlite:///x.db?=&&", "Malformed query"),
    ],
)
def test_malformed_urls_name_the_fix(url, hint):
    with pytest.raises(InvalidURL, match=hint):
        parse_store_url(url)
