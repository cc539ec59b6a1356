"""CorrelationMiddleware and instrument_app, driven in-process."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from instrumentation import (
    async_httpx_event_hooks,
    correlation_headers,
    current_context,
    get_logger,
    httpx_event_hooks,
    instrument_app,
)
from tests.conftest import LogCapture
from tests.support.asgi import call_raw

HEX32 = re.compile(r"^[0-9a-f]{32}$")
UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def make_app(registry: CollectorRegistry) -> FastAPI:
    app = FastAPI()
    instrument_app(app, service="test-svc", registry=registry)
    log = get_logger("tests.handler")

    @app.get("/api/user/{user_id}/routine")
    async def routine(user_id: str) -> dict[str, Any]:
        log.info("Routine generated", exercises_count=8)
        return current_context()

    @app.get("/sync/user/{user_id}")
    def sync_routine(user_id: str) -> dict[str, Any]:
        logging.getLogger("tests.sync").info("sync handler")
        return current_context()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("it broke")

    @app.get("/outbound")
    async def outbound() -> dict[str, str]:
        seen: dict[str, str] = {}

        def capture(request: httpx.Request) -> httpx.Response:
            seen.update(request.headers)
            return httpx.Response(200)

        transport = httpx.MockTransport(capture)
        async with httpx.AsyncClient(
            transport=transport, event_hooks=async_httpx_event_hooks()
        ) as client:
            await client.get("http://downstream/x")
        with httpx.Client(transport=transport, event_hooks=httpx_event_hooks()) as sync_client:
            sync_client.get("http://downstream/y", headers={"X-Correlation-ID": "explicit"})
            seen["sync_explicit"] = sync_client.get("http://d/z").request.headers.get(
                "x-correlation-id", ""
            )
        return {**seen, "self": current_context()["trace_id"]}

    return app


@pytest.fixture
async def client(
    log_capture: LogCapture, registry: CollectorRegistry
) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(registry)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_valid_id_is_kept_and_echoed(
    client: httpx.AsyncClient, log_capture: LogCapture
) -> None:
    response = await client.get("/api/user/u-1/routine", headers={"X-Correlation-ID": "abc-123"})
    assert response.status_code == 200
    assert response.headers["x-correlation-id"] == "abc-123"
    app_records = [
        r for r in log_capture.records if r["logger"].startswith(("tests.", "corrstack."))
    ]
    assert {r["request_id"] for r in app_records} == {"abc-123"}


async def test_x_request_id_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/user/u-1/routine", headers={"X-Request-ID": "req.42:a_b"})
    assert response.headers["x-correlation-id"] == "req.42:a_b"


async def test_a_missing_id_is_generated_without_a_warning(
    client: httpx.AsyncClient, log_capture: LogCapture
) -> None:
    response = await client.get("/api/user/u-1/routine")
    assert HEX32.match(response.headers["x-correlation-id"])
    assert not log_capture.by_logger("corrstack.correlation")


async def test_traceparent_trace_id_is_used_with_a_new_span(client: httpx.AsyncClient) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = await client.get(
        "/api/user/u-1/routine", headers={"traceparent": f"00-{trace_id}-{parent}-01"}
    )
    body = response.json()
    assert body["trace_id"] == trace_id
    assert re.fullmatch(r"[0-9a-f]{16}", body["span_id"]) and body["span_id"] != parent


@pytest.mark.parametrize(
    "traceparent",
    [
        "",
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "00-" + "A" * 32 + "-" + "b" * 16 + "-01",
    ],
)
async def test_a_malformed_traceparent_gets_a_fresh_trace(
    client: httpx.AsyncClient, traceparent: str
) -> None:
    body = (await client.get("/api/user/u-1/routine", headers={"traceparent": traceparent})).json()
    assert HEX32.match(body["trace_id"]) and body["trace_id"] != "0" * 32


async def test_user_id_from_the_path_reaches_handler_lines(
    client: httpx.AsyncClient, log_capture: LogCapture
) -> None:
    await client.get("/api/user/user-0042/routine")
    await client.get("/sync/user/user-0043")
    handler = log_capture.by_logger("tests.handler")[0]
    sync = log_capture.by_logger("tests.sync")[0]
    assert (handler["user_id"], sync["user_id"]) == ("user-0042", "user-0043")
    assert [a["user_id"] for a in log_capture.by_logger("corrstack.access")] == [
        "user-0042",
        "user-0043",
    ]


async def test_exactly_one_access_line_with_its_fields(
    client: httpx.AsyncClient, log_capture: LogCapture
) -> None:
    await client.get("/api/user/u-9/routine", headers={"User-Agent": "probe/1.0"})
    (access,) = log_capture.by_logger("corrstack.access")
    assert access["message"] == "GET /api/user/u-9/routine 200"
    assert access["route"] == "/api/user/{user_id}/routine"
    assert access["path"] == "/api/user/u-9/routine"
    assert (access["method"], access["status"], access["user_agent"]) == ("GET", 200, "probe/1.0")
    assert access["duration_ms"] > 0 and access["client_addr"].startswith("127.0.0.1:")


async def test_an_unhandled_exception_is_one_500_line_with_stack_and_the_header(
    client: httpx.AsyncClient, log_capture: LogCapture
) -> None:
    response = await client.get("/boom", headers={"X-Correlation-ID": "err-1"})
    assert response.status_code == 500
    assert response.headers["x-correlation-id"] == "err-1"
    errors = [r for r in log_capture.records if "error_type" in r]
    assert len(errors) == 1
    (error,) = errors
    assert (error["status"], error["error_type"], error["request_id"]) == (
        500,
        "RuntimeError",
        "err-1",
    )
    assert "it broke" in error["stacktrace"]


async def test_uvicorns_second_report_of_the_exception_is_dropped(
    client: httpx.AsyncClient, log_capture: LogCapture
) -> None:
    app = make_app(CollectorRegistry())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as raw:
        with pytest.raises(RuntimeError) as caught:
            await raw.get("/boom")
    logging.getLogger("uvicorn.error").error(
        "Exception in ASGI application",
        exc_info=(type(caught.value), caught.value, caught.value.__traceback__),
    )
    assert len([r for r in log_capture.records if r.get("error_type") == "RuntimeError"]) == 1


async def test_outbound_calls_carry_the_request_ids(client: httpx.AsyncClient) -> None:
    body = (await client.get("/outbound", headers={"X-Correlation-ID": "out-1"})).json()
    assert body["x-correlation-id"] == "out-1"
    assert body["traceparent"].split("-")[1] == body["self"]
    assert body["sync_explicit"] == "out-1"


def test_correlation_headers_are_empty_outside_a_request() -> None:
    assert correlation_headers() == {}


async def test_context_is_clean_between_requests(client: httpx.AsyncClient) -> None:
    first = (await client.get("/api/user/u-1/routine", headers={"X-Correlation-ID": "one"})).json()
    second = (await client.get("/sync/user/u-2")).json()
    assert first["request_id"] == "one" and second["request_id"] != "one"
    assert current_context() == {}


async def test_concurrent_requests_keep_their_own_context(
    client: httpx.AsyncClient, log_capture: LogCapture
) -> None:
    ids = [f"c-{i}" for i in range(50)]
    responses = await asyncio.gather(
        *(
            client.get(f"/api/user/u{i}/routine", headers={"X-Correlation-ID": rid})
            for i, rid in enumerate(ids)
        )
    )
    assert [r.json()["request_id"] for r in responses] == ids
    for record in log_capture.by_logger("tests.handler"):
        assert record["user_id"] == "u" + record["request_id"].removeprefix("c-")


# --- bad input through the ASGI scope itself, bytes a client library would refuse to send ---

BAD_IDS = [
    b"",
    b"a" * 65,
    b"x" * 20_000,
    b"has space",
    b'quote"d',
    b"<script>alert(1)</script>",
    "caf\u00e9".encode(),
    b"crlf\r\nX-Injected: 1",
    b"nul\x00byte",
    b"esc\x1b[31m",
    b"\xff\xfe latin-1",
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda b: repr(b[:20]))
@pytest.mark.parametrize("header", [b"x-correlation-id", b"x-request-id"])
async def test_a_bad_id_is_replaced_and_never_logged(
    log_capture: LogCapture, bad: bytes, header: bytes
) -> None:
    app = make_app(CollectorRegistry())
    status, headers = await call_raw(app, [(header, bad)])
    assert status == 200
    assert HEX32.match(headers[b"x-correlation-id"].decode())
    text = log_capture.text
    assert not UNSAFE.search(text.replace("\n", ""))
    if len(bad) > 3:
        for form in (bad.decode("latin-1"), bad.decode("utf-8", "replace")):
            assert form not in text
    warnings = log_capture.by_logger("corrstack.correlation")
    assert len(warnings) == 1 and warnings[0]["header"] == header.decode()


async def test_control_characters_in_the_path_do_not_reach_the_line(
    log_capture: LogCapture,
) -> None:
    app = make_app(CollectorRegistry())
    status, _ = await call_raw(app, [], path="/api/user/evil\r\n\x1b[2J\u202e/routine")
    assert status == 200
    assert not UNSAFE.search(log_capture.text.replace("\n", ""))
    assert "\u202e" not in log_capture.text


async def test_an_exception_logged_by_the_app_is_not_dropped_nor_stacked_twice(
    log_capture: LogCapture,
) -> None:
    from instrumentation import ErrorTracker, Thresholds

    tracker = ErrorTracker(alertmanager_url="", thresholds=Thresholds())
    app = FastAPI()
    instrument_app(app, registry=CollectorRegistry())

    @app.get("/tracked")
    async def tracked() -> None:
        try:
            raise TimeoutError("model timed out")
        except TimeoutError as error:
            tracker.track(error, "model_call")
            logging.getLogger("tests.app").exception("and the app logs it too")
            raise

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as raw:
        assert (await raw.get("/tracked")).status_code == 500
    with_stack = [r["logger"] for r in log_capture.records if "stacktrace" in r]
    assert with_stack == ["corrstack.errors", "tests.app"]
    (access,) = log_capture.by_logger("corrstack.access")
    assert (access["status"], access["error_type"]) == (500, "TimeoutError")


async def test_the_access_record_is_complete_for_any_handler(
    client: httpx.AsyncClient, log_capture: LogCapture
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(created)f %(relativeCreated)d %(name)s %(levelname)s %(levelno)d "
            "%(pathname)s %(filename)s %(module)s %(funcName)s %(lineno)d %(process)d "
            "%(processName)s %(thread)d %(threadName)s %(message)s %(route)s"
        )
    )
    access = logging.getLogger("corrstack.access")
    access.addHandler(handler)
    try:
        await client.get("/api/user/u-3/routine")
    finally:
        access.removeHandler(handler)
    line = stream.getvalue()
    assert " corrstack.access INFO 20 " in line
    assert line.rstrip().endswith("GET /api/user/u-3/routine 200 /api/user/{user_id}/routine")


async def test_a_raising_log_filter_neither_fails_the_request_nor_leaks_context(
    client: httpx.AsyncClient, log_capture: LogCapture
) -> None:
    class Broken(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("third-party filter bug")

    access = logging.getLogger("corrstack.access")
    broken = Broken()
    access.addFilter(broken)
    try:
        response = await client.get("/api/user/u-1/routine", headers={"X-Correlation-ID": "f-1"})
    finally:
        access.removeFilter(broken)
    assert response.status_code == 200 and response.headers["x-correlation-id"] == "f-1"
    assert current_context() == {}  # and the autouse fixture checks every ContextVar


async def test_uvicorn_run_style_logging_config_is_taken_back_on_first_call(
    log_capture: LogCapture,
) -> None:
    import uvicorn

    servers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    levels = [server.level for server in servers]
    app = make_app(CollectorRegistry())
    uvicorn.Config(app)  # what uvicorn.run(app) does first: its own text handlers
    try:
        assert logging.getLogger("uvicorn.access").handlers
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as raw:
            await raw.get("/api/user/u-1/routine")
        assert logging.getLogger("uvicorn.error").handlers == []
        assert logging.getLogger("uvicorn.error").propagate
        assert logging.getLogger("uvicorn.access").disabled
    finally:  # uvicorn's config set their levels: later tests expect the ones they had
        for server, level in zip(servers, levels, strict=True):
            server.setLevel(level)
