"""A Celery app and a FastAPI service publishing to it, for tests/test_celery.py.

The worker runs `celery -A tests.apps.celery_app worker` with CELERY_BROKER_URL, LOG_FILE and
WORKER_METRICS_PORT (its /metrics, served by prometheus_client on 127.0.0.1) from the test.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, signals
from fastapi import FastAPI
from prometheus_client import start_http_server

from instrumentation import current_context, get_logger, instrument_app
from instrumentation.celery import instrument_celery

celery_app = Celery("tests", broker=os.environ.get("CELERY_BROKER_URL", "memory://"))
celery_app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
instrument_celery(celery_app)
log = get_logger("tests.tasks")
plain = logging.getLogger("tests.tasks.plain")


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    port = os.environ.get("WORKER_METRICS_PORT")
    if port:
        start_http_server(int(port), addr="127.0.0.1")


@celery_app.task(name="tests.note")
def note(n: int) -> int:
    log.info("Taking a note", n=n)
    plain.info("Plain stdlib line in a task")
    return n


@celery_app.task(name="tests.burst")
def burst(count: int) -> int:
    for i in range(count):
        plain.info("burst line %d", i)
    return count


@celery_app.task(name="tests.flaky", bind=True, max_retries=3)
def flaky(self: Any, n: int) -> int:
    log.info("Flaky attempt", n=n, attempt=self.request.retries)
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("first attempt fails"), countdown=0)
    return n


@celery_app.task(name="tests.broken")
def broken() -> None:
    raise ValueError("this task always fails")


api = FastAPI()
instrument_app(api, service="api")


@api.post("/api/user/{user_id}/notes/{n}")
def publish_note(user_id: str, n: int) -> dict[str, Any]:
    result = note.delay(n)
    return {"task_id": result.id, **current_context()}


@api.post("/api/user/{user_id}/flaky")
def publish_flaky(user_id: str) -> dict[str, Any]:
    result = flaky.delay(1)
    return {"task_id": result.id, **current_context()}


@api.post("/broken")
def publish_broken() -> dict[str, Any]:
    return {"task_id": broken.delay().id, **current_context()}
