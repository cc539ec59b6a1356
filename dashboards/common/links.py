"""Click-through links from a series or a table cell to another corrstack dashboard.

Every link keeps the time range and sets the target's variables:

>>> dashboard_url("errors", service="api")
'/d/errors?${__url_time_range}&var-service=api'
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as models

from dashboards import config
from instrumentation.vocabulary import ERRORS_DASHBOARD, REQUEST_TRACE_DASHBOARD

# A link variable (`${__value.raw}`) once url-encoded; it is put back as written, for Grafana
# to replace when the link is clicked.
_ENCODED_VARIABLE = re.compile(r"%24%7B([A-Za-z0-9_.]+)%7D")


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


def explore_url(
    datasource: config.Datasource,
    expr: str,
    *,
    pane: str = "req",
    time_from: str = "${__from}",
    time_to: str = "${__to}",
) -> str:
    """Explore on one query, as Grafana 10+ reads it: `schemaVersion=1&panes=<url-encoded JSON>`.

    The time range defaults to the panel's (`${__from}`/`${__to}`, epoch ms) and link variables
    in `expr` stay as written, for Grafana to fill in; their values must be URL- and JSON-safe.

    >>> from urllib.parse import unquote
    >>> url = explore_url(config.LOKI, '{service="api"} |= "${__value.raw}"')
    >>> url.split("panes=")[0], unquote(url.split("panes=")[1])[:55]
    ('/explore?schemaVersion=1&orgId=1&', '{"req":{"datasource":"loki","queries":[{"refId":"A","ex')
    """
    state = {
        pane: {
            "datasource": datasource.uid,
            "queries": [
                {
                    "refId": "A",
                    "expr": expr,
                    "datasource": {"type": datasource.type, "uid": datasource.uid},
                }
            ],
            "range": {"from": time_from, "to": time_to},
        }
    }
    panes = quote(json.dumps(state, separators=(",", ":")), safe="")
    return "/explore?schemaVersion=1&orgId=1&panes=" + _ENCODED_VARIABLE.sub(r"${\1}", panes)
