"""`python -m demo --workers N`: each service runs `uvicorn --workers N` with a metrics directory
of its own, and its one scrape target serves the sums over every worker, exemplars included.

The requests the test sends itself are PUTs, which the load generator never sends: their count
in `/metrics` is known exactly, whatever the load does meanwhile.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from demo.__main__ import parse_args
from demo.local import LocalOptions, LocalStack, live_workers, service_command
from instrumentation.metrics import EXEMPLAR_INTERVAL_SECONDS
from tests.support.demo import samples, scrape, send_each, served_by
from tests.support.processes import free_port, running, wait_http_ok, wait_until
from tests.support.stack import query, wait_for_scrape

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("api", "analysis")
WORKERS = 2
# PUT answers 405 on these routes; the load generator sends no PUT at all.
PROFILE = "/api/user/user-0001/profile"
ANALYSIS = "/api/user/user-0001/analysis"
ROUTINE = "/api/user/user-0001/routine/generate"
BATCH = 40
MAX_PINS = 40
SCRAPES = 12
DIR_LINE = re.compile(r"^  (\w+)'s (\d+) workers share PROMETHEUS_MULTIPROC_DIR=(\S+) ", re.M)


def test_one_worker_is_the_default_and_runs_the_services_as_before(tmp_path: Path) -> None:
    assert parse_args([]).workers == 1
    assert parse_args(["--workers", "3"]).workers == 3
    assert service_command("api", 8000) == [
        *(sys.executable, "-m", "uvicorn", "demo.api:app"),
        *("--host", "127.0.0.1", "--port", "8000", "--no-access-log"),
    ]
    assert service_command("api", 8000, 3)[-2:] == ["--workers", "3"]
    stack = LocalStack(LocalOptions(var_dir=tmp_path), threading.Event())
    assert stack._metrics_dir("api") is None
    assert stack.metrics_dirs == {}


@pytest.mark.parametrize("workers", ["0", "-1", "17"])
def test_a_worker_count_out_of_range_is_refused(
    workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--workers", workers])
    assert "--workers must be between 1 and 16" in capsys.readouterr().err
    with pytest.raises(ValueError, match="workers"):
        LocalOptions(workers=int(workers))


def test_each_service_gets_a_fresh_metrics_directory_removed_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stack = LocalStack(LocalOptions(var_dir=tmp_path / "var", workers=2), threading.Event())
    dirs = {service: stack._metrics_dir(service) for service in SERVICES}
    assert len(set(dirs.values())) == 2
    for directory in dirs.values():
        assert directory is not None and directory.parent == tmp_path
        assert list(directory.iterdir()) == []
    assert sorted(stack.remove_metrics_dirs()) == sorted(d for d in dirs.values() if d)
    assert [p for p in tmp_path.iterdir() if p.name != "var"] == []


def test_describe_names_each_services_workers(tmp_path: Path) -> None:
    for workers, text in ((1, "1 worker "), (3, "3 workers")):
        stack = LocalStack(LocalOptions(var_dir=tmp_path, workers=workers), threading.Event())
        stack.urls = {"api": "http://127.0.0.1:1", "analysis": "http://127.0.0.1:2"}
        lines = list(stack.describe())
        for service in SERVICES:
            [line] = [line for line in lines if line.startswith(f"  {service} ")]
            assert text in line, line


def _dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _pin_two_workers(api: str, log_file: Path, sent: list[str]) -> dict[str, httpx.Client]:
    """Keep-alive connections opened one after the other until two different workers hold
    one each: {boot_id: client}. Each probe is a PUT, added to `sent`."""
    pinned: dict[str, httpx.Client] = {}
    for attempt in range(MAX_PINS):
        client = httpx.Client(base_url=api, limits=httpx.Limits(max_connections=1), timeout=10)
        request_id = f"pin-{attempt}-{uuid.uuid4().hex[:8]}"
        assert client.put(PROFILE, headers={"X-Correlation-ID": request_id}).status_code == 405
        sent.append(request_id)
        [boot_id] = served_by(log_file, [request_id]).values()
        if boot_id in pinned:
            client.close()
        else:
            pinned[boot_id] = client
        if len(pinned) == WORKERS:
            return pinned
    raise AssertionError(f"{MAX_PINS} connections, all accepted by one worker of {api}")


def _last_requests_through_two_workers(
    api: str, log_file: Path, sent: list[str]
) -> tuple[str, str]:
    """A PUT on PROFILE through one worker, then one on ANALYSIS through another: their ids."""
    for _ in range(3):
        pinned = _pin_two_workers(api, log_file, sent)
        (boot_a, client_a), (boot_b, client_b) = pinned.items()
        # The probes' exemplars were kept just now: a bucket keeps the next one a second later.
        time.sleep(EXEMPLAR_INTERVAL_SECONDS)
        last_a, last_b = f"last-a-{uuid.uuid4().hex}", f"last-b-{uuid.uuid4().hex}"
        assert client_a.put(PROFILE, headers={"X-Correlation-ID": last_a}).status_code == 405
        assert client_b.put(ANALYSIS, headers={"X-Correlation-ID": last_b}).status_code == 405
        sent += [last_a, last_b]
        for client in pinned.values():
            client.close()
        served = served_by(log_file, [last_a, last_b])
        # An idle keep-alive connection the server closed is opened again, maybe elsewhere.
        if (served[last_a], served[last_b]) == (boot_a, boot_b):
            return last_a, last_b
    raise AssertionError("keep-alive connections kept moving between workers")


def _exemplar_ids(families: list[Any], method: str, route: str) -> set[str]:
    return {
        s.exemplar.labels["request_id"]
        for s in samples(families, "http_request_duration_seconds_bucket")
        if s.exemplar and s.labels["method"] == method and s.labels["route"] == route
    }


def _prometheus_exemplar_ids(prometheus: str, selector: str) -> set[str]:
    response = httpx.get(
        f"{prometheus}/api/v1/query_exemplars",
        params={"query": selector, "start": time.time() - 600, "end": time.time() + 60},
        timeout=10,
    )
    response.raise_for_status()
    return {
        exemplar["labels"].get("request_id", "")
        for series in response.json()["data"]
        for exemplar in series["exemplars"]
    }


@pytest.mark.integration
@pytest.mark.binary("prometheus")
def test_python_m_demo_with_two_workers_sums_every_workers_metrics_with_exemplars(
    tmp_path: Path,
) -> None:
    ports = {name: free_port() for name in ("api", "analysis", "prometheus", "alertmanager")}
    var_dir, temp_root = tmp_path / "var", tmp_path / "tmp"
    temp_root.mkdir()
    cmd = [sys.executable, "-m", "demo", "--var-dir", str(var_dir), "--duration", "150"]
    cmd += ["--rate", "10", "--scrape-interval", "1s", "--workers", str(WORKERS)]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    api = f"http://127.0.0.1:{ports['api']}"
    analysis = f"http://127.0.0.1:{ports['analysis']}"
    prometheus = f"http://127.0.0.1:{ports['prometheus']}"
    api_log = var_dir / "log" / "api.log"
    output = tmp_path / "demo.out"
    # TMPDIR: the demo's metrics directories land where the test can see all of them.
    env = {"ERROR_RATE": "0", "SLOW_RATE": "0", "LOG_FORMAT": "", "TMPDIR": str(temp_root)}

    with running(cmd, log_path=output, env=env, cwd=REPO_ROOT) as demo:
        wait_until(
            lambda: "Follow one request" in output.read_text() or demo.poll() is not None,
            timeout=90,
            what="the demo's description",
        )
        described = output.read_text()
        assert demo.poll() is None, described
        for service in SERVICES:
            assert re.search(rf"^  {service} +http://\S+ +{WORKERS} workers ", described, re.M)
        dirs = {s: Path(d) for s, n, d in DIR_LINE.findall(described) if int(n) == WORKERS}
        assert set(dirs) == set(SERVICES), described
        assert len(set(dirs.values())) == len(SERVICES)
        assert all(d.parent == temp_root and d.is_dir() for d in dirs.values()), dirs
        for service, directory in dirs.items():
            assert len(live_workers(directory)) == WORKERS, (service, os.listdir(directory))
        wait_http_ok(f"{prometheus}/-/ready", timeout=30)

        # Requests the test knows the count of, served by both workers of the api. The last
        # PUT of two routes went through different workers: any one scrape, answered by one
        # worker, must carry both exemplars.
        sent: list[str] = []
        last_a, last_b = _last_requests_through_two_workers(api, api_log, sent)
        batch = [f"batch-{i}-{uuid.uuid4().hex[:8]}" for i in range(BATCH)]
        assert send_each(api, "PUT", ROUTINE, batch) == [405] * BATCH
        sent += batch
        served = served_by(api_log, sent)
        assert len(set(served.values())) == WORKERS, "the api's requests were not shared"

        previous: dict[tuple[tuple[str, str], ...], float] = {}
        for _ in range(SCRAPES):
            families = scrape(api)
            put = [
                s for s in samples(families, "http_requests_total") if s.labels["method"] == "PUT"
            ]
            assert sum(s.value for s in put) == len(sent), [(s.labels, s.value) for s in put]
            # The load goes on; whichever worker answers, no count goes down.
            for s in samples(families, "http_requests_total"):
                key = tuple(sorted(s.labels.items()))
                assert s.value >= previous.get(key, 0.0), (key, s.value, previous[key])
                previous[key] = s.value
            assert last_a in _exemplar_ids(families, "PUT", "/api/user/{user_id}/profile")
            assert last_b in _exemplar_ids(families, "PUT", "/api/user/{user_id}/analysis")
            pids = {s.labels["pid"] for s in samples(families, "process_start_time_seconds")}
            assert len(pids) == WORKERS, pids

        analysis_families = scrape(analysis)
        pids = {s.labels["pid"] for s in samples(analysis_families, "process_start_time_seconds")}
        assert len(pids) == WORKERS, pids
        assert _exemplar_ids(analysis_families, "POST", "/analyze/{user_id}")

        # Prometheus scrapes each service as one target and sees the same sums and exemplars.
        for service in SERVICES:
            wait_for_scrape(prometheus, service, timeout=30)
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]
        jobs = [t["labels"]["job"] for t in targets["activeTargets"]]
        assert jobs.count("api") == 1 and jobs.count("analysis") == 1, jobs
        put_total = 'sum(http_requests_total{service="api", method="PUT"})'
        wait_until(
            lambda: [float(r["value"][1]) for r in query(prometheus, put_total)] == [len(sent)],
            timeout=30,
            what=f"{put_total} == {len(sent)}",
        )
        selector = 'http_request_duration_seconds_bucket{service="api", method="PUT"}'
        wait_until(
            lambda: {last_a, last_b} <= _prometheus_exemplar_ids(prometheus, selector),
            timeout=30,
            what="both workers' last exemplars in Prometheus",
        )

        children = psutil.Process(demo.pid).children(recursive=True)
        assert len(children) >= 4 + 2 * WORKERS, [" ".join(c.cmdline()) for c in children]
        os.kill(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=60) == 0, output.read_text()

    assert [c.pid for c in children if not _dead(c)] == []
    text = output.read_text()
    assert "Removed the metrics directories" in text, text
    assert [d for d in dirs.values() if d.exists()] == []
    assert list(temp_root.iterdir()) == []
