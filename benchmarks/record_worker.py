"""One per-record measurement: a full-context log line through a real `logging` handler.

`python -m benchmarks.record_worker FORMATTER RECORDS CHUNKS` configures one handler writing to
/dev/null, binds the request context the library's own way, and times `logger.info(...)` with
eight extra fields, so LogRecord creation, filters and formatting are all included.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from contextvars import ContextVar
from time import perf_counter_ns, process_time_ns
from typing import Any

from benchmarks.worker_result import Timing, emit

MESSAGE = "Routine generated"
CONTEXT = {
    "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
    "span_id": "b7ad6b7169203331",
    "user_id": "u-42",
}
EXTRA: dict[str, Any] = {
    "exercises_count": 8,
    "duration_ms": 12.5,
    "model": "gpt-4o-mini",
    "cost_usd": 0.0021,
    "endpoint": "/v1/chat/completions",
    "cache_hit": False,
    "attempt": 1,
    "plan": "pro",
}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# The peers' context, held the way asgi-correlation-id holds its ID: ContextVars read by a filter.
_context_vars = {name: ContextVar[str | None](f"bench_{name}", default=None) for name in CONTEXT}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _context_vars.items():
            setattr(record, name, var.get())
        return True


class JsonDumpsFormatter(logging.Formatter):
    """The floor: `json.dumps` of exactly the fields, no escaping, no redaction."""

    fields = (*CONTEXT, *EXTRA)

    def format(self, record: logging.LogRecord) -> str:
        attrs = record.__dict__
        data = {
            "timestamp": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **{name: attrs[name] for name in self.fields},
        }
        return json.dumps(data)


def _handler(formatter: logging.Formatter, *filters: logging.Filter) -> logging.Handler:
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives until exit
    handler.setFormatter(formatter)
    for log_filter in filters:
        handler.addFilter(log_filter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return handler


def _bind_peer_context() -> None:
    for name, value in CONTEXT.items():
        _context_vars[name].set(value)


def _stdlib_call() -> Callable[[], None]:
    log = logging.getLogger("bench")
    return lambda: log.info(MESSAGE, extra=EXTRA)


def json_dumps() -> Callable[[], None]:
    _handler(JsonDumpsFormatter(), ContextFilter())
    _bind_peer_context()
    return _stdlib_call()


def stdlib() -> Callable[[], None]:
    """A plain text line with a timestamp; the context is not in it (stdlib has no way)."""
    _handler(logging.Formatter(PLAIN_FORMAT))
    return _stdlib_call()


def python_json_logger() -> Callable[[], None]:
    from pythonjsonlogger.json import JsonFormatter

    _handler(JsonFormatter(PLAIN_FORMAT), ContextFilter())
    _bind_peer_context()
    return _stdlib_call()


def structlog() -> Callable[[], None]:
    """structlog renders JSON, then hands the line to a stdlib logger (its documented setup)."""
    import structlog as sl

    _handler(logging.Formatter("%(message)s"))
    sl.configure(
        processors=[
            sl.contextvars.merge_contextvars,
            sl.stdlib.add_log_level,
            sl.stdlib.add_logger_name,
            sl.processors.TimeStamper(fmt="iso", utc=True),
            sl.processors.JSONRenderer(),
        ],
        logger_factory=sl.stdlib.LoggerFactory(),
        wrapper_class=sl.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    sl.contextvars.bind_contextvars(**CONTEXT)
    log = sl.stdlib.get_logger("bench")
    return lambda: log.info(MESSAGE, **EXTRA)


def _corrstack_context() -> None:
    from instrumentation import bind_context, setup_logging

    setup_logging(service="bench", environment="bench", stream=open(os.devnull, "w"))  # noqa: SIM115
    bind_context(**CONTEXT).__enter__()  # stays bound for the life of the process


def corrstack() -> Callable[[], None]:
    """corrstack's JSON line through a plain stdlib logger (how existing code logs)."""
    _corrstack_context()
    return _stdlib_call()


def corrstack_get_logger() -> Callable[[], None]:
    """corrstack's JSON line through `get_logger()` with keyword fields."""
    from instrumentation import get_logger

    _corrstack_context()
    log = get_logger("bench")
    return lambda: log.info(MESSAGE, **EXTRA)


FORMATTERS: dict[str, Callable[[], Callable[[], None]]] = {
    "json_dumps": json_dumps,
    "stdlib": stdlib,
    "python_json_logger": python_json_logger,
    "structlog": structlog,
    "corrstack": corrstack,
    "corrstack_get_logger": corrstack_get_logger,
}


def time_records(write: Callable[[], None], records: int, chunks: int) -> list[Timing]:
    """CPU and wall µs per record of each of `chunks` timed batches, after a warm-up batch."""
    batch = max(1, records // chunks)
    for _ in range(batch):
        write()
    per_chunk: list[Timing] = []
    for _ in range(chunks):
        cpu, wall = process_time_ns(), perf_counter_ns()
        for _ in range(batch):
            write()
        per_chunk.append(Timing.per_operation(cpu, wall, batch))
    return per_chunk


def main(argv: list[str]) -> None:
    name, records, chunks = argv[0], int(argv[1]), int(argv[2])
    try:
        setup = FORMATTERS[name]
    except KeyError:
        sys.exit(f"unknown formatter {name!r}; choose from {', '.join(FORMATTERS)}")
    emit(name, time_records(setup(), records, chunks))


if __name__ == "__main__":
    main(sys.argv[1:])
