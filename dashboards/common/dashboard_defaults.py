"""The settings every corrstack dashboard shares: title, tags, time range, refresh, time zone,
shared crosshair and the links to the other corrstack dashboards.

>>> new_dashboard("errors", "5xx ratio and rate per route").build().tags
['corrstack', 'generated']
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as models

from dashboards import config


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
