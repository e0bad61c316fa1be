"""History rendering (privacy modes, redaction) and worker-beat merging, without a worker."""

from __future__ import annotations

import pytest
from celery import Celery

from gorelay_kombu.compat.recorder import AppHistory, merge_beats
from gorelay_kombu.compat.registry import worker_status
from gorelay_kombu.errors import InvalidOption
from gorelay_kombu.history import WorkerBeat, WorkerRecord


def app_with(**conf) -> Celery:
    app = Celery("t", broker="gorelay+memory://recorder-test", set_as_current=False)
    app.conf.update(conf)
    return app


def test_args_are_truncated_json_by_default() -> None:
    h = AppHistory(app_with())
    assert h.render("t", "args", ["a@example.com", 2]) == '["a@example.com", 2]'
    long = h.render("t", "args", ["x" * 500])
    assert long is not None and len(long) == 201 and long.endswith("…")


def test_full_none_and_preview_length() -> None:
    assert AppHistory(app_with(gorelay_history_args="full")).render(
        "t", "args", ["x" * 500]) == f'["{"x" * 500}"]'
    assert AppHistory(app_with(gorelay_history_args="none")).render("t", "args", [1]) is None
    assert AppHistory(app_with(gorelay_history_preview_chars=5)).render(
        "t", "result", "abcdefgh") == '"abcd…'


def test_redact_hook_runs_before_rendering() -> None:
    def redact(name, field, value):
        if field == "kwargs":
            return {k: ("***" if k == "token" else v) for k, v in value.items()}
        return value

    h = AppHistory(app_with(gorelay_history_redact=redact))
    assert h.render("t", "kwargs", {"token": "s3cret", "to": "a"}) == '{"token": "***", "to": "a"}'


def test_values_json_cannot_encode_are_shown_by_repr() -> None:
    assert AppHistory(app_with()).render("t", "result", {1, 2}) == '"{1, 2}"'


def test_bad_mode_is_a_clear_error() -> None:
    with pytest.raises(InvalidOption, match="truncated, full, none"):
        AppHistory(app_with(gorelay_history_args="some"))


def test_history_off_or_not_gorelay_records_nothing() -> None:
    assert AppHistory(app_with(gorelay_history=False)).recorder is None
    other = Celery("o", broker="memory://", set_as_current=False)
    assert AppHistory(other).recorder is None


def test_beats_merge_per_worker() -> None:
    merged = merge_beats([
        WorkerBeat("w1", 1.0, pid=10, pool="prefork", concurrency=2, stopped=False),
        WorkerBeat("w1", 2.0, done=1),
        WorkerBeat("w2", 2.5, failed=1),
        WorkerBeat("w1", 3.0, failed=1),
    ])
    by = {b.hostname: b for b in merged}
    assert (by["w1"].at, by["w1"].pid, by["w1"].done, by["w1"].failed, by["w1"].stopped) == (
        3.0, 10, 1, 1, False)
    assert (by["w2"].failed, by["w2"].stopped) == (1, None)


def test_worker_status() -> None:
    def rec(last_seen, stopped=False):
        return WorkerRecord("w", 1, "prefork", 1, (), 0.0, last_seen, 0, 0, stopped)

    assert worker_status(rec(100.0), interval=5, now=110.0) == "online"
    assert worker_status(rec(100.0), interval=5, now=116.0) == "lost"
    assert worker_status(rec(100.0, stopped=True), interval=5, now=999.0) == "offline"
