"""Panel builders: time series, stat, table and logs panels in corrstack's house style.

Each takes targets from `dashboards.queries`; `levels` are (warning, critical) thresholds:

>>> from dashboards.common.queries import prometheus_query
>>> ratio = prometheus_query('sum(rate(http_requests_total{status=~"5.."}[5m]))')
>>> panel = timeseries_panel("5xx rate", "per second", [ratio], unit="reqps", levels=(1, 5))
>>> panel.build().title
'5xx rate'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common, dashboard, logs, loki, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

from dashboards.common.queries import Query

Thresholds = tuple[float, float]
AnyPanel = TypeVar("AnyPanel", timeseries.Panel, stat.Panel, table.Panel, logs.Panel)


def _with_targets(panel: AnyPanel, queries: Sequence[Query]) -> AnyPanel:
    """Give the targets refIds A, B, … and the panel the datasource of its first target."""
    first = queries[0].build().datasource
    assert isinstance(first, models.DataSourceRef)
    targets: list[cogbuilder.Builder[Any]] = [
        query.ref_id(chr(ord("A") + index)) for index, query in enumerate(queries)
    ]
    return panel.targets(targets).datasource(first)


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
