"""The builders every dashboard shares: queries, panels, variables, links and defaults.

One small module per concern; import from here (`from dashboards.common import timeseries_panel`)
or from the module itself.
"""

from dashboards.common.annotations import firing_alerts_annotation
from dashboards.common.dashboard_defaults import new_dashboard
from dashboards.common.links import (
    dashboard_url,
    data_link,
    explore_url,
    request_link,
    route_links,
)
from dashboards.common.logql import lines_with, lines_with_value
from dashboards.common.panels import (
    Thresholds,
    logs_panel,
    stat_panel,
    table_panel,
    thresholds,
    timeseries_panel,
)
from dashboards.common.promql import error_ratio, increase_sum, latency_quantile, rate_sum
from dashboards.common.queries import Query, datasource_ref, loki_query, prometheus_query
from dashboards.common.variables import (
    environment_variable,
    route_variable,
    service_variable,
    textbox_variable,
)

__all__ = [
    "Query",
    "Thresholds",
    "dashboard_url",
    "data_link",
    "datasource_ref",
    "environment_variable",
    "error_ratio",
    "explore_url",
    "firing_alerts_annotation",
    "increase_sum",
    "latency_quantile",
    "lines_with",
    "lines_with_value",
    "logs_panel",
    "loki_query",
    "new_dashboard",
    "prometheus_query",
    "rate_sum",
    "request_link",
    "route_links",
    "route_variable",
    "service_variable",
    "stat_panel",
    "table_panel",
    "textbox_variable",
    "thresholds",
    "timeseries_panel",
]
