"""A real uvicorn with buffered sinks: when nobody reads its stdout any more (`kubectl logs`
hung, a full pipe) requests, `/metrics` and the log file must not notice; when SIGTERM stops it,
no buffered line is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, running, stop, uvicorn_cmd, wait_http_ok, wait_until

pytestmark = pytest.mark.integration
APP = "tests.apps.stalled_sink_app:app"
REQUESTS = 300
SHUTDOWN_LINES = 200  # what the app logs in its lifespan shutdown
# Few at a time: this VM pauses for 300-500 ms now and then (a bare FastAPI app shows it too),
# and a pause delays every request in flight; with 3, one pause cannot move the p99 of 300.
CONCURRENCY = 3


def _drain(fd: int) -> None:
    """Read whatever is waiting in the pipe, without blocking."""
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass


def _access_request_ids(log_file: Path) -> set[str]:
    if not log_file.exists():
        return set()
    complete = log_file.read_text().rpartition("\n")[0]  # a line still being written waits
    records = [json.loads(line) for line in complete.splitlines() if line]
    return {
        r["request_id"]
        for r in records
        if r["logger"] == "corrstack.access" and r.get("route") == "/api/item/{item_id}"
    }


async def _load(url: str) -> tuple[list[int | str], list[float]]:
    """REQUESTS requests, CONCURRENCY at a time; after the first failure no new one starts,
    so a blocked server fails the test in seconds, not in REQUESTS timeouts."""
    outcomes: list[int | str] = []
    latencies: list[float] = []
    next_index = iter(range(REQUESTS))
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=5.0, limits=limits) as client:

        async def worker() -> None:
            for i in next_index:
                started = time.perf_counter()
                try:
                    response = await client.get(
                        f"/api/item/{i}", headers={"X-Correlation-ID": f"stall-{i:04d}"}
                    )
                except httpx.HTTPError as error:
                    outcomes.append(type(error).__name__)
                    return
                latencies.append(time.perf_counter() - started)
                outcomes.append(response.status_code)
                if response.status_code != 200:
                    return

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return outcomes, latencies


@pytest.fixture
def stalled_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """uvicorn whose stdout is a pipe read until the app is ready, then never again."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    port = free_port()
    log_file = tmp_path / "app.log"
    with open(tmp_path / "stderr.log", "wb") as stderr:
        process = subprocess.Popen(
            uvicorn_cmd(APP, port),
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=stderr,
            env={**os.environ, "SERVICE_NAME": "stalled", "LOG_FILE": str(log_file)},
            start_new_session=True,
        )
    os.close(write_end)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        _drain(read_end)
        return httpx.get(f"{url}/metrics", timeout=2).status_code == 200

    try:
        wait_until(ready, 30, what=f"GET {url}/metrics")
        _drain(read_end)  # the last read: from here on nobody reads stdout
        yield url, log_file
    finally:
        stop(process)
        os.close(read_end)


def test_a_stalled_stdout_blocks_neither_requests_nor_the_log_file(
    stalled_server: tuple[str, Path],
) -> None:
    url, log_file = stalled_server
    outcomes, latencies = asyncio.run(_load(url))
    try:
        metrics: int | str = httpx.get(f"{url}/metrics", timeout=5).status_code
    except httpx.HTTPError as error:
        metrics = type(error).__name__
    expected = {f"stall-{i:04d}" for i in range(REQUESTS)}
    with contextlib.suppress(TimeoutError):  # the summary below says how many arrived
        wait_until(lambda: _access_request_ids(log_file) >= expected, 15, what="access lines")
    seen = {
        "answered 200": outcomes.count(200),
        "/metrics": metrics,
        "access lines in the file": len(_access_request_ids(log_file) & expected),
    }
    assert seen == {"answered 200": REQUESTS, "/metrics": 200, "access lines in the file": REQUESTS}
    p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1]
    assert p99 <= 0.250, f"p99 {p99 * 1000:.0f} ms"


def test_a_sigterm_stop_loses_no_buffered_line(tmp_path: Path) -> None:
    # uvicorn re-raises SIGTERM with the default action after its graceful shutdown: the
    # process ends without running atexit, right after logging "Finished server process".
    port, log_file = free_port(), tmp_path / "app.log"
    env = {"SERVICE_NAME": "stalled", "LOG_FILE": str(log_file)}
    with running(uvicorn_cmd(APP, port), log_path=tmp_path / "out.log", env=env) as process:
        wait_http_ok(f"http://127.0.0.1:{port}/metrics")
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    shutdown = [r["i"] for r in records if r["message"] == "Shutdown line"]
    assert (process.returncode, shutdown, records[-1]["message"]) == (
        -15,
        list(range(SHUTDOWN_LINES)),
        f"Finished server process [{process.pid}]",
    )
