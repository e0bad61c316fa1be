"""Every action, through the JSON API and the HTML forms, on every store.

Retry publishes through the dashboard's own Celery app into the same
store, so the re-sent task is a real message in the queue; every action
leaves a trace in history.
"""

from __future__ import annotations

import base64
import json

import pytest

from gorelay_kombu.storage import NewMessage

from .conftest import add_task, close_site, make_site, notice


def _queued_bodies(site, queue: str) -> list[dict]:
    """Decode the task messages waiting in ``queue`` (leases them to a throwaway owner)."""
    rows = site.store.reserve([queue], 100, "test-reader", 60)
    return [json.loads(r.payload) for r in rows]


def test_retry_resends_the_task_with_a_new_id_linked_back(site):
    old = add_task(site.history, "FAILURE", name="shop.charge", queue="billing",
                   args='[42, "eur"]', kwargs='{"retry": true}')
    response = site.api("retry", task_id=old)
    assert response.status_code == 200, response.get_json()
    new = response.get_json()["new_task_id"]
    assert new != old
    messages = _queued_bodies(site, "billing")
    assert [m["headers"]["id"] for m in messages] == [new]
    assert messages[0]["headers"]["task"] == "shop.charge"
    record = site.history.task(new)
    assert record.retry_of == old and record.state == "PENDING"
    assert record.name == "shop.charge" and record.queue == "billing"
    old_events = site.history.events(old)
    assert old_events[-1].event == "retry-requested" and new in old_events[-1].info
    html = site.client.get(f"/tasks/{new}").get_data(as_text=True)
    assert f'href="/tasks/{old}"' in html  # the new attempt links back


def test_retry_keeps_the_lane(site):
    old = add_task(site.history, "DEAD", queue="urgent", lane=0)
    assert site.api("retry", task_id=old).status_code == 200
    assert [s.lane for s in site.store.queue_stats() if s.queue == "urgent" and s.ready] == [0]


@pytest.mark.parametrize("args,why", [
    ('[1, "a long argument cut at the preview…', "preview"),
    (None, "none"),
])
def test_retry_refuses_without_full_arguments_and_names_the_setting(site, args, why):
    old = add_task(site.history, "FAILURE", args=args, kwargs=None if args is None else "{}")
    response = site.api("retry", task_id=old)
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert 'gorelay_history_args = "full"' in error and why in error
    assert site.store.queue_stats() == [] or all(s.ready == 0 for s in site.store.queue_stats())
    html = site.client.get(f"/tasks/{old}").get_data(as_text=True)
    assert 'data-testid="retry"' not in html and "gorelay_history_args" in html


def test_retry_refuses_a_task_still_running(site):
    running = add_task(site.history, "STARTED")
    response = site.api("retry", task_id=running)
    assert response.status_code == 409 and "STARTED" in response.get_json()["error"]


def test_retry_all_retries_each_failure_once(site):
    failed = [add_task(site.history, "FAILURE") for _ in range(3)]
    cut = add_task(site.history, "FAILURE", args='["cut…')
    add_task(site.history, "SUCCESS")
    first = site.api("retry-all", state="FAILURE").get_json()
    assert len(first["retried"]) == 3 and first["refused"] == 1
    assert "could not be re-sent" in first["message"]
    again = site.api("retry-all", state="FAILURE").get_json()
    assert again["retried"] == [] and again["skipped"] == 3
    assert {site.history.task(n).retry_of for n in first["retried"]} == set(failed)
    assert site.history.task(cut).state == "FAILURE"


def test_cancel_a_pending_task_revokes_and_records_it(site):
    pending = add_task(site.history, "PENDING")
    response = site.api("cancel", task_id=pending)
    assert response.status_code == 200
    record = site.history.task(pending)
    assert record.state == "REVOKED"
    assert site.history.events(pending)[-1].info == "cancelled from the dashboard"
    done = add_task(site.history, "SUCCESS")
    assert site.api("cancel", task_id=done).status_code == 409


def test_revoke_a_running_task_sends_terminate_and_records_the_request(site):
    running = add_task(site.history, "STARTED")
    site.store.declare_exchange("celery.pidbox", "fanout")
    site.store.declare_queue("w1@host.celery.pidbox")
    site.store.bind("celery.pidbox", "", None, "w1@host.celery.pidbox")
    response = site.api("revoke", task_id=running)
    assert response.status_code == 200
    [command] = _queued_bodies(site, "w1@host.celery.pidbox")
    body = command["body"]
    if command["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    decoded = json.loads(body)
    assert decoded["method"] == "revoke"
    assert decoded["arguments"]["task_id"] == running
    assert decoded["arguments"]["terminate"] is True
    assert site.history.events(running)[-1].event == "revoke-requested"
    assert site.history.task(running).state == "STARTED"  # until the worker reports
    pending = add_task(site.history, "PENDING")
    error = site.api("revoke", task_id=pending).get_json()["error"]
    assert "Cancel" in error


def test_delete_one_and_delete_all(site):
    one = add_task(site.history, "FAILURE")
    others = [add_task(site.history, "FAILURE") for _ in range(3)]
    kept = add_task(site.history, "SUCCESS")
    assert site.api("delete", task_id=one).get_json()["deleted"] == 1
    assert site.history.task(one) is None
    assert site.api("delete", task_id=one).status_code == 404
    assert site.api("delete-all", state="FAILURE").get_json()["deleted"] == 3
    assert all(site.history.task(t) is None for t in others)
    assert site.history.task(kept) is not None
    assert site.api("delete-all", state="PENDING").status_code == 409


def test_purge_needs_the_queue_name_and_marks_waiting_tasks_revoked(site):
    site.store.declare_queue("emails")
    site.store.put_many([NewMessage("emails", b"{}")] * 3)
    waiting = [add_task(site.history, "PENDING", queue="emails") for _ in range(3)]
    elsewhere = add_task(site.history, "PENDING", queue="other")
    refused = site.api("purge", queue="emails", confirm="email")
    assert refused.status_code == 409 and "type the queue's name" in refused.get_json()["error"]
    assert site.store.size("emails") == 3
    done = site.api("purge", queue="emails", confirm="emails").get_json()
    assert done["purged"] == 3 and done["revoked"] == 3
    assert site.store.size("emails") == 0
    assert {site.history.task(t).state for t in waiting} == {"REVOKED"}
    assert "purged" in site.history.events(waiting[0])[-1].info
    assert site.history.task(elsewhere).state == "PENDING"
    assert site.api("purge", queue="nope", confirm="nope").status_code == 404


def test_dead_letter_republish_and_delete(site):
    site.store.declare_queue("celery")
    task_id = add_task(site.history, "PENDING")
    body = json.dumps({"headers": {"id": task_id, "task": "shop.send_email"},
                       "properties": {"priority": 0}, "body": "%%%"}).encode()
    first = site.store.put(NewMessage("celery", body))
    second = site.store.put(NewMessage("celery", b"garbage"))
    site.store.dead_letter(first, "undecodable message: binascii.Error")
    site.store.dead_letter(second, "undecodable message: JSONDecodeError")
    letters = site.client.get("/api/dead-letters").get_json()
    assert [(d["id"], d["task_id"], d["lane"]) for d in letters] == [
        (first, task_id, "high"), (second, None, "normal")]
    assert site.api("retry-dead-letter", queue="celery", message_id=first).status_code == 200
    assert [m for m, _, _ in site.store.dead_letters("celery")] == [second]
    [back] = site.store.reserve(["celery"], 10, "reader", 60)
    assert back.payload == body and back.lane == 0
    assert site.history.events(task_id)[-1].event == "retry-requested"
    assert site.api("delete-dead-letter", queue="celery", message_id=second).status_code == 200
    assert site.store.dead_letters("celery") == []
    missing = site.api("delete-dead-letter", queue="celery", message_id=second)
    assert missing.status_code == 404


def test_forms_redirect_back_with_a_notice(site):
    old = add_task(site.history, "FAILURE")
    page = site.form("retry", next=f"/tasks/{old}", task_id=old)
    assert page.status_code == 200 and page.request.path == f"/tasks/{old}"
    kind, text = notice(page)
    assert kind == "ok" and text.startswith(f"Retried task {old} as ")
    assert notice(site.client.get(f"/tasks/{old}")) is None  # shown once
    running = add_task(site.history, "STARTED")
    page = site.form("cancel", next="/tasks", task_id=running)
    assert notice(page)[0] == "error" and "Revoke" in notice(page)[1]
    page = site.form("retry", next="https://evil.example/", task_id=old)
    assert page.request.path == "/"  # never redirected off the dashboard


def test_unknown_action_is_404(site):
    assert site.api("explode").status_code == 404


def test_read_only_dashboard_refuses_every_action(store_kind, tmp_path):
    s, _ = make_site(store_kind, tmp_path, read_only=True)
    try:
        failed = add_task(s.history, "FAILURE")
        s.store.declare_queue("celery")
        for action, fields in [("retry", {"task_id": failed}), ("delete", {"task_id": failed}),
                               ("cancel", {"task_id": failed}), ("revoke", {"task_id": failed}),
                               ("retry-all", {"state": "FAILURE"}),
                               ("delete-all", {"state": "FAILURE"}),
                               ("purge", {"queue": "celery", "confirm": "celery"}),
                               ("retry-dead-letter", {"queue": "celery", "message_id": 1}),
                               ("delete-dead-letter", {"queue": "celery", "message_id": 1})]:
            response = s.api(action, **fields)
            assert response.status_code == 403, action
            assert "read-only" in response.get_json()["error"]
        assert s.history.task(failed).state == "FAILURE"
        html = s.client.get(f"/tasks/{failed}").get_data(as_text=True)
        assert 'data-testid="retry"' not in html and "read-only" in html
        assert "Purge" not in s.client.get("/queues").get_data(as_text=True)
    finally:
        close_site(s)


def test_actions_on_a_store_object_without_celery_app_say_what_to_pass(store, tmp_path):
    from gorelay_kombu.dashboard import create_app

    app = create_app(store)
    client = app.test_client()
    failed = add_task(store.history(), "FAILURE")
    token = client.get("/").get_data(as_text=True).split('name="csrf-token" content="')[1][:64]
    response = client.post("/api/actions/retry", json={"task_id": failed},
                           headers={"X-CSRF-Token": token})
    assert response.status_code == 409 and "celery_app=" in response.get_json()["error"]
    app.extensions["gorelay_dashboard"].close()


def test_retry_a_dead_relay_task_uses_its_kept_call_and_removes_it(site):
    from gorelay_kombu.compat.relay_dead import DeadTask, find, keep

    dead = add_task(site.history, "DEAD", name="mail.send", queue="mail",
                    args='["a very long address list cut by history…', kwargs=None)
    keep(site.store, DeadTask(dead, "mail.send", ["ada@example.com", "bob@example.com"],
                              {"subject": "hi"}, "mail", 0, 3, "SMTPError", "out of retries"))
    html = site.client.get(f"/tasks/{dead}").get_data(as_text=True)
    assert 'data-testid="retry"' in html  # retryable although history cut the args
    new = site.api("retry", task_id=dead).get_json()["new_task_id"]
    [message] = _queued_bodies(site, "mail")
    assert message["headers"]["id"] == new and message["properties"]["priority"] == 0
    assert find(site.store, dead) is None  # not re-driven twice
    assert site.history.task(new).retry_of == dead
