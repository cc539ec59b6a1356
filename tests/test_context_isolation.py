"""ContextVars never leak between requests on a real uvicorn (h11, keep-alive)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.log_fields import settled_records
from tests.support.processes import free_port, running, uvicorn_cmd, wait_http_ok, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("isolation")
    port = free_port()
    log_file = tmp / "app.log"
    env = {"SERVICE_NAME": "iso", "LOG_FILE": str(log_file)}
    cmd = uvicorn_cmd("tests.apps.isolation_app:app", port, "--http", "h11")
    with running(cmd, log_path=tmp / "out.log", env=env):
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/context")
        yield url, log_file


def lines(log_file: Path, **match: Any) -> list[dict[str, Any]]:
    records = settled_records(log_file)
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def test_a_context_is_empty_on_entry(server: tuple[str, Path]) -> None:
    url, _ = server
    with httpx.Client(base_url=url) as client:  # one keep-alive connection
        for i in range(20):
            client.get(f"/api/user/u-{i}/work", headers={"X-Correlation-ID": f"prev-{i}"})
            fresh = client.get("/context").json()
            assert fresh["request_id"] not in {f"prev-{j}" for j in range(20)}
            assert "user_id" not in fresh


def test_keep_alive_connections_with_large_bodies(server: tuple[str, Path]) -> None:
    url, log_file = server
    body = b"x" * (1024 * 1024)
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(8):
            rid = f"upload-{i}"
            response = client.post(
                f"/api/user/up-{i}/upload", content=body, headers={"X-Correlation-ID": rid}
            )
            assert response.json()["request_id"] == rid
            assert response.json()["user_id"] == f"up-{i}"
            assert response.headers["x-correlation-id"] == rid
    for i in range(8):
        (line,) = lines(log_file, message="Upload received", request_id=f"upload-{i}")
        assert line["user_id"] == f"up-{i}" and line["size"] == len(body)


def test_to_thread_carries_the_context_and_run_in_executor_never_a_wrong_one(
    server: tuple[str, Path],
) -> None:
    url, log_file = server
    for i in range(5):
        httpx.get(f"{url}/api/user/t-{i}/threads", headers={"X-Correlation-ID": f"thr-{i}"})
    for i in range(5):
        (to_thread,) = lines(log_file, via="to_thread", request_id=f"thr-{i}")
        assert to_thread["user_id"] == f"t-{i}"
    executor_lines = lines(log_file, via="run_in_executor")
    assert len(executor_lines) >= 5
    # run_in_executor does not copy contextvars: its lines have no request, never another one's
    assert {r["request_id"] for r in executor_lines} == {""}


def test_background_tasks_and_late_tasks_keep_their_own_request(server: tuple[str, Path]) -> None:
    url, log_file = server
    with httpx.Client(base_url=url) as client:
        for i in range(5):
            client.get(f"/api/user/b-{i}/background", headers={"X-Correlation-ID": f"bg-{i}"})
            client.get(f"/api/user/l-{i}/late", headers={"X-Correlation-ID": f"late-{i}"})
            client.get("/context", headers={"X-Correlation-ID": f"next-{i}"})
    wait_until(lambda: len(lines(log_file, logger="tests.late")) == 5, 10, what="late task lines")
    background = lines(log_file, logger="tests.background")
    assert sorted(r["request_id"] for r in background) == [f"bg-{i}" for i in range(5)]
    late = lines(log_file, logger="tests.late")
    assert sorted(r["request_id"] for r in late) == [f"late-{i}" for i in range(5)]
    assert all(r["user_id"].startswith("l-") for r in late)


def test_streaming_responses_log_in_their_request(server: tuple[str, Path]) -> None:
    url, log_file = server
    with httpx.Client(base_url=url) as client:
        for i in range(3):
            with client.stream(
                "GET", f"/api/user/s-{i}/stream", headers={"X-Correlation-ID": f"st-{i}"}
            ) as response:
                assert response.read().count(b"chunk") == 3
    for i in range(3):
        chunks = lines(log_file, logger="tests.stream", request_id=f"st-{i}")
        assert [c["chunk"] for c in chunks] == [0, 1, 2]
        (access,) = lines(log_file, logger="corrstack.access", request_id=f"st-{i}")
        assert access["status"] == 200 and access["user_id"] == f"s-{i}"
