"""Click-through links from a series or a table cell to another corrstack dashboard.

Every link keeps the time range and sets the target's variables:

>>> dashboard_url("errors", service="api")
'/d/errors?${__url_time_range}&var-service=api'
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as models

from instrumentation.vocabulary import ERRORS_DASHBOARD, REQUEST_TRACE_DASHBOARD


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
        data_link("Errors on this route", ERRORS_DASHBOARD, service=service, route=route),
        data_link(
            "Slow and failed requests on this route",
            REQUEST_TRACE_DASHBOARD,
            service=service,
            route=route,
        ),
    ]


def request_link() -> models.DashboardLink:
    """From a table cell holding a request_id to every log line of that request."""
    return data_link(
        "Trace request ${__value.raw}",
        REQUEST_TRACE_DASHBOARD,
        request_id="${__value.raw:percentencode}",
    ).build()
