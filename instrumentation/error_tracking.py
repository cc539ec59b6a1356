"""Error tracking: count errors per `error_type:operation` in sliding windows, alert on patterns.

An `ErrorTracker` belongs to one service: its counts go to one registry and its alerts carry
its `service` and `environment`. Each runtime has one (`instrumentation.runtime`); handlers use
`instrumentation.error_tracker`, which tracks with the runtime of the request being served:

>>> from instrumentation import error_tracker
>>> try:
...     call_model()
... except TimeoutError as error:
...     error_tracker.track(error, operation="call_model", severity="critical")
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prometheus_client import CollectorRegistry

from instrumentation.alert_sender import AlertSender
from instrumentation.context import current_context
from instrumentation.error_fields import error_fields, error_summary, safe_str
from instrumentation.faults import report_fault
from instrumentation.log_filters import mark_logged
from instrumentation.logger import get_logger
from instrumentation.metrics import metrics_for
from instrumentation.redaction import redact_text
from instrumentation.sanitize import clean_text
from instrumentation.settings import bounded_float, bounded_int, env, http_url, safe_name
from instrumentation.vocabulary import ERROR_PATTERN_ALERT, RUNBOOK_URL_BASE, runbook_url

Severity = Literal["warning", "error", "critical"]
_log = get_logger("corrstack.errors")
_MAX_PATTERNS = 1000


@dataclass(frozen=True)
class Thresholds:
    """When a pattern becomes an alert: `count` errors within `window` seconds."""

    count: int = 10
    window: float = 3600.0
    critical_count: int = 3
    critical_window: float = 600.0
    cooldown: float = 900.0

    def __post_init__(self) -> None:
        for name, low, high in _LIMITS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"error alert {name} must be a number, not {value!r}")
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"error alert {name}={value!r} is not in [{low:g}, {high:g}]")

    @classmethod
    def from_env(cls) -> Thresholds:
        """From `ERROR_ALERT_*`; a malformed or out-of-range value raises ValueError naming
        the variable."""
        values: dict[str, Any] = {}
        for variable, (name, low, high) in zip(_VARIABLES, _LIMITS, strict=True):
            raw = env(variable)
            if raw is None:
                continue
            if name in ("count", "critical_count"):
                values[name] = bounded_int(variable, raw, int(low), int(high))
            else:
                values[name] = bounded_float(variable, raw, low, high)
        return cls(**values)


_WEEK = 7 * 24 * 3600.0
# (field, lowest, highest): counts from 1 to a million, windows up to a week, cooldown too.
_LIMITS = (
    ("count", 1, 1_000_000),
    ("window", 1.0, _WEEK),
    ("critical_count", 1, 1_000_000),
    ("critical_window", 1.0, _WEEK),
    ("cooldown", 0.0, _WEEK),
)
_VARIABLES = (
    "ERROR_ALERT_THRESHOLD",
    "ERROR_ALERT_WINDOW_SECONDS",
    "ERROR_ALERT_CRITICAL_THRESHOLD",
    "ERROR_ALERT_CRITICAL_WINDOW_SECONDS",
    "ERROR_ALERT_COOLDOWN_SECONDS",
)


class _Pattern:
    """The latest error times of one `error_type:operation`.

    Only as many as a threshold needs are kept: "N within the window" holds exactly when the
    oldest of the last N is within it, so memory does not grow with the error rate.
    """

    __slots__ = ("critical", "errors", "last_alert")

    def __init__(self, thresholds: Thresholds) -> None:
        self.errors: deque[float] = deque(maxlen=thresholds.count)
        self.critical: deque[float] = deque(maxlen=thresholds.critical_count)
        self.last_alert = float("-inf")


def _count_within(times: deque[float], now: float, window: float) -> int:
    while times and times[0] <= now - window:
        times.popleft()
    return len(times)


class ErrorTracker:
    """Counts, logs and alerts on the errors of one service; never blocks or fails the caller.

    Errors are counted in `app_errors_total` of `registry` (default: prometheus_client's global
    one); alerts carry `service` and `environment` as labels. `alertmanager_url` (default: env
    `ALERTMANAGER_URL`) and the thresholds (default: env `ERROR_ALERT_*`, else 10 errors in an
    hour or 3 critical in 10 minutes) are read on first use.

    >>> tracker = ErrorTracker(service="api", registry=registry, thresholds=Thresholds(count=3))
    >>> tracker.track(KeyError("user"), operation="lookup")
    False
    """

    def __init__(
        self,
        *,
        service: str = "unknown",
        environment: str = "development",
        registry: CollectorRegistry | None = None,
        alertmanager_url: str | None = None,
        thresholds: Thresholds | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = safe_name("service", service)
        self.environment = safe_name("environment", environment)
        self._metrics = metrics_for(registry)
        self._url = alertmanager_url
        self._thresholds = thresholds
        self._clock = clock
        self._patterns: OrderedDict[tuple[str, str], _Pattern] = OrderedDict()
        self._lock = threading.Lock()
        self._sender: AlertSender | None = None
        self._runbook_url = runbook_url(ERROR_PATTERN_ALERT)
        self._configured = False

    def configure(self) -> None:
        """Read the environment now; raises ValueError naming the variable on a malformed
        `ERROR_ALERT_*`, `ALERTMANAGER_URL` or `RUNBOOK_URL_BASE`.

        `instrument_app()` calls this at startup, so a typo fails loudly there. Called lazily
        from a request instead, a bad value is counted as a fault and alerting stays off.
        """
        if self._configured:
            return
        thresholds = self._thresholds or Thresholds.from_env()
        url = self._url if self._url is not None else env("ALERTMANAGER_URL") or ""
        if url:
            http_url("ALERTMANAGER_URL", url)
        runbook = http_url("RUNBOOK_URL_BASE", env("RUNBOOK_URL_BASE") or RUNBOOK_URL_BASE)
        self._thresholds = thresholds
        self._runbook_url = runbook_url(ERROR_PATTERN_ALERT, runbook)
        self._sender = AlertSender(url, registry=self._metrics.registry) if url else None
        self._configured = True

    def _configure(self) -> None:
        if self._configured:
            return
        try:
            self.configure()
        except ValueError as error:
            report_fault("error_tracker", "invalid_setting", error_summary(error))
            self._thresholds = self._thresholds or Thresholds()
            self._runbook_url = runbook_url(ERROR_PATTERN_ALERT)
            self._sender = None
            self._configured = True

    def flush_alerts(self, timeout: float = 5.0) -> bool:
        """Wait up to `timeout` seconds until every queued alert has been posted (or failed).

        True at once when alerting is off. For tests and shutdown:

        >>> error_tracker.track(error, "call_model", severity="critical")
        >>> assert error_tracker.flush_alerts(timeout=5)   # the receiver has it now
        """
        self._configure()
        return True if self._sender is None else self._sender.join(timeout)

    def retained_times(self) -> int:
        """How many error times the tracker holds: at most what its thresholds need, for at
        most 1000 patterns, whatever the error rate."""
        with self._lock:
            return sum(len(p.errors) + len(p.critical) for p in self._patterns.values())

    def track(
        self,
        error: BaseException | str,
        operation: str,
        severity: Severity = "error",
        *,
        stacklevel: int = 1,
        **fields: Any,
    ) -> bool:
        """Record one error; returns True when it triggered an alert.

        Keyword fields go on the "Error tracked" line; `stacklevel` is logging's (1: the line
        and function of whoever called this). Never raises: a bad argument (an unknown
        severity, an exception whose ``__str__`` raises) is counted in
        `instrumentation_faults_total` and the error still tracked.
        """
        try:
            return self._track(error, operation, severity, stacklevel, fields)
        except Exception as fault:
            report_fault("error_tracker", "track_failed", error_summary(fault))
            return False

    def _track(
        self,
        error: BaseException | str,
        operation: str,
        severity: str,
        stacklevel: int,
        fields: dict[str, Any],
    ) -> bool:
        self._configure()
        assert self._thresholds is not None
        described = error_fields(error)
        error_type = described["error_type"]
        operation = clean_text(redact_text(safe_str(operation, 256)), 64)
        if severity not in _LEVELS:
            report_fault("error_tracker", "invalid_severity", safe_str(severity, 64))
            severity = "error"
        self._metrics.app_errors_total.labels(error_type, operation, severity).inc()
        exc_info = (
            (type(error), error, error.__traceback__)
            if isinstance(error, BaseException) and error.__traceback__ is not None
            else None
        )
        line_fields = {
            **fields,
            **described,
            "operation": operation,
            "severity": severity,
            "exc_info": exc_info,
            "stacklevel": 2 + max(1, stacklevel) if type(stacklevel) is int else 3,
        }
        _log.log(_LEVELS[severity], "Error tracked", **line_fields)
        if exc_info is not None:
            mark_logged(exc_info[1])  # a re-raise reaching the middleware logs no second stack
        now = self._clock()
        with self._lock:
            pattern = self._pattern((error_type, operation), self._thresholds)
            pattern.errors.append(now)
            count = _count_within(pattern.errors, now, self._thresholds.window)
            if severity == "critical":
                pattern.critical.append(now)
            critical = _count_within(pattern.critical, now, self._thresholds.critical_window)
            crossed = count >= self._thresholds.count or critical >= self._thresholds.critical_count
            if not crossed or now - pattern.last_alert < self._thresholds.cooldown:
                return False
            pattern.last_alert = now
        alert_severity = "critical" if critical >= self._thresholds.critical_count else "warning"
        self._alert(
            error_type, operation, alert_severity, count, critical, described["error_message"]
        )
        return True

    def _pattern(self, key: tuple[str, str], thresholds: Thresholds) -> _Pattern:
        pattern = self._patterns.get(key)
        if pattern is None:
            pattern = self._patterns[key] = _Pattern(thresholds)
            if len(self._patterns) > _MAX_PATTERNS:
                self._patterns.popitem(last=False)
        else:
            self._patterns.move_to_end(key)
        return pattern

    def _alert(
        self,
        error_type: str,
        operation: str,
        severity: str,
        count: int,
        critical: int,
        message: str,
    ) -> None:
        assert self._thresholds is not None
        context = current_context()
        _log.warning(
            "Error pattern alert",
            error_type=error_type,
            operation=operation,
            severity=severity,
            errors_in_window=count,
            alerting=self._sender is not None,
        )
        if self._sender is None:
            return
        now = datetime.now(UTC)
        window_minutes = int(self._thresholds.window // 60)
        alert = {
            "labels": _redacted(
                {
                    "alertname": ERROR_PATTERN_ALERT,
                    "severity": severity,
                    "service": self.service,
                    "environment": self.environment,
                    "error_type": error_type,
                    "operation": operation,
                }
            ),
            "annotations": _redacted(
                {
                    "summary": f"{error_type} in {operation}: {count} errors",
                    "description": (
                        f"{count} {error_type} errors in {operation} within {window_minutes} min "
                        f"({critical} critical). Last: {message[:256]}"
                    ),
                    "request_id": context.get("request_id", ""),
                    "runbook_url": self._runbook_url,
                }
            ),
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(seconds=max(self._thresholds.cooldown, 300))).isoformat(),
        }
        self._sender.send([alert])


def _redacted(texts: dict[str, str]) -> dict[str, str]:
    """Label and annotation values as they may leave the process: bounded, clean, no secret."""
    return {name: redact_text(clean_text(value, 1024)) for name, value in texts.items()}


_LEVELS = {"warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}
