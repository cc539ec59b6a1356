"""Every selector, threshold and window the dashboards read — tune them here, only here.

The names the whole stack shares (datasource and dashboard uids, the 5xx matcher, the error
streams, logger names) come from `instrumentation.vocabulary`; thresholds are starting points
an operator is expected to adjust. `validate()` runs before every build, so a broken value fails
the build instead of producing a quietly wrong dashboard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from instrumentation import vocabulary
from instrumentation.settings import http_url
from instrumentation.vocabulary import (
    ALERTMANAGER_DATASOURCE,
    BUSINESS_DASHBOARD,
    ERRORS_DASHBOARD,
    EVERY_SERVICE_MATCHER,
    LOKI_DATASOURCE,
    PROMETHEUS_DATASOURCE,
    REQUEST_TRACE_DASHBOARD,
    SERVICE_OVERVIEW_DASHBOARD,
    SYSTEM_HEALTH_DASHBOARD,
    loki_error_stream,
    loki_stream,
)


@dataclass(frozen=True)
class Datasource:
    uid: str
    type: str
    name: str  # Grafana's alerting UI selects an Alertmanager by name, not uid


# As config/grafana/provisioning/datasources creates them.
PROMETHEUS = Datasource(uid=PROMETHEUS_DATASOURCE, type="prometheus", name="Prometheus")
LOKI = Datasource(uid=LOKI_DATASOURCE, type="loki", name="Loki")
ALERTMANAGER = Datasource(uid=ALERTMANAGER_DATASOURCE, type="alertmanager", name="Alertmanager")

# uid -> title. The order is the order of the dashboard links on every dashboard.
DASHBOARDS = {
    SERVICE_OVERVIEW_DASHBOARD: "corrstack / Service overview",
    ERRORS_DASHBOARD: "corrstack / Errors",
    REQUEST_TRACE_DASHBOARD: "corrstack / Request trace",
    SYSTEM_HEALTH_DASHBOARD: "corrstack / System health",
    BUSINESS_DASHBOARD: "corrstack / Business",
}
TAGS = ("corrstack", "generated")
TIME_FROM = "now-1h"
REFRESH = "30s"

# --- Prometheus selectors ---------------------------------------------------------------------
# `service` is the scrape config's target label. `environment` is matched with `=~` and its
# "All" value is `.*`, so a target without an environment label still matches.
ALL_SERVICES = ".+"
ALL_ROUTES = ".+"
ALL_ENVIRONMENTS = ".*"
SERVICE_MATCHERS = 'service=~"$service", environment=~"$environment"'
ROUTE_MATCHERS = SERVICE_MATCHERS + ', route=~"$route"'
# Where the variables' value lists come from.
SERVICE_VALUES = 'label_values(up{environment=~"$environment"}, service)'
ROUTE_VALUES = 'label_values(http_requests_total{service=~"$service"}, route)'
ENVIRONMENT_VALUES = "label_values(up, environment)"

FIRING_ALERTS = 'ALERTS{alertstate="firing"}'
LATENCY_QUANTILES = (0.5, 0.95, 0.99)
# The quantile whose query carries the exemplars: one query per panel, or every dot is drawn
# once per quantile.
EXEMPLAR_QUANTILE = 0.99

# --- Loki selectors ---------------------------------------------------------------------------
# Loki labels are service, environment and level only; request_id, user_id and trace_id stay in
# the JSON line and are filtered in the pipeline (`|= "<id>" | json | request_id="<id>"`).
SERVICE_STREAM = loki_stream(SERVICE_MATCHERS)
ERROR_STREAM = loki_error_stream(SERVICE_MATCHERS)
# request-trace follows one request through every service, whatever the service variable says.
EVERY_SERVICE_STREAM = loki_stream(EVERY_SERVICE_MATCHER)
MAX_LOG_LINES = 1000

# --- Thresholds (green below the first, yellow from it, red from the second) ------------------
LATENCY_SECONDS = (0.5, 1.0)
ERROR_RATIO = (0.01, 0.05)
FD_USAGE_RATIO = (0.7, 0.9)
RSS_BYTES = (512 * 1024**2, 1024**3)
SCRAPE_SECONDS = (0.5, 2.0)
# A request slower than this is listed on request-trace as a slow request.
SLOW_REQUEST_MS = 500
# A log_performance line slower than this is listed on system-health.
SLOW_OPERATION_MS = 1000

# --- Business ---------------------------------------------------------------------------------
# `event_type` values written by instrumentation.business_events.
ANALYSIS_COMPLETED = "analysis_completed"
ANALYSIS_FAILED = "analysis_failed"
ROUTINE_GENERATED = "routine_generated"
COST_DAYS = "7d"
# Active users are counted per bucket of this length (distinct user_id in each).
ACTIVE_USERS_BUCKET = "5m"


# --- Datasource provisioning (config/grafana/provisioning/datasources/corrstack.yml) ----------


@dataclass(frozen=True)
class Endpoints:
    """Where Grafana reaches each datasource, and Prometheus's scrape interval there (Grafana's
    $__rate_interval is never shorter than four of it)."""

    prometheus: str
    loki: str
    alertmanager: str
    scrape_interval: str


# The compose services and their ports; the interval of config/prometheus/prometheus.yml.
COMPOSE = Endpoints(
    prometheus="http://prometheus:9090",
    loki="http://loki:3100",
    alertmanager="http://alertmanager:9093",
    scrape_interval="5s",
)
# The charts' Services in namespace `monitoring` (deploy/helm/README.md, names the other objects
# depend on) and the ServiceMonitor's interval (deploy/kubernetes/components/servicemonitor).
CLUSTER = Endpoints(
    prometheus="http://kube-prometheus-stack-prometheus.monitoring.svc:9090",
    loki="http://loki-gateway.monitoring.svc",
    alertmanager="http://kube-prometheus-stack-alertmanager.monitoring.svc:9093",
    scrape_interval="15s",
)
# An ID inside a JSON line, as the first group of a JavaScript regex (Grafana runs derived
# fields in the browser). request_id: 1–64 of [A-Za-z0-9._:-]; trace_id: W3C, 32 lowercase hex,
# so an unknown one ("trace_id":"") never matches.
REQUEST_ID_IN_LINE = r'"request_id":\s*"([A-Za-z0-9._:-]{1,64})"'
TRACE_ID_IN_LINE = r'"trace_id":\s*"([0-9a-f]{32})"'
# A span's "logs" link opens the span's time range widened by these (Grafana interval syntax):
# room for clock skew between hosts and for lines written as the span ends.
SPAN_LOGS_START_SHIFT = "-1m"
SPAN_LOGS_END_SHIFT = "1m"

# A Grafana uid: 1-40 of letters, digits, `-` and `_`.
_UID = re.compile(r"[A-Za-z0-9_-]{1,40}")


@dataclass(frozen=True)
class TraceBackend:
    """The trace datasource that latency exemplars and log lines link to by their trace_id.

    `uid` is the uid of a trace datasource in Grafana (Tempo, Jaeger, Zipkin). With `url`, the
    build also provisions it, as a Tempo datasource named `name` whose spans link back to the
    log lines of their trace; without `url`, Grafana must have that datasource already.

    >>> TraceBackend(uid="tempo", url="http://tempo:3200").url
    'http://tempo:3200'
    """

    uid: str
    url: str | None = None
    name: str = "Tempo"

    def __post_init__(self) -> None:
        if not _UID.fullmatch(self.uid):
            raise ValueError(
                f"TRACE_BACKEND.uid={self.uid[:80]!r}: a Grafana uid is 1-40 characters of "
                "A-Z a-z 0-9 - _"
            )
        if self.uid in vocabulary.DATASOURCE_UIDS:
            raise ValueError(f"TRACE_BACKEND.uid={self.uid!r} is one of the stack's datasources")
        if self.url is not None:
            http_url("TRACE_BACKEND.url", self.url)
        stack_names = {PROMETHEUS.name, LOKI.name, ALERTMANAGER.name}
        if not self.name.strip() or not self.name.isprintable() or self.name in stack_names:
            raise ValueError(
                f"TRACE_BACKEND.name={self.name[:80]!r} must be a printable name that no other "
                f"datasource has ({', '.join(sorted(stack_names))} are taken)"
            )


# Off by default. Set it, run `python -m dashboards.build` and restart Grafana, and every latency
# exemplar and log line also links to the trace of its trace_id (docs/dashboards.md):
#   TRACE_BACKEND = TraceBackend(uid="tempo", url="http://tempo:3200")  # provisions Tempo too
#   TRACE_BACKEND = TraceBackend(uid="my-jaeger")  # a trace datasource Grafana already has
TRACE_BACKEND: TraceBackend | None = None
# The same for the cluster's datasources ConfigMap: a Tempo there has another URL than compose's.
CLUSTER_TRACE_BACKEND: TraceBackend | None = None

# --- Kubernetes (deploy/kubernetes/generated/), as deploy/helm/kube-prometheus-stack.yaml's
# Grafana sidecars look for them (in every namespace) ---------------------------------------
DASHBOARD_CONFIG_MAP_LABELS = {"app.kubernetes.io/part-of": "corrstack", "grafana_dashboard": "1"}
# The sidecar's folderAnnotation; the folder compose's dashboard provider uses.
DASHBOARD_FOLDER_ANNOTATION = {"grafana_folder": "corrstack"}
DATASOURCE_CONFIG_MAP_LABELS = {
    "app.kubernetes.io/part-of": "corrstack",
    "grafana_datasource": "1",
}


def validate() -> None:
    """Raise ValueError on a value no dashboard could use."""
    if set(DASHBOARDS) != set(vocabulary.DASHBOARD_UIDS):
        raise ValueError(f"DASHBOARDS must title exactly the uids {vocabulary.DASHBOARD_UIDS}")
    for name, (warn, critical) in {
        "LATENCY_SECONDS": LATENCY_SECONDS,
        "ERROR_RATIO": ERROR_RATIO,
        "FD_USAGE_RATIO": FD_USAGE_RATIO,
        "RSS_BYTES": RSS_BYTES,
        "SCRAPE_SECONDS": SCRAPE_SECONDS,
    }.items():
        if not 0 < warn < critical:
            raise ValueError(f"{name}: need 0 < warning < critical, got {warn}, {critical}")
    if not all(0 < q < 1 for q in LATENCY_QUANTILES) or EXEMPLAR_QUANTILE not in LATENCY_QUANTILES:
        raise ValueError("LATENCY_QUANTILES must lie in (0, 1) and include EXEMPLAR_QUANTILE")
    if min(SLOW_REQUEST_MS, SLOW_OPERATION_MS, MAX_LOG_LINES) <= 0:
        raise ValueError("SLOW_REQUEST_MS, SLOW_OPERATION_MS and MAX_LOG_LINES must be positive")
