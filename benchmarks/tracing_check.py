"""Which tracing path a per-request measurement is on, checked in the worker after warm-up.

A figure must not silently be that of another path, so after warm-up (untimed) the worker
sends one more request and checks, or exits naming what is wrong:

- ``corrstack``: no OpenTelemetry tracing in the process — neither the SDK nor any
  instrumentation imported, no OpenTelemetry middleware in the stack, no span current while the
  response is sent, and corrstack's access line written. (FastAPI 0.165 itself requires and
  imports ``opentelemetry-api``, so ``opentelemetry.trace`` is in ``sys.modules`` of any FastAPI
  process; this is the cost of corrstack where OpenTelemetry is not set up.)
- ``opentelemetry``: OpenTelemetry's ASGI middleware in the stack and a recording SDK span
  current while the response is sent.
- ``corrstack_opentelemetry``: that, with CorrelationMiddleware inside OpenTelemetry's
  middleware, and the access line's trace id and span id those of the request's server span.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from starlette.types import ASGIApp, Message

UNTRACED = "corrstack"
TRACED = "opentelemetry"
COMBINED = "corrstack_opentelemetry"
_ACCESS_LOGGER = "corrstack.access"
_NOT_SET_UP = ("opentelemetry.sdk", "opentelemetry.instrumentation")


def middleware_chain(app: Any) -> list[object]:
    """The built middleware stack from the outside in, following each layer's `.app`."""
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    chain: list[object] = []
    layer: object | None = app.middleware_stack
    while layer is not None and len(chain) < 50:
        chain.append(layer)
        layer = getattr(layer, "app", None)
    return chain


async def verify(app_name: str, app: ASGIApp) -> None:
    """In the worker, after warm-up: `app_name`'s tracing path is the one being measured."""
    if app_name == UNTRACED:
        await _verify_untraced(app_name, app)
    elif app_name in (TRACED, COMBINED):
        await _verify_traced(app_name, app)


def _is_tracing_middleware(layer: object) -> bool:
    # By name, not by import: the untraced check must not import OpenTelemetry's middleware.
    cls = type(layer)
    return cls.__name__ == "OpenTelemetryMiddleware" and cls.__module__.startswith(
        "opentelemetry.instrumentation."
    )


def _current_span_ids() -> tuple[str, str] | None:
    """The current span's ids as corrstack would read them, without importing OpenTelemetry."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


async def _verify_untraced(app_name: str, app: ASGIApp) -> None:
    imported = sorted(
        module
        for module in sys.modules
        if any(module == name or module.startswith(name + ".") for name in _NOT_SET_UP)
    )
    if imported:
        _fail(app_name, f"OpenTelemetry is set up in this process: {', '.join(imported[:3])}")
    if any(_is_tracing_middleware(layer) for layer in middleware_chain(app)):
        _fail(app_name, "OpenTelemetry's middleware is in the stack")
    spans, lines = await _traced_request(app, _current_span_ids, capture=True)
    if spans != [None]:
        _fail(app_name, f"a span is current while the response is sent: {spans}")
    _access_line(app_name, lines)


async def _verify_traced(app_name: str, app: ASGIApp) -> None:
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    chain = middleware_chain(app)
    tracing = [i for i, layer in enumerate(chain) if isinstance(layer, OpenTelemetryMiddleware)]
    if not tracing:
        _fail(app_name, "OpenTelemetry's middleware is not in the stack")
    # Only the app with corrstack has its lines captured: OpenTelemetry alone's process never
    # imports corrstack.
    spans, lines = await _traced_request(app, _server_span_ids, capture=app_name == COMBINED)
    if len(spans) != 1 or spans[0] is None:
        _fail(app_name, f"no recording span is current while the response is sent: {spans}")
    if app_name != COMBINED:
        return
    from instrumentation.middleware import CorrelationMiddleware

    correlation = [i for i, layer in enumerate(chain) if isinstance(layer, CorrelationMiddleware)]
    if len(correlation) != 1 or correlation[0] < tracing[0]:
        names = " > ".join(type(layer).__name__ for layer in chain)
        _fail(app_name, f"CorrelationMiddleware is not once inside OpenTelemetry's: {names}")
    line = _access_line(app_name, lines)
    if (line.get("trace_id"), line.get("span_id")) != spans[0]:
        _fail(
            app_name,
            f"the access line carries trace {line.get('trace_id')} span {line.get('span_id')}, "
            f"the server span is {spans[0]}",
        )


def _server_span_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the request's server span, seen from the outermost `send`.

    OpenTelemetry's middleware sends inside an internal "http send" span of the server span
    (unless its send spans are excluded): the server span is then the current one's parent.
    """
    from opentelemetry import trace

    span: Any = trace.get_current_span()
    context = span.get_span_context()
    if not (context.is_valid and span.is_recording()):
        return None
    server = context.span_id
    if span.kind != trace.SpanKind.SERVER:
        if span.parent is None:
            return None
        server = span.parent.span_id
    return format(context.trace_id, "032x"), format(server, "016x")


async def _traced_request(
    app: ASGIApp, current: Any, *, capture: bool
) -> tuple[list[tuple[str, str] | None], list[dict[str, Any]]]:
    """One request of the route: `current()` when its response starts, and with `capture` the
    lines logged (through corrstack's own filter and formatter, `testing.capture_logs`)."""
    from benchmarks.request_worker import _receive, fresh_scope

    spans: list[tuple[str, str] | None] = []
    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
            spans.append(current())

    lines: list[dict[str, Any]] = []
    if capture:
        from instrumentation.testing import capture_logs

        with capture_logs() as lines:
            await app(fresh_scope(), _receive, send)
    else:
        await app(fresh_scope(), _receive, send)
    if statuses != [200]:
        raise SystemExit(f"the tracing check's request answered {statuses}, not [200]")
    return spans, lines


def _access_line(app_name: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    access = [line for line in lines if line.get("logger") == _ACCESS_LOGGER]
    if len(access) != 1:
        _fail(app_name, f"{len(access)} access lines for one request, not 1")
    return access[0]


def _fail(app_name: str, reason: str) -> NoReturn:
    raise SystemExit(f"{app_name} is not measuring its tracing path: {reason}")
