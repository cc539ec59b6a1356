"""A real Redis broker and a real Celery worker: the request's context reaches every line of
its task, a retry keeps it, task runs are timed with exemplars, a task without a parent gets a
fresh context."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.conftest import LogCapture
from tests.support.log_fields import settled_records
from tests.support.processes import free_port, running, wait_until

pytestmark = [pytest.mark.binary("redis-server"), pytest.mark.integration]
ROOT = Path(__file__).resolve().parent.parent
HEX32 = re.compile(r"^[0-9a-f]{32}$")
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class Worker:
    def __init__(self, log_file: Path, metrics_url: str, broker: str) -> None:
        self.log_file = log_file
        self.metrics_url = metrics_url
        self.broker = broker

    def lines(self) -> list[dict[str, Any]]:
        return settled_records(self.log_file)

    def wait_for(self, done: set[str], timeout: float = 40.0) -> list[dict[str, Any]]:
        """The worker's lines once every task in `done` has written its final line."""
        found: list[dict[str, Any]] = []

        def finished() -> bool:
            nonlocal found
            found = self.lines()
            ended = {
                r.get("task_id")
                for r in found
                if r["message"] in ("Task completed", "Task failed")
                and r["logger"] == "corrstack.celery"
            }
            return done <= ended

        wait_until(finished, timeout, interval=0.3, what=f"{len(done)} task runs")
        return found

    def families(self) -> list[Any]:
        text = httpx.get(self.metrics_url, headers={"Accept": OPENMETRICS}, timeout=5).text
        return list(text_string_to_metric_families(text))

    def samples(self) -> dict[tuple[str, str, str], float]:
        """Task and error samples by (name, task_name or error_type, status or operation)."""
        found = {}
        for family in self.families():
            for s in family.samples:
                if family.name == "task_duration_seconds":
                    key = (s.name, s.labels["task_name"], s.labels["status"])
                elif family.name == "app_errors":
                    key = (s.name, s.labels["error_type"], s.labels["operation"])
                else:
                    continue
                found[key] = s.value
        return found

    def exemplars(self, task_name: str, status: str) -> set[str]:
        """The request_ids in the exemplars of `task_duration_seconds{task_name, status}`."""
        return {
            s.exemplar.labels["request_id"]
            for family in self.families()
            if family.name == "task_duration_seconds"
            for s in family.samples
            if s.exemplar is not None
            and s.labels.get("task_name") == task_name
            and s.labels.get("status") == status
        }


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    with _worker(tmp_path_factory.mktemp("celery"), "--pool=threads", "--concurrency=4") as ready:
        yield ready


@contextlib.contextmanager
def _worker(tmp: Path, *pool: str) -> Iterator[Worker]:
    redis_port, metrics_port = free_port(), free_port()
    redis_cmd = [
        shutil.which("redis-server") or "redis-server",
        "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no",
    ]  # fmt: skip
    broker = f"redis://127.0.0.1:{redis_port}/0"
    from tests.apps.celery_app import celery_app

    celery_app.conf.broker_url = broker
    with running(redis_cmd, log_path=tmp / "redis.out") as redis:
        wait_until(
            lambda: (
                subprocess.run(
                    ["redis-cli", "-p", str(redis_port), "ping"], capture_output=True, text=True
                ).stdout.strip()
                == "PONG"
                if shutil.which("redis-cli")
                else _port_open(redis_port)
            ),
            10,
            what="redis-server",
        )
        env = {
            "CELERY_BROKER_URL": broker,
            "LOG_FILE": str(tmp / "worker.jsonl"),
            "SERVICE_NAME": "worker",
            "WORKER_METRICS_PORT": str(metrics_port),
        }
        cmd = [
            sys.executable, "-m", "celery", "-A", "tests.apps.celery_app", "worker",
            *pool, "--loglevel=INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with running(cmd, log_path=tmp / "worker.out", env=env, cwd=ROOT) as process:
            worker = Worker(
                tmp / "worker.jsonl", f"http://127.0.0.1:{metrics_port}/metrics", broker
            )

            def ready() -> bool:
                assert process.poll() is None, (tmp / "worker.out").read_text()[-3000:]
                return any("ready" in r["message"] for r in worker.lines())

            wait_until(ready, 30, what="celery worker ready")
            yield worker
        assert redis.poll() is None


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _publish(paths: list[str]) -> list[dict[str, Any]]:
    from tests.apps.celery_app import api

    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        limit = asyncio.Semaphore(20)

        async def post(path: str) -> dict[str, Any]:
            async with limit:
                response = await client.post(path)
                assert response.status_code == 200, response.text
                body: dict[str, Any] = response.json()
                return body

        return list(await asyncio.gather(*(post(path) for path in paths)))


def test_tasks_published_from_requests_carry_the_request_context(
    worker: Worker, log_capture: LogCapture
) -> None:
    started = time.monotonic()
    paths = [f"/api/user/user-{i}/notes/{i}" for i in range(200)] + ["/api/user/user-x/flaky"]
    published = asyncio.run(_publish(paths))
    by_task = {p["task_id"]: p for p in published}
    assert len(by_task) == 201

    lines = worker.wait_for(set(by_task))
    for task_id, request in by_task.items():
        task_lines = [r for r in lines if r.get("task_id") == task_id]
        messages = [r["message"] for r in task_lines]
        assert "Task completed" in messages, (task_id, messages)
        for line in task_lines:
            assert line["service"] == "worker"
            assert line["request_id"] == request["request_id"], line
            assert line["trace_id"] == request["trace_id"], line
            assert line["user_id"] == request["user_id"], line
            assert HEX32.match(line["trace_id"])
            assert line["span_id"] != request["span_id"]  # the task's own span, a child
            assert line["task_name"] in ("tests.note", "tests.flaky")
    notes = [r for r in lines if r.get("task_name") == "tests.note"]
    # The task's own lines, the stdlib logger's, Celery's "succeeded" and corrstack's timing.
    for message in ("Taking a note", "Plain stdlib line in a task", "Task completed"):
        assert sum(r["message"] == message for r in notes) == 200, message
    assert sum("succeeded" in r["message"] for r in notes) == 200

    # The retry: the same task id and request, both attempts, one "Task retried" line.
    [flaky] = [p for p in published if p["task_id"] not in {r.get("task_id") for r in notes}]
    flaky_lines = [r for r in lines if r.get("task_id") == flaky["task_id"]]
    assert [r["attempt"] for r in flaky_lines if r["message"] == "Flaky attempt"] == [0, 1]
    [retried] = [r for r in flaky_lines if r["message"] == "Task retried"]
    assert retried["status"] == "retry" and "ConnectionError" in retried["reason"]
    assert {r["request_id"] for r in flaky_lines} == {flaky["request_id"]}

    # The publishing side's lines are the requests' own.
    access = log_capture.by_logger("corrstack.access")
    assert {r["request_id"] for r in access} == {p["request_id"] for p in published}

    samples = worker.samples()
    assert samples[("task_duration_seconds_count", "tests.note", "success")] == 200
    assert samples[("task_duration_seconds_count", "tests.flaky", "retry")] == 1
    assert samples[("task_duration_seconds_count", "tests.flaky", "success")] == 1
    exemplars = worker.exemplars("tests.note", "success")
    assert exemplars
    assert exemplars <= {p["request_id"] for p in published}
    assert worker.exemplars("tests.flaky", "retry") == {flaky["request_id"]}
    assert time.monotonic() - started < 60


def test_a_task_published_outside_any_request_gets_a_fresh_context(worker: Worker) -> None:
    from tests.apps.celery_app import broken, note

    lonely, failing = note.delay(-1).id, broken.delay().id
    lines = worker.wait_for({lonely, failing})
    lonely_lines = [r for r in lines if r.get("task_id") == lonely]
    assert len(lonely_lines) >= 3
    [request_id] = {r["request_id"] for r in lonely_lines}
    assert HEX32.match(request_id)
    assert {r["trace_id"] for r in lonely_lines} != {""}
    assert all("user_id" not in r for r in lonely_lines)
    other = {r["request_id"] for r in lines if r.get("task_id") not in (lonely, failing)}
    assert request_id not in other

    failing_lines = [r for r in lines if r.get("task_id") == failing]
    [failed] = [r for r in failing_lines if r["message"] == "Task failed"]
    assert failed["level"] == "ERROR" and failed["error_type"] == "ValueError"
    assert failed["status"] == "failure"
    [tracked] = [r for r in failing_lines if r["message"] == "Error tracked"]
    assert "this task always fails" in tracked["stacktrace"]
    assert tracked["operation"] == "tests.broken"
    assert request_id != failed["request_id"]

    samples = worker.samples()
    assert samples[("task_duration_seconds_count", "tests.broken", "failure")] == 1
    assert samples[("app_errors_total", "ValueError", "tests.broken")] == 1
    assert worker.exemplars("tests.broken", "failure") == {failed["request_id"]}


def test_a_prefork_child_writes_all_its_lines_before_it_is_replaced(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # --max-tasks-per-child=1: the pool child ends after one task, with `os._exit`, while its
    # writer thread may still hold the task's last lines.
    from celery import Celery

    tmp = tmp_path_factory.mktemp("prefork")
    pool = ("--pool=prefork", "--concurrency=1", "--max-tasks-per-child=1")
    with _worker(tmp, *pool) as worker:
        # A publisher of its own: the app's keeps its connection to the other worker's broker.
        Celery("publisher", broker=worker.broker).send_task("tests.burst", args=[5000])

        def burst() -> list[str]:
            return [r["message"] for r in worker.lines() if r["logger"] == "tests.tasks.plain"]

        wait_until(lambda: len(burst()) >= 5000, 30, what="the burst's lines")
        time.sleep(1.0)  # nothing more arrives
        assert burst() == [f"burst line {i}" for i in range(5000)]
