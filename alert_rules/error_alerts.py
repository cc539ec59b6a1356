"""CriticalErrorPattern: repeated critical errors from the error tracker, per service."""

from __future__ import annotations

from alert_rules.config import AlertConfig, duration_seconds
from alert_rules.humanize import go_general
from alert_rules.rule import AlertSpec
from alert_rules.unit_tests import (
    Scenario,
    counter,
    counter_with_reset,
    firing_alert,
    pending_then_firing,
    scrape_target,
    selector,
    silent,
)
from instrumentation.vocabulary import CRITICAL_ERROR_PATTERN_ALERT

WORKER = scrape_target("worker")


def critical_error_pattern(config: AlertConfig) -> AlertSpec:
    window = config.critical_error_window
    return AlertSpec(
        name=CRITICAL_ERROR_PATTERN_ALERT,
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

    def errors(severity: str) -> str:
        return selector(
            "app_errors_total",
            error_type="TimeoutError",
            operation="analysis",
            severity=severity,
            **WORKER,
        )

    # Enough per minute that the first minute alone crosses the threshold.
    burst = config.critical_error_count * 2 + 1
    trickle = config.critical_error_count / (2 * window)
    # With the window full of one-minute samples, increase() is exactly window × rate.
    firing = firing_alert(spec, WORKER, go_general(burst * window))
    after = max(hold + 2, window + 1)
    return [
        pending_then_firing(
            spec,
            {errors("critical"): counter(burst, steps)},
            firing,
            pending_at=hold,
            firing_at=after,
        ),
        Scenario(
            name="CriticalErrorPattern: a counter reset from a high value stays silent",
            interval="1m",
            series={errors("critical"): counter_with_reset(trickle, steps, reset_at, start=1000)},
            checks=silent(spec, (reset_at + m for m in (1, 2, 6))),
        ),
        Scenario(
            name="CriticalErrorPattern: warnings and errors do not count",
            interval="1m",
            series={
                errors("error"): counter(burst, steps),
                errors("warning"): counter(burst, steps),
            },
            checks=silent(spec, [after]),
        ),
    ]
