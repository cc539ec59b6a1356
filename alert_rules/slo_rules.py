"""Availability and latency SLOs: error-ratio recording rules and ErrorBudgetBurn alerts.

Multi-window, multi-burn-rate alerts from the Google SRE workbook (chapter 5): each pair fires
only while both its long window (significance) and its short window (still happening) burn
faster than the pair's rate. Fast burns page, slow burns open a ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

from alert_rules.config import (
    SERVER_ERRORS,
    USER_TRAFFIC,
    AlertConfig,
    BurnWindow,
    duration_seconds,
)
from alert_rules.humanize import humanize_percentage
from alert_rules.rule import AlertSpec, Rule, record
from alert_rules.unit_tests import (
    API,
    Check,
    Scenario,
    counter,
    counter_with_reset,
    firing_alert,
    http_series,
)
from instrumentation.vocabulary import ERROR_BUDGET_BURN_ALERT


@dataclass(frozen=True)
class Slo:
    name: str
    target: float
    # Recording rule name for the ratio of bad requests over `{window}`.
    ratio_name: str
    what_failed: str

    def ratio_rule(self, window: str) -> str:
        return f"{self.ratio_name}{window}"


def slos(config: AlertConfig) -> list[Slo]:
    return [
        Slo(
            "availability",
            config.availability_slo,
            "service:http_requests:error_ratio_rate",
            "failed with a 5xx status",
        ),
        Slo(
            "latency",
            config.latency_slo,
            "service:http_request_duration_seconds:slow_ratio_rate",
            f"took longer than {config.latency_slo_le}s",
        ),
    ]


def windows(config: AlertConfig) -> list[str]:
    every = {w for pair in config.burn_windows for w in (pair.long, pair.short)}
    return sorted(every, key=duration_seconds)


def ratio_expr(config: AlertConfig, slo: Slo, window: str) -> str:
    sel = USER_TRAFFIC
    if slo.name == "availability":
        return (
            f"sum by (service) (rate(http_requests_total{{{SERVER_ERRORS}, {sel}}}[{window}]))\n"
            f"/\n"
            f"sum by (service) (rate(http_requests_total{{{sel}}}[{window}]))"
        )
    le = config.latency_slo_le
    return (
        "1 - (\n"
        f'  sum by (service) (rate(http_request_duration_seconds_bucket{{le="{le}", {sel}}}'
        f"[{window}]))\n"
        "/\n"
        f"  sum by (service) (rate(http_request_duration_seconds_count{{{sel}}}[{window}]))\n"
        ")"
    )


def recording_rules(config: AlertConfig, slo: Slo) -> list[Rule]:
    return [record(slo.ratio_rule(w), ratio_expr(config, slo, w)) for w in windows(config)]


def error_budget_burn(config: AlertConfig, slo: Slo, pair: BurnWindow) -> AlertSpec:
    limit = f"({pair.burn_rate:g} * (1 - {slo.target:g}))"
    return AlertSpec(
        name=ERROR_BUDGET_BURN_ALERT,
        expr=(
            f"{slo.ratio_rule(pair.long)} > {limit}\n"
            f"and on (service)\n"
            f"{slo.ratio_rule(pair.short)} > {limit}"
        ),
        for_=pair.for_,
        severity=pair.severity,
        summary=f"{{service}} is burning its {slo.name} error budget",
        description=(
            f"{{value}} of requests to {{service}} {slo.what_failed} over the last {pair.long} "
            f"(and still over the last {pair.short}): {pair.burn_rate:g}× the rate the "
            f"{humanize_percentage(slo.target)} {slo.name} SLO allows."
        ),
        value_format="$value | humanizePercentage",
        labels={"slo": slo.name, "long_window": pair.long, "short_window": pair.short},
    )


def burn_alerts(config: AlertConfig, slo: Slo) -> list[AlertSpec]:
    return [error_budget_burn(config, slo, pair) for pair in config.burn_windows]


def _availability_series(
    ratio: float, steps: int, per_minute: float, reset_at: int | None = None
) -> dict[str, str]:
    def values(per_step: float) -> str:
        if reset_at is None:
            return counter(per_step, steps)
        # A restart: from a high value back to zero.
        return counter_with_reset(per_step, steps, reset_at, start=10**6)

    return {
        http_series("http_requests_total", status="200"): values(per_minute * (1 - ratio)),
        http_series("http_requests_total", status="500"): values(per_minute * ratio),
    }


def _latency_series(
    config: AlertConfig, ratio: float, steps: int, per_minute: float
) -> dict[str, str]:
    buckets = "http_request_duration_seconds_bucket"
    return {
        http_series(buckets, le=config.latency_slo_le): counter(per_minute * (1 - ratio), steps),
        http_series(buckets, le="+Inf"): counter(per_minute, steps),
        http_series("http_request_duration_seconds_count"): counter(per_minute, steps),
    }


def burn_scenarios(config: AlertConfig) -> list[Scenario]:
    """At each tested burn rate exactly the pairs whose rate it exceeds fire."""
    pairs = config.burn_windows
    longest_for = max(duration_seconds(p.for_) for p in pairs) // 60
    shortest_for = min(duration_seconds(p.for_) for p in pairs) // 60
    settle = longest_for + 60  # minutes: every pair has passed its for:
    steps = settle + 5
    per_minute = 6000.0
    rates = sorted({p.burn_rate for p in pairs})
    # Just above each documented rate, between rates, and below the slowest.
    tested = sorted({rate * 1.4 for rate in rates} | {rates[0] / 2})
    scenarios = []
    for slo in slos(config):
        alerts = burn_alerts(config, slo)
        tested_here = tested if slo.name == "availability" else [rates[-1] * 1.4]
        for burn in tested_here:
            ratio = burn * (1 - slo.target)
            hot = [
                (pair, spec)
                for pair, spec in zip(pairs, alerts, strict=True)
                if burn > pair.burn_rate
            ]
            value = humanize_percentage(ratio)
            firing = [firing_alert(spec, API, value) for _, spec in hot]
            series = (
                _availability_series(ratio, steps, per_minute)
                if slo.name == "availability"
                else _latency_series(config, ratio, steps, per_minute)
            )
            severities = sorted({pair.severity for pair, _ in hot}) or ["none"]
            scenarios.append(
                Scenario(
                    name=(f"ErrorBudgetBurn {slo.name} at {burn:g}× burn: {'+'.join(severities)}"),
                    interval="1m",
                    series=series,
                    checks=[
                        # Every condition holds from the first minute; no for: has elapsed.
                        Check(
                            f"{shortest_for}m",
                            ERROR_BUDGET_BURN_ALERT,
                            pending=[alert.labels for alert in firing],
                        ),
                        Check(f"{settle}m", ERROR_BUDGET_BURN_ALERT, firing=firing),
                    ],
                )
            )
    # Counters restarting from a high value at a healthy error ratio: no burn anywhere.
    ratio = rates[0] / 2 * (1 - config.availability_slo)
    reset_at = settle // 2
    scenarios.append(
        Scenario(
            name="ErrorBudgetBurn: a counter reset at a healthy ratio stays silent",
            interval="1m",
            series=_availability_series(ratio, steps, per_minute, reset_at),
            checks=[
                Check(f"{reset_at + m}m", ERROR_BUDGET_BURN_ALERT)
                for m in (1, 5, 60, settle - reset_at)
            ],
        )
    )
    return scenarios
