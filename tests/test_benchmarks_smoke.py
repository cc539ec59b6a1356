"""Smoke run of `python -m benchmarks`: every app and formatter measured, every figure positive.

Timings are never compared here — on a shared 2-core CI machine they are noise — only that the
benchmark runs end to end and reports what it promises. The targets are checked by a full run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.apps import APPS
from benchmarks.http_load import parse_wrk
from benchmarks.record_worker import FORMATTERS

ROOT = Path(__file__).resolve().parent.parent


def run_benchmarks(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out, table = tmp_path / "results.json", tmp_path / "results.md"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)]
    subprocess.run(
        [*command, "--markdown", str(table), *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.read_text()), table.read_text()


def positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_inprocess_and_record_parts_measure_every_app_and_formatter(tmp_path: Path) -> None:
    results, table = run_benchmarks(
        tmp_path,
        "--parts", "inprocess,records",
        "--rounds", "1",
        "--requests", "200",
        "--records", "500",
    )  # fmt: skip
    apps = results["inprocess"]["apps"]
    formatters = results["records"]["formatters"]
    assert set(apps) == set(APPS)
    assert set(formatters) == set(FORMATTERS)
    figures = {
        (name, key): app[key]
        for name, app in apps.items()
        for key in ("us_per_request", "wall_us_per_request")
    } | {
        (name, key): formatter[key]
        for name, formatter in formatters.items()
        for key in ("us_per_record", "wall_us_per_record")
    }
    assert all(positive(value) for value in figures.values()), figures
    assert all(math.isfinite(app["overhead_us"]) for app in apps.values())
    verdicts = {target["name"]: target["verdict"] for target in results["targets"]}
    assert len(verdicts) == 4 and "HTTP throughput ÷ bare" in verdicts
    assert verdicts["HTTP throughput ÷ bare"] == "n/a"  # the HTTP part did not run
    assert all(f"| {name} |" in table for name in [*APPS, *FORMATTERS])


@pytest.mark.integration
@pytest.mark.binary("wrk")
def test_http_part_loads_bare_and_corrstack_under_uvicorn(tmp_path: Path) -> None:
    results, _ = run_benchmarks(
        tmp_path, "--parts", "http", "--apps", "bare,corrstack", "--http-seconds", "1"
    )
    apps = results["http"]["apps"]
    assert set(apps) == {"bare", "corrstack"}
    figures = {
        (name, key): app[key]
        for name, app in apps.items()
        for key in (
            "requests_per_second",
            "p99_ms",
            "server_cpu_us_per_request",
            "throughput_vs_bare",
            "p99_vs_bare",
        )
    }
    assert all(positive(value) for value in figures.values()), figures


WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:8000/api/user/42/routine
  1 threads and 50 connections
  Latency Distribution
     50%    6.10ms
     75%    6.90ms
     90%    7.52ms
     99%  850.00us
  5021 requests in 1.00s, 0.91MB read
Requests/sec:   5012.34
Transfer/sec:    932.12KB
"""


def test_wrk_output_is_read_with_its_units() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests_per_second, result.p99_ms, result.requests) == (5012.34, 0.85, 5021)


def test_wrk_output_with_failed_requests_is_an_error() -> None:
    output = WRK_OUTPUT.replace("Requests/sec", "  Non-2xx or 3xx responses: 7\nRequests/sec")
    with pytest.raises(RuntimeError, match="Non-2xx"):
        parse_wrk(output)
