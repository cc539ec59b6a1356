"""Helpers for testing code that uses corrstack, the way `structlog.testing` helps with structlog.

>>> from instrumentation import business_events, testing
>>> def test_generating_a_routine_emits_its_event():
...     with testing.capture_logs() as lines, testing.capture_metrics() as registry:
...         generate_routine(user_id="u-1")          # your code
...     [event] = [line for line in lines if line.get("event_type") == "routine_generated"]
...     assert event["user_id"] == "u-1"
...     labels = {"event_type": "routine_generated"}
...     assert registry.get_sample_value("business_events_total", labels) == 1

Call `reset()` between tests (an autouse fixture) so no test sees another's handlers, runtime,
error patterns, fault counts or cost totals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry

from instrumentation.accounting import reset_drops
from instrumentation.business import business_events
from instrumentation.faults import reset_faults
from instrumentation.log_filters import CorrelationFilter
from instrumentation.log_format import JsonFormatter
from instrumentation.logging_setup import parse_level, shutdown_logging
from instrumentation.metrics import metrics_for
from instrumentation.runtime import Runtime, process_runtime, set_process_runtime

__all__ = ["capture_logs", "capture_metrics", "reset"]


class _ParsedLines(logging.Handler):
    """Appends each record, rendered by corrstack's JSON formatter, as the parsed object."""

    def __init__(self, lines: list[dict[str, Any]], level: int) -> None:
        super().__init__(level)
        self.lines = lines
        runtime = process_runtime()
        self.setFormatter(JsonFormatter(runtime.service, runtime.environment))
        self.addFilter(CorrelationFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@contextmanager
def capture_logs(level: str | int = "INFO") -> Iterator[list[dict[str, Any]]]:
    """The lines logged inside the block at `level` or above, each parsed from its JSON.

    Every record of every logger goes through corrstack's real filter and JSON formatter, so a
    line has exactly the fields, context and redaction it has in production. The list fills
    as lines are written; they still go to the handlers already configured too. The root
    logger's level is lowered to `level` for the block if it is higher, then restored.

    >>> with capture_logs() as lines:
    ...     with bind_context(request_id="req-1"):
    ...         logging.getLogger("app").info("Order placed", extra={"order_id": 7})
    >>> lines[0]["request_id"], lines[0]["order_id"]
    ('req-1', 7)
    """
    lines: list[dict[str, Any]] = []
    numeric = parse_level(level)
    handler = _ParsedLines(lines, numeric)
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(min(numeric, saved_level))
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)


@contextmanager
def capture_metrics() -> Iterator[CollectorRegistry]:
    """A fresh registry that the process's runtime uses inside the block.

    Business events, timings and errors tracked outside an app's requests are counted in it,
    and so is everything of an app instrumented inside the block without its own
    `registry=` or `service=`. (An app instrumented with its own registry counts there: read
    that one.) The runtime of before is restored after the block.

    >>> with capture_metrics() as registry:
    ...     business_events.routine_generated(exercises_count=8)
    >>> registry.get_sample_value("business_events_total", {"event_type": "routine_generated"})
    1.0
    """
    previous = process_runtime()
    registry = CollectorRegistry()
    set_process_runtime(Runtime.create(previous.service, previous.environment, registry))
    try:
        yield registry
    finally:
        set_process_runtime(previous)


def reset(timeout: float = 5.0) -> None:
    """Put corrstack's process state back to that of a fresh process.

    Closes and removes corrstack's handlers (writing out what they hold, `timeout` seconds at
    most) and sets the root logger's level back to WARNING, stdlib's default; makes the
    process's runtime a new default one (service "unknown", environment "development",
    prometheus_client's global registry, an error tracker with no patterns and the settings
    read again on first use); forgets fault counts, log drop counts, business-event cost
    totals and when the global registry's histograms last kept an exemplar. Caches (secret-key
    verdicts, route templates) only memoize: they are kept.

    >>> @pytest.fixture(autouse=True)
    ... def _corrstack() -> Iterator[None]:
    ...     testing.reset()
    ...     yield
    ...     testing.reset()
    """
    shutdown_logging(timeout)
    logging.getLogger().setLevel(logging.WARNING)
    set_process_runtime(Runtime.create())
    reset_faults()
    reset_drops()
    business_events.forget_costs()
    metrics_for().forget_exemplar_times()  # prometheus_client's global registry: shared
