"""A plain Celery app on gorelay: the only gorelay-specific line is the broker URL.

Results travel back over the same SQLite file with Celery's own ``rpc://``
backend (replies are broker messages), so nothing else needs to run.
"""

from celery import Celery

app = Celery("shop", broker="gorelay://", backend="rpc://")  # was: redis://localhost:6379/0
app.conf.broker_transport_options = {"visibility_timeout": 60}


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def send_email(to: str) -> str:
    return f"sent welcome email to {to}"
