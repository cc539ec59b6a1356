"""What a worker adds to prometheus_client's multiprocess mode: exemplars, the counts corrstack
keeps in memory, and a scrape that serves all of it for every worker.

- Histogram exemplars go to the worker's exemplar file (`instrumentation.exemplar_store`);
  a scrape attaches the most recent one of each bucket, over all workers, to the summed bucket.
- `log_records_total`, `log_records_dropped_total`, `instrumentation_faults_total` and
  `python_gc_*` are counted in memory, as in one process; a thread of each worker adds what
  they grew by to counters in the shared files once a second (and the answering worker just
  before a scrape), so they are sums over all workers, dead ones included, at most a second old.
- `process_*` is read from /proc for every live worker, each series with a `pid` label;
  `python_info` is the answering worker's.

>>> registry = shared_registry("/run/metrics")   # what /metrics serves in multiprocess mode
"""

from __future__ import annotations

import atexit
import gc
import glob
import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from instrumentation.accounting import accepted, drop_counts
from instrumentation.error_fields import error_summary
from instrumentation.exemplar_store import ExemplarFile, bucket_key, read_exemplars
from instrumentation.faults import fault_counts, report_fault
from instrumentation.multiprocess import (
    DB_PATTERN,
    allocate_worker_files,
    prepare_directory,
    process_alive,
)

FLUSH_SECONDS = 1.0

_state_lock = threading.Lock()
_directory: str | None = None
_exemplars: ExemplarFile | None = None
_exemplars_failed = False


def start_worker(directory: str, service: str) -> None:
    """Check the directory and allocate this worker's files (raises when it cannot be used),
    then start adding the worker's in-memory counts to the shared files."""
    global _directory, _exemplars, _exemplars_failed
    with _state_lock:
        if _directory == directory and _exemplars is not None:
            return
        _exemplars = prepare_directory(directory, service)
        _directory, _exemplars_failed = directory, False
    _counts.start()


def _exemplar_file() -> ExemplarFile | None:
    """This worker's exemplar file; a worker forked after `start_worker` allocates its own on
    first use, and one that cannot runs without exemplars (a counted fault)."""
    global _exemplars, _exemplars_failed
    if _exemplars is not None or _exemplars_failed or _directory is None:
        return _exemplars
    with _state_lock:
        if _exemplars is None and not _exemplars_failed:
            try:
                _exemplars = allocate_worker_files(_directory, os.getpid())
            except Exception as error:
                _exemplars_failed = True
                report_fault("exemplars", "no_file", error_summary(error))
    return _exemplars


class SharedHistogramChild:
    """A histogram child in multiprocess mode: counts in prometheus_client's files, the
    exemplar in this worker's exemplar file, for the bucket the value falls in.

    `Metrics.histogram_child` wraps it in a `SampledHistogramChild`: it is given an exemplar
    for a bucket at most once a second, and counts every other value without one.
    """

    __slots__ = ("_bounds", "_child", "_keys")

    def __init__(
        self, child: Any, name: str, labels: Mapping[str, str], bounds: Sequence[float]
    ) -> None:
        self._child = child
        self._bounds = (*bounds, float("inf"))
        self._keys = tuple(
            bucket_key(f"{name}_bucket", {**labels, "le": _le(b)}) for b in self._bounds
        )

    def observe(self, amount: float, exemplar: Mapping[str, str] | None = None) -> None:
        self._child.observe(amount)
        if exemplar and amount == amount:  # NaN lands in no bucket
            file = _exemplars if _exemplars is not None else _exemplar_file()
            if file is None:
                return
            try:
                kept = file.record(self._keys[bisect_left(self._bounds, amount)], amount, exemplar)
            except Exception as error:
                report_fault("exemplars", "write_failed", error_summary(error))
                return
            if not kept:
                report_fault("exemplars", "not_kept", "too long, or every slot taken")


def _le(bound: float) -> str:
    """The `le` label of a bucket, spelt as prometheus_client spells it."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


class _SharedCounts:
    """The in-memory counts, added to counters in the shared files (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, Any] = {}
        self._sent: dict[tuple[str, tuple[str, ...]], float] = {}
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def start(self) -> None:
        with self._lock:
            if not self._counters:
                self._counters = _shared_counters()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="corrstack-shared-counts", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._wake.wait(FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        if not self._counters:
            return
        try:
            with self._lock:
                for key, value in _current_counts():
                    delta = value - self._sent.get(key, 0.0)
                    if delta > 0:
                        name, labels = key
                        counter = self._counters[name]
                        (counter.labels(*labels) if labels else counter).inc(delta)
                        self._sent[key] = value
        except Exception as error:
            report_fault("shared_counts", "flush_failed", error_summary(error))

    def before_fork(self) -> None:
        self._lock.acquire()  # so no flush holds prometheus_client's lock across the fork

    def after_fork_in_parent(self) -> None:
        self._lock.release()

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        # The child's own counts start at zero, except the GC's, which it inherits.
        self._sent = {k: v for k, v in _current_counts() if k[0].startswith("python_gc")}
        if self._counters:
            self.start()


def _shared_counters() -> dict[str, Any]:
    def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Any:
        return Counter(name, documentation, labels, registry=None)

    return {
        "log_records": counter("log_records", "Log records accepted by corrstack handlers."),
        "log_records_dropped": counter(
            "log_records_dropped",
            "Log records a sink could not write (disk full, closed pipe, full queue...).",
            ["sink", "reason"],
        ),
        "instrumentation_faults": counter(
            "instrumentation_faults",
            "corrstack's own run-time faults (bad arguments, failing probes), by component.",
            ["component", "reason"],
        ),
        "python_gc_objects_collected": counter(
            "python_gc_objects_collected", "Objects collected during gc", ["generation"]
        ),
        "python_gc_objects_uncollectable": counter(
            "python_gc_objects_uncollectable",
            "Uncollectable objects found during GC",
            ["generation"],
        ),
        "python_gc_collections": counter(
            "python_gc_collections", "Number of times this generation was collected", ["generation"]
        ),
    }


def _current_counts() -> Iterator[tuple[tuple[str, tuple[str, ...]], float]]:
    yield ("log_records", ()), float(accepted())
    for labels, count in drop_counts().items():
        yield ("log_records_dropped", labels), float(count)
    for labels, count in fault_counts().items():
        yield ("instrumentation_faults", labels), float(count)
    for generation, stats in enumerate(gc.get_stats()):
        gen = (str(generation),)
        yield ("python_gc_objects_collected", gen), float(stats["collected"])
        yield ("python_gc_objects_uncollectable", gen), float(stats["uncollectable"])
        yield ("python_gc_collections", gen), float(stats["collections"])


_counts = _SharedCounts()


def _forget_in_child() -> None:
    global _exemplars, _exemplars_failed, _state_lock
    _state_lock = threading.Lock()
    _exemplars, _exemplars_failed = None, False  # the parent's file; the child gets its own
    _counts.after_fork_in_child()


atexit.register(_counts.flush)  # a worker's last second; a SIGKILL or uvicorn's SIGTERM loses it
os.register_at_fork(
    before=_counts.before_fork,
    after_in_parent=_counts.after_fork_in_parent,
    after_in_child=_forget_in_child,
)


class SharedMetricsCollector(Collector):
    """Every worker's metrics from `directory`, summed as prometheus_client does, with the
    exemplars and per-worker process metrics of the module's description."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._platform = PlatformCollector(registry=None)
        self._processes: dict[int, ProcessCollector] = {}

    def collect(self) -> Iterator[Metric]:
        _counts.flush()  # this worker's latest counts
        files, live = self._files()
        try:
            exemplars = read_exemplars(self._directory)
        except Exception as error:  # the sums are served without them
            report_fault("exemplars", "read_failed", error_summary(error))
            exemplars = {}
        for metric in _merge(files):
            if metric.type == "histogram" and exemplars:
                metric.samples = [
                    s._replace(exemplar=exemplars.get((s.name, tuple(sorted(s.labels.items())))))
                    if s.name.endswith("_bucket")
                    else s
                    for s in metric.samples
                ]
            yield metric
        yield from self._process_metrics(live)
        yield from self._platform.collect()

    def _files(self) -> tuple[list[str], list[int]]:
        """The `.db` files to sum (a live gauge of an exited process left out), live pids."""
        files, live = [], set()
        alive: dict[int, bool] = {}
        for path in glob.glob(os.path.join(glob.escape(self._directory), "*.db")):
            match = DB_PATTERN.match(os.path.basename(path))
            if match is None:
                continue
            kind, pid = match.group(1), int(match.group(2))
            if pid not in alive:
                alive[pid] = process_alive(pid)
            if alive[pid]:
                live.add(pid)
            elif kind.startswith("gauge_live"):
                continue
            files.append(path)
        return files, sorted(live)

    def _process_metrics(self, pids: Iterable[int]) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        wanted = set(pids)
        for gone in set(self._processes) - wanted:
            del self._processes[gone]
        for pid in sorted(wanted):
            collector = self._processes.get(pid)
            if collector is None:
                collector = self._processes[pid] = ProcessCollector(
                    pid=_constant(pid), registry=None
                )
            for family in collector.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from families.values()


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


def _merge(files: list[str]) -> Iterable[Metric]:
    """prometheus_client's sum of `files`; a file it cannot read is left out, and counted."""
    try:
        return list(MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]
    except Exception:
        pass  # find the file at fault; the others are summed without it
    readable = []
    for path in files:
        try:
            MultiProcessCollector.merge([path], accumulate=True)  # type: ignore[no-untyped-call]
        except FileNotFoundError:
            continue  # its process was marked dead meanwhile
        except Exception as error:
            report_fault("multiprocess", "unreadable_file", f"{path}: {error_summary(error)}")
            continue
        readable.append(path)
    try:
        return list(MultiProcessCollector.merge(readable, accumulate=True))  # type: ignore[no-untyped-call]
    except Exception as error:
        report_fault("multiprocess", "merge_failed", error_summary(error))
        return []


def shared_registry(directory: str) -> CollectorRegistry:
    """A registry serving every worker's metrics from `directory`, exemplars included."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SharedMetricsCollector(directory))
    return registry
