"""Panel targets: a PromQL or LogQL expression bound to its provisioned datasource.

>>> prometheus_query('sum(up{service=~"$service"})', "targets up", instant=True).build().expr
'sum(up{service=~"$service"})'
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import loki, prometheus
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.loki import LokiQueryDirection
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from dashboards import config

Query = prometheus.Dataquery | loki.Dataquery


def datasource_ref(datasource: config.Datasource) -> models.DataSourceRef:
    return models.DataSourceRef(type_val=datasource.type, uid=datasource.uid)


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
