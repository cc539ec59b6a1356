"""A real uvicorn on 127.0.0.1 serving an instrumented app: correlation under concurrency and
logging faults that must not fail a request."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.log_fields import DESIGN_FIELDS, RFC3339_MS_UTC, settled_records
from tests.support.processes import (
    free_port,
    running,
    stop,
    uvicorn_cmd,
    wait_http_ok,
    wait_until,
)
from tests.support.stack import serve_app

pytestmark = pytest.mark.integration
APP = "tests.apps.correlation_app:app"


def read_lines(path: Path) -> list[dict[str, object]]:
    return settled_records(path)


async def fire(url: str, count: int) -> list[tuple[str, str, httpx.Response]]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one(i: int) -> tuple[str, str, httpx.Response]:
            request_id, user_id = f"req-{i:04d}", f"user-{i:04d}"
            response = await client.get(
                f"/api/user/{user_id}/echo", headers={"X-Correlation-ID": request_id}
            )
            return request_id, user_id, response

        return await asyncio.gather(*(one(i) for i in range(count)))


def test_500_concurrent_requests_keep_their_ids_everywhere(tmp_path: Path) -> None:
    with serve_app(tmp_path, APP, service="api") as app:
        results = asyncio.run(fire(app.url, 500))
    expected = {request_id: user_id for request_id, user_id, _ in results}
    mismatches = [
        (rid, r.status_code, r.headers.get("x-correlation-id"), r.json())
        for rid, uid, r in results
        if r.status_code != 200
        or r.headers["x-correlation-id"] != rid
        or r.json() != {"user_id": uid, "request_id": rid}
    ]
    assert mismatches == []

    lines = read_lines(app.log_file)
    per_request: dict[str, list[dict[str, object]]] = {}
    for line in lines:
        if str(line["request_id"]).startswith("req-"):
            per_request.setdefault(str(line["request_id"]), []).append(line)
    assert per_request.keys() == expected.keys()
    wrong_user = [
        (rid, line["logger"], line.get("user_id"))
        for rid, request_lines in per_request.items()
        for line in request_lines
        if line.get("user_id") != expected[rid]
    ]
    assert wrong_user == []
    for rid, request_lines in per_request.items():
        loggers = sorted(str(line["logger"]) for line in request_lines)
        assert loggers.count("corrstack.access") == 1, rid
        assert "tests.apps.correlation_app" in loggers and "tests.plain" in loggers, rid


def test_every_file_line_is_json_with_the_design_fields(tmp_path: Path) -> None:
    with serve_app(tmp_path, APP, service="api") as app:
        httpx.get(f"{app.url}/api/user/u-1/echo")
        httpx.get(f"{app.url}/boom")
        httpx.get(f"{app.url}/nope")
    lines = read_lines(app.log_file)
    assert len(lines) >= 4  # startup lines, access lines, the exception
    for line in lines:
        assert line.keys() >= DESIGN_FIELDS, line
        assert RFC3339_MS_UTC.match(str(line["timestamp"])), line["timestamp"]
        assert "None" not in json.dumps(line)
    assert any(line.get("error_type") == "RuntimeError" for line in lines)
    assert [line["route"] for line in lines if line.get("path") == "/nope"] == ["unmatched"]


def test_uvicorn_text_lines_are_replaced_by_json(tmp_path: Path) -> None:
    with serve_app(tmp_path, APP, service="api") as app:
        httpx.get(f"{app.url}/api/user/u-1/echo")
        httpx.get(f"{app.url}/boom")
    stdout_lines = [line for line in app.process_log.read_text().splitlines() if line.strip()]
    not_json = [line for line in stdout_lines if not line.startswith("{")]
    assert not_json == []
    records = [json.loads(line) for line in stdout_lines]
    assert any(r["logger"] == "uvicorn.error" for r in records)  # "Application startup complete"
    assert not any("Exception in ASGI application" in str(r["message"]) for r in records)


def test_a_full_disk_does_not_fail_requests(tmp_path: Path) -> None:
    port = free_port()
    env = {"SERVICE_NAME": "api", "LOG_FILE": "/dev/full"}
    with running(uvicorn_cmd(APP, port), log_path=tmp_path / "out.log", env=env):
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/metrics")
        statuses = [httpx.get(f"{url}/api/user/u-{i}/echo").status_code for i in range(20)]

        def disk_full_drops() -> int:  # counted once the writer has tried, within its interval
            metrics = httpx.get(f"{url}/metrics").text
            found = re.search(
                r'log_records_dropped_total\{reason="disk_full",sink="file"\} (\d+)', metrics
            )
            return int(float(found.group(1))) if found else 0

        wait_until(lambda: disk_full_drops() >= 20 * 4, 10, what="the file's dropped lines")
    assert statuses == [200] * 20


def test_a_closed_stdout_does_not_fail_requests(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        uvicorn_cmd(APP, port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={
            **os.environ,
            "SERVICE_NAME": "api",
            "LOG_FILE": str(tmp_path / "f.log"),
        },
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.close()  # every later write to stdout is EPIPE
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/metrics")
        statuses = [httpx.get(f"{url}/api/user/u-{i}/echo").status_code for i in range(20)]
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        stop(process)
    assert statuses == [200] * 20
    assert re.search(
        r'log_records_dropped_total\{reason="closed_pipe",sink="stream"\} \d+', metrics
    )
    assert len((tmp_path / "f.log").read_text().splitlines()) >= 20 * 4  # the file still gets all
