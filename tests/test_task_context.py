"""task_headers / task_context (any queue), in_context (executors), job_context (jobs)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI

from instrumentation import bind_context, current_context, get_logger, instrument_app
from instrumentation.context import connection_var
from instrumentation.ids import parse_traceparent
from instrumentation.task_context import in_context, job_context, task_context, task_headers
from tests.conftest import LogCapture

HEX32 = re.compile(r"^[0-9a-f]{32}$")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
log = get_logger("tests.tasks")


def test_task_headers_are_empty_outside_any_context() -> None:
    assert task_headers() == {}


def test_task_headers_carry_the_request_and_a_child_span() -> None:
    with bind_context(
        request_id="req-1", trace_id=TRACE, span_id="00f067aa0ba902b7", user_id="u-7"
    ):
        headers = task_headers()
        again = task_headers()
    assert headers["X-Correlation-ID"] == "req-1"
    assert headers["X-User-ID"] == "u-7"
    parent = parse_traceparent(headers["traceparent"].encode())
    assert parent is not None and parent.trace_id == TRACE
    assert parent.parent_span_id != "00f067aa0ba902b7"  # the task's own span
    assert again["traceparent"] != headers["traceparent"]  # one span per task


def test_task_context_binds_what_the_headers_carried(log_capture: LogCapture) -> None:
    headers = {"X-Correlation-ID": "req-1", "traceparent": PARENT, "X-User-ID": "u-7"}
    with task_context(headers, task_id="t-1", task_name="send_email") as request_id:
        log.info("Sending")
    assert request_id == "req-1"
    [line] = log_capture.records
    assert line["request_id"] == "req-1"
    assert (line["trace_id"], line["span_id"]) == (TRACE, "00f067aa0ba902b7")
    assert line["user_id"] == "u-7"
    assert (line["task_id"], line["task_name"]) == ("t-1", "send_email")
    keys = list(line)
    assert keys.index("boot_id") < keys.index("task_id") < keys.index("task_name")
    assert current_context() == {}  # restored after the block


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"X-Correlation-ID": "bad id with spaces", "traceparent": "00-zz-bad-01"},
        {"X-Correlation-ID": "x" * 65, "traceparent": 42},
        {"X-Correlation-ID": "é", "traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"},
    ],
)
def test_missing_or_invalid_headers_get_a_fresh_context(headers: dict[str, object] | None) -> None:
    with task_context(headers, task_id="t-2") as request_id:
        context = current_context()
    assert HEX32.match(request_id) and context["request_id"] == request_id
    assert HEX32.match(context["trace_id"]) and context["trace_id"] != TRACE
    assert "user_id" not in context


def test_header_names_are_case_insensitive_and_x_request_id_is_accepted() -> None:
    with task_context({"x-request-id": "req-9", "TRACEPARENT": PARENT}):
        assert current_context()["request_id"] == "req-9"
        assert current_context()["trace_id"] == TRACE


def test_a_user_id_token_is_masked() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    with task_context({"X-User-ID": token}):
        assert current_context()["user_id"] != token


def test_the_round_trip_keeps_the_request_id_and_trace() -> None:
    with bind_context(request_id="req-3", trace_id=TRACE, span_id="00f067aa0ba902b7"):
        headers = task_headers()
    with task_context(headers, task_name="t"):
        context = current_context()
    assert (context["request_id"], context["trace_id"]) == ("req-3", TRACE)


def test_job_context_gives_each_run_its_own_context(log_capture: LogCapture) -> None:
    ids = []
    for _ in range(3):
        with bind_context(user_id="leaks?"), job_context("nightly_cleanup", batch=1) as request_id:
            log.info("Cleanup ran")
            ids.append(request_id)
    assert len(set(ids)) == 3 and all(HEX32.match(i) for i in ids)
    lines = log_capture.records
    assert [line["request_id"] for line in lines] == ids
    assert {line["job_name"] for line in lines} == {"nightly_cleanup"}
    assert all("user_id" not in line and line["batch"] == 1 for line in lines)
    assert len({line["trace_id"] for line in lines}) == 3


def test_in_context_carries_the_context_into_run_in_executor() -> None:
    def read() -> str | None:
        return connection_var.get().request_id

    async def main() -> tuple[str | None, str | None]:
        loop = asyncio.get_running_loop()
        with bind_context(request_id="req-5"):
            plain = await loop.run_in_executor(None, read)
            carried = await loop.run_in_executor(None, in_context(read))
        return plain, carried

    assert asyncio.run(main()) == (None, "req-5")


def test_in_context_runs_concurrently_and_keeps_each_calls_bindings_inside() -> None:
    barrier = threading.Barrier(4)

    def work(n: int) -> tuple[str | None, str | None]:
        before = connection_var.get().request_id
        with bind_context(request_id=f"inner-{n}"):
            barrier.wait(timeout=5)  # all four inside one wrapper at once
            return before, connection_var.get().request_id

    with bind_context(request_id="outer"):
        wrapped = in_context(work)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(wrapped, range(4)))
    assert results == [("outer", f"inner-{n}") for n in range(4)]
    assert wrapped.__name__ == "work"


def test_to_thread_keeps_working_as_before() -> None:
    async def main() -> str | None:
        with bind_context(request_id="req-6"):
            return await asyncio.to_thread(lambda: connection_var.get().request_id)

    assert asyncio.run(main()) == "req-6"


def test_importing_instrumentation_does_not_import_celery() -> None:
    code = "import instrumentation, sys; print('celery' in sys.modules, 'kombu' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_background_tasks_keep_the_requests_context(log_capture: LogCapture) -> None:
    # FastAPI runs BackgroundTasks after the response, still inside the request's context.
    app = FastAPI()
    instrument_app(app)

    def after_response(item: str) -> None:
        get_logger("tests.background").info("Background work done", item=item)

    @app.post("/items/{item}")
    async def create(item: str, background: BackgroundTasks) -> dict[str, str]:
        background.add_task(after_response, item)
        return {}

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.post("/items/a1", headers={"X-Correlation-ID": "bg-1"})
            assert response.status_code == 200

    asyncio.run(main())
    [line] = log_capture.by_logger("tests.background")
    assert line["request_id"] == "bg-1" and line["item"] == "a1"
    assert len(line["trace_id"]) == 32
