"""Bind addresses, the loopback rule, the chart's scale and the text filters."""

from __future__ import annotations

import pytest

from gorelay_kombu.dashboard import UnsafeBindError
from gorelay_kombu.dashboard.chart import nice_ceiling, throughput_chart
from gorelay_kombu.dashboard.settings import check_bind, is_loopback, parse_bind
from gorelay_kombu.dashboard.templating import ago, duration, pretty


@pytest.mark.parametrize("bind,expected", [
    (":8080", ("127.0.0.1", 8080)),
    ("127.0.0.1:9000", ("127.0.0.1", 9000)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:8080", ("::1", 8080)),
    ("[::]", ("::", 8080)),
    ("localhost", ("localhost", 8080)),
    ("", ("127.0.0.1", 8080)),
])
def test_parse_bind(bind, expected):
    assert parse_bind(bind) == expected


@pytest.mark.parametrize("bind", ["host:port", "127.0.0.1:70000", "[::1"])
def test_parse_bind_refuses_nonsense(bind):
    with pytest.raises(UnsafeBindError):
        parse_bind(bind)


def test_only_loopback_goes_without_token():
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "10.0.0.5", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(UnsafeBindError):
            check_bind(host, None)
        check_bind(host, "a-token-long-enough-123")


def test_chart_scales_to_a_round_top_and_stacks_failures_on_successes():
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 10, 11, 130)] == [1, 1, 5, 10, 10, 20, 200]
    chart = throughput_chart([(100, 6, 2), (101, 0, 0), (102, 0, 10)])
    ok, empty, failed = chart.bars
    assert chart.succeeded == 6 and chart.failed == 12
    assert empty.ok_height == 0 and empty.failed_height == 0
    assert ok.failed_y + ok.failed_height == ok.ok_y  # failures sit on top
    assert failed.failed_height > ok.ok_height > ok.failed_height
    assert [label for _, label in chart.grid] == ["0", "5", "10"]


def test_text_filters():
    assert ago(100.0, now=103.5) == "3 s ago" and ago(100.0, now=400) == "5 min ago"
    assert ago(500.0, now=400) == "in 1 min" and ago(None) == "—"
    assert duration(0.0123) == "12 ms" and duration(15.0) == "15 s"
    assert duration(2.5) == "2.50 s" and duration(125) == "2 min 5 s"
    assert pretty('{"a":[1,2]}') == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert pretty('[1, "cut…') == '[1, "cut…'
