"""TargetDown and HighMemoryUsage: the process behind a service, per instance."""

from __future__ import annotations

from alert_rules.config import AlertConfig, duration_seconds, format_duration
from alert_rules.humanize import humanize_1024
from alert_rules.rule import AlertSpec
from alert_rules.unit_tests import Alert, Check, Scenario, selector

SERVICE = "api"
INSTANCE = "api:8000"
_TARGET = {"job": SERVICE, "instance": INSTANCE, "service": SERVICE}


def target_down(config: AlertConfig) -> AlertSpec:
    return AlertSpec(
        name="TargetDown",
        expr="max by (service, instance) (up) == 0",
        for_=config.target_down_for,
        severity="critical",
        summary="{service} target {instance} is down",
        description=(
            "Prometheus has failed to scrape {instance} of {service} for "
            f"{config.target_down_for}: the process is down or /metrics does not answer."
        ),
    )


def high_memory_usage(config: AlertConfig) -> AlertSpec:
    limit = humanize_1024(config.memory_threshold_bytes)
    return AlertSpec(
        name="HighMemoryUsage",
        expr=(
            "max by (service, instance) (process_resident_memory_bytes)"
            f" > {config.memory_threshold_bytes:.0f}"
        ),
        for_=config.memory_for,
        severity="warning",
        summary="High memory usage on {service} {instance}",
        description=(
            f"{{instance}} of {{service}} uses {{value}}B of resident memory "
            f"(threshold {limit}B) for {config.memory_for}."
        ),
        value_format="$value | humanize1024",
    )


def _gauge_values(normal: float, abnormal: float, start: int, length: int, total: int) -> str:
    """One value per interval: `abnormal` for `length` steps from `start`, `normal` otherwise."""
    values = [abnormal if start <= i < start + length else normal for i in range(total + 1)]
    return " ".join(f"{v:.0f}" for v in values)


def target_down_scenarios(config: AlertConfig) -> list[Scenario]:
    spec = target_down(config)
    hold = duration_seconds(config.target_down_for) // 60
    down_at, total = 2, hold + 8
    up = selector("up", **_TARGET)
    labels = {"instance": INSTANCE, "service": SERVICE, "severity": spec.severity}
    firing = Alert(labels, spec.expected_annotations(config, service=SERVICE, instance=INSTANCE))
    return [
        Scenario(
            name="TargetDown: pending until for elapses, then firing",
            interval="1m",
            series={up: _gauge_values(1, 0, down_at, total, total)},
            checks=[
                Check(format_duration((down_at + hold - 1) * 60), spec.name, pending=[labels]),
                Check(format_duration((down_at + hold + 1) * 60), spec.name, firing=[firing]),
            ],
        ),
        Scenario(
            # A restart (the gauge's equivalent of a counter reset) misses a scrape or two.
            name="TargetDown: a restart shorter than for stays silent",
            interval="1m",
            series={up: _gauge_values(1, 0, down_at, hold - 1, total)},
            checks=[
                Check(format_duration((down_at + m) * 60), spec.name, pending=None)
                for m in range(hold + 3)
            ],
        ),
    ]


def memory_scenarios(config: AlertConfig) -> list[Scenario]:
    spec = high_memory_usage(config)
    hold = duration_seconds(config.memory_for) // 60
    threshold = config.memory_threshold_bytes
    high, normal = threshold * 1.5, threshold / 4
    start, total = 2, hold + 8
    rss = selector("process_resident_memory_bytes", **_TARGET)
    labels = {"instance": INSTANCE, "service": SERVICE, "severity": spec.severity}
    firing = Alert(
        labels,
        spec.expected_annotations(
            config, service=SERVICE, instance=INSTANCE, value=humanize_1024(high)
        ),
    )
    return [
        Scenario(
            name="HighMemoryUsage: pending until for elapses, then firing",
            interval="1m",
            series={rss: _gauge_values(normal, high, start, total, total)},
            checks=[
                Check(format_duration((start + hold - 1) * 60), spec.name, pending=[labels]),
                Check(format_duration((start + hold + 1) * 60), spec.name, firing=[firing]),
            ],
        ),
        Scenario(
            name="HighMemoryUsage: a spike shorter than for stays silent",
            interval="1m",
            series={rss: _gauge_values(normal, high, start, hold - 1, total)},
            checks=[
                Check(format_duration((start + m) * 60), spec.name, pending=None)
                for m in range(hold + 3)
            ],
        ),
    ]
