"""`setup_logging()`: one JSON (or console) line per record, on stdout and optionally a file."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import time
from typing import Literal, TextIO

from prometheus_client import CollectorRegistry

from instrumentation.handlers import (
    BackgroundWriter,
    DescriptorSink,
    FileSink,
    Sink,
    SinkHandler,
    StreamSink,
    descriptor_of,
)
from instrumentation.log_filters import CorrelationFilter
from instrumentation.log_format import ConsoleFormatter, JsonFormatter
from instrumentation.log_record import install as install_record_factory
from instrumentation.log_record import uninstall as uninstall_record_factory
from instrumentation.logger import get_logger
from instrumentation.logger import install as install_direct_log
from instrumentation.logger import uninstall as uninstall_direct_log
from instrumentation.runtime import Runtime, process_runtime, set_process_runtime
from instrumentation.settings import bounded_int, env, safe_name

LogFormat = Literal["json", "console"]
_log = get_logger("corrstack.runtime")
# Servers and clients whose own handlers would write a second, unstructured copy of a record.
_PROPAGATING_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn.error")
# Access lines come from CorrelationMiddleware; the servers' text ones would duplicate them.
_SILENCED_LOGGERS = ("uvicorn.access", "gunicorn.access")
# A server's last line before it ends the process without running atexit (see SinkHandler).
LAST_WORDS = (("uvicorn.error", "Finished server process"),)
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024
MAX_BUFFER_BYTES = 1024 * 1024 * 1024
SHUTDOWN_TIMEOUT = 5.0


def setup_logging(
    service: str | None = None,
    *,
    environment: str | None = None,
    level: str | int | None = None,
    log_format: LogFormat | None = None,
    log_file: str | None = None,
    stream: TextIO | None = None,
    buffer_bytes: int | None = None,
    registry: CollectorRegistry | None = None,
) -> logging.Logger:
    """Route every logger through corrstack's formatter and build the process's runtime.

    Arguments win over the environment (`SERVICE_NAME`, `ENVIRONMENT`, `LOG_LEVEL`,
    `LOG_FORMAT=json|console`, `LOG_FILE`, `LOG_BUFFER_BYTES`); a bad value raises ValueError
    naming its variable. Returns the root logger.

    The process's runtime (`instrumentation.runtime`) gets `service` and `environment`: lines
    written outside an instrumented app's requests carry them, and business events, timings
    and tracked errors there go to `registry` (default: the registry the process's runtime
    had, prometheus_client's global one unless configured).

    Safe to call more than once: the last call wins. When it changes the service or the
    environment, it says so in one line naming the old and the new values.

    Each line is rendered in the caller, then each sink (stdout, the file) gets it through its
    own buffer of `buffer_bytes` (default 8 MiB), written by a thread of its own: a stalled
    sink costs callers nothing and the other sink still gets every line; lines that find its
    buffer full are dropped and counted in `log_records_dropped_total{reason="queue_full"}`.
    `buffer_bytes=0` writes in the caller. An in-memory stream (StringIO) is always written in
    the caller, so tests can read it right after logging.

    >>> setup_logging(service="api")
    >>> logging.getLogger(__name__).info("ready")   # one JSON line with the request context
    """
    if env("LOG_QUEUE_SIZE") is not None:
        raise ValueError(
            "LOG_QUEUE_SIZE is no longer read: it was replaced by LOG_BUFFER_BYTES, a bound in "
            f"bytes per sink (default {DEFAULT_BUFFER_BYTES}; 0 writes in the caller)"
        )
    service = safe_name("SERVICE_NAME", service or env("SERVICE_NAME") or "unknown")
    environment = safe_name("ENVIRONMENT", environment or env("ENVIRONMENT") or "development")
    numeric_level = parse_level(level if level is not None else env("LOG_LEVEL") or "INFO")
    # Late: log_config builds on this module. Checked now, applied once the handler is in place.
    from instrumentation.log_config import apply_log_levels, log_levels

    levels = env("LOG_LEVELS") or ""
    per_logger = log_levels(levels)
    chosen = (log_format or env("LOG_FORMAT") or "json").lower()
    if chosen not in ("json", "console"):
        raise ValueError(f"LOG_FORMAT must be 'json' or 'console', not {chosen!r}")
    raw_buffer = buffer_bytes if buffer_bytes is not None else env("LOG_BUFFER_BYTES")
    limit = (
        DEFAULT_BUFFER_BYTES
        if raw_buffer is None
        else bounded_int("LOG_BUFFER_BYTES", raw_buffer, 0, MAX_BUFFER_BYTES)
    )
    log_file = log_file if log_file is not None else env("LOG_FILE")

    previous_runtime = process_runtime()
    runtime = Runtime.create(
        service, environment, previous_runtime.registry if registry is None else registry
    )
    formatter: logging.Formatter = (
        JsonFormatter(service, environment)
        if chosen == "json"
        else ConsoleFormatter(service, environment)
    )
    sinks: list[Sink | BackgroundWriter] = [stream_sink(stream or sys.stdout, limit)]
    if log_file:
        # A missing directory is created; one that cannot be is not fatal: the file sink then
        # counts every line it cannot write as dropped.
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        # The file is for the shipper: always JSON, whatever the console shows.
        file_formatter = None if chosen == "json" else JsonFormatter(service, environment)
        file_sink = FileSink(log_file, file_formatter)
        sinks.append(BackgroundWriter(file_sink, limit) if limit else file_sink)
    handler = SinkHandler(sinks, formatter, last_words=LAST_WORDS)
    handler.addFilter(CorrelationFilter())
    handler.log_levels = per_logger

    root = logging.getLogger()
    previous = _detach(root)
    install_direct_log()
    install_record_factory()  # the same records as stdlib's, for less (a custom one is kept)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    set_process_runtime(runtime)
    _close(previous, SHUTDOWN_TIMEOUT)  # after the swap: records go to the new one meanwhile
    reclaim_server_loggers()
    apply_log_levels(levels)
    changed = (previous_runtime.service, previous_runtime.environment) != (service, environment)
    if previous and changed:
        _log.info(
            f"setup_logging(service={service!r}, environment={environment!r}) replaces "
            f"service={previous_runtime.service!r}, environment={previous_runtime.environment!r}",
            previous_service=previous_runtime.service,
            previous_environment=previous_runtime.environment,
        )
    return root


def logging_configured() -> bool:
    """Whether the root logger writes through corrstack: a SinkHandler is on it (put there by
    `setup_logging()` or a dictConfig naming one)."""
    return bool(_handlers_of(logging.getLogger()))


def corrstack_handlers() -> list[SinkHandler]:
    """corrstack's handlers on the root logger (the SinkHandlers)."""
    return _handlers_of(logging.getLogger())


def parse_level(raw: str | int) -> int:
    """A level name (DEBUG … CRITICAL) or number 0-50; else ValueError naming LOG_LEVEL."""
    if isinstance(raw, str) and raw.strip().upper() in _LEVELS:
        return _LEVELS[raw.strip().upper()]
    try:
        return bounded_int("LOG_LEVEL", raw, 0, 50)
    except ValueError:
        raise ValueError(
            f"LOG_LEVEL={raw!r} is not a level: use {', '.join(_LEVELS)} or a number 0-50"
        ) from None


def stream_sink(stream: TextIO, limit: int) -> Sink | BackgroundWriter:
    """A sink for `stream`: written by a thread of its own through a buffer of `limit`
    characters, or in the caller when `limit` is 0 or the stream is in memory (StringIO)."""
    fd = descriptor_of(stream)
    if limit == 0 or fd is None:  # an in-memory stream cannot stall
        return StreamSink(stream)
    return BackgroundWriter(DescriptorSink(stream, fd), limit)


def reclaim_server_loggers() -> None:
    """Route the servers' loggers through corrstack again (their own config may have run since).

    Their error loggers propagate to the root handler; their text access logs are switched
    off, since CorrelationMiddleware writes the access line; the LOG_LEVELS entries for them
    apply again.
    """
    handlers = _handlers_of(logging.getLogger())
    if not handlers:
        return  # corrstack's logging is not set up: leave the servers' own
    from instrumentation.log_config import apply_server_log_levels  # late: it builds on this

    for name in _PROPAGATING_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    for name in _SILENCED_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = False
        server_logger.disabled = True
    apply_server_log_levels(handlers[0].log_levels)


def _handlers_of(root: logging.Logger) -> list[SinkHandler]:
    return [h for h in root.handlers if isinstance(h, SinkHandler)]


def _detach(root: logging.Logger) -> list[SinkHandler]:
    handlers = _handlers_of(root)
    for handler in handlers:
        root.removeHandler(handler)
    return handlers


def _close(handlers: list[SinkHandler], timeout: float) -> bool:
    """Write out and close `handlers`, waiting `timeout` seconds at most in all."""
    deadline = time.monotonic() + timeout
    written = [h.drain(max(0.0, deadline - time.monotonic()), stop=True) for h in handlers]
    for handler in handlers:
        handler.close()  # its writers are stopped already: returns at once
    return all(written)


def flush_logging(timeout: float = SHUTDOWN_TIMEOUT) -> bool:
    """Wait up to `timeout` seconds for every buffered line to be written; True if all were.

    >>> logging.getLogger("app").info("done")
    >>> assert flush_logging(timeout=2)   # the line is in the file now
    """
    deadline = time.monotonic() + timeout
    waited = [
        h.drain(max(0.0, deadline - time.monotonic())) for h in _handlers_of(logging.getLogger())
    ]
    return all(waited)


def shutdown_logging(timeout: float = SHUTDOWN_TIMEOUT) -> bool:
    """Write out buffered lines and close corrstack's handlers (also runs at exit); stdlib's
    LogRecord factory is back if setup_logging() had put corrstack's (`log_record`) in its place.

    Waits `timeout` seconds at most in all: a writer stuck on a stalled sink is abandoned (a
    daemon thread), so exit never hangs. True if every line was written.
    """
    uninstall_direct_log()
    uninstall_record_factory()
    return _close(_detach(logging.getLogger()), timeout)


atexit.register(shutdown_logging)


class _Forked:
    """What multiprocessing's after-fork registry holds (weakly) for `_at_multiprocessing_exit`."""


_FORKED = _Forked()


def _in_forked_child() -> None:
    # multiprocessing ends a child it forked with `os._exit`: no atexit, only its own
    # finalizers, whose registry it clears at the child's start and then runs its after-fork
    # hooks — where one of ours registers the finalizer that writes the buffers out.
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util.register_after_fork(_FORKED, _at_multiprocessing_exit)


def _at_multiprocessing_exit(_: object) -> None:
    sys.modules["multiprocessing.util"].Finalize(None, shutdown_logging, exitpriority=0)


os.register_at_fork(after_in_child=_in_forked_child)
