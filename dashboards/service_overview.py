"""service-overview: traffic, errors and latency per route — where an incident starts.

Latency and error panels link to `errors` and `request-trace` for the route under the cursor;
the latency exemplars carry the request_id of a real request (the dot opens its log lines).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards import config
from dashboards.common.annotations import firing_alerts_annotation
from dashboards.common.dashboard_defaults import new_dashboard
from dashboards.common.links import route_links
from dashboards.common.panels import table_panel, timeseries_panel
from dashboards.common.promql import error_ratio, latency_quantile, rate_sum
from dashboards.common.queries import prometheus_query
from dashboards.common.variables import environment_variable, route_variable, service_variable
from instrumentation.vocabulary import SERVICE_OVERVIEW_DASHBOARD

BY_ROUTE = "service, route"
LEGEND = "{{service}} {{route}}"


def _latency_query(quantile: float) -> str:
    return latency_quantile(quantile, config.ROUTE_MATCHERS, BY_ROUTE)


def service_overview() -> Dashboard:
    percentiles = [
        prometheus_query(
            _latency_query(q),
            f"p{round(q * 100)} {LEGEND}",
            exemplar=q == config.EXEMPLAR_QUANTILE,
        )
        for q in config.LATENCY_QUANTILES
    ]
    return (
        new_dashboard(
            SERVICE_OVERVIEW_DASHBOARD,
            "Request rate, errors and latency per route. Click a latency or error series for "
            "the errors and the requests behind it; an exemplar dot opens that request's logs.",
        )
        .with_variable(environment_variable())
        .with_variable(service_variable())
        .with_variable(route_variable())
        .annotation(firing_alerts_annotation())
        .with_row(Row("Traffic and errors"))
        .with_panel(
            timeseries_panel(
                "Request rate by route",
                "Requests per second, all statuses.",
                [
                    prometheus_query(
                        rate_sum("http_requests_total", config.ROUTE_MATCHERS, BY_ROUTE), LEGEND
                    )
                ],
                unit="reqps",
                width=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Error ratio by route",
                "Share of responses with a 5xx status. Click a series for its errors and requests.",
                [prometheus_query(error_ratio(config.ROUTE_MATCHERS, BY_ROUTE), LEGEND)],
                unit="percentunit",
                levels=config.ERROR_RATIO,
                links=route_links(),
                width=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "In-flight requests by route",
                "Requests being served right now; a climbing line is a queue forming.",
                [
                    prometheus_query(
                        f"sum by ({BY_ROUTE}) "
                        f"(http_requests_in_progress{{{config.ROUTE_MATCHERS}}})",
                        LEGEND,
                    )
                ],
                unit="short",
                width=8,
            )
        )
        .with_row(Row("Latency"))
        .with_panel(
            timeseries_panel(
                "Latency p50 / p95 / p99 by route",
                "Quantiles of http_request_duration_seconds. Exemplar dots are single requests: "
                "hover one for its request_id and trace_id, click it for its log lines. "
                "Click a series for the slow and failed requests on that route.",
                percentiles,
                unit="s",
                levels=config.LATENCY_SECONDS,
                links=route_links(),
                width=24,
                height=10,
            )
        )
        .with_row(Row("Routes"))
        .with_panel(
            table_panel(
                "Routes over the time range",
                "Averages over the dashboard's time range. Click a route for its errors and "
                "requests.",
                [
                    prometheus_query(
                        rate_sum(
                            "http_requests_total", config.ROUTE_MATCHERS, BY_ROUTE, "$__range"
                        ),
                        instant=True,
                    ),
                    prometheus_query(
                        error_ratio(config.ROUTE_MATCHERS, BY_ROUTE, "$__range"), instant=True
                    ),
                    prometheus_query(
                        latency_quantile(0.95, config.ROUTE_MATCHERS, BY_ROUTE, window="$__range"),
                        instant=True,
                    ),
                    prometheus_query(
                        latency_quantile(0.99, config.ROUTE_MATCHERS, BY_ROUTE, window="$__range"),
                        instant=True,
                    ),
                ],
                columns=["service", "route", "Value #A", "Value #B", "Value #C", "Value #D"],
                headers={
                    "Value #A": "req/s",
                    "Value #B": "error ratio",
                    "Value #C": "p95",
                    "Value #D": "p99",
                },
                units={
                    "Value #A": "reqps",
                    "Value #B": "percentunit",
                    "Value #C": "s",
                    "Value #D": "s",
                },
                levels={
                    "Value #B": config.ERROR_RATIO,
                    "Value #C": config.LATENCY_SECONDS,
                    "Value #D": config.LATENCY_SECONDS,
                },
                links={
                    "route": [
                        link.build()
                        for link in route_links(
                            "${__data.fields.service:percentencode}",
                            "${__data.fields.route:percentencode}",
                        )
                    ]
                },
                sort_by="Value #A",
                height=10,
            )
        )
    )
