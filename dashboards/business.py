"""business: what the product did — events, analyses, routines, API cost and active users.

Days are UTC days (the dashboard's time zone is UTC). Active users are distinct `user_id`
values in the logs: user ids are never a Prometheus or Loki label, so only LogQL can count them.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards import config
from dashboards.common.dashboard_defaults import new_dashboard
from dashboards.common.panels import stat_panel, table_panel, timeseries_panel
from dashboards.common.promql import increase_sum, rate_sum
from dashboards.common.queries import loki_query, prometheus_query
from dashboards.common.variables import environment_variable, service_variable
from instrumentation.vocabulary import BUSINESS_DASHBOARD

ANALYSES = f"{config.ANALYSIS_COMPLETED}|{config.ANALYSIS_FAILED}"
# Lines that name a user; the json stage extracts only that field.
USER_LINES = (
    f'{config.SERVICE_STREAM} |= "user_id" | json user_id="user_id" | __error__="" | user_id!=""'
)


def _events(event_types: str) -> str:
    """Matchers for the business_events_total series of `event_types` (a regex)."""
    return f'{config.SERVICE_MATCHERS}, event_type=~"{event_types}"'


def _total_over_range(event_types: str) -> str:
    return increase_sum("business_events_total", _events(event_types), "")


def _events_stat(title: str, event_type: str) -> stat.Panel:
    """How many `event_type` events the time range had."""
    return stat_panel(
        title,
        f"{event_type} events in the time range.",
        prometheus_query(_total_over_range(event_type), instant=True),
        unit="short",
        width=4,
    )


def active_users(window: str) -> str:
    """Distinct user_id values in the log lines of each `window`."""
    return f"count(sum by (user_id) (count_over_time({USER_LINES} [{window}])))"


def business() -> Dashboard:
    completed = _total_over_range(config.ANALYSIS_COMPLETED)
    return (
        new_dashboard(
            BUSINESS_DASHBOARD,
            "Business events, analyses, routines, external API cost (per UTC day) and active "
            "users counted from the logs.",
        )
        .timezone("utc")
        .with_variable(environment_variable())
        .with_variable(service_variable())
        .with_row(Row("Over the time range"))
        .with_panel(_events_stat("Analyses completed", config.ANALYSIS_COMPLETED))
        .with_panel(_events_stat("Analyses failed", config.ANALYSIS_FAILED))
        .with_panel(
            stat_panel(
                "Analysis success ratio",
                "Completed / (completed + failed) in the time range.",
                prometheus_query(f"{completed} / {_total_over_range(ANALYSES)}", instant=True),
                unit="percentunit",
                width=4,
            )
        )
        .with_panel(_events_stat("Routines generated", config.ROUTINE_GENERATED))
        .with_panel(
            stat_panel(
                "API cost",
                "api_cost_usd_total increase in the time range.",
                prometheus_query(
                    increase_sum("api_cost_usd_total", config.SERVICE_MATCHERS, ""),
                    instant=True,
                ),
                unit="currencyUSD",
                width=4,
            )
        )
        .with_panel(
            stat_panel(
                "Active users",
                "Distinct user_id values in the log lines of the time range.",
                loki_query(active_users("$__range"), instant=True),
                unit="short",
                width=4,
            )
        )
        .with_row(Row("Events"))
        .with_panel(
            timeseries_panel(
                "Business events per minute by type",
                "business_events_total: analyses, routines, tracked API calls.",
                [
                    prometheus_query(
                        rate_sum("business_events_total", config.SERVICE_MATCHERS, "event_type")
                        + " * 60",
                        "{{event_type}}",
                    )
                ],
                unit="short",
            )
        )
        .with_panel(
            timeseries_panel(
                "Analyses completed vs failed per minute",
                "A failed line rising while completed falls is an outage of the analysis path.",
                [
                    prometheus_query(
                        rate_sum("business_events_total", _events(ANALYSES), "event_type")
                        + " * 60",
                        "{{event_type}}",
                    )
                ],
                unit="short",
            )
        )
        .with_panel(
            timeseries_panel(
                f"Active users per {config.ACTIVE_USERS_BUCKET}",
                f"Distinct user_id values in the log lines of each {config.ACTIVE_USERS_BUCKET}.",
                [
                    loki_query(active_users(config.ACTIVE_USERS_BUCKET), "active users").step(
                        config.ACTIVE_USERS_BUCKET
                    )
                ],
                unit="short",
                width=24,
            )
        )
        .with_row(Row("External API cost"))
        .with_panel(
            timeseries_panel(
                "API cost by endpoint and model",
                "api_cost_usd_total as US dollars per hour.",
                [
                    prometheus_query(
                        rate_sum("api_cost_usd_total", config.SERVICE_MATCHERS, "endpoint, model")
                        + " * 3600",
                        "{{endpoint}} {{model}}",
                    )
                ],
                unit="currencyUSD",
            )
        )
        .with_panel(
            timeseries_panel(
                f"API cost per UTC day (last {config.COST_DAYS})",
                "Each bar is one UTC day, labelled with its first instant; today's is so far.",
                [
                    # Steps are 1d and aligned to UTC midnight (the dashboard's time zone);
                    # `offset -1d` makes the point at midnight T the day that starts at T.
                    prometheus_query(
                        "sum by (model) (increase("
                        f"api_cost_usd_total{{{config.SERVICE_MATCHERS}}}[1d] offset -1d))",
                        "{{model}}",
                        interval="1d",
                    )
                ],
                unit="currencyUSD",
                bars=True,
            ).time_from(config.COST_DAYS)
        )
        .with_panel(
            table_panel(
                "API cost over the time range by endpoint and model",
                "api_cost_usd_total increase in the time range.",
                [
                    prometheus_query(
                        increase_sum(
                            "api_cost_usd_total", config.SERVICE_MATCHERS, "endpoint, model"
                        ),
                        instant=True,
                    )
                ],
                columns=["endpoint", "model", "Value"],
                headers={"Value": "cost"},
                units={"Value": "currencyUSD"},
                sort_by="Value",
            )
        )
    )
