"""The current OpenTelemetry span, when OpenTelemetry is installed and a span is current.

corrstack is the correlation layer that works without a tracing backend; next to OpenTelemetry
it agrees with it. When a valid span is current, its trace id and span id are the ones log
lines, exemplars and outbound `traceparent` headers carry (a child span's inside a child span);
`request_id` stays corrstack's. Nothing of OpenTelemetry is imported here: until something
in the process has imported it no span can be current, and each call is two dictionary
lookups; after that (FastAPI itself imports `opentelemetry-api`), an empty OpenTelemetry
context ends the search at once — under 0.2 µs — and only a traced request pays for a span
lookup.

>>> with tracer.start_as_current_span("work"):
...     current_span_ids()
('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7')
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

# The last span context seen and its ids as hex: a request's lines share one span context.
_last: tuple[Any, tuple[str, str] | None] = (None, None)
# OpenTelemetry's `context.get_current` and `trace.get_current_span`, once it is imported.
_otel: tuple[Callable[[], Any], Callable[[Any], Any]] | None = None


def current_span_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current OpenTelemetry span as lowercase hex, or None when
    OpenTelemetry is absent or no valid span is current."""
    global _last
    otel = _otel or _find_opentelemetry()
    if otel is None:
        return None
    get_current, get_current_span = otel
    current = get_current()
    if not current:  # an empty OpenTelemetry context holds no span: the common case
        return None
    context = get_current_span(current).get_span_context()
    last_context, ids = _last
    if context is last_context:
        return ids
    ids = (
        (format(context.trace_id, "032x"), format(context.span_id, "016x"))
        if context.is_valid
        else None
    )
    _last = (context, ids)
    return ids


def _find_opentelemetry() -> tuple[Callable[[], Any], Callable[[Any], Any]] | None:
    global _otel
    if "opentelemetry.trace" not in sys.modules:
        return None
    # getattr: a module another thread is still importing may not have them yet.
    get_current = getattr(sys.modules.get("opentelemetry.context"), "get_current", None)
    get_current_span = getattr(sys.modules["opentelemetry.trace"], "get_current_span", None)
    if get_current is None or get_current_span is None:
        return None
    _otel = (get_current, get_current_span)
    return _otel


def tracing_available() -> bool:
    """Whether OpenTelemetry's API is in use in this process (imported by anything)."""
    return "opentelemetry.trace" in sys.modules


def is_tracing_middleware(app: object) -> bool:
    """Whether `app` is OpenTelemetry's ASGI middleware (which FastAPIInstrumentor puts
    outermost), without importing it."""
    cls = type(app)
    return cls.__name__ == "OpenTelemetryMiddleware" and cls.__module__.startswith(
        "opentelemetry.instrumentation.asgi"
    )
