"""Loki ruler rules (LogQL): a spike of ERROR/CRITICAL log lines per service.

Loki's labels are only service, environment and level, so this is the one per-service signal
the logs give without parsing every line.
"""

from __future__ import annotations

from alert_rules.config import ERROR_LINES, AlertConfig, duration_seconds
from alert_rules.rule import AlertSpec
from instrumentation.vocabulary import ERROR_LOG_SPIKE_ALERT


def error_log_spike(config: AlertConfig) -> AlertSpec:
    window, baseline = config.loki_error_window, config.loki_error_baseline_window
    windows_per_baseline = duration_seconds(baseline) / duration_seconds(window)
    current = f"sum by (service) (count_over_time({ERROR_LINES} [{window}]))"
    usual = (
        f"sum by (service) (count_over_time({ERROR_LINES} [{baseline}] offset {window}))"
        f" / {windows_per_baseline:g}"
    )
    factor = config.loki_error_spike_factor
    return AlertSpec(
        name=ERROR_LOG_SPIKE_ALERT,
        # `unless` rather than `>` against the baseline: a service with no errors in the
        # baseline window has no baseline series, and a spike from zero must still fire.
        expr=(
            f"{current} > {config.loki_error_min_lines:g}\n"
            f"unless\n"
            f"{current}\n  <= {factor:g} * {usual}"
        ),
        for_=config.loki_error_for,
        severity="warning",
        summary="Spike of error log lines on {service}",
        description=(
            f"{{service}} wrote {{value}} ERROR/CRITICAL log lines in the last {window}, "
            f"more than {factor:g}× its usual rate over the previous {baseline}."
        ),
        value_format="$value | humanize",
    )
