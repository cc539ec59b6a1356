"""HighErrorRate and SlowResponses: the request-facing symptoms, per service."""

from __future__ import annotations

from alert_rules.config import SERVER_ERRORS, USER_TRAFFIC, AlertConfig, duration_seconds
from alert_rules.humanize import humanize_duration, humanize_percentage
from alert_rules.rule import AlertSpec
from alert_rules.unit_tests import (
    API,
    Check,
    Scenario,
    at,
    counter,
    counter_with_reset,
    firing_alert,
    http_series,
    pending_then_firing,
    silent,
)
from instrumentation.vocabulary import (
    HIGH_ERROR_RATE_ALERT,
    LATENCY_BUCKETS,
    SLOW_RESPONSES_ALERT,
)


def high_error_rate(config: AlertConfig) -> AlertSpec:
    window = config.error_rate_window
    requests = f"sum by (service) (rate(http_requests_total{{{USER_TRAFFIC}}}[{window}]))"
    errors = (
        f"sum by (service) (rate(http_requests_total{{{SERVER_ERRORS}, {USER_TRAFFIC}}}[{window}]))"
    )
    return AlertSpec(
        name=HIGH_ERROR_RATE_ALERT,
        expr=(
            f"(\n  {errors}\n/\n  {requests}\n) > {config.error_rate_threshold}\n"
            f"and on (service)\n"
            f"{requests} > {config.error_rate_min_requests_per_second}"
        ),
        for_=config.error_rate_for,
        severity="critical",
        summary="High 5xx error rate on {service}",
        description=(
            "{value} of requests to {service} failed with a 5xx status over the last "
            f"{window} (threshold {humanize_percentage(config.error_rate_threshold)})."
        ),
        value_format="$value | humanizePercentage",
    )


def slow_responses(config: AlertConfig) -> AlertSpec:
    window, quantile = config.latency_window, config.latency_quantile
    return AlertSpec(
        name=SLOW_RESPONSES_ALERT,
        expr=(
            f"histogram_quantile({quantile},\n"
            f"  sum by (service, le) (rate(http_request_duration_seconds_bucket{{{USER_TRAFFIC}}}"
            f"[{window}]))\n) > {config.latency_threshold_seconds}"
        ),
        for_=config.latency_for,
        severity="warning",
        summary="Slow responses on {service}",
        description=(
            f"p{round(quantile * 100)} latency of {{service}} is {{value}} over the last "
            f"{window} (threshold {config.latency_threshold_seconds:g}s)."
        ),
        value_format="$value | humanizeDuration",
    )


def error_rate_scenarios(config: AlertConfig) -> list[Scenario]:
    spec = high_error_rate(config)
    hold = duration_seconds(config.error_rate_for) // 60
    # Ratios are exact from the first minute (both rates extrapolate alike), so the alert
    # is pending from 1m and fires once `for:` has elapsed after that.
    bad_ratio = min(config.error_rate_threshold * 2, 0.5)
    good_ratio = config.error_rate_threshold / 5
    total = 600.0  # requests per minute
    steps = hold + 10
    reset_at = hold + 4
    firing = firing_alert(spec, API, humanize_percentage(bad_ratio))

    def traffic(ratio: float, reset: bool) -> dict[str, str]:
        def series(per_minute: float) -> str:
            if reset:
                return counter_with_reset(per_minute, steps, reset_at)
            return counter(per_minute, steps)

        return {
            http_series("http_requests_total", status="200"): series(total * (1 - ratio)),
            http_series("http_requests_total", status="500"): series(total * ratio),
            # Scrapes are not user traffic: thousands of 200s on /metrics must not dilute.
            http_series("http_requests_total", route="/metrics", status="200"): counter(
                total * 10, steps
            ),
        }

    quiet_rate = config.error_rate_min_requests_per_second * 60 / 2
    return [
        pending_then_firing(
            spec, traffic(bad_ratio, reset=False), firing, pending_at=hold, firing_at=hold + 2
        ),
        Scenario(
            name="HighErrorRate: a counter reset at a low error ratio stays silent",
            interval="1m",
            series=traffic(good_ratio, reset=True),
            checks=silent(spec, (reset_at + m for m in (1, 2, hold + 2))),
        ),
        Scenario(
            name="HighErrorRate: keeps firing across a counter reset",
            interval="1m",
            series=traffic(bad_ratio, reset=True),
            checks=[Check(at(reset_at + m), spec.name, firing=[firing]) for m in (1, 3)],
        ),
        Scenario(
            name="HighErrorRate: silent below the minimum request rate",
            interval="1m",
            series={http_series("http_requests_total", status="500"): counter(quiet_rate, steps)},
            checks=silent(spec, [hold + 2]),
        ),
    ]


def latency_scenarios(config: AlertConfig) -> list[Scenario]:
    spec = slow_responses(config)
    hold = duration_seconds(config.latency_for) // 60
    steps = hold + 10
    threshold = config.latency_threshold_seconds
    per_minute = 60.0
    # Every request lands in the bucket above the threshold: linear interpolation puts the
    # quantile at threshold + (upper - threshold) × q.
    upper = min(bound for bound in LATENCY_BUCKETS if bound > threshold)
    # Fast requests: a bucket at most a tenth of the threshold.
    fast_bound = max(
        (bound for bound in LATENCY_BUCKETS if bound <= threshold / 10), default=LATENCY_BUCKETS[0]
    )
    quantile_value = threshold + (upper - threshold) * config.latency_quantile

    def bucket(le: str) -> str:
        return http_series("http_request_duration_seconds_bucket", le=le)

    slow = {
        bucket(f"{threshold:g}"): counter(0, steps),
        bucket(f"{upper:g}"): counter(per_minute, steps),
        bucket("+Inf"): counter(per_minute, steps),
    }
    reset_at = 5
    fast_reset = counter_with_reset(per_minute, steps, reset_at)
    fast = {bucket(le): fast_reset for le in (f"{fast_bound:g}", f"{threshold:g}", "+Inf")}
    firing = firing_alert(spec, API, humanize_duration(quantile_value))
    return [
        pending_then_firing(spec, slow, firing, pending_at=hold, firing_at=hold + 2),
        Scenario(
            name="SlowResponses: fast requests across a counter reset stay silent",
            interval="1m",
            series=fast,
            checks=silent(spec, (reset_at + m for m in (1, 2, 8))),
        ),
    ]
