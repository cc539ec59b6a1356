"""Beside OpenTelemetry: one trace id in spans, lines, exemplars and downstream calls.

The real SDK (in-memory exporter), FastAPIInstrumentor and HTTPXClientInstrumentor, in both
instrumentation orders; the downstream service is a real uvicorn on 127.0.0.1 that echoes the
headers it received.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.apps.otel_app import build
from tests.conftest import LogCapture
from tests.support.log_fields import settled_records
from tests.support.stack import App, serve_app

# A fresh registry per test: a bucket keeps an exemplar at most once a second, so one left on
# the global registry by the test before would keep this test's request from being the one.
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("registry")]
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
ORDERS = ["otel_first", "corrstack_first"]
INCOMING = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def downstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp_path = tmp_path_factory.mktemp("downstream")
    env = {"OTEL_ORDER": "otel_first"}
    with serve_app(tmp_path, "tests.apps.otel_app:app", service="analysis", env=env) as app:
        yield app


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture(params=[True, False], ids=["httpx-traced", "httpx-plain"])
def httpx_traced(
    request: pytest.FixtureRequest, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> Iterator[bool]:
    if request.param:
        HTTPXClientInstrumentor().instrument(tracer_provider=spans[0])
    yield bool(request.param)
    if request.param:
        HTTPXClientInstrumentor().uninstrument()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def server_span(exporter: InMemorySpanExporter, route: str = "/call") -> ReadableSpan:
    [server] = [
        s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.SERVER and (s.attributes or {}).get("http.route") == route
    ]
    return server


def exemplar_of(metrics_text: str, request_id: str) -> dict[str, str]:
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "http_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.exemplar and sample.exemplar.labels.get("request_id") == request_id:
                return dict(sample.exemplar.labels)
    raise AssertionError(f"no exemplar with request_id {request_id!r}")


async def call(
    app: Any, downstream: App, request_id: str, traceparent: str | None = None
) -> tuple[httpx.Response, str]:
    headers = {"X-Correlation-ID": request_id}
    if traceparent:
        headers["traceparent"] = traceparent
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get(
            "/call", params={"downstream": f"{downstream.url}/headers"}, headers=headers
        )
        metrics = await client.get("/metrics", headers={"Accept": OPENMETRICS})
    return response, metrics.text


@pytest.mark.parametrize("order", ORDERS)
async def test_lines_exemplar_and_downstream_carry_the_server_spans_trace(
    order: str,
    httpx_traced: bool,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    downstream: App,
    log_capture: LogCapture,
) -> None:
    provider, exporter = spans
    request_id = f"otel-{order}-{httpx_traced}"
    response, metrics = await call(build(provider, order), downstream, request_id)
    assert response.status_code == 200, response.text
    server = server_span(exporter)
    trace_id, server_span_id = hex_ids(server)
    [child] = [s for s in exporter.get_finished_spans() if s.name == "child work"]

    lines = [r for r in log_capture.records if r["request_id"] == request_id]
    by_message = {r["message"]: r for r in lines}
    assert {r["trace_id"] for r in lines} == {trace_id}
    assert by_message["Calling downstream"]["span_id"] == server_span_id
    assert by_message["Inside the child span"]["span_id"] == hex_ids(child)[1]
    [access] = [r for r in lines if r["logger"] == "corrstack.access"]
    assert access["route"] == "/call" and access["status"] == 200
    assert exemplar_of(metrics, request_id) == {"request_id": request_id, "trace_id": trace_id}

    received = response.json()["downstream"]
    assert received["x-correlation-id"] == [request_id]
    [traceparent] = received["traceparent"]  # exactly one
    assert traceparent.split("-")[1] == trace_id
    if httpx_traced:  # OpenTelemetry's client span is the downstream call's parent
        [client] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
        assert traceparent.split("-")[2] == hex_ids(client)[1]
    else:  # corrstack's header continues the span current at the call: the server span
        assert traceparent.split("-")[2] == server_span_id
    assert response.json()["context"]["trace_id"] == trace_id


@pytest.mark.parametrize("order", ORDERS)
async def test_an_incoming_traceparent_is_continued_by_both(
    order: str,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    downstream: App,
    log_capture: LogCapture,
) -> None:
    provider, exporter = spans
    request_id = f"incoming-{order}"
    response, metrics = await call(build(provider, order), downstream, request_id, INCOMING)
    incoming_trace = INCOMING.split("-")[1]
    server = server_span(exporter)
    assert hex_ids(server)[0] == incoming_trace
    assert server.parent is not None and format(server.parent.span_id, "016x") == INCOMING[36:52]
    lines = [r for r in log_capture.records if r["request_id"] == request_id]
    assert lines and {r["trace_id"] for r in lines} == {incoming_trace}
    assert exemplar_of(metrics, request_id)["trace_id"] == incoming_trace
    [traceparent] = response.json()["downstream"]["traceparent"]
    assert traceparent.split("-")[1] == incoming_trace


@pytest.mark.parametrize("order", ORDERS)
async def test_an_unhandled_error_is_one_500_line_with_the_spans_trace(
    order: str, spans: tuple[TracerProvider, InMemorySpanExporter], log_capture: LogCapture
) -> None:
    provider, exporter = spans
    transport = httpx.ASGITransport(app=build(provider, order), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/boom", headers={"X-Correlation-ID": f"boom-{order}"})
    assert response.status_code == 500
    # Outside Starlette's error middleware only when instrumented after FastAPIInstrumentor.
    header = response.headers.get("x-correlation-id")
    assert header == (f"boom-{order}" if order == "otel_first" else None)
    [access] = [r for r in log_capture.by_logger("corrstack.access") if r["path"] == "/boom"]
    assert access["status"] == 500 and access["error_type"] == "RuntimeError"
    assert access["trace_id"] == hex_ids(server_span(exporter, "/boom"))[0]


async def test_opentelemetry_middleware_inside_corrstacks_still_gives_its_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter], log_capture: LogCapture
) -> None:
    # Composed by hand, OpenTelemetry inside: its span is current only within the app.
    from fastapi import FastAPI
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    from instrumentation import CorrelationMiddleware, get_logger

    provider, exporter = spans
    inner = FastAPI()

    @inner.get("/hello")
    async def hello() -> dict[str, str]:
        get_logger("tests.otel").info("Hello line")
        return {}

    app = CorrelationMiddleware(OpenTelemetryMiddleware(inner, tracer_provider=provider))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/hello", headers={"X-Correlation-ID": "inside-1"})
    assert response.status_code == 200
    [server] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    lines = [r for r in log_capture.records if r["request_id"] == "inside-1"]
    assert {r["message"] for r in lines} == {"Hello line", "GET /hello 200"}
    assert {r["trace_id"] for r in lines} == {hex_ids(server)[0]}


async def test_fastapis_own_telemetry_is_followed_too(
    spans: tuple[TracerProvider, InMemorySpanExporter], log_capture: LogCapture
) -> None:
    # FastAPI traces requests itself once given a tracer provider (its `telemetry=` option).
    from fastapi import FastAPI

    from instrumentation import get_logger, instrument_app

    provider, exporter = spans
    app = FastAPI(telemetry={"tracer_provider": provider, "metrics": False, "logs": False})
    instrument_app(app)

    @app.get("/native")
    async def native() -> dict[str, str]:
        get_logger("tests.otel").info("Native line")
        return {}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.get("/native", headers={"X-Correlation-ID": "native-1"})
        metrics = await client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert response.status_code == 200
    server = server_span(exporter, "/native")
    trace_id = hex_ids(server)[0]
    lines = [r for r in log_capture.records if r["request_id"] == "native-1"]
    assert {r["message"] for r in lines} == {"Native line", "GET /native 200"}
    assert {r["trace_id"] for r in lines} == {trace_id}
    assert exemplar_of(metrics.text, "native-1")["trace_id"] == trace_id


def test_without_a_span_corrstacks_own_ids_are_used(log_capture: LogCapture) -> None:
    from instrumentation import bind_context, get_logger

    with bind_context(request_id="plain-1", trace_id="a" * 32, span_id="b" * 16):
        get_logger("tests.otel").info("No span here")
    [line] = [r for r in log_capture.records if r["request_id"] == "plain-1"]
    assert (line["trace_id"], line["span_id"]) == ("a" * 32, "b" * 16)


# --- A real uvicorn -----------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("order", ORDERS)
def test_over_a_real_uvicorn_spans_lines_exemplars_and_downstream_agree(
    order: str, tmp_path: Path, downstream: App
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    env = {"OTEL_ORDER": order, "SPANS_FILE": str(spans_file)}
    request_id = f"uvicorn-{order}"
    with serve_app(tmp_path, "tests.apps.otel_app:app", service="api", env=env) as api:
        response = httpx.get(
            f"{api.url}/call",
            params={"downstream": f"{downstream.url}/headers"},
            headers={"X-Correlation-ID": request_id},
            timeout=30,
        )
        metrics = httpx.get(f"{api.url}/metrics", headers={"Accept": OPENMETRICS}).text
    assert response.status_code == 200, response.text
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    [server] = [s for s in spans if s["kind"] == "SpanKind.SERVER" and "/call" in s["name"]]
    trace_id = server["context"]["trace_id"].removeprefix("0x")
    lines = [r for r in settled_records(api.log_file) if r["request_id"] == request_id]
    assert {r["logger"] for r in lines} >= {"corrstack.access", "tests.otel_app"}
    assert {r["trace_id"] for r in lines} == {trace_id}
    assert exemplar_of(metrics, request_id)["trace_id"] == trace_id
    [traceparent] = response.json()["downstream"]["traceparent"]
    assert traceparent.split("-")[1] == trace_id
    assert response.json()["downstream"]["x-correlation-id"] == [request_id]
    # The downstream service's own lines are on the same trace.
    downstream_lines = [
        r for r in settled_records(downstream.log_file) if r["request_id"] == request_id
    ]
    assert downstream_lines and {r["trace_id"] for r in downstream_lines} == {trace_id}


def test_without_opentelemetry_installed_nothing_changes() -> None:
    # A process where `import opentelemetry` fails, as when the package is not installed.
    script = textwrap.dedent(
        """
        import asyncio, io, json, sys
        sys.modules["opentelemetry"] = None  # makes every import of it fail

        import httpx
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route
        from instrumentation import get_logger, instrument_app, setup_logging

        async def hello(request):
            get_logger("plain").info("Hello")
            return JSONResponse({})

        stream = io.StringIO()
        setup_logging(service="api", stream=stream)
        app = Starlette(routes=[Route("/hello", hello)])  # FastAPI itself imports opentelemetry
        instrument_app(app)

        async def main():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                response = await client.get("/hello", headers={"traceparent": sys.argv[1]})
                assert response.status_code == 200

        asyncio.run(main())
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        print(json.dumps(sorted({line["trace_id"] for line in lines if line["request_id"]})))
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, INCOMING],
        capture_output=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    trace_ids, otel_modules = (json.loads(line) for line in done.stdout.decode().splitlines())
    assert trace_ids == [INCOMING.split("-")[1]]
    assert otel_modules == ["opentelemetry"]  # only the blocker itself
