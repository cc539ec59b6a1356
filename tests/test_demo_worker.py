"""The demo's worker: a real Redis, the real `celery -A demo.worker` and the demo api. A routine
request hands its notification to the worker, whose line carries the request's ids and is found
by the request-trace dashboard's query; `python -m demo` starts and stops broker and worker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from dashboards.build import render_all
from demo.local import LocalOptions, LocalStack, redis_pong, worker_command
from demo.settings import DemoSettings
from demo.worker import NOTIFY_TASK
from tests.conftest import LogCapture
from tests.support.checkers import logql_errors
from tests.support.demo import call, demo_apps
from tests.support.log_fields import settled_records
from tests.support.processes import free_port, running, wait_http_ok, wait_until

ROOT = Path(__file__).resolve().parent.parent
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
redis_only = pytest.mark.binary("redis-server")


class Worker:
    def __init__(self, broker: str, log_file: Path) -> None:
        self.broker = broker
        self.log_file = log_file

    def line(self, request_id: str, message: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [
                r
                for r in settled_records(self.log_file)
                if r.get("request_id") == request_id and r["message"] == message
            ]
            return bool(found)

        wait_until(seen, 30, interval=0.2, what=f"{message!r} of {request_id}")
        return found[0]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    tmp = tmp_path_factory.mktemp("demo-worker")
    port = free_port()
    redis_cmd = [shutil.which("redis-server") or "redis-server", "--port", str(port)]
    redis_cmd += ["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"]
    broker = f"redis://127.0.0.1:{port}/0"
    with running(redis_cmd, log_path=tmp / "redis.out"):
        wait_until(lambda: redis_pong(port), 10, what="redis-server")
        env = {"CELERY_BROKER_URL": broker, "LOG_FILE": str(tmp / "worker.log")}
        env |= {"SERVICE_NAME": "worker", "LOG_FORMAT": "json"}
        with running(worker_command(), log_path=tmp / "worker.out", env=env, cwd=ROOT) as proc:
            log_file = tmp / "worker.log"

            def ready() -> bool:
                assert proc.poll() is None, (tmp / "worker.out").read_text()[-3000:]
                return any("ready" in r["message"] for r in settled_records(log_file))

            wait_until(ready, 30, what="demo worker ready")
            yield Worker(broker, log_file)


def _generate_routine(broker: str, request_id: str) -> httpx.Response:
    app = demo_apps(DemoSettings(error_rate=0.0, slow_rate=0.0, broker_url=broker))
    request = {
        "method": "POST",
        "url": "/api/user/user-0042/routine/generate",
        "json": {"goal": "mobility", "days_per_week": 2},
        "headers": {
            "X-Correlation-ID": request_id,
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
        },
    }
    [response] = asyncio.run(call(app, [request]))
    return response


@redis_only
@pytest.mark.integration
def test_a_generated_routine_reaches_the_worker_under_the_requests_ids(
    worker: Worker, log_capture: LogCapture
) -> None:
    response = _generate_routine(worker.broker, "routine-worker-1")
    assert response.status_code == 200, response.text

    sent = worker.line("routine-worker-1", "Routine ready notification sent")
    assert sent["service"] == "worker"
    assert sent["trace_id"] == TRACE_ID
    assert sent["user_id"] == "user-0042"
    assert sent["task_name"] == NOTIFY_TASK
    assert sent["exercises_count"] == len(response.json()["exercises"])
    timed = worker.line("routine-worker-1", "Task completed")
    assert (timed["task_id"], timed["status"]) == (sent["task_id"], "success")
    [queued] = [
        r for r in log_capture.records if r["message"] == "Routine ready notification queued"
    ]
    assert (queued["request_id"], queued["task_id"]) == ("routine-worker-1", sent["task_id"])


# The request-trace query's shape: a stream selector, a line filter, json and label filters.
_QUERY = re.compile(r'\{(?P<stream>[^}]*)\} \|= "(?P<needle>[^"]*)" \| json \| (?P<filters>.+)')
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _matches(matcher: str, value: str) -> bool:
    [(_, op, expected)] = _MATCHER.findall(matcher)
    if op in ("=~", "!~"):
        return bool(re.fullmatch(expected, value)) == (op == "=~")
    return (value == expected) == (op == "=")


def _selects(query: str, labels: dict[str, str], line: str) -> bool:
    """Whether `query` (of the shape above) keeps `line` of the stream with `labels`."""
    parts = _QUERY.fullmatch(query)
    assert parts, f"request-trace query changed shape: {query}"
    fields = {k: str(v) for k, v in json.loads(line).items()}
    return (
        all(_matches(m, labels.get(m.split("=")[0].strip("!~ "), "")) for m in
            parts["stream"].split(","))
        and parts["needle"] in line
        and all(_matches(f, fields.get(f.split("=")[0].strip("!~ "), "")) for f in
                parts["filters"].split(","))
    )  # fmt: skip


@redis_only
@pytest.mark.integration
@pytest.mark.binary("node")
def test_the_request_trace_panel_finds_the_workers_line(worker: Worker) -> None:
    response = _generate_routine(worker.broker, "routine-trace-1")
    assert response.status_code == 200, response.text
    sent = worker.line("routine-trace-1", "Routine ready notification sent")
    [raw] = [
        line
        for line in worker.log_file.read_text().splitlines()
        if '"routine-trace-1"' in line and "Routine ready notification sent" in line
    ]
    [text] = [t for name, t in render_all().items() if "request-trace" in name]
    dashboard = json.loads(text)
    [panel] = [
        p for p in dashboard["panels"] if p["type"] == "logs" and "$request_id" in p["title"]
    ]
    [target] = panel["targets"]
    query = target["expr"].replace("$request_id", "routine-trace-1")
    assert logql_errors([query]) == {}
    # The Loki labels the shippers give the worker's stream: service, environment, level.
    labels = {k: sent[k] for k in ("service", "environment")} | {"level": sent["level"]}
    assert labels["service"] == "worker"
    assert _selects(query, labels, raw)
    assert not _selects(query.replace("routine-trace-1", "routine-trace-2"), labels, raw)


def test_without_redis_server_the_demo_runs_without_broker_and_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    stack = LocalStack(LocalOptions(var_dir=tmp_path), threading.Event())
    stack.start_broker_and_worker()
    assert stack.notes == ["redis-server not on PATH: no broker and no worker"]
    assert stack.children.running == [] and stack.broker_url is None


def _dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@redis_only
@pytest.mark.integration
def test_python_m_demo_starts_and_stops_redis_and_the_worker(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "analysis", "redis", "worker")}
    var_dir = tmp_path / "var"
    cmd = [sys.executable, "-m", "demo", "--var-dir", str(var_dir), "--duration", "40"]
    cmd += ["--rate", "5", "--no-prometheus"]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    output = tmp_path / "demo.out"
    env = {"ERROR_RATE": "0", "SLOW_RATE": "0", "LOG_FORMAT": ""}
    api = f"http://127.0.0.1:{ports['api']}"
    with running(cmd, log_path=output, env=env, cwd=ROOT) as demo:
        wait_http_ok(f"{api}/health", timeout=40)
        response = httpx.post(
            f"{api}/api/user/user-0042/routine/generate",
            json={"goal": "strength"},
            headers={"X-Correlation-ID": "demo-routine-1"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        log_file = var_dir / "log" / "worker.log"
        wait_until(
            lambda: any(
                r.get("request_id") == "demo-routine-1"
                and r["message"] == "Routine ready notification sent"
                for r in settled_records(log_file)
            ),
            timeout=20,
            what="the notification in worker.log",
        )
        children = psutil.Process(demo.pid).children(recursive=True)
        commands = [" ".join(c.cmdline()) for c in children]
        assert any("redis-server" in c for c in commands), commands
        assert any("demo.worker" in c for c in commands), commands
        os.kill(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=40) == 0, output.read_text()

    text = output.read_text()
    assert [c.pid for c in children if not _dead(c)] == []
    assert "Stopped loadgen, api, analysis, worker, redis" in text, text
    assert f"redis://127.0.0.1:{ports['redis']}/0" in text
    assert f"http://127.0.0.1:{ports['worker']}" in text
