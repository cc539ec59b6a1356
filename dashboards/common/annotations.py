"""Annotations: events drawn across every time series panel of a dashboard.

>>> firing_alerts_annotation().build().name
'Firing alerts'
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard

from dashboards import config
from dashboards.common.queries import datasource_ref


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
