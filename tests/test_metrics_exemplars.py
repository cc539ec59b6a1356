"""Exemplar sampling: each bucket of a histogram child keeps an exemplar at most once a second,
in one process and in multiprocess mode, for every histogram that carries them."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.openmetrics.exposition import generate_latest

import instrumentation.metrics as metrics_module
from instrumentation.faults import fault_count
from instrumentation.metrics import EXEMPLAR_INTERVAL_SECONDS, Metrics, metrics_for
from instrumentation.shared_metrics import shared_registry

# The label values of a child of each histogram with exemplars.
HISTOGRAMS = {
    "http_request_duration_seconds": {"method": "GET", "route": "/r"},
    "operation_duration_seconds": {"operation": "load", "status": "success"},
    "task_duration_seconds": {"task_name": "tasks.note", "status": "success"},
}
WALL_TIME = 1764000000.5


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock of every histogram child made from now on."""
    clock = Clock()
    monkeypatch.setattr(metrics_module, "monotonic", clock)
    return clock


def observe(metrics: Metrics, name: str, value: float, request_id: str) -> None:
    # A fresh look-up each time, as log_performance and the Celery signals do.
    child = metrics.histogram_child(getattr(metrics, name), *HISTOGRAMS[name].values())
    child.observe(value, {"request_id": request_id})


def bucket_lines(registry: CollectorRegistry, name: str) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if line.startswith(f"{name}_bucket{{")]


def exemplar_ids(registry: CollectorRegistry, name: str) -> list[str]:
    return [
        line.split('request_id="')[1].split('"')[0]
        for line in bucket_lines(registry, name)
        if "# {" in line
    ]


def bucket_line(registry: CollectorRegistry, name: str, le: str) -> str:
    """The OpenMetrics line of bucket `le` (labels sorted, as the exposition writes them)."""
    series = ",".join(f'{k}="{v}"' for k, v in sorted({**HISTOGRAMS[name], "le": le}.items()))
    [line] = [
        line
        for line in bucket_lines(registry, name)
        if line.startswith(f"{name}_bucket{{{series}}} ")
    ]
    return line


@pytest.mark.parametrize("name", HISTOGRAMS)
def test_a_bucket_keeps_an_exemplar_once_a_second_and_counts_every_value(
    name: str, registry: CollectorRegistry, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("prometheus_client.metrics.time.time", lambda: WALL_TIME)
    metrics = metrics_for(registry)
    le = "0.01" if name == "task_duration_seconds" else "0.005"
    observe(metrics, name, 0.004, "first")
    clock.now += EXEMPLAR_INTERVAL_SECONDS - 0.001
    observe(metrics, name, 0.0041, "within-the-second")
    within = bucket_line(registry, name, le).split("} ", 1)[1]
    clock.now += 0.001
    observe(metrics, name, 0.0042, "a-second-later")
    later = bucket_line(registry, name, le).split("} ", 1)[1]
    assert (within, later) == (
        f'2.0 # {{request_id="first"}} 0.004 {WALL_TIME}',
        f'3.0 # {{request_id="a-second-later"}} 0.0042 {WALL_TIME}',
    )


def test_each_bucket_and_each_child_samples_on_its_own(
    registry: CollectorRegistry, clock: Clock
) -> None:
    metrics = metrics_for(registry)
    histogram = metrics.http_request_duration_seconds
    metrics.histogram_child(histogram, "GET", "/a").observe(0.004, {"request_id": "a-fast"})
    metrics.histogram_child(histogram, "GET", "/a").observe(0.2, {"request_id": "a-slow"})
    metrics.histogram_child(histogram, "GET", "/b").observe(0.004, {"request_id": "b-fast"})
    assert sorted(exemplar_ids(registry, "http_request_duration_seconds")) == [
        "a-fast",
        "a-slow",
        "b-fast",
    ]


# Values at and around the bounds, the infinities: the exemplar goes to the bucket
# prometheus_client counts the value in.
EDGES = [0.005, 0.00500001, -1.0, 0.0, 10.0, 10.5, math.inf, -math.inf]


@pytest.mark.parametrize("value", EDGES)
def test_the_exemplar_is_on_the_bucket_the_value_is_counted_in(
    value: float, registry: CollectorRegistry, clock: Clock
) -> None:
    observe(metrics_for(registry), "http_request_duration_seconds", value, "edge")
    lines = bucket_lines(registry, "http_request_duration_seconds")
    counted = next(i for i, line in enumerate(lines) if line.split("} ")[1].startswith("1.0"))
    assert [i for i, line in enumerate(lines) if "# {" in line] == [counted]


def test_nan_is_summed_in_no_bucket_and_leaves_the_exemplar_to_the_next_value(
    registry: CollectorRegistry, clock: Clock
) -> None:
    metrics = metrics_for(registry)
    observe(metrics, "http_request_duration_seconds", math.nan, "nan")
    observe(metrics, "http_request_duration_seconds", 0.004, "next")
    route = HISTOGRAMS["http_request_duration_seconds"]
    sample = registry.get_sample_value
    assert (
        sample("http_request_duration_seconds_count", route),
        math.isnan(sample("http_request_duration_seconds_sum", route) or 0.0),
        exemplar_ids(registry, "http_request_duration_seconds"),
    ) == (1.0, True, ["next"])


def test_labels_over_the_openmetrics_bound_are_counted_without_an_exemplar_never_raised(
    registry: CollectorRegistry, clock: Clock
) -> None:
    metrics = metrics_for(registry)
    child = metrics.histogram_child(metrics.http_request_duration_seconds, "GET", "/r")
    child.observe(0.004, {"request_id": "x" * 119})  # 10 + 119 characters: one too many
    child.observe(0.003, {"request_id": "x" * 118})  # kept: the refused one took no turn
    route = HISTOGRAMS["http_request_duration_seconds"]
    assert (
        registry.get_sample_value("http_request_duration_seconds_count", route),
        exemplar_ids(registry, "http_request_duration_seconds"),
        fault_count("exemplars", "not_kept"),
    ) == (2.0, ["x" * 118], 1)


def test_forgetting_the_exemplar_times_lets_every_bucket_keep_its_next_one(
    registry: CollectorRegistry, clock: Clock
) -> None:
    metrics = metrics_for(registry)
    observe(metrics, "http_request_duration_seconds", 0.004, "before")
    metrics.forget_exemplar_times()
    observe(metrics, "http_request_duration_seconds", 0.003, "after")
    assert exemplar_ids(registry, "http_request_duration_seconds") == ["after"]


def test_a_histogram_of_another_registry_is_refused(registry: CollectorRegistry) -> None:
    other = Histogram("other_seconds", "Not corrstack's.", ["route"], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="not one of this registry's corrstack histograms"):
        metrics_for(registry).histogram_child(other, "/")


# --- multiprocess mode ------------------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys, time
    from instrumentation.metrics import EXEMPLAR_INTERVAL_SECONDS, metrics_for
    from instrumentation.shared_metrics import start_worker

    start_worker(sys.argv[1], "api")
    metrics = metrics_for()
    for n in range(5):
        child = metrics.histogram_child(metrics.http_request_duration_seconds, "GET", "/r")
        child.observe(0.004, {"request_id": f"s-{n}"})
    child.observe(0.2, {"request_id": "s-slow"})
    time.sleep(EXEMPLAR_INTERVAL_SECONDS)
    child.observe(0.2, {"request_id": "s-later"})
    """
)


def test_a_worker_keeps_an_exemplar_per_bucket_once_a_second(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    subprocess.run(
        [sys.executable, "-c", _WORKER, str(directory)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        timeout=60,
        capture_output=True,
    )
    registry = shared_registry(str(directory))
    route = 'method="GET",route="/r"'
    kept = {
        line.split("} ")[0] + "}": (line.split("} ")[1].split()[0], line.split('"')[-2])
        for line in bucket_lines(registry, "http_request_duration_seconds")
        if "# {" in line
    }
    assert kept == {
        f'http_request_duration_seconds_bucket{{le="0.005",{route}}}': ("5.0", "s-0"),
        f'http_request_duration_seconds_bucket{{le="0.25",{route}}}': ("7.0", "s-later"),
    }
