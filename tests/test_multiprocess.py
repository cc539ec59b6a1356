"""Multiprocess mode's parts: the exemplar files, the directory checks at startup, and the scrape
that sums every worker's files. Workers are real processes with PROMETHEUS_MULTIPROC_DIR set
(prometheus_client reads it when imported); the servers with several workers are in
test_workers.py."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from instrumentation import exemplar_store, multiprocess
from instrumentation.exemplar_store import ExemplarFile, bucket_key, read_exemplars
from instrumentation.faults import fault_count
from instrumentation.multiprocess import MultiprocessDirectoryError, prepare_directory
from instrumentation.shared_metrics import shared_registry
from tests.support.processes import free_port, running, wait_http_ok

ROUTE = "/api/items/{item_id}"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"

# A worker: the app of tests/apps/workers_app.py driven in-process, `REQUESTS` requests with
# X-Correlation-ID `<prefix>-<n>`, then it exits (a dead worker, as after a restart).
_WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    import httpx
    from tests.apps.workers_app import app
    from instrumentation import flush_logging

    async def main(prefix, count):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            for n in range(count):
                headers = {"X-Correlation-ID": f"{prefix}-{n}"}
                response = await client.get(f"/api/items/{n}", headers=headers)
                assert response.status_code == 200, response.text
        flush_logging()

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def run_worker(directory: Path, prefix: str, count: int, **env: str) -> None:
    subprocess.run(
        [sys.executable, "-c", _WORKER, prefix, str(count)],
        env={
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "SERVICE_NAME": "api",
            "LOG_FILE": os.devnull,
            **env,
        },
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        timeout=60,
        capture_output=True,
    )


def openmetrics(directory: Path) -> str:
    return generate_openmetrics(shared_registry(str(directory))).decode()


def sample_lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"
    directory.mkdir()
    return directory


# --- The scrape ---------------------------------------------------------------------------------


def test_the_scrape_sums_every_worker_dead_ones_included(metrics_dir: Path) -> None:
    run_worker(metrics_dir, "a", 7)
    run_worker(metrics_dir, "b", 5)
    text = openmetrics(metrics_dir)
    assert sample_lines(text, "http_requests_total{") == [
        f'http_requests_total{{method="GET",route="{ROUTE}",status="200"}} 12.0'
    ]
    assert sample_lines(text, "http_request_duration_seconds_count{") == [
        f'http_request_duration_seconds_count{{method="GET",route="{ROUTE}"}} 12.0'
    ]


def test_the_scrape_carries_each_buckets_latest_exemplar_of_any_worker(metrics_dir: Path) -> None:
    run_worker(metrics_dir, "first", 3)
    run_worker(metrics_dir, "second", 2)
    text = openmetrics(metrics_dir)
    exemplars = [
        line for line in sample_lines(text, "http_request_duration_seconds_bucket") if "#" in line
    ]
    assert exemplars, text
    request_ids = {line.split('request_id="')[1].split('"')[0] for line in exemplars}
    # The second worker ran later: every bucket it observed into holds its request (the
    # first one in that bucket, as a bucket keeps an exemplar at most once a second).
    assert "second-0" in request_ids
    assert request_ids <= {"first-0", "first-1", "first-2", "second-0", "second-1"}
    operation = [
        line for line in sample_lines(text, "operation_duration_seconds_bucket") if "#" in line
    ]
    assert any('request_id="second-0"' in line for line in operation), text


def test_a_scrape_in_the_text_format_has_the_sums_and_no_exemplars(metrics_dir: Path) -> None:
    run_worker(metrics_dir, "t", 4)
    text = generate_latest(shared_registry(str(metrics_dir))).decode()
    assert f'http_requests_total{{method="GET",route="{ROUTE}",status="200"}} 4.0' in text
    assert "# {" not in text  # exemplars are OpenMetrics only


def test_log_accounting_and_gc_are_sums_over_workers(metrics_dir: Path) -> None:
    run_worker(metrics_dir, "a", 4)
    run_worker(metrics_dir, "b", 6)
    text = openmetrics(metrics_dir)
    # Each request writes three lines (load_item timing, "Item served", the access line).
    [records] = sample_lines(text, "log_records_total ")
    assert float(records.split()[-1]) >= 30.0
    assert sample_lines(text, 'python_gc_collections_total{generation="0"}')


def test_process_metrics_are_per_live_worker_with_a_pid_label(metrics_dir: Path) -> None:
    run_worker(metrics_dir, "dead", 1)
    prepare_directory(str(metrics_dir), "api")  # this process becomes a live worker
    text = openmetrics(metrics_dir)
    assert sample_lines(text, "process_resident_memory_bytes{") == [
        line
        for line in text.splitlines()
        if line.startswith(f'process_resident_memory_bytes{{pid="{os.getpid()}"}}')
    ]


def test_a_dead_workers_in_progress_gauge_is_not_counted(metrics_dir: Path) -> None:
    # A worker killed mid-request leaves its gauge at 1 in its live-gauge file.
    script = textwrap.dedent(
        """
        from instrumentation.metrics import metrics_for
        metrics_for().http_requests_in_progress.labels("GET", "/slow").inc()
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert list(metrics_dir.glob("gauge_livesum_*.db"))
    assert 'route="/slow"' not in openmetrics(metrics_dir)


def test_a_worker_that_exited_but_is_not_reaped_yet_counts_as_dead() -> None:
    # uvicorn's supervisor reaps a killed worker up to half a second later.
    child = subprocess.Popen(["true"])
    try:
        state = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 10
        while state.read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert not multiprocess.process_alive(child.pid)
        assert multiprocess.process_alive(os.getpid())
    finally:
        child.wait()


def test_an_unreadable_file_is_left_out_and_counted_never_a_failed_scrape(
    metrics_dir: Path,
) -> None:
    run_worker(metrics_dir, "ok", 3)
    # A file whose header claims more than it holds: torn, or not prometheus_client's.
    (metrics_dir / "counter_999999.db").write_bytes(
        struct.pack("<ii", 64, 0) + struct.pack("<i", 5000) + bytes(52)
    )
    text = openmetrics(metrics_dir)
    assert f'http_requests_total{{method="GET",route="{ROUTE}",status="200"}} 3.0' in text
    assert fault_count("multiprocess", "unreadable_file") == 1


def test_an_exemplar_file_that_cannot_be_read_leaves_the_sums_served(metrics_dir: Path) -> None:
    run_worker(metrics_dir, "ok", 2)
    (metrics_dir / "corrstack_exemplars_424242.bin").mkdir()  # open() fails on it
    text = openmetrics(metrics_dir)
    assert f'http_requests_total{{method="GET",route="{ROUTE}",status="200"}} 2.0' in text
    assert '# {request_id="ok-' in text


# --- The exemplar file --------------------------------------------------------------------------


def _key(le: str, route: str = ROUTE) -> bytes:
    labels = {"method": "GET", "route": route, "le": le}
    return bucket_key("http_request_duration_seconds_bucket", labels)


def test_an_exemplar_file_is_allocated_in_full(metrics_dir: Path) -> None:
    store = ExemplarFile.create(str(metrics_dir), pid=4242)
    path = metrics_dir / "corrstack_exemplars_4242.bin"
    assert path.stat().st_size == exemplar_store.FILE_BYTES
    assert path.stat().st_blocks * 512 >= exemplar_store.FILE_BYTES  # not sparse
    store.close()


def test_the_latest_exemplar_per_bucket_wins_across_files(metrics_dir: Path) -> None:
    older, newer = (
        ExemplarFile.create(str(metrics_dir), 1),
        ExemplarFile.create(str(metrics_dir), 2),
    )
    assert older.record(_key("0.1"), 0.07, {"request_id": "old"})
    assert newer.record(_key("0.1"), 0.08, {"request_id": "new"})
    assert older.record(_key("0.5"), 0.3, {"request_id": "only"})
    found = read_exemplars(str(metrics_dir))
    labels = (("le", "0.1"), ("method", "GET"), ("route", ROUTE))
    assert found[("http_request_duration_seconds_bucket", labels)].labels == {"request_id": "new"}
    assert found[("http_request_duration_seconds_bucket", labels)].value == 0.08
    assert len(found) == 2


def test_a_half_written_slot_is_never_read(metrics_dir: Path) -> None:
    store = ExemplarFile.create(str(metrics_dir), 7)
    store.record(_key("0.1"), 0.05, {"request_id": "whole"})
    store.record(_key("0.25"), 0.2, {"request_id": "torn"})
    path = metrics_dir / "corrstack_exemplars_7.bin"
    data = bytearray(path.read_bytes())
    second_slot = 2 * exemplar_store.SLOT_BYTES
    data[second_slot + 30 : second_slot + 34] = b"XXXX"  # as if read in the middle of a write
    path.write_bytes(bytes(data))
    found = read_exemplars(str(metrics_dir))
    assert [e.labels["request_id"] for e in found.values()] == ["whole"]


def test_exemplars_beyond_the_bounds_are_not_kept(metrics_dir: Path) -> None:
    store = ExemplarFile.create(str(metrics_dir), 8)
    assert not store.record(_key("0.1"), 0.05, {"request_id": "x" * 130})  # > 128 characters
    assert not store.record(_key("0.1", route="/" + "r" * 600), 0.05, {"request_id": "r"})
    for n in range(exemplar_store.SLOTS):
        assert store.record(_key(str(n)), 0.05, {"request_id": f"r{n}"})
    assert not store.record(_key("one-more"), 0.05, {"request_id": "r"})  # every slot taken
    assert len(read_exemplars(str(metrics_dir))) == exemplar_store.SLOTS


# --- The directory, checked when a worker starts ------------------------------------------------


def test_a_missing_directory_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(MultiprocessDirectoryError, match="is not a directory"):
        prepare_directory(str(tmp_path / "nowhere"), "api")


def test_a_foreign_directory_fails_at_startup_naming_its_files(metrics_dir: Path) -> None:
    (metrics_dir / "notes.txt").write_text("not metrics")
    with pytest.raises(MultiprocessDirectoryError, match=r"'notes\.txt'"):
        prepare_directory(str(metrics_dir), "api")


def test_a_directory_another_running_server_uses_fails_at_startup(metrics_dir: Path) -> None:
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)  # its own process group
    try:
        started = multiprocess._group_started(other.pid)
        marker = {"run": f"{other.pid}:{started}", "service": "billing"}
        (metrics_dir / "corrstack.run").write_text(json.dumps(marker))
        with pytest.raises(MultiprocessDirectoryError, match=r"another running server.*'billing'"):
            prepare_directory(str(metrics_dir), "api")
    finally:
        other.kill()
        other.wait()


def test_runs_are_told_apart_when_the_process_groups_leader_has_exited(tmp_path: Path) -> None:
    # A server started by a shell that exited (`sh -c 'uvicorn … &'`): its process group
    # outlives the leader, and the run must still be known, or stale files would stay.
    out = tmp_path / "identity"
    script = "from instrumentation import multiprocess; print(multiprocess._run_identity())"
    subprocess.run(
        ["setsid", "sh", "-c", f'sleep 0.3; "{sys.executable}" -c "{script}" > "{out}" &'],
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        timeout=30,
    )  # returns at once: the leader, sh, is gone before Python asks
    deadline = time.monotonic() + 30
    while not out.exists() or not out.read_text().strip():
        assert time.monotonic() < deadline, "the child never wrote its run identity"
        time.sleep(0.05)
    group, _, started = out.read_text().strip().partition(":")
    assert group.isdigit() and started.isdigit(), out.read_text()


def test_an_earlier_runs_files_are_removed_at_startup(metrics_dir: Path, log_capture) -> None:
    run_worker(metrics_dir, "earlier", 3)
    # That worker's run is over: its group's leader is gone.
    (metrics_dir / "corrstack.run").write_text(json.dumps({"run": "999999:1", "service": "api"}))
    prepare_directory(str(metrics_dir), "api")
    assert 'route="/api/items' not in openmetrics(metrics_dir)
    [warning] = [r for r in log_capture.records if r["logger"] == "corrstack.multiprocess"]
    assert warning["level"] == "WARNING" and warning["files_removed"] >= 3


def test_a_respawned_worker_keeps_the_dead_ones_counts(metrics_dir: Path) -> None:
    # Same run (this process group), one worker dead: its counts stay, its exemplars go.
    prepare_directory(str(metrics_dir), "api")
    run_worker(metrics_dir, "dead", 4)
    assert len(list(metrics_dir.glob("corrstack_exemplars_*.bin"))) == 2
    prepare_directory(str(metrics_dir), "api")
    assert [p.name for p in metrics_dir.glob("corrstack_exemplars_*.bin")] == [
        f"corrstack_exemplars_{os.getpid()}.bin"
    ]
    assert f'route="{ROUTE}",status="200"}} 4.0' in openmetrics(metrics_dir)


def test_the_variable_set_after_prometheus_client_was_imported_fails_loudly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(MultiprocessDirectoryError, match="imported before"):
        multiprocess.multiprocess_directory()


def test_an_empty_variable_fails_at_startup_not_with_files_in_the_working_directory(
    tmp_path: Path,
) -> None:
    # prometheus_client turns multiprocess mode on when the variable merely exists.
    done = subprocess.run(
        [sys.executable, "-c", "import tests.apps.workers_app"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": "", "LOG_FILE": os.devnull},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert b"PROMETHEUS_MULTIPROC_DIR is set but empty" in done.stderr, done.stderr[-2000:]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[callable]:
    """Mount a real tmpfs (root only); CI, where it must work, fails instead of skipping."""
    mounted: list[Path] = []

    def mount(size: str, *, read_only: bool = False) -> Path:
        target = tmp_path / f"tmpfs{len(mounted)}"
        target.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True
        )
        if done.returncode != 0:
            message = f"cannot mount a tmpfs: {done.stderr.decode().strip()}"
            if os.environ.get("CORRSTACK_REQUIRE_BINARIES") == "1":
                pytest.fail(message)
            pytest.skip(message)
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_an_unwritable_directory_fails_at_startup(tmpfs) -> None:
    directory = tmpfs("64k", read_only=True)
    with pytest.raises(MultiprocessDirectoryError, match="cannot be written"):
        prepare_directory(str(directory), "api")


def test_a_full_disk_fails_at_startup_not_with_a_crash_later(tmpfs) -> None:
    directory = tmpfs("512k")  # less than a worker's files
    with pytest.raises(MultiprocessDirectoryError, match="No space left on device"):
        prepare_directory(str(directory), "api")


def test_a_server_on_a_full_disk_exits_with_the_reason(tmpfs, tmp_path: Path) -> None:
    directory = tmpfs("512k")
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "tests.apps.workers_app:app", "--port", "0"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "LOG_FILE": os.devnull},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode != 0
    assert b"MultiprocessDirectoryError" in done.stderr and b"No space left" in done.stderr


# --- Workers forked from a master that imported the app (gunicorn --preload) --------------------


@pytest.mark.integration
def test_workers_forked_after_the_app_was_imported_keep_their_own_ids_and_exemplars(
    metrics_dir: Path, tmp_path: Path
) -> None:
    port, log_file = free_port(), tmp_path / "api.log"
    cmd = [
        *("gunicorn", "-c", "docs/examples/gunicorn.conf.py", "--preload", "-w", "3"),
        *("--bind", f"127.0.0.1:{port}", "--control-socket", str(tmp_path / "gunicorn.ctl")),
        "tests.apps.workers_app:app",
    ]
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "LOG_FILE": str(log_file)}
    root = Path(__file__).resolve().parent.parent
    with running(cmd, log_path=tmp_path / "gunicorn.out", env=env, cwd=root):
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/metrics")

        def get(n: int) -> int:
            # A connection each, so the workers share the requests.
            response = httpx.get(f"{base}/api/items/{n}", headers={"X-Correlation-ID": f"p-{n}"})
            return int(response.json()["pid"])

        with ThreadPoolExecutor(6) as pool:
            pids = set(pool.map(get, range(120)))
        text = httpx.get(f"{base}/metrics", headers={"Accept": OPENMETRICS}).text
        # Each forked worker made its own exemplar file on first use (gone once it exits).
        exemplar_files = {p.name for p in metrics_dir.glob("corrstack_exemplars_*.bin")}
    assert len(pids) >= 2
    assert {f"corrstack_exemplars_{pid}.bin" for pid in pids} <= exemplar_files
    assert f'http_requests_total{{method="GET",route="{ROUTE}",status="200"}} 120.0' in text
    buckets = sample_lines(text, "http_request_duration_seconds_bucket")
    assert any('# {request_id="p-' in line for line in buckets), text
    boot_ids: dict[str, set[int]] = {}
    for line in log_file.read_text().splitlines():
        record = json.loads(line)
        if record["logger"] == "corrstack.access" and record.get("route") == ROUTE:
            boot_ids.setdefault(record["boot_id"], set()).add(record["seq"])
    assert len(boot_ids) == len(pids)  # one per worker, none inherited from the master


# --- Several workers writing one stdout pipe (a container's log) --------------------------------


def test_workers_sharing_a_stdout_pipe_never_tear_a_line() -> None:
    # A pipe keeps a write whole only up to PIPE_BUF (4 KiB); batched writes are cut there, at
    # line ends. The reader is slower than the writers, so the pipe is full and they block.
    writer = textwrap.dedent(
        """
        import logging, sys
        from instrumentation import flush_logging, setup_logging
        setup_logging(service="w")
        log = logging.getLogger("w")
        for n in range(3000):
            log.info("line %d %s", n, "x" * 300, extra={"worker": sys.argv[1]})
        flush_logging()
        """
    )
    read_end, write_end = os.pipe()
    root = Path(__file__).resolve().parent.parent
    writers = [
        subprocess.Popen([sys.executable, "-c", writer, str(n)], stdout=write_end, cwd=root)
        for n in range(3)
    ]
    os.close(write_end)
    received = bytearray()
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read1(65536):
            received += chunk
            time.sleep(0.001)
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    torn = []
    counts: dict[str, int] = {}
    for line in bytes(received).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            torn.append(line[:80])
            continue
        if record["logger"] == "w":
            counts[record["worker"]] = counts.get(record["worker"], 0) + 1
    assert torn == []
    assert counts == {"0": 3000, "1": 3000, "2": 3000}
