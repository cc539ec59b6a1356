"""TargetDown and HighMemoryUsage: the process behind a service, per instance."""

from __future__ import annotations

from alert_rules.config import AlertConfig, duration_seconds
from alert_rules.humanize import humanize_1024
from alert_rules.rule import AlertSpec
from alert_rules.unit_tests import (
    API,
    Scenario,
    firing_alert,
    pending_then_firing,
    selector,
    silent,
)
from instrumentation.vocabulary import HIGH_MEMORY_USAGE_ALERT, TARGET_DOWN_ALERT

BY_INSTANCE = ("instance", "service")


def target_down(config: AlertConfig) -> AlertSpec:
    return AlertSpec(
        name=TARGET_DOWN_ALERT,
        expr="max by (service, instance) (up) == 0",
        for_=config.target_down_for,
        severity="critical",
        summary="{service} target {instance} is down",
        description=(
            "Prometheus has failed to scrape {instance} of {service} for "
            f"{config.target_down_for}: the process is down or /metrics does not answer."
        ),
        by=BY_INSTANCE,
    )


def high_memory_usage(config: AlertConfig) -> AlertSpec:
    limit = humanize_1024(config.memory_threshold_bytes)
    return AlertSpec(
        name=HIGH_MEMORY_USAGE_ALERT,
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
        by=BY_INSTANCE,
    )


def _gauge_values(normal: float, abnormal: float, start: int, length: int, total: int) -> str:
    """One value per interval: `abnormal` for `length` steps from `start`, `normal` otherwise."""
    values = [abnormal if start <= i < start + length else normal for i in range(total + 1)]
    return " ".join(f"{v:.0f}" for v in values)


def _blip_scenarios(
    spec: AlertSpec, series: str, normal: float, abnormal: float, value: str | None, blip: str
) -> list[Scenario]:
    """`abnormal` from minute 2 on fires after `for:`; a blip shorter than `for:` never does."""
    hold = duration_seconds(spec.for_) // 60
    start, total = 2, hold + 8
    return [
        pending_then_firing(
            spec,
            {series: _gauge_values(normal, abnormal, start, total, total)},
            firing_alert(spec, API, value),
            pending_at=start + hold - 1,
            firing_at=start + hold + 1,
        ),
        Scenario(
            name=f"{spec.name}: {blip} shorter than for stays silent",
            interval="1m",
            series={series: _gauge_values(normal, abnormal, start, hold - 1, total)},
            # A blip shorter than `for:` is pending for a while: only firing is checked.
            checks=silent(spec, (start + m for m in range(hold + 3)), check_pending=False),
        ),
    ]


def target_down_scenarios(config: AlertConfig) -> list[Scenario]:
    # A restart (the gauge's equivalent of a counter reset) misses a scrape or two.
    return _blip_scenarios(target_down(config), selector("up", **API), 1, 0, None, "a restart")


def memory_scenarios(config: AlertConfig) -> list[Scenario]:
    threshold = config.memory_threshold_bytes
    high = threshold * 1.5
    rss = selector("process_resident_memory_bytes", **API)
    return _blip_scenarios(
        high_memory_usage(config), rss, threshold / 4, high, humanize_1024(high), "a spike"
    )
