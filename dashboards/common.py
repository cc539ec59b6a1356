"""Builders every dashboard shares: PromQL and LogQL expressions, panels, variables, links.

Each function returns a grafana-foundation-sdk builder (or an expression string), so a dashboard
module reads as a list of panels:

>>> ratio = prometheus_query(error_ratio('service=~"$service"', "route"))
>>> new_dashboard("errors", "...").with_panel(
...     timeseries_panel("Error ratio", "5xx / all", [ratio], unit="percentunit")
... )
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import (
    common,
    dashboard,
    logs,
    loki,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.loki import LokiQueryDirection
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards import config

Query = prometheus.Dataquery | loki.Dataquery
Thresholds = tuple[float, float]
AnyPanel = TypeVar("AnyPanel", timeseries.Panel, stat.Panel, table.Panel, logs.Panel)

# --- Datasources ------------------------------------------------------------------------------


def datasource_ref(datasource: config.Datasource) -> models.DataSourceRef:
    return models.DataSourceRef(type_val=datasource.type, uid=datasource.uid)


# --- PromQL -----------------------------------------------------------------------------------


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
    errors = rate_sum(
        "http_requests_total", f'{matchers}, status=~"{config.SERVER_ERROR_STATUS}"', by, window
    )
    total = rate_sum("http_requests_total", matchers, by, window)
    return f"({errors} or {total} * 0) / {total}"


# --- LogQL ------------------------------------------------------------------------------------


def lines_with(field: str, variable: str, stream: str = config.EVERY_SERVICE_STREAM) -> str:
    """Log lines whose JSON `field` equals dashboard variable `variable` (never a Loki label).

    The line filter narrows the chunks Loki decodes; the json stage then matches the field
    exactly. An empty variable matches nothing, instead of every line without the field.
    """
    value = f"${variable}"
    return f'{stream} |= "{value}" | json | {field}="{value}", {field}!=""'


# --- Queries ----------------------------------------------------------------------------------


def prometheus_query(
    expr: str,
    legend: str = "",
    *,
    exemplar: bool = False,
    instant: bool = False,
    interval: str | None = None,
) -> prometheus.Dataquery:
    """A Prometheus target; `instant` ones come back as a table (for table and stat panels)."""
    query = (
        prometheus.Dataquery()
        .datasource(datasource_ref(config.PROMETHEUS))
        .expr(expr)
        .exemplar(exemplar)
    )
    if legend:
        query = query.legend_format(legend)
    query = query.instant().format(PromQueryFormat.TABLE) if instant else query.range()
    if interval:
        query = query.interval(interval)
    return query


def loki_query(
    expr: str,
    legend: str = "",
    *,
    instant: bool = False,
    direction: LokiQueryDirection | None = None,
) -> loki.Dataquery:
    """A Loki target: log lines, or a metric query when `expr` is a LogQL aggregation."""
    query = (
        loki.Dataquery()
        .datasource(datasource_ref(config.LOKI))
        .expr(expr)
        .query_type("instant" if instant else "range")
    )
    if legend:
        query = query.legend_format(legend)
    if direction is not None:
        query = query.direction(direction).max_lines(config.MAX_LOG_LINES)
    return query


def _with_targets(panel: AnyPanel, queries: Sequence[Query]) -> AnyPanel:
    """Give the targets refIds A, B, … and the panel the datasource of its first target."""
    first = queries[0].build().datasource
    assert isinstance(first, models.DataSourceRef)
    targets: list[cogbuilder.Builder[Any]] = [
        query.ref_id(chr(ord("A") + index)) for index, query in enumerate(queries)
    ]
    return panel.targets(targets).datasource(first)


# --- Field config -----------------------------------------------------------------------------


def thresholds(levels: Thresholds) -> dashboard.ThresholdsConfig:
    """Green below `levels[0]`, yellow from it, red from `levels[1]`."""
    warning, critical = levels
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                models.Threshold(value=None, color="green"),
                models.Threshold(value=warning, color="yellow"),
                models.Threshold(value=critical, color="red"),
            ]
        )
    )


# --- Links ------------------------------------------------------------------------------------


def dashboard_url(uid: str, **variables: str) -> str:
    """A link to dashboard `uid` that keeps the time range and sets `var-<name>` values."""
    params = "".join(f"&var-{name}={value}" for name, value in variables.items())
    return f"/d/{uid}?${{__url_time_range}}{params}"


def data_link(title: str, uid: str, **variables: str) -> dashboard.DashboardLink:
    return dashboard.DashboardLink(title).url(dashboard_url(uid, **variables))


def route_links(
    service: str = "${__field.labels.service:percentencode}",
    route: str = "${__field.labels.route:percentencode}",
) -> list[dashboard.DashboardLink]:
    """From a route (a series' labels by default) to its errors and to the requests behind it."""
    return [
        data_link("Errors on this route", "errors", service=service, route=route),
        data_link(
            "Slow and failed requests on this route",
            "request-trace",
            service=service,
            route=route,
        ),
    ]


def request_link() -> models.DashboardLink:
    """From a table cell holding a request_id to every log line of that request."""
    return data_link(
        "Trace request ${__value.raw}", "request-trace", request_id="${__value.raw:percentencode}"
    ).build()


# --- Panels -----------------------------------------------------------------------------------


def timeseries_panel(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str,
    levels: Thresholds | None = None,
    links: Sequence[dashboard.DashboardLink] = (),
    bars: bool = False,
    width: int = 12,
    height: int = 8,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
        )
        .tooltip(
            common.VizTooltipOptions()
            .mode(common_models.TooltipDisplayMode.MULTI)
            .sort(common_models.SortOrder.DESCENDING)
        )
    )
    if bars:
        panel = panel.draw_style(common_models.GraphDrawStyle.BARS).fill_opacity(60)
    if levels is not None:
        panel = panel.thresholds(thresholds(levels)).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_models.GraphThresholdsStyleMode.DASHED)
        )
    if links:
        panel = panel.data_links(list(links))
    return _with_targets(panel, queries)


def stat_panel(
    title: str,
    description: str,
    query: Query,
    *,
    unit: str,
    levels: Thresholds | None = None,
    width: int = 6,
    height: int = 4,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    panel = panel.thresholds(thresholds(levels) if levels else _single_color("blue"))
    return _with_targets(panel, [query])


def _single_color(color: str) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=None, color=color)])
    )


def table_panel(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    columns: Sequence[str],
    headers: dict[str, str] | None = None,
    units: dict[str, str] | None = None,
    links: dict[str, list[models.DashboardLink]] | None = None,
    levels: dict[str, Thresholds] | None = None,
    sort_by: str | None = None,
    extract_labels: bool = False,
    width: int = 24,
    height: int = 8,
) -> table.Panel:
    """A table showing only the fields `columns`, in that order, renamed by `headers`.

    Instant Prometheus queries are merged on their labels (one row per series, one column per
    query: `Value #A`, `Value #B`, …). With `extract_labels`, Loki lines become rows and the
    labels their json stage extracted become columns. `units`, `links`, `levels` and `sort_by`
    name fields, not headers.
    """
    headers = headers or {}
    merge = (
        models.DataTransformerConfig(
            id_val="extractFields",
            options={"source": "labels", "format": "auto", "replace": True, "keepTime": True},
        )
        if extract_labels
        else models.DataTransformerConfig(id_val="merge", options={})
    )
    organize = models.DataTransformerConfig(
        id_val="organize",
        options={
            "includeByName": dict.fromkeys(columns, True),
            "indexByName": {name: index for index, name in enumerate(columns)},
            "renameByName": headers,
        },
    )
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .span(width)
        .height(height)
        .transformations([merge, organize])
        .filterable(True)
    )
    for field, unit in (units or {}).items():
        panel = panel.override_by_name(headers.get(field, field), [_config("unit", unit)])
    for field, field_links in (links or {}).items():
        panel = panel.override_by_name(headers.get(field, field), [_config("links", field_links)])
    for field, field_levels in (levels or {}).items():
        panel = panel.override_by_name(
            headers.get(field, field),
            [
                _config("thresholds", thresholds(field_levels).build()),
                _config("custom.cellOptions", {"type": "color-background", "mode": "basic"}),
            ],
        )
    if sort_by is not None:
        panel = panel.sort_by(
            [common.TableSortByFieldState().display_name(headers.get(sort_by, sort_by)).desc(True)]
        )
    return _with_targets(panel, queries)


def _config(name: str, value: object) -> models.DynamicConfigValue:
    return models.DynamicConfigValue(id_val=name, value=value)


def logs_panel(
    title: str,
    description: str,
    query: loki.Dataquery,
    *,
    oldest_first: bool = False,
    width: int = 24,
    height: int = 10,
) -> logs.Panel:
    """Raw JSON lines (request_id stays in them, where Loki's derived fields find it)."""
    panel = (
        logs.Panel()
        .title(title)
        .description(description)
        .span(width)
        .height(height)
        .show_time(True)
        .show_labels(False)
        .show_common_labels(False)
        .wrap_log_message(True)
        .prettify_log_message(False)
        .enable_log_details(True)
        .dedup_strategy(common_models.LogsDedupStrategy.NONE)
        .sort_order(
            common_models.LogsSortOrder.ASCENDING
            if oldest_first
            else common_models.LogsSortOrder.DESCENDING
        )
    )
    return _with_targets(panel, [query])


# --- Variables --------------------------------------------------------------------------------


def _all_values(
    name: str, label: str, query: str, all_value: str, description: str
) -> dashboard.QueryVariable:
    """A multi-value Prometheus variable whose "All" is one regex, not a list of every value."""
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(datasource_ref(config.PROMETHEUS))
        .query(query)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(all_value)
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
    )


def environment_variable() -> dashboard.QueryVariable:
    return _all_values(
        "environment",
        "Environment",
        config.ENVIRONMENT_VALUES,
        config.ALL_ENVIRONMENTS,
        "Deployment environment (the `environment` label); All also matches unlabelled targets.",
    )


def service_variable() -> dashboard.QueryVariable:
    return _all_values(
        "service",
        "Service",
        config.SERVICE_VALUES,
        config.ALL_SERVICES,
        "Scrape target `service` label; equals the `service` field and label of its log lines.",
    )


def route_variable() -> dashboard.QueryVariable:
    return _all_values(
        "route",
        "Route",
        config.ROUTE_VALUES,
        config.ALL_ROUTES,
        "Route template, as in the `route` label (`/api/user/{user_id}/routine`).",
    )


def textbox_variable(name: str, label: str, description: str) -> dashboard.TextBoxVariable:
    return (
        dashboard.TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value("")
        .current(models.VariableOption(selected=True, text="", value=""))
    )


# --- Dashboard --------------------------------------------------------------------------------


def new_dashboard(uid: str, description: str) -> dashboard.Dashboard:
    """Title, tags, time, refresh and the links to the other corrstack dashboards."""
    links: list[cogbuilder.Builder[models.DashboardLink]] = [
        dashboard.DashboardLink(title)
        .type(models.DashboardLinkType.LINK)
        .url(f"/d/{other}")
        .icon("dashboard")
        .keep_time(True)
        .include_vars(True)
        for other, title in config.DASHBOARDS.items()
        if other != uid
    ]
    return (
        dashboard.Dashboard(config.DASHBOARDS[uid])
        .uid(uid)
        .description(description)
        .tags(list(config.TAGS))
        .time(config.TIME_FROM, "now")
        .refresh(config.REFRESH)
        .timezone("browser")
        .readonly()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .links(links)
    )


def firing_alerts_annotation() -> dashboard.AnnotationQuery:
    """Firing alerts drawn on every time series panel of the dashboard."""
    return (
        dashboard.AnnotationQuery()
        .name("Firing alerts")
        .datasource(datasource_ref(config.PROMETHEUS))
        .enable(True)
        .icon_color("red")
        .expr(config.FIRING_ALERTS)
    )
