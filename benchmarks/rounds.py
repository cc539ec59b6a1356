"""Interleaved rounds: A B C … then again, each measurement in a fresh process.

Interleaving spreads slow drift of the machine (other load, thermal state) over every app
instead of charging it to whichever ran last; the start rotates each round for the same reason.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from benchmarks import multiprocess_mode
from benchmarks.http_load import PROJECT_ROOT
from benchmarks.worker_result import GC_REQUESTS, parse

T = TypeVar("T")


def choose_names(argument: str | None, known: Mapping[str, object]) -> list[str]:
    """The names a comma-separated option chose from `known` (all of them without one)."""
    if argument is None:
        return list(known)
    names = [name.strip() for name in argument.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"unknown: {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def interleaved(
    names: Sequence[str],
    rounds: int,
    measure: Callable[[str], T],
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[T]]:
    """`measure(name)` for every name, `rounds` times, in rotating A B C … order."""
    results: dict[str, list[T]] = {name: [] for name in names}
    for round_index in range(rounds):
        start = round_index % len(names)
        for name in [*names[start:], *names[:start]]:
            if progress is not None:
                progress(f"round {round_index + 1}/{rounds}: {name}")
            results[name].append(measure(name))
    return results


def run_worker(
    module: str,
    name: str,
    count: int,
    chunks: int,
    metrics_directory: str | None = None,
    extra: Sequence[str] = (),
) -> dict[str, float]:
    """Run `python -m <module> name count chunks *extra` in a fresh process; its CPU and wall µs
    per operation, and its GC and allocation figures per 10 000 requests if it reports them.
    With `metrics_directory`, the process starts with PROMETHEUS_MULTIPROC_DIR set to it;
    without, with the variable removed (`multiprocess_mode.child_environment`)."""
    done = subprocess.run(
        [sys.executable, "-m", module, name, str(count), str(chunks), *extra],
        cwd=PROJECT_ROOT,
        env=multiprocess_mode.child_environment(metrics_directory),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = parse(done.stdout)
    figures = {"cpu_us": float(result["us"]), "wall_us": float(result["wall_us"])}
    gc_figures = result.get("per_10000_requests", {})
    return figures | {key: float(value) for key, value in gc_figures.items()}


def run_request_worker(
    name: str, count: int, chunks: int, gc_requests: int = GC_REQUESTS
) -> dict[str, float]:
    """One per-request measurement, then `gc_requests` untimed requests counting collections and
    allocated blocks; a multiprocess one in a fresh metrics directory of its own, removed when
    the process has exited."""
    extra = [str(gc_requests)]
    if not multiprocess_mode.split(name)[1]:
        return run_worker("benchmarks.request_worker", name, count, chunks, extra=extra)
    with multiprocess_mode.metrics_directory() as directory:
        return run_worker("benchmarks.request_worker", name, count, chunks, directory, extra)
