"""errors: an error spike — the errors, their context, and the requests that had them.

HTTP 5xx per route, the error tracker's `app_errors_total` by type and operation, the firing
alerts, and the error log lines from Loki with their request_id (one click to request-trace).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models.dashboard import DashboardLinkType
from grafana_foundation_sdk.models.loki import LokiQueryDirection

from dashboards import config
from dashboards.common.annotations import firing_alerts_annotation
from dashboards.common.dashboard_defaults import new_dashboard
from dashboards.common.links import request_link, route_links
from dashboards.common.panels import logs_panel, table_panel, timeseries_panel
from dashboards.common.promql import error_ratio, increase_sum, rate_sum
from dashboards.common.queries import loki_query, prometheus_query
from dashboards.common.variables import environment_variable, route_variable, service_variable
from instrumentation.vocabulary import ERRORS_DASHBOARD, SERVER_ERROR_MATCHER

BY_ROUTE = "service, route"
BY_ERROR = "error_type, operation"
# The JSON fields an error line is read by (request_id links to request-trace).
ERROR_FIELDS = ("request_id", "error_type", "logger", "message")


def alertmanager_link() -> dashboard.DashboardLink:
    """Grafana's alert groups view of the provisioned Alertmanager datasource."""
    return (
        dashboard.DashboardLink("Alertmanager: alert groups")
        .type(DashboardLinkType.LINK)
        .url(f"/alerting/groups?alertmanager={config.ALERTMANAGER.name}")
        .icon("bolt")
    )


def errors() -> Dashboard:
    server_errors = f"{config.ROUTE_MATCHERS}, {SERVER_ERROR_MATCHER}"
    builder = new_dashboard(
        ERRORS_DASHBOARD,
        "HTTP 5xx, tracked application errors, firing alerts and error log lines. "
        "Click a request_id for every log line of that request, across services.",
    )
    return (
        builder.link(alertmanager_link())
        .with_variable(environment_variable())
        .with_variable(service_variable())
        .with_variable(route_variable())
        .annotation(firing_alerts_annotation())
        .with_row(Row("HTTP errors"))
        .with_panel(
            timeseries_panel(
                "Error ratio by route",
                "Share of responses with a 5xx status. Click a series for the failed requests.",
                [
                    prometheus_query(
                        error_ratio(config.ROUTE_MATCHERS, BY_ROUTE), "{{service}} {{route}}"
                    )
                ],
                unit="percentunit",
                levels=config.ERROR_RATIO,
                links=route_links(),
            )
        )
        .with_panel(
            timeseries_panel(
                "5xx responses by route and status",
                "Server errors per second. Click a series for the failed requests.",
                [
                    prometheus_query(
                        rate_sum("http_requests_total", server_errors, f"{BY_ROUTE}, status"),
                        "{{service}} {{route}} {{status}}",
                    )
                ],
                unit="reqps",
                links=route_links(),
            )
        )
        .with_row(Row("Application errors (error tracker)"))
        .with_panel(
            timeseries_panel(
                "Errors by type and operation",
                "app_errors_total per second, as counted by error_tracker.track().",
                [
                    prometheus_query(
                        rate_sum("app_errors_total", config.SERVICE_MATCHERS, BY_ERROR),
                        "{{error_type}} in {{operation}}",
                    )
                ],
                unit="cps",
            )
        )
        .with_panel(
            timeseries_panel(
                "Errors by severity",
                "app_errors_total per second by severity (warning, error, critical).",
                [
                    prometheus_query(
                        rate_sum("app_errors_total", config.SERVICE_MATCHERS, "severity"),
                        "{{severity}}",
                    )
                ],
                unit="cps",
                bars=True,
            )
        )
        .with_panel(
            table_panel(
                "Errors over the time range",
                "app_errors_total increase over the dashboard's time range.",
                [
                    prometheus_query(
                        increase_sum(
                            "app_errors_total", config.SERVICE_MATCHERS, f"{BY_ERROR}, severity"
                        ),
                        instant=True,
                    )
                ],
                columns=["error_type", "operation", "severity", "Value"],
                headers={"Value": "errors"},
                units={"Value": "short"},
                sort_by="Value",
                width=12,
            )
        )
        .with_panel(
            table_panel(
                "Firing alerts",
                "ALERTS from Prometheus, every service. The Alertmanager link at the top shows "
                "their groups, silences and receivers.",
                [prometheus_query(config.FIRING_ALERTS, instant=True)],
                columns=["alertname", "severity", "service", "route", "instance"],
                width=12,
            )
        )
        .with_row(Row("Error log lines"))
        .with_panel(
            timeseries_panel(
                "Error log lines per service",
                "ERROR and CRITICAL lines shipped to Loki.",
                [
                    loki_query(
                        f"sum by (service, level) "
                        f"(count_over_time({config.ERROR_STREAM} [$__interval]))",
                        "{{service}} {{level}}",
                    )
                ],
                unit="short",
                bars=True,
                width=8,
            )
        )
        .with_panel(
            table_panel(
                "Recent errors and their requests",
                "One row per error line. Click a request_id for every line of that request.",
                [
                    loki_query(
                        f"{config.ERROR_STREAM} | json "
                        + ", ".join(f'{field}="{field}"' for field in ERROR_FIELDS),
                        direction=LokiQueryDirection.BACKWARD,
                    )
                ],
                columns=["Time", "service", "level", *ERROR_FIELDS],
                links={"request_id": [request_link()]},
                sort_by="Time",
                extract_labels=True,
                width=16,
            )
        )
        .with_panel(
            logs_panel(
                "Error lines",
                "The raw JSON lines, newest first, with their stack traces.",
                loki_query(config.ERROR_STREAM, direction=LokiQueryDirection.BACKWARD),
            )
        )
    )
