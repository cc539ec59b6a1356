"""The stack's vocabulary: every name and fact that the library, the dashboards and the alert
rules must agree on, written once.

`instrumentation` reads it at run time; `dashboards` and `alert_rules` read it when they
generate files, the way a monitoring mixin keeps one `_config` for its alerts, rules and
dashboards. docs/reference.md is the users' page for the same names (a test keeps them equal).
"""

from __future__ import annotations

# --- HTTP -------------------------------------------------------------------------------------
# Paths whose access lines are DEBUG (scrapes, probes) and that HTTP alerts and SLOs leave out.
QUIET_PATHS = ("/metrics", "/health", "/healthz", "/ready")
# The label value of a request no route matched.
UNMATCHED_ROUTE = "unmatched"
# `status` label values that count as server errors, as a PromQL regex.
SERVER_ERROR_STATUS = "5.."

# --- Histogram buckets (seconds) --------------------------------------------------------------
# A latency SLO threshold must be one of these: its SLI reads the `_bucket` series.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OPERATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Task runs (Celery and other queues) take longer than requests.
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# --- Alerting ---------------------------------------------------------------------------------
# The runbooks' address; an alert's `runbook_url` is this plus `#<alertname, lowercased>`.
RUNBOOK_URL_BASE = "https://github.com/corrstack/corrstack/blob/main/docs/runbooks.md"
# The alert the error tracker posts to Alertmanager itself.
ERROR_PATTERN_ALERT = "ErrorPatternDetected"


def quiet_paths_regex() -> str:
    """`QUIET_PATHS` as a PromQL regex alternative: ``/metrics|/health|…``."""
    return "|".join(QUIET_PATHS)


def runbook_url(alertname: str, base: str = RUNBOOK_URL_BASE) -> str:
    """The runbook section of `alertname` under `base` (GitHub's anchor for a ``## Name``
    heading)."""
    return f"{base}#{alertname.lower()}"


# --- Names added for the dashboards and the alert rules ---------------------------------------
# A PromQL matcher selecting the server-error series of `http_requests_total`.
SERVER_ERROR_MATCHER = f'status=~"{SERVER_ERROR_STATUS}"'

# The logger of the one access line per request (method, route, status, duration_ms).
ACCESS_LOGGER = "corrstack.access"

# --- Logs (Loki) ------------------------------------------------------------------------------
# Loki's stream labels; request_id, trace_id and user_id stay inside the JSON line.
LOKI_LABELS = ("service", "environment", "level")
# `level` values of the lines that count as errors.
ERROR_LEVELS = ("ERROR", "CRITICAL")
# A stream matcher every corrstack line satisfies (Loki needs one matcher that is not empty).
EVERY_SERVICE_MATCHER = 'service=~".+"'

# --- Grafana ----------------------------------------------------------------------------------
# Datasource uids, as config/grafana/provisioning/datasources creates them.
PROMETHEUS_DATASOURCE = "prometheus"
LOKI_DATASOURCE = "loki"
ALERTMANAGER_DATASOURCE = "alertmanager"
DATASOURCE_UIDS = (PROMETHEUS_DATASOURCE, LOKI_DATASOURCE, ALERTMANAGER_DATASOURCE)
# Dashboard uids (`/d/<uid>`): the dashboards link to each other and Loki lines to request-trace.
SERVICE_OVERVIEW_DASHBOARD = "service-overview"
ERRORS_DASHBOARD = "errors"
BUSINESS_DASHBOARD = "business"
SYSTEM_HEALTH_DASHBOARD = "system-health"
REQUEST_TRACE_DASHBOARD = "request-trace"
DASHBOARD_UIDS = (
    SERVICE_OVERVIEW_DASHBOARD,
    ERRORS_DASHBOARD,
    BUSINESS_DASHBOARD,
    SYSTEM_HEALTH_DASHBOARD,
    REQUEST_TRACE_DASHBOARD,
)

# --- Alert names (each has a `## <name>` section in docs/runbooks.md) -------------------------
HIGH_ERROR_RATE_ALERT = "HighErrorRate"
SLOW_RESPONSES_ALERT = "SlowResponses"
CRITICAL_ERROR_PATTERN_ALERT = "CriticalErrorPattern"
COST_ANOMALY_ALERT = "CostAnomaly"
TARGET_DOWN_ALERT = "TargetDown"
HIGH_MEMORY_USAGE_ALERT = "HighMemoryUsage"
ERROR_BUDGET_BURN_ALERT = "ErrorBudgetBurn"
# The Loki ruler's alert on a spike of error lines.
ERROR_LOG_SPIKE_ALERT = "ErrorLogSpike"
# The alerts Prometheus evaluates (alert_rules/generated/prometheus), as DESIGN.md names them.
PROMETHEUS_ALERTS = (
    HIGH_ERROR_RATE_ALERT,
    SLOW_RESPONSES_ALERT,
    CRITICAL_ERROR_PATTERN_ALERT,
    COST_ANOMALY_ALERT,
    TARGET_DOWN_ALERT,
    HIGH_MEMORY_USAGE_ALERT,
    ERROR_BUDGET_BURN_ALERT,
)


def loki_stream(*matchers: str) -> str:
    """A Loki stream selector: ``loki_stream('service="api"') == '{service="api"}'``."""
    return "{" + ", ".join(matchers) + "}"


def loki_error_stream(*matchers: str) -> str:
    """The error lines of the streams `matchers` select.

    >>> loki_error_stream(EVERY_SERVICE_MATCHER)
    '{service=~".+", level=~"ERROR|CRITICAL"}'
    """
    return loki_stream(*matchers, f'level=~"{"|".join(ERROR_LEVELS)}"')
