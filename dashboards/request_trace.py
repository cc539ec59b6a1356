"""request-trace: a user reports a failure — follow their requests through every service.

Type a request_id (or a user_id) and see every log line of it, across all services, in time
order. IDs are never Loki labels: each query selects the services' streams, keeps the lines
that contain the ID, and matches the JSON field exactly. The tables list requests by route or
by user; a click on a request_id traces that request.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models.loki import LokiQueryDirection

from dashboards import config
from dashboards.common.dashboard_defaults import new_dashboard
from dashboards.common.links import request_link
from dashboards.common.logql import lines_with
from dashboards.common.panels import logs_panel, stat_panel, table_panel, timeseries_panel
from dashboards.common.promql import latency_quantile
from dashboards.common.queries import loki_query, prometheus_query
from dashboards.common.variables import (
    environment_variable,
    route_variable,
    service_variable,
    textbox_variable,
)
from instrumentation.vocabulary import ACCESS_LOGGER, REQUEST_TRACE_DASHBOARD

ACCESS = f'logger="{ACCESS_LOGGER}"'
# The columns of a table of access lines, one row per request.
REQUEST_COLUMNS = (
    "Time",
    "service",
    "request_id",
    "user_id",
    "method",
    "route",
    "status",
    "duration_ms",
)


def slow_or_failed_requests() -> str:
    """Access lines on the selected routes that failed or were slow."""
    return (
        f'{config.SERVICE_STREAM} |= "{ACCESS_LOGGER}" | json '
        f'| {ACCESS}, route=~"$route" '
        f"| status >= 500 or duration_ms > {config.SLOW_REQUEST_MS}"
    )


def request_table(title: str, description: str, expr: str) -> table.Panel:
    return table_panel(
        title,
        description,
        [loki_query(expr, direction=LokiQueryDirection.BACKWARD)],
        columns=REQUEST_COLUMNS,
        units={"duration_ms": "ms"},
        links={"request_id": [request_link()]},
        levels={"duration_ms": (config.SLOW_REQUEST_MS, 2 * config.SLOW_REQUEST_MS)},
        sort_by="Time",
        extract_labels=True,
        height=8,
    )


def request_trace() -> Dashboard:
    request_lines = lines_with("request_id", "request_id")
    user_lines = lines_with("user_id", "user_id")
    return (
        new_dashboard(
            REQUEST_TRACE_DASHBOARD,
            "Every log line of one request (or one user) across all services, in time order. "
            "Set request_id or user_id, or pick a request from the tables.",
        )
        .with_variable(
            textbox_variable(
                "request_id",
                "Request ID",
                "X-Correlation-ID of the request (from a log line, an exemplar or a response).",
            )
        )
        .with_variable(textbox_variable("user_id", "User ID", "user_id of the reporting user."))
        .with_variable(environment_variable())
        .with_variable(service_variable())
        .with_variable(route_variable())
        .with_row(Row("Request $request_id"))
        .with_panel(
            logs_panel(
                "Every line of request $request_id, all services, oldest first",
                "request_id is in every line the request wrote, in every service it reached.",
                loki_query(request_lines, direction=LokiQueryDirection.FORWARD),
                oldest_first=True,
                height=14,
            )
        )
        .with_panel(
            stat_panel(
                "Time in each service",
                "duration_ms of the request's access line in each service it passed through.",
                loki_query(
                    f"max_over_time({request_lines} | {ACCESS} | unwrap duration_ms "
                    '| __error__="" [$__range]) by (service)',
                    "{{service}}",
                    instant=True,
                ),
                unit="ms",
                levels=(config.SLOW_REQUEST_MS, 2 * config.SLOW_REQUEST_MS),
                width=8,
                height=8,
            )
        )
        .with_panel(
            timeseries_panel(
                f"p{round(config.EXEMPLAR_QUANTILE * 100)} latency on $route",
                "Each exemplar dot is one request: hover for its request_id and trace_id, "
                "click it for its log lines.",
                [
                    prometheus_query(
                        latency_quantile(
                            config.EXEMPLAR_QUANTILE, config.ROUTE_MATCHERS, "service, route"
                        ),
                        "{{service}} {{route}}",
                        exemplar=True,
                    )
                ],
                unit="s",
                levels=config.LATENCY_SECONDS,
                width=16,
                height=8,
            )
        )
        .with_row(Row("Requests on $route"))
        .with_panel(
            request_table(
                "Slow and failed requests on $route",
                f"Status 5xx or slower than {config.SLOW_REQUEST_MS} ms, newest first. "
                "Click a request_id to trace it.",
                slow_or_failed_requests(),
            )
        )
        .with_row(Row("User $user_id"))
        .with_panel(
            request_table(
                "Requests of user $user_id",
                "The user's requests, newest first. Click a request_id to trace it.",
                f"{user_lines} | {ACCESS}",
            )
        )
        .with_panel(
            logs_panel(
                "Every line of user $user_id, all services",
                "Lines that carry this user_id (the most recent ones), oldest first.",
                loki_query(user_lines, direction=LokiQueryDirection.BACKWARD),
                oldest_first=True,
                height=12,
            )
        )
    )
