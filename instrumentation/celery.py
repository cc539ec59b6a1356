"""Celery: the request's context travels with its tasks, and every task run is timed.

Call `instrument_celery(celery_app)` where the Celery app is defined, so it runs both in the
service that publishes tasks and in the worker:

>>> celery_app = Celery("api", broker="redis://127.0.0.1:6379/0")
>>> instrument_celery(celery_app)

Publishing (`before_task_publish`): the message gets a `corrstack` header holding
`task_headers()` — the request's `X-Correlation-ID`, a `traceparent` with the request's trace
id and a new span id (the task's span), and `X-User-ID`. A retry is republished from inside
the run, whose context is the original request's, so it keeps the request_id.

In the worker (`task_prerun` … `task_postrun`): the run is bound with `task_context()` — the
request's request_id, trace_id and user_id, plus `task_id` and `task_name`; a task published
outside any context gets a fresh one. Each run observes `task_duration_seconds{task_name,
status}` (status `success`, `failure` or `retry`) with a `request_id` exemplar and writes one
line — "Task completed", "Task failed" (ERROR, after the failure is tracked by the error tracker
with its stack: `app_errors_total{operation=<task name>}`) or "Task retried" (WARNING) — with
`duration_ms` and `status`.

Worker logging: with `setup_logging=True` (the default) corrstack answers Celery's
`setup_logging` signal, which is how Celery lets an application configure logging itself:
Celery then leaves the root logger alone and every line — Celery's own included — is a
corrstack JSON line (`SERVICE_NAME`, `LOG_FILE`, …; the worker's `--loglevel` unless
`LOG_LEVEL` is set). Pass `setup_logging=False` to configure logging yourself.

Celery's signals are process-wide: instrumenting more than one app in a process connects the
receivers once. Celery is imported only by this module.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from celery import signals  # type: ignore[import-untyped]

from instrumentation.context import connection_var
from instrumentation.error_fields import error_fields, error_summary, safe_str
from instrumentation.faults import report_fault
from instrumentation.logger import get_logger
from instrumentation.logging_setup import flush_logging
from instrumentation.logging_setup import setup_logging as _setup_corrstack_logging
from instrumentation.runtime import current_runtime, error_tracker
from instrumentation.task_context import task_context, task_headers

HEADER = "corrstack"  # the message header holding `task_headers()`
_log = get_logger("corrstack.celery")
_STATUS = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry"}
_connected_lock = threading.Lock()
_connected = False


@dataclass
class _Run:
    """One task run between prerun and postrun."""

    context: AbstractContextManager[str]
    start: float
    error: BaseException | None = None
    reason: Any = None
    fields: dict[str, Any] = field(default_factory=dict)


# Runs in progress by (task id, thread): prerun and postrun are separate calls on the thread
# that runs the task. The thread is part of the key because a retry keeps its task id and, in a
# threads pool, may start on another thread before the attempt that published it has ended.
_runs: dict[tuple[str, int], _Run] = {}


def _key(task_id: str | None) -> tuple[str, int]:
    return (task_id or "", threading.get_ident())


def instrument_celery(celery_app: Any, *, setup_logging: bool = True) -> None:
    """Carry the correlation context into `celery_app`'s tasks and time their runs.

    >>> instrument_celery(celery_app)   # in the module that defines the app
    """
    global _connected
    if setup_logging:
        celery_app.conf.worker_hijack_root_logger = False
        signals.setup_logging.connect(_setup_logging, weak=False, dispatch_uid="corrstack")
    with _connected_lock:
        if _connected:
            return
        signals.before_task_publish.connect(_inject, weak=False, dispatch_uid="corrstack")
        signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="corrstack")
        signals.task_failure.connect(_failure, weak=False, dispatch_uid="corrstack")
        signals.task_retry.connect(_retry, weak=False, dispatch_uid="corrstack")
        signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="corrstack")
        signals.worker_process_shutdown.connect(_flush, weak=False, dispatch_uid="corrstack")
        _connected = True


def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    level = None if os.environ.get("LOG_LEVEL") else loglevel
    _setup_corrstack_logging(level=level)


def _flush(**_: Any) -> None:
    # A prefork pool child (one replaced after --max-tasks-per-child, say) ends with
    # `os._exit`: no atexit runs, so its buffered lines are written out here, where Celery
    # signals the child's end — else the tail of its last task's lines could be lost.
    try:
        flush_logging()
    except Exception as fault:  # a child's exit must never fail because of us
        report_fault("celery", "flush_failed", error_summary(fault))


def _inject(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    try:
        carried = task_headers()
        if carried:
            headers[HEADER] = carried
    except Exception as fault:  # publishing must never fail because of us
        report_fault("celery", "inject_failed", error_summary(fault))


def _carried(task: Any) -> Any:
    request = task.request
    carried = request.get(HEADER)
    if carried is None and isinstance(request.headers, dict):
        carried = request.headers.get(HEADER)
    if carried is None and request.is_eager:
        carried = task_headers()  # run in the caller: keep its context
    return carried if isinstance(carried, dict) else None


def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    try:
        context = task_context(_carried(task), task_id=task_id, task_name=task.name)
        context.__enter__()
        _runs[_key(task_id)] = _Run(context, perf_counter())
    except Exception as fault:
        report_fault("celery", "bind_failed", error_summary(fault))


def _failure(task_id: str | None = None, exception: BaseException | None = None, **_: Any) -> None:
    run = _runs.get(_key(task_id))
    if run is not None:
        run.error = exception


def _retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    run = _runs.get(_key(getattr(request, "id", None)))
    if run is not None:
        run.reason = reason


def _postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    run = _runs.pop(_key(task_id), None)
    if run is None:
        return
    try:
        _record(run, task.name, _STATUS.get(state or "", "failure" if run.error else "success"))
    except Exception as fault:
        report_fault("celery", "record_failed", error_summary(fault))
    finally:
        run.context.__exit__(None, None, None)


def _record(run: _Run, task_name: str, status: str) -> None:
    duration = perf_counter() - run.start
    request_id = connection_var.get().request_id
    metrics = current_runtime().metrics
    metrics.histogram_child(metrics.task_duration_seconds, task_name, status).observe(
        duration, {"request_id": request_id} if request_id else None
    )
    fields: dict[str, Any] = {"duration_ms": round(duration * 1000, 3), "status": status}
    if status == "success":
        _log.info("Task completed", **fields)
    elif status == "retry":
        reason = run.reason
        text = error_summary(reason) if isinstance(reason, BaseException) else safe_str(reason, 256)
        _log.warning("Task retried", reason=text, **fields)
    else:
        if run.error is not None:
            error_tracker.track(run.error, operation=task_name)
            fields.update(error_fields(run.error))
        _log.log(logging.ERROR, "Task failed", **fields)
