"""Every threshold, window, selector and SLO target the alert rules read, in one place.

Rule modules never hard-code a number: they read an `AlertConfig`. `DEFAULT` is what the stack
loads; `DRILL` shrinks windows and `for:` durations so a drill sees `HighErrorRate` fire within
seconds. A value that is missing or malformed raises `ConfigError` when the config is built
(`AlertConfig.validate()`), so a broken config never reaches a generated file.

The selectors below are built from `instrumentation.vocabulary`, the facts the whole stack
shares (quiet paths, the 5xx status, error log levels); runbook links are added by
`alert_rules.runbook_links` after every rule is built.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, fields
from typing import Any

from prometheus_client.utils import floatToGoString

from instrumentation.vocabulary import (
    EVERY_SERVICE_MATCHER,
    LATENCY_BUCKETS,
    SERVER_ERROR_MATCHER,
    loki_error_stream,
    quiet_paths_regex,
)

# Requests that count as user traffic: scrapes and probes would dilute error ratios.
USER_TRAFFIC = f'route!~"{quiet_paths_regex()}"'
SERVER_ERRORS = SERVER_ERROR_MATCHER
# Every service's ERROR and CRITICAL log lines (Loki).
ERROR_LINES = loki_error_stream(EVERY_SERVICE_MATCHER)
# `le` label values of http_request_duration_seconds, spelled as prometheus_client writes them
# (`1.0`, not `1`), by the function it writes them with.
LATENCY_BUCKET_LABELS: tuple[str, ...] = tuple(
    floatToGoString(bound)  # type: ignore[no-untyped-call]
    for bound in LATENCY_BUCKETS
)

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = (86400, 3600, 60, 1)


class ConfigError(ValueError):
    """A required alert-rule setting is missing or malformed."""


def duration_seconds(text: str) -> int:
    """Seconds in a Prometheus duration like `1h30m`; `duration_seconds("5m") == 300`."""
    match = _DURATION.match(text)
    if not text or match is None:
        raise ConfigError(f"not a Prometheus duration: {text!r}")
    return sum(
        int(part or 0) * unit for part, unit in zip(match.groups(), _UNIT_SECONDS, strict=True)
    )


def format_duration(seconds: int) -> str:
    """The shortest Prometheus duration for `seconds`; `format_duration(5400) == "1h30m"`."""
    if seconds <= 0:
        return "0s"
    parts = []
    for suffix, unit in zip("dhms", _UNIT_SECONDS, strict=True):
        count, seconds = divmod(seconds, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)


@dataclass(frozen=True)
class BurnWindow:
    """One multi-window, multi-burn-rate pair (Google SRE workbook, chapter 5)."""

    long: str
    short: str
    burn_rate: float
    severity: str
    for_: str


@dataclass(frozen=True)
class AlertConfig:
    """Settings for every generated rule; all fields are required."""

    error_rate_threshold: float
    error_rate_window: str
    error_rate_for: str
    # Below this many requests per second a few failures are noise, not an incident.
    error_rate_min_requests_per_second: float
    latency_quantile: float
    # A bucket bound of http_request_duration_seconds: the quantile is exact there, and the
    # promtool scenarios put requests in the buckets on either side of it.
    latency_threshold_seconds: float
    latency_window: str
    latency_for: str
    critical_error_count: float
    critical_error_window: str
    critical_error_for: str
    # CostAnomaly fires on either: the last hour at more than `cost_anomaly_factor` × the
    # hourly average of the day before it (once spend is past `cost_anomaly_min_daily_usd` a
    # day, so a cheap service's jump stays quiet), or a pace that would exceed the daily budget
    # (so steady overspend alerts too, anomaly or not).
    cost_anomaly_factor: float
    cost_anomaly_min_daily_usd: float
    cost_daily_budget_usd: float
    cost_baseline_window: str
    cost_for: str
    target_down_for: str
    memory_threshold_bytes: float
    memory_for: str
    availability_slo: float
    latency_slo: float
    # A bucket of http_request_duration_seconds, as its `le` label spells it: the latency SLI
    # reads that `_bucket` series, and a value that is not a bucket matches no series at all.
    latency_slo_le: str
    burn_windows: tuple[BurnWindow, ...]
    loki_error_window: str
    loki_error_baseline_window: str
    loki_error_spike_factor: float
    loki_error_min_lines: float
    loki_error_for: str

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise `ConfigError` on a missing or malformed value."""
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None or value == "" or value == ():
                raise ConfigError(f"alert_rules.config: {item.name} is required")
            if item.name.endswith(("_window", "_for")):
                duration_seconds(value)
        for name in ("availability_slo", "latency_slo", "latency_quantile", "error_rate_threshold"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"alert_rules.config: {name} must be between 0 and 1")
        for window in self.burn_windows:
            for duration in (window.long, window.short, window.for_):
                duration_seconds(duration)
        if self.latency_slo_le not in LATENCY_BUCKET_LABELS:
            raise ConfigError(
                f"alert_rules.config: latency_slo_le={self.latency_slo_le!r} is not a bucket of "
                f"http_request_duration_seconds; use one of {', '.join(LATENCY_BUCKET_LABELS)}"
            )
        if self.latency_threshold_seconds not in LATENCY_BUCKETS:
            raise ConfigError(
                "alert_rules.config: latency_threshold_seconds="
                f"{self.latency_threshold_seconds!r} is not a bucket of "
                f"http_request_duration_seconds; use one of {', '.join(LATENCY_BUCKET_LABELS)}"
            )

    def with_overrides(self, **overrides: Any) -> AlertConfig:
        """A copy with some values replaced; unknown names raise `ConfigError`."""
        known = {item.name for item in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"alert_rules.config: unknown settings {unknown}")
        return dataclasses.replace(self, **overrides)


# Google SRE workbook, table 5-8: page at 2 % of the 30-day budget in 1 h or 5 % in 6 h,
# ticket at 10 % in 3 d. `for:` (as Pyrra does) keeps one bad scrape from paging.
WORKBOOK_BURN_WINDOWS = (
    BurnWindow(long="1h", short="5m", burn_rate=14.4, severity="page", for_="2m"),
    BurnWindow(long="6h", short="30m", burn_rate=6, severity="page", for_="15m"),
    BurnWindow(long="1d", short="2h", burn_rate=3, severity="ticket", for_="1h"),
    BurnWindow(long="3d", short="6h", burn_rate=1, severity="ticket", for_="3h"),
)

DEFAULT = AlertConfig(
    error_rate_threshold=0.05,
    error_rate_window="5m",
    error_rate_for="5m",
    error_rate_min_requests_per_second=0.1,
    latency_quantile=0.95,
    latency_threshold_seconds=1.0,
    latency_window="5m",
    latency_for="10m",
    critical_error_count=3,
    critical_error_window="10m",
    critical_error_for="1m",
    cost_anomaly_factor=3,
    cost_anomaly_min_daily_usd=10,
    cost_daily_budget_usd=50,
    cost_baseline_window="1d",
    cost_for="15m",
    target_down_for="2m",
    memory_threshold_bytes=512 * 1024 * 1024,
    memory_for="10m",
    availability_slo=0.999,
    latency_slo=0.99,
    latency_slo_le="0.5",
    burn_windows=WORKBOOK_BURN_WINDOWS,
    loki_error_window="5m",
    loki_error_baseline_window="1h",
    loki_error_spike_factor=3,
    loki_error_min_lines=20,
    loki_error_for="5m",
)

# Seconds instead of minutes: with a 1 s scrape and evaluation interval HighErrorRate fires
# about 15 s after errors start. Never loaded by the stack.
DRILL = DEFAULT.with_overrides(
    error_rate_window="10s",
    error_rate_for="5s",
    error_rate_min_requests_per_second=0.01,
    latency_window="10s",
    latency_for="5s",
    critical_error_window="10s",
    critical_error_for="5s",
    target_down_for="5s",
    memory_for="5s",
)

PROFILES = {"default": DEFAULT, "drill": DRILL}

# --- Kubernetes (deploy/kubernetes/generated/, deploy/helm/*.yaml) ----------------------------
# kube-prometheus-stack's Prometheus selects every PrometheusRule (ruleSelectorNilUsesHelmValues:
# false, all namespaces); `release` also matches the chart's default selector, as the
# ServiceMonitor's does, should those values be left out.
PROMETHEUS_RULE_NAME = "corrstack"
PROMETHEUS_RULE_LABELS = {
    "app.kubernetes.io/part-of": "corrstack",
    "release": "kube-prometheus-stack",
}
# Loki's rules sidecar (deploy/helm/loki.yaml `sidecar.rules`) copies ConfigMaps with this label
# from every namespace into the ruler's tenant directory, one file per data key: the key is
# prefixed so another team's `rules.yml` in the same directory cannot replace ours.
LOKI_RULES_CONFIG_MAP = "corrstack-loki-rules"
LOKI_RULES_LABELS = {"app.kubernetes.io/part-of": "corrstack", "loki_rule": "1"}
LOKI_RULES_KEY_PREFIX = "corrstack-"
