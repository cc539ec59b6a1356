"""Smoke run of `python -m benchmarks`: every app and formatter measured, every figure positive.

Timings are never compared here — on a shared 2-core CI machine they are noise — only that the
benchmark runs end to end and reports what it promises. The targets are checked by a full run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import tracing_check
from benchmarks.apps import APPS, build
from benchmarks.http_load import parse_wrk
from benchmarks.record_worker import FORMATTERS
from benchmarks.report import GC_FIGURES, HTTP_GC_FIGURES, http_summary, markdown
from benchmarks.served import CollectorWatch

ROOT = Path(__file__).resolve().parent.parent


def run_benchmarks(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    out, table = tmp_path / "results.json", tmp_path / "results.md"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)]
    subprocess.run(
        [*command, "--markdown", str(table), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.read_text()), table.read_text()


def number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


MULTIPROCESS_APPS = {
    "bare",
    "corrstack[multiprocess]",
    "prometheus_fastapi_instrumentator[multiprocess]",
}
PEER = "prometheus_fastapi_instrumentator"
MULTIPROCESS_TARGET = (
    "multiprocess-mode overhead ÷ prometheus-fastapi-instrumentator's in that mode"
)


def test_per_request_and_record_parts_measure_every_app_and_formatter(tmp_path: Path) -> None:
    results, table = run_benchmarks(
        tmp_path,
        "--parts", "inprocess,multiprocess,records",
        "--rounds", "1",
        "--record-rounds", "2",
        "--requests", "200",
        "--records", "500",
        "--gc-requests", "50",
    )  # fmt: skip
    apps = results["inprocess"]["apps"]
    multiprocess = results["multiprocess"]["apps"]
    formatters = results["records"]["formatters"]
    assert set(apps) == set(APPS)
    assert set(multiprocess) == MULTIPROCESS_APPS
    assert set(formatters) == set(FORMATTERS)
    assert {len(formatter["rounds"]) for formatter in formatters.values()} == {2}
    figures = {
        (name, key): app[key]
        for name, app in [*apps.items(), *multiprocess.items()]
        for key in ("us_per_request", "wall_us_per_request")
    } | {
        (name, key): formatter[key]
        for name, formatter in formatters.items()
        for key in ("us_per_record", "wall_us_per_record")
    }
    assert all(positive(value) for value in figures.values()), figures
    assert all(math.isfinite(app["overhead_us"]) for app in apps.values())
    # One interleaved set: the multiprocess-mode overheads are over the same bare measurement.
    assert multiprocess["bare"]["rounds"] == apps["bare"]["rounds"]
    for name in MULTIPROCESS_APPS - {"bare"}:
        alone = apps[name.removesuffix("[multiprocess]")]["overhead_us"]
        assert multiprocess[name]["single_process_overhead_us"] == alone
        assert math.isfinite(multiprocess[name]["added_by_multiprocess_us"])
    # corrstack next to OpenTelemetry, from the same medians as the table's overheads.
    beside = results["inprocess"]["beside_opentelemetry"]
    assert beside["corrstack_overhead_us"] == apps["corrstack"]["overhead_us"]
    assert beside["opentelemetry_overhead_us"] == apps["opentelemetry"]["overhead_us"]
    added = (
        apps["corrstack_opentelemetry"]["us_per_request"] - apps["opentelemetry"]["us_per_request"]
    )
    assert beside["corrstack_added_to_opentelemetry_us"] == pytest.approx(added)
    assert beside["corrstack_added_to_opentelemetry_by_round_us"] == [pytest.approx(added)]
    # One round of 200 requests is noise: corrstack's overhead may come out at or below zero,
    # and then there is no ratio to it (the report writes "–"), never a made-up one.
    ratio = beside["added_to_opentelemetry_vs_alone"]
    if beside["corrstack_overhead_us"] > 0:
        assert ratio == pytest.approx(added / beside["corrstack_overhead_us"])
    else:
        assert ratio is None
    assert "### Beside OpenTelemetry, in-process" in table
    # GC and allocations per 10 000 requests, from an untimed loop, with bare's beside them.
    assert results["meta"]["settings"]["gc_requests"] == 50
    for name, app in apps.items():
        gc_figures = app["per_10000_requests"]
        assert set(GC_FIGURES) <= set(gc_figures)
        bare = apps["bare"]["per_10000_requests"]
        assert gc_figures["bare"] == {key: bare[key] for key in GC_FIGURES}
        for key in GC_FIGURES:
            assert number(gc_figures[key]) and number(gc_figures["bare"][key]), (name, key)
            difference = gc_figures[key] - gc_figures["bare"][key]
            assert gc_figures["minus_bare"][key] == pytest.approx(difference)
        assert all(number(app["rounds"][0][key]) for key in GC_FIGURES)
    assert "### GC and allocations per 10 000 requests" in table
    verdicts = {target["name"]: target["verdict"] for target in results["targets"]}
    assert len(verdicts) == 7
    for name in (
        "HTTP req/s ÷ bare, at least the instrumentator's",
        "HTTP p99 ÷ bare, at most the instrumentator's",
    ):
        assert verdicts[name] == "n/a"  # the HTTP part did not run
    # A verdict wherever the peer's overhead came out positive; in 200 requests a round the
    # machine's scatter can put it at or below bare's, and the ratio is then undefined.
    for target, peer in (
        ("in-process overhead ÷ prometheus-fastapi-instrumentator's", apps[PEER]),
        (MULTIPROCESS_TARGET, multiprocess[f"{PEER}[multiprocess]"]),
    ):
        expected = {"PASS", "MISS"} if peer["overhead_us"] > 0 else {"n/a"}
        assert verdicts[target] in expected, (target, peer["overhead_us"])
    assert all(f"| {name} |" in table for name in [*APPS, *MULTIPROCESS_APPS, *FORMATTERS])


def test_multiprocess_part_alone_runs_each_measurement_in_a_directory_it_removes(
    tmp_path: Path,
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    results, _ = run_benchmarks(
        tmp_path, "--parts", "multiprocess", "--rounds", "1", "--requests", "200", env=env
    )
    assert set(results) == {"meta", "multiprocess", "targets"}
    apps = results["multiprocess"]["apps"]
    assert set(apps) == MULTIPROCESS_APPS
    ratio = apps["prometheus_fastapi_instrumentator[multiprocess]"]["corrstack_overhead_ratio"]
    verdicts = {target["name"]: target for target in results["targets"]}
    assert verdicts[MULTIPROCESS_TARGET]["value"] == ratio
    assert apps["corrstack[multiprocess]"]["single_process_overhead_us"] is None
    assert list(temporary.iterdir()) == []
    # No measurement used the inherited PROMETHEUS_MULTIPROC_DIR: each got a fresh one.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md", "tmp"]


@pytest.mark.parametrize(
    ("name", "directory_set", "refusal"),
    [
        ("corrstack[multiprocess]", False, "needs PROMETHEUS_MULTIPROC_DIR set"),
        ("corrstack", True, "single-process measurement but PROMETHEUS_MULTIPROC_DIR is set"),
        # An app that writes no metrics cannot pass for one in multiprocess mode.
        ("bare[multiprocess]", True, "not measuring multiprocess mode: no metrics file"),
    ],
)
def test_request_worker_refuses_a_mode_it_is_not_measuring(
    tmp_path: Path, name: str, directory_set: bool, refusal: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if directory_set:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.request_worker", name, "10", "1"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert refusal in done.stderr


@pytest.mark.parametrize(
    ("measured_as", "built", "refusal"),
    [
        # corrstack's figure is that of a process where OpenTelemetry is not set up.
        ("corrstack", "opentelemetry", "OpenTelemetry is set up in this process"),
        ("opentelemetry", "bare", "OpenTelemetry's middleware is not in the stack"),
        ("corrstack_opentelemetry", "opentelemetry", "CorrelationMiddleware is not once inside"),
    ],
)
def test_tracing_check_refuses_an_app_on_another_tracing_path(
    measured_as: str, built: str, refusal: str
) -> None:
    app = build(built)
    with pytest.raises(SystemExit, match=refusal):
        asyncio.run(tracing_check.verify(measured_as, app))


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
    collector = {(name, key): app[key] for name, app in apps.items() for key in HTTP_GC_FIGURES}
    assert all(math.isfinite(v) and v >= 0 for v in collector.values()), collector
    assert "### GC over HTTP (the uvicorn process during wrk" in markdown(results)


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


def test_http_summary_sets_corrstack_beside_opentelemetry_from_server_cpu() -> None:
    cpu = {"bare": [100, 110], "corrstack": [170, 180], "opentelemetry": [400, 390]}
    cpu["corrstack_opentelemetry"] = [480, 460]
    rounds = {
        name: [
            {"requests_per_second": 1e6 / us, "p99_ms": us / 10, "server_cpu_us_per_request": us}
            for us in values
        ]
        for name, values in cpu.items()
    }
    summary = http_summary(rounds)
    beside = summary["beside_opentelemetry"]
    assert beside["corrstack_overhead_us"] == 175 - 105
    assert beside["opentelemetry_overhead_us"] == 395 - 105
    assert beside["corrstack_added_to_opentelemetry_us"] == 470 - 395
    assert beside["corrstack_added_to_opentelemetry_by_round_us"] == [80, 70]
    assert beside["added_to_opentelemetry_vs_alone"] == pytest.approx(75 / 70)
    assert "### Beside OpenTelemetry, over HTTP" in markdown({"http": summary, "targets": []})
    del rounds["corrstack_opentelemetry"]
    assert "beside_opentelemetry" not in http_summary(rounds)


def test_the_collector_watch_counts_each_run_and_its_longest_since_the_last_snapshot() -> None:
    watch = CollectorWatch()
    gc.disable()  # no automatic run between the two snapshots
    gc.callbacks.append(watch)
    try:
        gc.collect()
        gc.collect(0)
        first = watch.snapshot()
        second = watch.snapshot()
    finally:
        gc.callbacks.remove(watch)
        gc.enable()
    assert (first["snapshot"], first["collections"], second["snapshot"]) == (1, [1, 0, 1], 2)
    assert first["seconds"][2] > 0 and first["longest_seconds"] >= first["seconds"][0] > 0
    assert (second["collections"], second["longest_seconds"]) == ([1, 0, 1], 0.0)


def test_the_http_tables_show_the_servers_collector_beside_bares() -> None:
    def result(gen2: float) -> dict[str, float]:
        return {
            "requests_per_second": 3000.0, "p99_ms": 20.0, "server_cpu_us_per_request": 250.0,
            "gc_gen0_collections": 12.0, "gc_gen1_collections": 1.0,
            "gc_gen2_collections": gen2, "gc_ms": 3.5, "gc_longest_ms": 41.0,
        }  # fmt: skip

    summary = http_summary({"bare": [result(0.0)] * 3, "corrstack": [result(2.0)] * 3})
    table = markdown({"http": summary, "targets": []})
    assert "| bare | 12 | 1.0 | 0.0 | 3.5 | 41.0 |" in table
    assert "| corrstack | 12 | 1.0 | 2.0 | 3.5 | 41.0 |" in table
