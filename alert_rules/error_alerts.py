"""CriticalErrorPattern: repeated critical errors from the error tracker, per service."""

from __future__ import annotations

from alert_rules.config import AlertConfig, duration_seconds, format_duration
from alert_rules.humanize import go_general
from alert_rules.rule import AlertSpec
from alert_rules.unit_tests import Alert, Check, Scenario, counter, selector

SERVICE = "worker"


def critical_error_pattern(config: AlertConfig) -> AlertSpec:
    window = config.critical_error_window
    return AlertSpec(
        name="CriticalErrorPattern",
        expr=(
            f'sum by (service) (increase(app_errors_total{{severity="critical"}}[{window}]))'
            f" > {config.critical_error_count:g}"
        ),
        for_=config.critical_error_for,
        severity="critical",
        summary="Repeated critical errors on {service}",
        description=(
            f"{{service}} tracked {{value}} critical errors in the last {window} "
            f"(threshold {config.critical_error_count:g})."
        ),
        value_format="$value | humanize",
    )


def critical_error_scenarios(config: AlertConfig) -> list[Scenario]:
    spec = critical_error_pattern(config)
    hold = duration_seconds(config.critical_error_for) // 60
    window = duration_seconds(config.critical_error_window) // 60
    steps = hold + window + 12
    reset_at = window + 4
    target = {"job": SERVICE, "instance": "worker:8000", "service": SERVICE}
    series = selector(
        "app_errors_total",
        error_type="TimeoutError",
        operation="analysis",
        severity="critical",
        **target,
    )
    # Enough per minute that the first minute alone crosses the threshold.
    burst = config.critical_error_count * 2 + 1
    trickle = config.critical_error_count / (2 * window)
    labels = {"service": SERVICE, "severity": spec.severity}
    # With the window full of one-minute samples, increase() is exactly window × rate.
    firing = Alert(
        labels,
        spec.expected_annotations(config, service=SERVICE, value=go_general(burst * window)),
    )
    after = max(hold + 2, window + 1)
    return [
        Scenario(
            name="CriticalErrorPattern: pending until for elapses, then firing",
            interval="1m",
            series={series: counter(burst, steps)},
            checks=[
                Check(format_duration(hold * 60), spec.name, pending=[labels]),
                Check(format_duration(after * 60), spec.name, firing=[firing]),
            ],
        ),
        Scenario(
            name="CriticalErrorPattern: a counter reset from a high value stays silent",
            interval="1m",
            series={
                series: f"{counter(trickle, reset_at, start=1000)} "
                f"{counter(trickle, steps - reset_at - 1)}"
            },
            checks=[Check(format_duration((reset_at + m) * 60), spec.name) for m in (1, 2, 6)],
        ),
        Scenario(
            name="CriticalErrorPattern: warnings and errors do not count",
            interval="1m",
            series={
                series.replace('severity="critical"', 'severity="error"'): counter(burst, steps),
                series.replace('severity="critical"', 'severity="warning"'): counter(burst, steps),
            },
            checks=[Check(format_duration(after * 60), spec.name)],
        ),
    ]
