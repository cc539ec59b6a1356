"""The metrics of DESIGN.md, created once per registry.

`request_id`, `trace_id` and `user_id` are never labels: they travel as exemplars, kept for a
bucket at most once a second (`SampledHistogramChild`). With PROMETHEUS_MULTIPROC_DIR set they
are written to the shared files (`instrumentation.multiprocess`), the in-progress gauge summed
over live workers, the exemplars beside them.
"""

from __future__ import annotations

import math
import weakref
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from instrumentation.exemplar_store import exemplar_fits
from instrumentation.faults import report_fault
from instrumentation.multiprocess import multiprocess_directory
from instrumentation.shared_metrics import SharedHistogramChild
from instrumentation.vocabulary import LATENCY_BUCKETS, OPERATION_BUCKETS, TASK_BUCKETS

# A bucket of a histogram child keeps an exemplar at most once in this many seconds.
EXEMPLAR_INTERVAL_SECONDS = 1.0


class SampledHistogramChild:
    """A histogram child whose `observe(value, exemplar)` keeps the exemplar only when the
    value's bucket has not kept one for `EXEMPLAR_INTERVAL_SECONDS`; otherwise the value is
    counted alone.

    prometheus_client validates, timestamps and stores every exemplar it is given, about 2 µs
    a request (3 µs for the exemplar file of multiprocess mode); sampled, each bucket's exemplar
    at a scrape is still at most about a second older than the bucket's newest value. Threads
    racing for a due bucket may both keep theirs, and the later one wins, as without sampling.
    Labels longer than OpenMetrics allows are never kept (a counted fault), so `observe` does
    not raise for them.

    >>> child = metrics.histogram_child(metrics.http_request_duration_seconds, "GET", "/")
    >>> child.observe(0.05, {"request_id": "r1"})  # kept: the 0.05 bucket's first
    >>> child.observe(0.04, {"request_id": "r2"})  # the same bucket, the same second: counted
    """

    __slots__ = ("_bounds", "_clock", "_count", "_due", "_keep")

    def __init__(
        self,
        count: Callable[[float], None],
        keep: Callable[[float, Mapping[str, str]], None],
        bounds: Sequence[float],
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._count = count  # counts a value
        self._keep = keep  # counts a value and keeps its exemplar
        self._bounds = (*bounds, math.inf)
        self._due = [-math.inf] * len(self._bounds)  # when each bucket keeps one again
        self._clock = monotonic if clock is None else clock

    def observe(self, amount: float, exemplar: Mapping[str, str] | None = None) -> None:
        if exemplar and amount == amount:  # NaN lands in no bucket
            bucket = bisect_left(self._bounds, amount)  # the first bound >= amount, as `le`
            now = self._clock()
            if now >= self._due[bucket]:
                if exemplar_fits(exemplar):
                    self._due[bucket] = now + EXEMPLAR_INTERVAL_SECONDS
                    self._keep(amount, exemplar)
                    return
                report_fault("exemplars", "not_kept", "labels over 128 characters")
        self._count(amount)

    def forget_exemplar_times(self) -> None:
        """Let every bucket keep the next exemplar it is given."""
        self._due = [-math.inf] * len(self._bounds)


@dataclass(eq=False)
class Metrics:
    """Every corrstack metric, bound to one registry."""

    registry: CollectorRegistry
    http_requests_total: Counter = field(init=False)
    http_request_duration_seconds: Histogram = field(init=False)
    http_requests_in_progress: Gauge = field(init=False)
    app_errors_total: Counter = field(init=False)
    operation_duration_seconds: Histogram = field(init=False)
    business_events_total: Counter = field(init=False)
    api_cost_usd_total: Counter = field(init=False)
    error_alerts_total: Counter = field(init=False)
    websocket_connections_open: Gauge = field(init=False)
    websocket_connections_closed_total: Counter = field(init=False)
    task_duration_seconds: Histogram = field(init=False)
    multiprocess: bool = field(init=False)
    _buckets: dict[int, tuple[str, Sequence[str], Sequence[float]]] = field(init=False, repr=False)
    # Each histogram child once, so that its exemplars are sampled over every caller.
    _children: dict[tuple[int, tuple[str, ...]], SampledHistogramChild] = field(
        init=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.multiprocess = multiprocess_directory() is not None
        self.http_requests_total = Counter(
            "http_requests_total",
            "HTTP requests served, by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_request_duration_seconds = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration; exemplars carry request_id and trace_id.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests_in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being served.",
            ["method", "route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.app_errors_total = Counter(
            "app_errors_total",
            "Application errors tracked by the error tracker.",
            ["error_type", "operation", "severity"],
            registry=r,
        )
        self.operation_duration_seconds = Histogram(
            "operation_duration_seconds",
            "Duration of timed operations; exemplars carry request_id.",
            ["operation", "status"],
            buckets=OPERATION_BUCKETS,
            registry=r,
        )
        self.business_events_total = Counter(
            "business_events_total", "Business events, by type.", ["event_type"], registry=r
        )
        self.api_cost_usd_total = Counter(
            "api_cost_usd_total",
            "Cost of external API calls in US dollars.",
            ["endpoint", "model"],
            registry=r,
        )
        self.error_alerts_total = Counter(
            "error_alerts_total",
            "Error-pattern alerts for Alertmanager: sent, failed (unreachable, timeout, non-2xx) "
            "or dropped (queue full).",
            ["outcome"],
            registry=r,
        )
        self.websocket_connections_open = Gauge(
            "websocket_connections_open",
            "Websocket connections open, by route template.",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.websocket_connections_closed_total = Counter(
            "websocket_connections_closed_total",
            "Websocket connections closed, by route template and close code.",
            ["route", "code"],
            registry=r,
        )
        self.task_duration_seconds = Histogram(
            "task_duration_seconds",
            "Duration of task runs (Celery and other queues); exemplars carry request_id.",
            ["task_name", "status"],
            buckets=TASK_BUCKETS,
            registry=r,
        )
        self._buckets = {
            id(self.http_request_duration_seconds): (
                "http_request_duration_seconds",
                ("method", "route"),
                LATENCY_BUCKETS,
            ),
            id(self.operation_duration_seconds): (
                "operation_duration_seconds",
                ("operation", "status"),
                OPERATION_BUCKETS,
            ),
            id(self.task_duration_seconds): (
                "task_duration_seconds",
                ("task_name", "status"),
                TASK_BUCKETS,
            ),
        }

    def histogram_child(self, histogram: Histogram, *labelvalues: str) -> SampledHistogramChild:
        """`histogram.labels(*labelvalues)`, whose `observe(value, exemplar)` keeps an exemplar
        per bucket at most once a second (`SampledHistogramChild`), in multiprocess mode too.

        >>> metrics.histogram_child(metrics.http_request_duration_seconds, "GET", "/").observe(
        ...     0.05, {"request_id": "r1"})
        """
        key = (id(histogram), labelvalues)
        sampled = self._children.get(key)
        if sampled is None:
            sampled = self._children[key] = self._sampled_child(histogram, labelvalues)
        return sampled

    def forget_exemplar_times(self) -> None:
        """Let every bucket of every histogram child keep the next exemplar it is given, as in
        a fresh process (for `testing.reset`, since a registry's metrics outlive it)."""
        for child in list(self._children.values()):
            child.forget_exemplar_times()

    def _sampled_child(
        self, histogram: Histogram, labelvalues: tuple[str, ...]
    ) -> SampledHistogramChild:
        known = self._buckets.get(id(histogram))
        if known is None:
            raise ValueError(f"{histogram!r} is not one of this registry's corrstack histograms")
        name, labelnames, bounds = known
        child: Any = histogram.labels(*labelvalues)  # its observe() is typed for a dict only
        if not self.multiprocess:
            return SampledHistogramChild(child.observe, child.observe, bounds)
        labels = dict(zip(labelnames, labelvalues, strict=True))
        shared = SharedHistogramChild(child, name, labels, bounds)
        return SampledHistogramChild(child.observe, shared.observe, bounds)


_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, Metrics] = weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry | None = None) -> Metrics:
    """The metrics of `registry` (default: prometheus_client's global one), created on first use.

    Created once per registry, so two runtimes on the same registry share its collectors.
    """
    registry = REGISTRY if registry is None else registry
    metrics = _by_registry.get(registry)
    if metrics is None:
        metrics = _by_registry[registry] = Metrics(registry)
    return metrics
