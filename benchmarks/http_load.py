"""One HTTP measurement: the app under uvicorn on 127.0.0.1, loaded by `wrk`.

uvicorn runs one process with `--no-access-log` for every app: the apps that write an access
line (corrstack, asgi-correlation-id) write it from their middleware, exactly as in-process.
The process counts its garbage collections (`benchmarks.served`), read before and after wrk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.apps import REQUEST_PATH
from benchmarks.multiprocess_mode import child_environment
from benchmarks.served import APP_ENV, GC_FILE_ENV

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_P99 = re.compile(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_COUNT = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_FAILURES = re.compile(r"^\s*(Non-2xx or 3xx responses|Socket errors):.*$", re.MULTILINE)


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p99_ms: float
    requests: int


@dataclass(frozen=True)
class HttpResult:
    requests_per_second: float
    p99_ms: float
    # CPU the uvicorn process spent per request: unlike req/s, other load on the machine does
    # not stretch it, so it is the steadier figure on a shared host.
    server_cpu_us_per_request: float
    # The uvicorn process's automatic collections during wrk, per 10 000 requests, the time they
    # took (ms per 10 000 requests) and the longest one (ms).
    gc_gen0_collections: float
    gc_gen1_collections: float
    gc_gen2_collections: float
    gc_ms: float
    gc_longest_ms: float


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def parse_wrk(output: str) -> WrkResult:
    """Req/s and the 99th percentile from `wrk --latency` output; failed requests are an error."""
    failures = _FAILURES.search(output)
    if failures:
        raise RuntimeError(f"wrk saw failed requests: {failures.group().strip()}")
    rate, p99, count = _RATE.search(output), _P99.search(output), _COUNT.search(output)
    if rate is None or p99 is None or count is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return WrkResult(
        float(rate.group(1)), float(p99.group(1)) * _UNIT_MS[p99.group(2)], int(count.group(1))
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode} before serving {url}")
        if _answers(url):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def collector_snapshot(process: subprocess.Popen[bytes], path: Path, timeout: float = 10.0) -> Any:
    """Signal the server for its collector figures (`benchmarks.served`) and read them."""
    before = json.loads(path.read_text())["snapshot"] if path.exists() else 0
    os.kill(process.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            figures = json.loads(path.read_text())
            if figures["snapshot"] > before:
                return figures
        time.sleep(0.02)
    raise TimeoutError(f"the server wrote no collector figures within {timeout} s")


def load_app(name: str, duration_s: int, connections: int = 50) -> HttpResult:
    """Serve app `name` with uvicorn, run `wrk -t1 -c50 -d<duration>s --latency`, stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}{REQUEST_PATH}"
    with tempfile.TemporaryDirectory(prefix="corrstack-bench-gc-") as directory:
        gc_file = Path(directory) / "collector.json"
        return _load(name, url, port, duration_s, connections, gc_file)


def _load(
    name: str, url: str, port: int, duration_s: int, connections: int, gc_file: Path
) -> HttpResult:
    environment = child_environment(None)  # one process: an inherited multiproc dir removed
    environment.update({APP_ENV: name, GC_FILE_ENV: str(gc_file)})
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "benchmarks.served:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=PROJECT_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_ready(server, url)
        gc_before = collector_snapshot(server, gc_file)
        cpu_before = process_cpu_seconds(server.pid)
        wrk = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", url],
            capture_output=True,
            text=True,
            timeout=duration_s + 30,
            check=True,
        )
        cpu = process_cpu_seconds(server.pid) - cpu_before
        gc_after = collector_snapshot(server, gc_file)
    finally:
        _stop(server)
    result = parse_wrk(wrk.stdout)
    scale = 10_000 / result.requests
    gen0, gen1, gen2 = (
        (end - start) * scale
        for start, end in zip(gc_before["collections"], gc_after["collections"], strict=True)
    )
    gc_seconds = sum(gc_after["seconds"]) - sum(gc_before["seconds"])
    return HttpResult(
        result.requests_per_second,
        result.p99_ms,
        cpu * 1e6 / result.requests,
        gc_gen0_collections=gen0,
        gc_gen1_collections=gen1,
        gc_gen2_collections=gen2,
        gc_ms=gc_seconds * 1000 * scale,
        gc_longest_ms=gc_after["longest_seconds"] * 1000,
    )
