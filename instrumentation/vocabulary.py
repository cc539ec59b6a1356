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

# --- Alerting ---------------------------------------------------------------------------------
# The runbooks' address; an alert's `runbook_url` is this plus `#<alertname, lowercased>`.
RUNBOOK_URL_BASE = "https://github.com/corrstack/corrstack/blob/main/docs/runbooks.md"
# The alert the error tracker posts to Alertmanager itself.
ERROR_PATTERN_ALERT = "ErrorPatternDetected"


def quiet_paths_regex() -> str:
    """`QUIET_PATHS` as a PromQL regex alternative: ``/metrics|/health|…``."""
    return "|".join(QUIET_PATHS)


def runbook_url(alertname: str) -> str:
    """The runbook section of `alertname` (GitHub's anchor for a ``## Name`` heading)."""
    return f"{RUNBOOK_URL_BASE}#{alertname.lower()}"
