"""An instrumented app traced by OpenTelemetry, as a team already tracing would run it.

`build(provider, order)` makes one for in-process tests; `app` is one for uvicorn, configured
from the environment: OTEL_ORDER (`otel_first` or `corrstack_first`) and SPANS_FILE, where the
SDK's console exporter writes each finished span as one JSON line.
"""

from __future__ import annotations

import os

import httpx
from fastapi import FastAPI, Request
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from instrumentation import async_httpx_event_hooks, current_context, get_logger, instrument_app

log = get_logger("tests.otel_app")


def build(provider: TracerProvider, order: str = "otel_first") -> FastAPI:
    """The app, instrumented by OpenTelemetry and corrstack in `order`."""
    app = FastAPI()
    if order == "otel_first":
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
        instrument_app(app)
    else:
        instrument_app(app)
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    tracer = provider.get_tracer("tests.otel_app")

    @app.get("/call")
    async def call(downstream: str) -> dict[str, object]:
        log.info("Calling downstream")
        with tracer.start_as_current_span("child work"):
            log.info("Inside the child span")
        async with httpx.AsyncClient(event_hooks=async_httpx_event_hooks()) as client:
            response = await client.get(downstream)
        return {"downstream": response.json(), "context": current_context()}

    @app.get("/headers")
    async def headers(request: Request) -> dict[str, list[str]]:
        return {
            "traceparent": request.headers.getlist("traceparent"),
            "x-correlation-id": request.headers.getlist("x-correlation-id"),
        }

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return app


def _one_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


def _provider_from_env() -> TracerProvider:
    provider = TracerProvider()
    spans_file = os.environ.get("SPANS_FILE")
    if spans_file:
        out = open(spans_file, "a", buffering=1)  # noqa: SIM115 - the server's lifetime
        provider.add_span_processor(
            SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_one_line))
        )
    return provider


if os.environ.get("OTEL_ORDER"):
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    _provider = _provider_from_env()
    HTTPXClientInstrumentor().instrument(tracer_provider=_provider)
    app = build(_provider, os.environ["OTEL_ORDER"])
