"""`setup_logging()`: one JSON (or console) line per record, on stdout and optionally a file."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import sys
from typing import Literal, TextIO

from instrumentation.handlers import (
    BoundedQueueListener,
    DroppingQueueHandler,
    FileSink,
    Sink,
    SinkHandler,
    StreamSink,
)
from instrumentation.log_filters import CorrelationFilter
from instrumentation.log_format import ConsoleFormatter, JsonFormatter

LogFormat = Literal["json", "console"]
_MARK = "_corrstack_handler"
# Servers and clients whose own handlers would write a second, unstructured copy of a record.
_PROPAGATING_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn.error")
# Access lines come from CorrelationMiddleware; the servers' text ones would duplicate them.
_SILENCED_LOGGERS = ("uvicorn.access", "gunicorn.access")

_listeners: list[BoundedQueueListener] = []
service_name = "unknown"
environment_name = "development"


def setup_logging(
    service: str | None = None,
    *,
    environment: str | None = None,
    level: str | int | None = None,
    log_format: LogFormat | None = None,
    log_file: str | None = None,
    stream: TextIO | None = None,
    queue_size: int | None = None,
) -> logging.Logger:
    """Route every logger through corrstack's formatter; safe to call more than once.

    Arguments win over the environment (`SERVICE_NAME`, `ENVIRONMENT`, `LOG_LEVEL`,
    `LOG_FORMAT=json|console`, `LOG_FILE`, `LOG_QUEUE_SIZE`). Returns the root logger.

    With `queue_size` > 0, lines are written by a background thread and a stalled sink (a
    blocked pipe, a hung network disk) costs callers nothing: records beyond `queue_size`
    waiting are dropped and counted in `log_records_dropped_total{sink="queue"}`. Without it,
    writes happen in the caller, which is cheaper per record.

    >>> setup_logging(service="api")
    >>> logging.getLogger(__name__).info("ready")   # one JSON line with the request context
    """
    global service_name, environment_name
    service_name = service or os.environ.get("SERVICE_NAME") or "unknown"
    environment_name = environment or os.environ.get("ENVIRONMENT") or "development"
    level = level or os.environ.get("LOG_LEVEL") or "INFO"
    chosen = (log_format or os.environ.get("LOG_FORMAT") or "json").lower()
    if chosen not in ("json", "console"):
        raise ValueError(f"LOG_FORMAT must be 'json' or 'console', not {chosen!r}")
    log_file = log_file if log_file is not None else os.environ.get("LOG_FILE") or None

    formatter: logging.Formatter = (
        JsonFormatter(service_name, environment_name)
        if chosen == "json"
        else ConsoleFormatter(service_name, environment_name)
    )
    if queue_size is None:
        queue_size = int(os.environ.get("LOG_QUEUE_SIZE") or 0)
    sinks: list[Sink] = [StreamSink(stream or sys.stdout)]
    if log_file:
        # A missing directory is created; one that cannot be is not fatal: the file sink then
        # counts every line it cannot write as dropped.
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        # The file is for the shipper: always JSON, whatever the console shows.
        file_formatter = None if chosen == "json" else JsonFormatter(service_name, environment_name)
        sinks.append(FileSink(log_file, file_formatter))
    handler = SinkHandler(sinks, formatter)

    root = logging.getLogger()
    _remove_previous(root)
    correlation = CorrelationFilter()
    front: logging.Handler = handler
    if queue_size > 0:
        records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=queue_size)
        front = DroppingQueueHandler(records, formatter)
        listener = BoundedQueueListener(records, handler, timeout=5.0)
        listener.start()
        _listeners.append(listener)
    setattr(front, _MARK, True)
    front.addFilter(correlation)
    root.addHandler(front)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    reclaim_server_loggers()
    return root


def reclaim_server_loggers() -> None:
    """Route the servers' loggers through corrstack again (their own config may have run since).

    Their error loggers propagate to the root handler; their text access logs are switched
    off, since CorrelationMiddleware writes the access line.
    """
    if not any(getattr(h, _MARK, False) for h in logging.getLogger().handlers):
        return  # corrstack's logging is not set up: leave the servers' own
    for name in _PROPAGATING_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    for name in _SILENCED_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = False
        server_logger.disabled = True


def _remove_previous(root: logging.Logger) -> None:
    while _listeners:
        _listeners.pop().stop()  # writes out what is queued, then ends the thread
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()


def shutdown_logging() -> None:
    """Write out queued records and close corrstack's handlers (also runs at exit)."""
    _remove_previous(logging.getLogger())


atexit.register(shutdown_logging)
