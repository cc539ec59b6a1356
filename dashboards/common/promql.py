"""PromQL expressions the dashboards share: rates, increases, latency quantiles, error ratios.

Each function returns the expression as a string; `matchers` is the inside of a selector's
braces and `by` the grouping labels:

>>> rate_sum("http_requests_total", 'service=~"$service"', "route")
'sum by (route) (rate(http_requests_total{service=~"$service"}[$__rate_interval]))'
"""

from __future__ import annotations

from instrumentation.vocabulary import SERVER_ERROR_MATCHER


def _sum(by: str) -> str:
    return f"sum by ({by})" if by else "sum"


def rate_sum(metric: str, matchers: str, by: str, window: str = "$__rate_interval") -> str:
    """`sum by (<by>) (rate(<metric>{<matchers>}[<window>]))`; `by=""` sums everything."""
    return f"{_sum(by)} (rate({metric}{{{matchers}}}[{window}]))"


def increase_sum(metric: str, matchers: str, by: str, window: str = "$__range") -> str:
    """`sum by (<by>) (increase(<metric>{<matchers>}[<window>]))`; `by=""` sums everything."""
    return f"{_sum(by)} (increase({metric}{{{matchers}}}[{window}]))"


def latency_quantile(
    quantile: float,
    matchers: str,
    by: str,
    histogram: str = "http_request_duration_seconds",
    window: str = "$__rate_interval",
) -> str:
    """The `quantile` of a histogram per `by` group, from its `_bucket` series."""
    buckets = rate_sum(f"{histogram}_bucket", matchers, f"le, {by}", window)
    return f"histogram_quantile({quantile}, {buckets})"


def error_ratio(matchers: str, by: str, window: str = "$__rate_interval") -> str:
    """5xx responses / all responses per `by` group; 0 (not "no data") for a group without errors.

    The `or … * 0` arm gives every group that served requests a zero numerator, so a healthy
    route shows 0 % instead of disappearing from the panel and the table.
    """
    errors = rate_sum("http_requests_total", f"{matchers}, {SERVER_ERROR_MATCHER}", by, window)
    total = rate_sum("http_requests_total", matchers, by, window)
    return f"({errors} or {total} * 0) / {total}"
