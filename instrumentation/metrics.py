"""The metrics of DESIGN.md, created once per registry.

`request_id`, `trace_id` and `user_id` are never labels: they travel as exemplars. With
PROMETHEUS_MULTIPROC_DIR set they are written to the shared files (`instrumentation.multiprocess`),
the in-progress gauge summed over live workers, the exemplars beside them.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from instrumentation.multiprocess import multiprocess_directory
from instrumentation.shared_metrics import SharedHistogramChild
from instrumentation.vocabulary import LATENCY_BUCKETS, OPERATION_BUCKETS, TASK_BUCKETS


class HistogramChild(Protocol):
    """A histogram child that keeps an exemplar, in one process or in multiprocess mode."""

    def observe(self, amount: float, exemplar: Mapping[str, str] | None = None) -> None: ...


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

    _shared_children: dict[tuple[int, tuple[str, ...]], SharedHistogramChild] = field(
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

    def histogram_child(self, histogram: Histogram, *labelvalues: str) -> HistogramChild:
        """`histogram.labels(*labelvalues)`, whose `observe(value, exemplar)` keeps the
        exemplar in multiprocess mode too.

        >>> metrics.histogram_child(metrics.http_request_duration_seconds, "GET", "/").observe(
        ...     0.05, {"request_id": "r1"})
        """
        child: Any = histogram.labels(*labelvalues)
        if not self.multiprocess:
            return child  # type: ignore[no-any-return]
        key = (id(histogram), labelvalues)
        shared = self._shared_children.get(key)
        if shared is None:
            name, labelnames, buckets = self._buckets[id(histogram)]
            labels = dict(zip(labelnames, labelvalues, strict=True))
            shared = self._shared_children[key] = SharedHistogramChild(child, name, labels, buckets)
        return shared


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
