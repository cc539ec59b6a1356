"""system-health: performance degrades — latency, resources and logs side by side.

Process metrics come from prometheus_client's process, platform and GC collectors; `up` and
`scrape_*` from Prometheus itself; `log_records_dropped_total` from corrstack's log accounting.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models.loki import LokiQueryDirection

from dashboards import config
from dashboards.common.dashboard_defaults import new_dashboard
from dashboards.common.panels import Thresholds, logs_panel, timeseries_panel
from dashboards.common.promql import latency_quantile, rate_sum
from dashboards.common.queries import loki_query, prometheus_query
from dashboards.common.variables import environment_variable, service_variable
from instrumentation.vocabulary import SYSTEM_HEALTH_DASHBOARD

BY_INSTANCE = "service, instance"
LEGEND = "{{service}} {{instance}}"


def _gauge(metric: str) -> str:
    return f"sum by ({BY_INSTANCE}) ({metric}{{{config.SERVICE_MATCHERS}}})"


def _scrape_panel(
    title: str, description: str, metric: str, unit: str, levels: Thresholds | None = None
) -> timeseries.Panel:
    """A quarter-width panel of a per-target series Prometheus writes about its scrapes."""
    return timeseries_panel(
        title,
        description,
        [prometheus_query(_gauge(metric), LEGEND)],
        unit=unit,
        levels=levels,
        width=6,
    )


def system_health() -> Dashboard:
    matchers = config.SERVICE_MATCHERS
    return (
        new_dashboard(
            SYSTEM_HEALTH_DASHBOARD,
            "Latency next to memory and CPU, garbage collection, slow work from the logs, and "
            "whether Prometheus and the log pipeline still see every service.",
        )
        .with_variable(environment_variable())
        .with_variable(service_variable())
        .with_row(Row("Latency next to memory"))
        .with_panel(
            timeseries_panel(
                "p95 latency by service",
                "Exemplar dots are single requests: click one for its log lines.",
                [
                    prometheus_query(
                        latency_quantile(0.95, matchers, "service"), "{{service}}", exemplar=True
                    )
                ],
                unit="s",
                levels=config.LATENCY_SECONDS,
            )
        )
        .with_panel(
            timeseries_panel(
                "Resident memory",
                "process_resident_memory_bytes per instance.",
                [prometheus_query(_gauge("process_resident_memory_bytes"), LEGEND)],
                unit="bytes",
                levels=config.RSS_BYTES,
            )
        )
        .with_row(Row("CPU, file descriptors and garbage collection"))
        .with_panel(
            timeseries_panel(
                "CPU",
                "CPU seconds per second per instance; 100 % is one core.",
                [
                    prometheus_query(
                        rate_sum("process_cpu_seconds_total", matchers, BY_INSTANCE), LEGEND
                    )
                ],
                unit="percentunit",
                width=6,
            )
        )
        .with_panel(
            timeseries_panel(
                "Open file descriptors (share of the limit)",
                "process_open_fds / process_max_fds: sockets and files held open.",
                [
                    prometheus_query(
                        f"{_gauge('process_open_fds')} / {_gauge('process_max_fds')}", LEGEND
                    )
                ],
                unit="percentunit",
                levels=config.FD_USAGE_RATIO,
                width=6,
            )
        )
        .with_panel(
            timeseries_panel(
                "GC collections by generation",
                "python_gc_collections_total per second; a busy generation 2 stalls requests.",
                [
                    prometheus_query(
                        rate_sum("python_gc_collections_total", matchers, "service, generation"),
                        "{{service}} gen {{generation}}",
                    )
                ],
                unit="cps",
                width=6,
            )
        )
        .with_panel(
            timeseries_panel(
                "GC objects collected and uncollectable",
                "Objects freed per second; any uncollectable objects are a leak.",
                [
                    prometheus_query(
                        rate_sum("python_gc_objects_collected_total", matchers, "service"),
                        "{{service}} collected",
                    ),
                    prometheus_query(
                        rate_sum("python_gc_objects_uncollectable_total", matchers, "service"),
                        "{{service}} uncollectable",
                    ),
                ],
                unit="cps",
                width=6,
            )
        )
        .with_row(Row("Slow work"))
        .with_panel(
            timeseries_panel(
                "p95 operation duration",
                "operation_duration_seconds from @log_performance; dots carry the request_id.",
                [
                    prometheus_query(
                        latency_quantile(
                            0.95,
                            matchers,
                            "service, operation",
                            histogram="operation_duration_seconds",
                        ),
                        "{{service}} {{operation}}",
                        exemplar=True,
                    )
                ],
                unit="s",
            )
        )
        .with_panel(
            logs_panel(
                f"Slow requests and operations (over {config.SLOW_OPERATION_MS} ms)",
                "Access and log_performance lines whose duration_ms is over the threshold.",
                loki_query(
                    f'{config.SERVICE_STREAM} |= "duration_ms" | json '
                    f"| duration_ms > {config.SLOW_OPERATION_MS}",
                    direction=LokiQueryDirection.BACKWARD,
                ),
                width=12,
                height=8,
            )
        )
        .with_row(Row("Scrapes and the log pipeline"))
        .with_panel(
            _scrape_panel(
                "Targets up",
                "up: 1 when Prometheus scraped the target, 0 when the scrape failed.",
                "up",
                unit="short",
            )
        )
        .with_panel(
            _scrape_panel(
                "Scrape duration",
                "scrape_duration_seconds; near the scrape timeout, samples start to go missing.",
                "scrape_duration_seconds",
                unit="s",
                levels=config.SCRAPE_SECONDS,
            )
        )
        .with_panel(
            _scrape_panel(
                "Samples per scrape",
                "scrape_samples_scraped; a jump is new label values (check cardinality).",
                "scrape_samples_scraped",
                unit="short",
            )
        )
        .with_panel(
            timeseries_panel(
                "Log records dropped",
                "Records a log sink could not write (disk full, closed pipe): lost lines.",
                [
                    prometheus_query(
                        rate_sum("log_records_dropped_total", matchers, "service, sink, reason"),
                        "{{service}} {{sink}} {{reason}}",
                    )
                ],
                unit="cps",
                width=6,
            )
        )
    )
