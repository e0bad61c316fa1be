"""A Celery app on a gorelay broker for the ``celery -A ... gorelay dashboard`` test.

The broker URL comes from ``GORELAY_TEST_DASHBOARD_URL``.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("dashboard-cli-test", broker=os.environ.get("GORELAY_TEST_DASHBOARD_URL",
                                                          "gorelay://"))
app.conf.gorelay_worker_heartbeat = 2.0
