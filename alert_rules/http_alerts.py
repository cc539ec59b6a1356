"""HighErrorRate and SlowResponses: the request-facing symptoms, per service."""

from __future__ import annotations

from alert_rules.config import AlertConfig, duration_seconds, format_duration
from alert_rules.humanize import humanize_duration, humanize_percentage
from alert_rules.rule import AlertSpec
from alert_rules.unit_tests import Alert, Check, Scenario, counter, selector

SERVICE = "api"
_TARGET = {"job": SERVICE, "instance": "api:8000", "service": SERVICE}


def high_error_rate(config: AlertConfig) -> AlertSpec:
    sel, window = config.http_selector, config.error_rate_window
    requests = f"sum by (service) (rate(http_requests_total{{{sel}}}[{window}]))"
    errors = f'sum by (service) (rate(http_requests_total{{status=~"5..", {sel}}}[{window}]))'
    return AlertSpec(
        name="HighErrorRate",
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
    sel, window = config.http_selector, config.latency_window
    quantile = config.latency_quantile
    return AlertSpec(
        name="SlowResponses",
        expr=(
            f"histogram_quantile({quantile},\n"
            f"  sum by (service, le) (rate(http_request_duration_seconds_bucket{{{sel}}}"
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


def _requests(status: str) -> str:
    labels = {**_TARGET, "method": "GET", "route": "/api/items", "status": status}
    return selector("http_requests_total", **labels)


def _buckets(le: str) -> str:
    labels = {**_TARGET, "method": "GET", "route": "/api/items", "le": le}
    return selector("http_request_duration_seconds_bucket", **labels)


def _reset_series(per_minute: float, reset_at: int, steps: int) -> str:
    return f"{counter(per_minute, reset_at)} {counter(per_minute, steps - reset_at - 1)}"


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
    labels = {"service": SERVICE, "severity": spec.severity}
    firing = Alert(
        labels,
        spec.expected_annotations(config, service=SERVICE, value=humanize_percentage(bad_ratio)),
    )

    def traffic(ratio: float, reset: bool) -> dict[str, str]:
        def series(per_minute: float) -> str:
            return (
                _reset_series(per_minute, reset_at, steps) if reset else counter(per_minute, steps)
            )

        return {
            _requests("200"): series(total * (1 - ratio)),
            _requests("500"): series(total * ratio),
            # Scrapes are not user traffic: thousands of 200s on /metrics must not dilute.
            selector(
                "http_requests_total", **_TARGET, method="GET", route="/metrics", status="200"
            ): counter(total * 10, steps),
        }

    quiet_rate = config.error_rate_min_requests_per_second * 60 / 2
    return [
        Scenario(
            name="HighErrorRate: pending until for elapses, then firing",
            interval="1m",
            series=traffic(bad_ratio, reset=False),
            checks=[
                Check(format_duration(hold * 60), spec.name, pending=[labels]),
                Check(format_duration((hold + 2) * 60), spec.name, firing=[firing]),
            ],
        ),
        Scenario(
            name="HighErrorRate: a counter reset at a low error ratio stays silent",
            interval="1m",
            series=traffic(good_ratio, reset=True),
            checks=[
                Check(format_duration((reset_at + m) * 60), spec.name) for m in (1, 2, hold + 2)
            ],
        ),
        Scenario(
            name="HighErrorRate: keeps firing across a counter reset",
            interval="1m",
            series=traffic(bad_ratio, reset=True),
            checks=[
                Check(format_duration((reset_at + m) * 60), spec.name, firing=[firing])
                for m in (1, 3)
            ],
        ),
        Scenario(
            name="HighErrorRate: silent below the minimum request rate",
            interval="1m",
            series={_requests("500"): counter(quiet_rate, steps)},
            checks=[Check(format_duration((hold + 2) * 60), spec.name)],
        ),
    ]


def latency_scenarios(config: AlertConfig) -> list[Scenario]:
    spec = slow_responses(config)
    hold = duration_seconds(config.latency_for) // 60
    steps = hold + 10
    threshold = config.latency_threshold_seconds
    per_minute = 60.0
    # Every request lands between threshold and 2.5 × threshold: linear interpolation puts
    # the quantile at threshold × (1 + 1.5 q).
    upper = threshold * 2.5
    quantile_value = threshold * (1 + 1.5 * config.latency_quantile)
    slow = {
        _buckets(f"{threshold:g}"): counter(0, steps),
        _buckets(f"{upper:g}"): counter(per_minute, steps),
        _buckets("+Inf"): counter(per_minute, steps),
    }
    reset_at = 5
    fast_reset = _reset_series(per_minute, reset_at, steps)
    fast = {
        _buckets(f"{threshold / 10:g}"): fast_reset,
        _buckets(f"{threshold:g}"): fast_reset,
        _buckets("+Inf"): fast_reset,
    }
    labels = {"service": SERVICE, "severity": spec.severity}
    firing = Alert(
        labels,
        spec.expected_annotations(config, service=SERVICE, value=humanize_duration(quantile_value)),
    )
    return [
        Scenario(
            name="SlowResponses: pending until for elapses, then firing",
            interval="1m",
            series=slow,
            checks=[
                Check(format_duration(hold * 60), spec.name, pending=[labels]),
                Check(format_duration((hold + 2) * 60), spec.name, firing=[firing]),
            ],
        ),
        Scenario(
            name="SlowResponses: fast requests across a counter reset stay silent",
            interval="1m",
            series=fast,
            checks=[Check(format_duration((reset_at + m) * 60), spec.name) for m in (1, 2, 8)],
        ),
    ]
