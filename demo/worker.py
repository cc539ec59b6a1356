"""The demo's `worker`: a Celery worker that sends the "routine ready" notification.

`celery -A demo.worker worker --pool=threads` with `CELERY_BROKER_URL` (`redis://…`) and the
logging variables of `setup_logging()` (`SERVICE_NAME=worker`, `LOG_FILE`, …). `api` publishes
`demo.notify_routine_ready` after it generated a routine; `instrument_celery` carries the
request's request_id, trace_id and user_id into the task, so the worker's lines of a request
carry them too, with `task_id` and `task_name`.

`WORKER_METRICS_PORT` (unset: none) serves the worker's metrics (`task_duration_seconds` with
`request_id` exemplars, `operation_duration_seconds` of the simulated send) with
prometheus_client's own server, on `WORKER_METRICS_ADDR` (default 127.0.0.1; compose sets
0.0.0.0 so Prometheus can scrape the container).
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any

from celery import Celery, signals  # type: ignore[import-untyped]
from prometheus_client import start_http_server

from instrumentation import get_logger, log_performance
from instrumentation.celery import instrument_celery

NOTIFY_TASK = "demo.notify_routine_ready"
CHANNELS = ("email", "push")
# A send takes a few milliseconds here; a real provider would take longer.
SEND_SECONDS = 0.005
# The api must not hang on a broker that is down: a few quick tries, then the error.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}

celery_app = Celery("demo", broker=os.environ.get("CELERY_BROKER_URL") or "memory://")
celery_app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    broker_connection_timeout=2,
    task_publish_retry_policy=PUBLISH_RETRY_POLICY,
)
instrument_celery(celery_app)
log = get_logger(__name__)


def _serve_metrics(**_: Any) -> None:
    port = os.environ.get("WORKER_METRICS_PORT")
    if port:
        start_http_server(int(port), addr=os.environ.get("WORKER_METRICS_ADDR") or "127.0.0.1")


signals.worker_init.connect(_serve_metrics, weak=False)


@log_performance("notification.send")
def _send(channel: str, user_id: str) -> None:
    time.sleep(SEND_SECONDS)  # the provider's API call


def _notify_routine_ready(user_id: str, goal: str, exercises_count: int) -> str:
    """Tell the user their new routine is ready; returns the channel used."""
    channel = CHANNELS[zlib.crc32(user_id.encode()) % len(CHANNELS)]
    _send(channel, user_id)
    log.info(
        "Routine ready notification sent",
        channel=channel,
        goal=goal,
        exercises_count=exercises_count,
    )
    return channel


# Celery is untyped: the task is `Any` to mypy (`.delay(...)`, `.apply_async(...)`).
notify_routine_ready: Any = celery_app.task(name=NOTIFY_TASK)(_notify_routine_ready)
