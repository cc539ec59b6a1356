"""The runtime: the service and environment corrstack writes under, the metrics of one registry
and an error tracker, in one object handed to what needs it.

`setup_logging()` builds the process's runtime; `instrument_app()` gives each app one (the
process's own unless the app was given another service or registry). CorrelationMiddleware
binds its app's runtime for every request, lifespan and websocket it serves, so business
events, timings and tracked errors made there land in that app's registry and the lines and
alerts carry its service. Outside them, the process's runtime is used.

>>> current_runtime().service          # in a request of instrument_app(app, service="api")
'api'
>>> current_runtime().metrics.registry.get_sample_value("business_events_total", {...})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from instrumentation.context import connection_var
from instrumentation.error_tracking import ErrorTracker, Severity
from instrumentation.metrics import Metrics, metrics_for


@dataclass(frozen=True, eq=False)
class Runtime:
    """A service's identity and where its metrics and error patterns go.

    >>> runtime = Runtime.create(service="api", environment="prod", registry=registry)
    >>> runtime.error_tracker.track(KeyError("k"), "lookup")  # counted in `registry`
    False
    """

    service: str
    environment: str
    metrics: Metrics
    error_tracker: ErrorTracker

    @classmethod
    def create(
        cls,
        service: str = "unknown",
        environment: str = "development",
        registry: CollectorRegistry | None = None,
    ) -> Runtime:
        """A runtime on `registry` (default: prometheus_client's global one) with an error
        tracker of its own, labelled with `service` and `environment`."""
        metrics = metrics_for(registry)
        tracker = ErrorTracker(service=service, environment=environment, registry=metrics.registry)
        return cls(tracker.service, tracker.environment, metrics, tracker)

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry


_process_runtime = Runtime.create()


def process_runtime() -> Runtime:
    """The runtime used outside every app's requests: `setup_logging()`'s."""
    return _process_runtime


def set_process_runtime(runtime: Runtime) -> Runtime:
    """Make `runtime` the process's; returns the one it replaces.

    `setup_logging()` calls this; so do `instrumentation.testing`'s helpers.
    """
    global _process_runtime
    previous, _process_runtime = _process_runtime, runtime
    return previous


def current_runtime() -> Runtime:
    """The runtime of the app whose request is being served, else the process's."""
    runtime = connection_var.get().runtime
    return _process_runtime if runtime is None else runtime


class CurrentErrorTracker:
    """`instrumentation.error_tracker`: tracks with the error tracker of `current_runtime()`.

    In a request of an instrumented app, the error is counted in that app's registry, its
    pattern is that app's and an alert carries its service; elsewhere the process's.

    >>> error_tracker.track(error, operation="call_model", severity="critical")
    """

    __slots__ = ()

    def track(
        self,
        error: BaseException | str,
        operation: str,
        severity: Severity = "error",
        *,
        stacklevel: int = 1,
        **fields: Any,
    ) -> bool:
        """`ErrorTracker.track` on the current runtime's tracker; True when it alerted."""
        tracker = current_runtime().error_tracker
        level = stacklevel + 1 if type(stacklevel) is int else 2  # this frame is not the caller
        return tracker.track(error, operation, severity, stacklevel=level, **fields)

    def configure(self) -> None:
        """Read the alerting settings of the current runtime's tracker now (see ErrorTracker)."""
        current_runtime().error_tracker.configure()

    def flush_alerts(self, timeout: float = 5.0) -> bool:
        """Wait for the alerts the current runtime's tracker has queued (see ErrorTracker)."""
        return current_runtime().error_tracker.flush_alerts(timeout)


error_tracker = CurrentErrorTracker()
