"""A Flask app that enqueues from its request handler.

    flask --app app run                  # the web app
    celery -A tasks:relay worker         # the worker (another terminal)

    curl -X POST localhost:5000/signup -H 'content-type: application/json' \\
         -d '{"email": "ada@example.com"}'
    curl localhost:5000/tasks/<task_id>

``POST /signup`` inserts the user and enqueues the welcome mail **in the same
transaction** (``connection=conn``): if the insert fails, no mail is sent; if
the enqueue fails, no user is stored.  The idempotency key makes a retried
request (a double click, a client retry) send one mail.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Flask, jsonify, request
from tasks import DB, Welcome, relay

engine = sa.create_engine(f"sqlite:///{DB}")
with engine.begin() as conn:
    conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL)")

app = Flask(__name__)


@app.post("/signup")
def signup():  # noqa: ANN201
    email = (request.get_json(silent=True) or {}).get("email")
    if not isinstance(email, str) or "@" not in email:
        return jsonify(error="an email address is required"), 400
    try:
        with engine.begin() as conn:
            user_id = conn.exec_driver_sql(
                "INSERT INTO users (email) VALUES (?)", (email,)).lastrowid
            task_id = relay.enqueue("email.welcome", Welcome(user_id, email), connection=conn,
                                    idempotency_key=f"welcome:{email}")
    except sa.exc.IntegrityError:
        return jsonify(error=f"{email} is already signed up"), 409
    return jsonify(user_id=user_id, task_id=task_id), 201


@app.get("/tasks/<task_id>")
def task_status(task_id: str):  # noqa: ANN201
    result = relay.celery.AsyncResult(task_id)
    body = {"task_id": task_id, "state": result.state}
    if result.successful():
        body["result"] = result.result
    return jsonify(body)
