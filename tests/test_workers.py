"""Several workers for real: `uvicorn --workers 3` and gunicorn with 3 uvicorn workers, sharing
PROMETHEUS_MULTIPROC_DIR and one LOG_FILE.

`/metrics` (whichever worker answers) serves the exact sums over every worker, with exemplars
of requests served by different workers; the shared log file holds whole JSON lines, one
`boot_id` per worker, and follows a logrotate-style rename; a worker killed with SIGKILL takes
none of the counts with it and leaves no request in progress behind.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.support.processes import free_port, running, wait_http_ok, wait_until
from tests.support.stack import prometheus, query, wait_for_scrape

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.apps.workers_app:app"
ROUTE = "/api/items/{item_id}"
SERVICE = "items"
WORKERS = 3
REQUESTS = 600
MORE = 150
SCRAPES = 10
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
KINDS = ("uvicorn", "gunicorn")
# Idle keep-alive connections stay open this long (s): the default (uvicorn 5 s, gunicorn 2 s)
# could close a pinned connection on a busy machine, and its next request reach another worker.
KEEP_ALIVE = 60
# Keep-alive connections opened one after the other to learn which worker holds each: the
# last requests go through them, so the latest exemplars come from known, different workers.
PINS = 12
# One last request per pinned worker, each in a latency bucket of its own (0.05, 0.1, 0.25 s).
TAIL_DELAYS_MS = (30, 70, 180)
# Sent after the log file is renamed, each lasting 150 ms, 20 at a time: 1.5 s of traffic,
# longer than the second after which every worker's file sink looks at the path again.
AFTER_ROTATION = 200
AFTER_ROTATION_DELAY_MS = 150


def server_cmd(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [
            *(sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port", str(port)),
            *("--no-access-log", "--workers", str(WORKERS)),
            *("--timeout-keep-alive", str(KEEP_ALIVE)),
        ]
    return [
        *(sys.executable, "-m", "gunicorn", "-c", "docs/examples/gunicorn.conf.py"),
        *("-w", str(WORKERS), "--bind", f"127.0.0.1:{port}", "--keep-alive", str(KEEP_ALIVE)),
        "--no-control-socket",  # it would go to ~/.gunicorn
        APP,
    ]


def worker_pids(master: int) -> set[int]:
    """The live (not zombie) worker processes of `master`, from /proc.

    uvicorn's master also runs multiprocessing's resource tracker: not a worker.
    """
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != master or fields[0] == "Z":
                continue
            if b"resource_tracker" in (stat.parent / "cmdline").read_bytes():
                continue
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        pids.add(int(stat.parent.name))
    return pids


@dataclass
class Server:
    kind: str
    url: str
    master: int
    metrics_dir: Path
    log_file: Path
    # request_id -> pid of the worker that served it, for every request answered 200 with its
    # X-Correlation-ID echoed; anything else in `wrong`.
    served: dict[str, int] = field(default_factory=dict)
    wrong: list[tuple[str, int, str | None]] = field(default_factory=list)
    sent: int = 0

    def _answered(self, request_id: str, response: httpx.Response) -> None:
        self.sent += 1
        echoed = response.headers.get("x-correlation-id")
        if response.status_code != 200 or echoed != request_id:
            self.wrong.append((request_id, response.status_code, echoed))
            return
        self.served[request_id] = int(response.json()["pid"])

    def burst(self, prefix: str, count: int, concurrency: int = 30, delay_ms: int = 0) -> None:
        """`count` requests, `concurrency` at a time, each on a fresh connection: the
        workers' accepts share them out."""

        async def run() -> list[tuple[str, httpx.Response]]:
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=30) as client:
                gate = asyncio.Semaphore(concurrency)

                async def one(i: int) -> tuple[str, httpx.Response]:
                    request_id = f"{self.kind}-{prefix}-{i:04d}"
                    async with gate:
                        response = await client.get(
                            f"/api/items/{i}",
                            params={"delay_ms": delay_ms},
                            headers={"X-Correlation-ID": request_id},
                        )
                    return request_id, response

                return await asyncio.gather(*(one(i) for i in range(count)))

        for request_id, response in asyncio.run(run()):
            self._answered(request_id, response)

    def get(self, client: httpx.Client, request_id: str, delay_ms: int = 0) -> int | None:
        response = client.get(
            f"/api/items/{request_id}",
            params={"delay_ms": delay_ms},
            headers={"X-Correlation-ID": request_id},
        )
        self._answered(request_id, response)
        return self.served.get(request_id)

    def pin(self, prefix: str) -> dict[int, httpx.Client]:
        """`PINS` keep-alive connections, one request each; one client per worker reached."""
        pinned: dict[int, httpx.Client] = {}
        for i in range(PINS):
            client = httpx.Client(
                base_url=self.url, limits=httpx.Limits(max_connections=1), timeout=30
            )
            pid = self.get(client, f"{self.kind}-{prefix}-{i:04d}")
            if pid is None or pid in pinned:
                client.close()
            else:
                pinned[pid] = client
        return pinned


@contextmanager
def serve(tmp_path: Path, kind: str) -> Iterator[Server]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    log_file = tmp_path / f"{SERVICE}.log"
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_FILE": str(log_file),
        "SERVICE_NAME": SERVICE,
        "ENVIRONMENT": "test",
    }
    port = free_port()
    out = tmp_path / f"{kind}.out"
    with running(server_cmd(kind, port), log_path=out, env=env, cwd=ROOT) as master:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/metrics", timeout=30)
        wait_until(lambda: len(worker_pids(master.pid)) == WORKERS, 30, what=f"{WORKERS} workers")
        yield Server(kind, url, master.pid, metrics_dir, log_file)


@dataclass
class Scrape:
    """What one OpenMetrics scrape of /metrics says about ROUTE."""

    requests: float  # http_requests_total{status="200"}
    count: float  # http_request_duration_seconds_count
    in_progress: float  # http_requests_in_progress
    exemplar_ids: list[str]  # request_id of each bucket's exemplar


def scrape(url: str) -> Scrape:
    response = httpx.get(f"{url}/metrics", headers={"Accept": OPENMETRICS}, timeout=10)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    requests = count = in_progress = 0.0
    exemplar_ids = []
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.labels.get("route") != ROUTE:
                continue
            if sample.name == "http_requests_total" and sample.labels["status"] == "200":
                requests += sample.value
            elif sample.name == "http_request_duration_seconds_count":
                count += sample.value
            elif sample.name == "http_requests_in_progress":
                in_progress += sample.value
            elif sample.name == "http_request_duration_seconds_bucket" and sample.exemplar:
                exemplar_ids.append(sample.exemplar.labels["request_id"])
    return Scrape(requests, count, in_progress, exemplar_ids)


def is_access(record: dict[str, Any]) -> bool:
    return record.get("logger") == "corrstack.access" and record.get("route") == ROUTE


def lenient_access_count(paths: list[Path]) -> int:
    count = 0
    for path in paths:
        for line in path.read_text().splitlines() if path.exists() else ():
            try:
                count += is_access(json.loads(line))
            except ValueError:
                continue
    return count


def settle(paths: list[Path], expected: int, quiet: float = 0.2) -> None:
    """Wait (polled, bounded) until `expected` access lines are written and the files have
    stopped growing: lines reach the file from each worker's writer thread, a little later."""
    wait_until(
        lambda: lenient_access_count(paths) >= expected,
        15,
        interval=0.05,
        what=f"{expected} access lines",
    )
    sizes: tuple[int, ...] = ()
    since = time.monotonic()

    def still() -> bool:
        nonlocal sizes, since
        now = tuple(p.stat().st_size if p.exists() else 0 for p in paths)
        if now != sizes:
            sizes, since = now, time.monotonic()
        return time.monotonic() - since >= quiet

    wait_until(still, 10, interval=0.05, what="log files no longer growing")


@dataclass
class LogFile:
    path: Path
    records: list[dict[str, Any]]
    torn: list[str]  # lines that are not one JSON object, and an unterminated last line

    def access_ids(self) -> list[str]:
        return [str(r["request_id"]) for r in self.records if is_access(r)]


def read_log(path: Path) -> LogFile:
    text = path.read_text() if path.exists() else ""
    records, torn = [], []
    if text and not text.endswith("\n"):
        torn.append(f"unterminated last line: {text[text.rfind(chr(10)) + 1 :][:200]!r}")
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            torn.append(line[:200])
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            torn.append(line[:200])
    return LogFile(path, records, torn)


# --- 600 requests over three workers, the log file renamed in the middle -----------------------


@dataclass
class Loaded:
    server: Server
    rotated: Path  # the log file as renamed, logrotate style
    tail_ids: list[str]  # the last requests, sent > 1 s after the rename, by pinned workers


@pytest.fixture(scope="module", params=KINDS)
def loaded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Loaded]:
    kind: str = request.param
    tmp_path = tmp_path_factory.mktemp(f"workers-{kind}")
    with serve(tmp_path, kind) as server:
        tail = len(TAIL_DELAYS_MS)
        server.burst("before", REQUESTS - AFTER_ROTATION - PINS - tail)
        rotated = server.log_file.with_name(server.log_file.name + ".1")
        os.rename(server.log_file, rotated)
        server.burst("rotated", AFTER_ROTATION, concurrency=20, delay_ms=AFTER_ROTATION_DELAY_MS)
        pinned = server.pin("pinned")
        clients = list(pinned.values())
        tail_ids = [f"{kind}-tail-{i}" for i in range(tail)]
        for i, (request_id, delay) in enumerate(zip(tail_ids, TAIL_DELAYS_MS, strict=True)):
            server.get(clients[i % len(clients)], request_id, delay_ms=delay)
        for client in clients:
            client.close()
        settle([rotated, server.log_file], REQUESTS)
        yield Loaded(server, rotated, tail_ids)


@pytest.fixture(scope="module")
def logs(loaded: Loaded) -> tuple[LogFile, LogFile]:
    """The renamed log file and the one the workers created after it, as written."""
    return read_log(loaded.rotated), read_log(loaded.server.log_file)


def test_requests_are_served_by_several_workers(loaded: Loaded) -> None:
    server = loaded.server
    assert (server.sent, server.wrong, len(server.served)) == (REQUESTS, [], REQUESTS)
    assert len(set(server.served.values())) >= 2, set(server.served.values())


def test_every_scrape_sums_every_worker_with_their_exemplars(loaded: Loaded) -> None:
    served = loaded.server.served
    logged = {
        str(r["request_id"])
        for path in (loaded.rotated, loaded.server.log_file)
        for r in read_log(path).records
    }
    wrong = []
    for n in range(SCRAPES):
        result = scrape(loaded.server.url)
        ids = result.exemplar_ids
        pids = {served[i] for i in ids if i in served}
        if (
            (result.requests, result.count) != (REQUESTS, REQUESTS)
            or not ids
            or not set(ids) <= served.keys()
            or len(pids) < 2
            or not set(ids) <= logged
        ):
            not_logged = sorted(set(ids) - logged)
            wrong.append((n, result.requests, result.count, ids, sorted(pids), not_logged))
    assert wrong == []


def test_every_line_of_the_shared_file_is_one_json_object(logs: tuple[LogFile, LogFile]) -> None:
    assert [(log.path.name, log.torn) for log in logs if log.torn] == []
    assert all(log.records for log in logs)


def test_one_access_line_per_request(loaded: Loaded, logs: tuple[LogFile, LogFile]) -> None:
    access = [request_id for log in logs for request_id in log.access_ids()]
    assert len(access) == REQUESTS
    assert sorted(access) == sorted(loaded.server.served)


def test_each_worker_has_a_boot_id_of_its_own(
    loaded: Loaded, logs: tuple[LogFile, LogFile]
) -> None:
    served = loaded.server.served
    pids_of: dict[str, set[int]] = {}
    boot_ids_of: dict[int, set[str]] = {}
    for log in logs:
        for record in log.records:
            if is_access(record) and record["request_id"] in served:
                pid = served[record["request_id"]]
                pids_of.setdefault(str(record["boot_id"]), set()).add(pid)
                boot_ids_of.setdefault(pid, set()).add(str(record["boot_id"]))
    assert len(pids_of) >= 2, pids_of
    assert {b: p for b, p in pids_of.items() if len(p) != 1} == {}
    assert {p: b for p, b in boot_ids_of.items() if len(b) != 1} == {}


def test_the_workers_follow_a_renamed_log_file(
    loaded: Loaded, logs: tuple[LogFile, LogFile]
) -> None:
    old, new = logs
    assert old.access_ids() and new.access_ids(), "both files hold access lines"
    # Sent more than a second after the rename, by at least two workers: in the new file.
    assert sorted(set(loaded.tail_ids) - loaded.server.served.keys()) == [], loaded.server.wrong
    assert sorted(set(loaded.tail_ids) - set(new.access_ids())) == []
    assert len({loaded.server.served[i] for i in loaded.tail_ids}) >= 2


@pytest.mark.binary("prometheus")
@pytest.mark.parametrize("loaded", ["uvicorn"], indirect=True)
def test_prometheus_stores_the_sum_and_exemplars_of_every_worker(
    tmp_path: Path, loaded: Loaded
) -> None:
    served = loaded.server.served
    host = loaded.server.url.removeprefix("http://")
    with prometheus(tmp_path, {SERVICE: [host]}) as prom:
        wait_for_scrape(prom, SERVICE)
        total = query(prom, f'sum(http_requests_total{{route="{ROUTE}"}})')
        found: set[str] = set()

        def exemplars_stored() -> bool:
            response = httpx.get(
                f"{prom}/api/v1/query_exemplars",
                params={
                    "query": f'http_request_duration_seconds_bucket{{route="{ROUTE}"}}',
                    "start": time.time() - 600,
                    "end": time.time() + 60,
                },
                timeout=10,
            )
            response.raise_for_status()
            found.update(
                exemplar["labels"]["request_id"]
                for series in response.json()["data"]
                for exemplar in series["exemplars"]
            )
            return bool(found)

        wait_until(exemplars_stored, 30, interval=0.5, what="exemplars in Prometheus")
    assert [float(r["value"][1]) for r in total] == [REQUESTS]
    assert sorted(found - served.keys()) == []
    assert len({served[i] for i in found}) >= 2, found


# --- kill -9 of a worker --------------------------------------------------------------------


@dataclass
class Killed:
    victim: int
    confirmed: int | None  # the pid that served the request just before the slow one
    workers_before: set[int]
    workers_after: set[int]
    in_flight: str  # what became of the slow request the victim was serving
    history: list[Scrape]  # every scrape, in order, from before the kill to the end
    killed_at: int  # history[:killed_at] came before the kill
    idle: list[Scrape]  # after the respawn, no request in flight
    after_more: list[Scrape]  # after MORE requests
    server: Server


@pytest.fixture(scope="module", params=KINDS)
def killed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Killed:
    kind: str = request.param
    tmp_path = tmp_path_factory.mktemp(f"killed-{kind}")
    history: list[Scrape] = []

    def observe() -> Scrape:
        result = scrape(server.url)
        history.append(result)
        return result

    with serve(tmp_path, kind) as server:
        workers_before = worker_pids(server.master)
        server.burst("before", REQUESTS - PINS - 1)
        pinned = server.pin("pinned")
        victim, client = next(iter(pinned.items()))  # it served requests
        # Still the victim's connection, just before the slow request takes it.
        confirmed = server.get(client, f"{kind}-confirm")
        observe()
        outcome: list[str] = []

        def slow() -> None:  # in flight on the victim when it is killed
            try:
                response = client.get("/api/items/slow", params={"delay_ms": 10_000})
                outcome.append(f"answered {response.status_code}")
            except httpx.HTTPError as error:
                outcome.append(type(error).__name__)

        thread = threading.Thread(target=slow, daemon=True)
        thread.start()
        wait_until(lambda: observe().in_progress >= 1, 10, interval=0.05, what="slow request")
        killed_at = len(history)
        os.kill(victim, signal.SIGKILL)
        thread.join(timeout=15)
        for pinned_client in pinned.values():
            pinned_client.close()

        def respawned() -> bool:
            observe()
            workers = worker_pids(server.master)
            return victim not in workers and len(workers) == WORKERS

        wait_until(respawned, 30, interval=0.1, what=f"a worker in place of {victim}")
        workers_after = worker_pids(server.master)
        idle = [observe() for _ in range(5)]
        server.burst("after", MORE)
        after_more = [observe() for _ in range(3)]
    return Killed(
        victim,
        confirmed,
        workers_before,
        workers_after,
        outcome[0] if outcome else "still waiting",
        history,
        killed_at,
        idle,
        after_more,
        server,
    )


def test_a_killed_worker_is_replaced(killed: Killed) -> None:
    before, after = killed.workers_before, killed.workers_after
    assert killed.confirmed == killed.victim
    assert (killed.victim in before, killed.victim in after) == (True, False), (before, after)
    assert len(after - before) == 1, (before, after)
    # The request in flight on the victim died with it.
    assert not killed.in_flight.startswith("answered"), killed.in_flight


def test_counts_never_go_down_when_a_worker_dies(killed: Killed) -> None:
    series = [(s.requests, s.count) for s in killed.history]
    drops = [(a, b) for a, b in itertools.pairwise(series) if b[0] < a[0] or b[1] < a[1]]
    assert drops == []
    assert series[0] == (REQUESTS, REQUESTS)
    assert len(series) > killed.killed_at  # scraped after the kill too


def test_a_dead_workers_counts_stay_in_the_sums(killed: Killed) -> None:
    assert [(s.requests, s.count) for s in killed.idle] == [(REQUESTS, REQUESTS)] * len(killed.idle)
    assert [(s.requests, s.count) for s in killed.after_more] == [
        (REQUESTS + MORE, REQUESTS + MORE)
    ] * len(killed.after_more)
    assert (killed.server.sent, killed.server.wrong) == (REQUESTS + MORE, [])


def test_a_dead_workers_requests_in_progress_are_not_counted(killed: Killed) -> None:
    # The victim died serving a request, counted in its live gauge (read by another worker):
    assert killed.history[killed.killed_at - 1].in_progress == 1
    idle = killed.idle + killed.after_more
    assert [s.in_progress for s in idle] == [0.0] * len(idle)
