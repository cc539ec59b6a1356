"""The benchmarked apps: one FastAPI route, instrumented by corrstack or by one peer each.

Every factory builds a fresh app in the calling process; uvicorn calls them with `--factory`
and the in-process worker calls them directly, so both parts measure the same configuration.
Logs go to /dev/null: the cost measured is producing the line, not the disk.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any, TextIO

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROUTE = "/api/user/{user_id}/routine"
REQUEST_PATH = "/api/user/42/routine"


def _devnull() -> TextIO:
    return open(os.devnull, "w")  # the handler owns it for the life of the process


def _app_with_route() -> FastAPI:
    app = FastAPI()

    @app.get(ROUTE)
    async def routine(user_id: str) -> dict[str, Any]:
        return {"user_id": user_id, "exercises": 8, "minutes": 45}

    return app


def bare() -> FastAPI:
    """FastAPI with no instrumentation: the floor every overhead is measured against."""
    return _app_with_route()


def corrstack() -> FastAPI:
    """corrstack: correlation IDs, metrics with exemplars, one JSON access line per request."""
    from prometheus_client import CollectorRegistry

    from instrumentation import instrument_app, setup_logging

    setup_logging(service="bench", environment="bench", log_file=os.devnull, stream=_devnull())
    app = _app_with_route()
    instrument_app(app, service="bench", registry=CollectorRegistry())
    return app


class JsonAccessLine:
    """Pure-ASGI access line for the asgi-correlation-id app, the fields uvicorn's has.

    asgi-correlation-id's docs put its filter on uvicorn's access logger; this writes the same
    line from inside the app so the in-process measurement, which has no uvicorn, includes it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            user_agent = dict(scope["headers"]).get(b"user-agent", b"").decode("latin-1")
            self.log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((perf_counter() - start) * 1000, 3),
                    "client_addr": f"{client[0]}:{client[1]}" if client else "",
                    "user_agent": user_agent,
                },
            )


def asgi_correlation_id() -> FastAPI:
    """asgi-correlation-id's middleware and log filter, python-json-logger lines, access line."""
    from asgi_correlation_id import CorrelationIdFilter, CorrelationIdMiddleware
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(_devnull())
    handler.addFilter(CorrelationIdFilter(uuid_length=32))
    handler.setFormatter(
        JsonFormatter("%(asctime)s %(levelname)s %(name)s %(correlation_id)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    app = _app_with_route()
    app.add_middleware(JsonAccessLine)
    app.add_middleware(CorrelationIdMiddleware)  # added last: outermost, so the line has the ID
    return app


def prometheus_fastapi_instrumentator() -> FastAPI:
    """`Instrumentator().instrument(app).expose(app)`, as its README shows."""
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator

    app = _app_with_route()
    Instrumentator(registry=CollectorRegistry()).instrument(app).expose(app)
    return app


def starlette_exporter() -> FastAPI:
    """`PrometheusMiddleware` and its `/metrics` handler (the library uses the global registry;
    every measurement runs in a fresh process, so it starts empty)."""
    from starlette_exporter import PrometheusMiddleware, handle_metrics

    app = _app_with_route()
    app.add_middleware(PrometheusMiddleware)
    app.add_route("/metrics", handle_metrics)
    return app


def _trace_with_opentelemetry(app: FastAPI) -> None:
    """FastAPIInstrumentor with the SDK tracer, spans batched and dropped by the exporter."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DiscardingExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardingExporter()))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)


def opentelemetry() -> FastAPI:
    """OpenTelemetry's FastAPI instrumentation with the SDK tracer, spans batched and dropped."""
    app = _app_with_route()
    _trace_with_opentelemetry(app)
    return app


def corrstack_opentelemetry() -> FastAPI:
    """corrstack added to a service OpenTelemetry already traces: the `opentelemetry` app's
    setup first, then exactly the `corrstack` app's; lines and exemplars carry the span's ids."""
    from prometheus_client import CollectorRegistry

    from instrumentation import instrument_app, setup_logging

    setup_logging(service="bench", environment="bench", log_file=os.devnull, stream=_devnull())
    app = _app_with_route()
    _trace_with_opentelemetry(app)
    instrument_app(app, service="bench", registry=CollectorRegistry())
    return app


APPS: dict[str, Callable[[], FastAPI]] = {
    "bare": bare,
    "corrstack": corrstack,
    "asgi_correlation_id": asgi_correlation_id,
    "prometheus_fastapi_instrumentator": prometheus_fastapi_instrumentator,
    "starlette_exporter": starlette_exporter,
    "opentelemetry": opentelemetry,
    "corrstack_opentelemetry": corrstack_opentelemetry,
}


def build(name: str) -> FastAPI:
    try:
        factory = APPS[name]
    except KeyError:
        sys.exit(f"unknown app {name!r}; choose from {', '.join(APPS)}")
    return factory()
