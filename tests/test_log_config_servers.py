"""uvicorn --log-config and gunicorn logconfig_dict, for real: the same request lines as a
service that calls setup_logging()."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.log_fields import DESIGN_FIELDS, settled_records
from tests.support.processes import free_port, running, uvicorn_cmd, wait_http_ok

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
APP = "tests.apps.log_config_app:app"


REQUESTS = 20


@dataclass
class Run:
    """What one server wrote for the same requests: its log file and its stdout."""

    records: list[dict[str, Any]]
    stdout: list[str]

    def request_lines(self, request_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["request_id"] == request_id]


def trace_of(i: int) -> str:
    return f"{i + 1:032x}"


def fire(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(REQUESTS):
            headers = {
                "X-Correlation-ID": f"req-{i:04d}",
                "traceparent": f"00-{trace_of(i)}-00f067aa0ba902b7-01",
            }
            assert client.get(f"/api/user/user-{i:04d}/echo", headers=headers).status_code == 200
        assert client.get("/boom", headers={"X-Correlation-ID": "req-boom"}).status_code == 500


def serve(
    tmp_path: Path, name: str, cmd: list[str], port: int, env: dict[str, str] | None = None
) -> Run:
    log_file = tmp_path / f"{name}.log"
    out = tmp_path / f"{name}.out"
    env = {"SERVICE_NAME": "api", "ENVIRONMENT": "test", "LOG_FILE": str(log_file), **(env or {})}
    with running(cmd, log_path=out, env=env, cwd=ROOT):
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/metrics", timeout=30)
        fire(url)
    lines = [line for line in out.read_text().splitlines() if line.strip()]
    return Run(settled_records(log_file), lines)


def uvicorn(tmp_path: Path, name: str, *extra: str, env: dict[str, str] | None = None) -> Run:
    port = free_port()
    # uvicorn's access log left on: only the config may keep its text lines out.
    cmd = [arg for arg in uvicorn_cmd(APP, port, *extra) if arg != "--no-access-log"]
    return serve(tmp_path, name, cmd, port, env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    tmp_path = tmp_path_factory.mktemp("log-config")
    return {
        "setup_logging": uvicorn(tmp_path, "setup_logging"),
        "log_config": uvicorn(tmp_path, "log_config", "--log-config", "docs/examples/logging.yaml"),
    }


def shape(record: dict[str, Any]) -> tuple[str, str, str, tuple[str, ...]]:
    """A line without what differs between two runs: times, pids, ports, random IDs."""
    message = re.sub(r"\d+", "#", str(record["message"]))
    return (str(record["logger"]), str(record["level"]), message, tuple(sorted(record)))


@pytest.mark.integration
def test_uvicorn_log_config_writes_setup_loggings_lines(runs: dict[str, Run]) -> None:
    by_config = Counter(shape(r) for r in runs["log_config"].records)
    assert by_config == Counter(shape(r) for r in runs["setup_logging"].records)


@pytest.mark.integration
@pytest.mark.parametrize("way", ["setup_logging", "log_config"])
def test_uvicorn_request_lines_are_correlated(runs: dict[str, Run], way: str) -> None:
    run = runs[way]
    wrong = []
    for i in range(REQUESTS):
        lines = run.request_lines(f"req-{i:04d}")
        loggers = sorted(str(r["logger"]) for r in lines)
        ids = {(r["trace_id"], r.get("user_id")) for r in lines}
        if loggers != ["corrstack.access", "tests.apps.log_config_app", "tests.plain"] or ids != {
            (trace_of(i), f"user-{i:04d}")
        }:
            wrong.append((i, loggers, ids))
    assert wrong == []


@pytest.mark.integration
@pytest.mark.parametrize("way", ["setup_logging", "log_config"])
def test_every_uvicorn_line_carries_the_service(runs: dict[str, Run], way: str) -> None:
    assert {(r["service"], r["environment"]) for r in runs[way].records} == {("api", "test")}


@pytest.mark.integration
@pytest.mark.parametrize("way", ["setup_logging", "log_config"])
def test_uvicorn_writes_only_json_lines_and_no_text_access_line(
    runs: dict[str, Run], way: str
) -> None:
    run = runs[way]
    records = [json.loads(line) for line in run.stdout]  # a text line fails here
    assert (len(records), {r["logger"] for r in records} & {"uvicorn.access"}) == (
        len(run.records),
        set(),
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("extra", "level"),
    [((), "WARNING"), (("--log-level", "debug"), "WARNING"), (("--log-level", "debug"), "INFO")],
)
def test_log_levels_for_uvicorn_quiet_the_loggers_uvicorn_sets_itself(
    tmp_path: Path, extra: tuple[str, ...], level: str
) -> None:
    # uvicorn gives uvicorn.error a level of its own (INFO, or --log-level's) before the app
    # is imported: `LOG_LEVELS=uvicorn=...`, the README's example, must still decide it.
    run = uvicorn(tmp_path, "levels", *extra, env={"LOG_LEVELS": f"uvicorn={level}"})
    server = {(r["logger"], r["level"]) for r in run.records if r["logger"].startswith("uvicorn")}
    below = {
        ("uvicorn.error", name)
        for name in {"WARNING": ("DEBUG", "INFO"), "INFO": ("DEBUG",)}[level]
    }
    assert (server & below, len(run.request_lines("req-0000"))) == (set(), 3)
    if level == "INFO":  # the startup lines, which uvicorn writes at INFO, are still there
        assert ("uvicorn.error", "INFO") in server


@pytest.mark.integration
@pytest.mark.binary("gunicorn")
def test_gunicorn_logconfig_dict_writes_the_same_request_lines(
    tmp_path: Path, runs: dict[str, Run]
) -> None:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "docs/examples/gunicorn.conf.py",
        "-k",
        "uvicorn_worker.UvicornWorker",
        "-b",
        f"127.0.0.1:{port}",
        "--no-control-socket",  # it would go to ~/.gunicorn
        APP,
    ]
    run = serve(tmp_path, "gunicorn", cmd, port)
    stdout_records = [json.loads(line) for line in run.stdout]  # a text line fails here
    request_ids = [f"req-{i:04d}" for i in range(REQUESTS)] + ["req-boom"]

    def request_shapes(of: Run) -> Counter[tuple[str, str, str, tuple[str, ...]]]:
        return Counter(shape(r) for rid in request_ids for r in of.request_lines(rid))

    assert request_shapes(run) == request_shapes(runs["log_config"])
    assert all(r.keys() >= DESIGN_FIELDS for r in stdout_records)
    server_lines = {(r["logger"], shape(r)[2]) for r in run.records}
    assert {
        ("gunicorn.error", "Booting worker with pid: #"),
        ("uvicorn.error", "Started server process [#]"),
        ("uvicorn.error", "Finished server process [#]"),
    } <= server_lines
