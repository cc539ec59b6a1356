"""Dashboard variables: the Prometheus-backed `environment`, `service` and `route` pickers and
free-text boxes for IDs.

>>> service_variable().build().name
'service'
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as models

from dashboards import config
from dashboards.common.queries import datasource_ref


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
