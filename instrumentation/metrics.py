"""The metrics of DESIGN.md, created once per registry.

`request_id`, `trace_id` and `user_id` are never labels: they travel as exemplars.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from instrumentation.vocabulary import LATENCY_BUCKETS, OPERATION_BUCKETS


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

    def __post_init__(self) -> None:
        r = self.registry
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
