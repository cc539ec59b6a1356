"""CostAnomaly: external API spend per service against its own baseline and the daily budget."""

from __future__ import annotations

from alert_rules.config import AlertConfig, duration_seconds
from alert_rules.humanize import fixed_two
from alert_rules.rule import AlertSpec, Rule, record
from alert_rules.unit_tests import (
    API,
    Check,
    Scenario,
    at,
    counter,
    counter_with_reset,
    firing_alert,
    pending_then_firing,
    selector,
    silent,
)
from instrumentation.vocabulary import COST_ANOMALY_ALERT

HOURLY = "service:api_cost_usd:increase1h"
BASELINE = "service:api_cost_usd:hourly_baseline"


def cost_recording_rules(config: AlertConfig) -> list[Rule]:
    window = config.cost_baseline_window
    hours = duration_seconds(window) / 3600
    return [
        record(HOURLY, "sum by (service) (increase(api_cost_usd_total[1h]))"),
        # The hourly average over the window before the last hour, so a spike never raises
        # its own baseline.
        record(
            BASELINE,
            f"sum by (service) (increase(api_cost_usd_total[{window}] offset 1h)) / {hours:g}",
        ),
    ]


def cost_anomaly(config: AlertConfig) -> AlertSpec:
    factor, budget = config.cost_anomaly_factor, config.cost_daily_budget_usd
    floor = config.cost_anomaly_min_daily_usd
    return AlertSpec(
        name=COST_ANOMALY_ALERT,
        # Each arm keeps the hourly spend as its value (`and` keeps its left side), which the
        # description prints. A service without a day of history has no baseline: only the
        # budget arm can fire for it.
        expr=(
            f"(\n"
            f"  {HOURLY} > {factor:g} * {BASELINE}\n"
            f"  and on (service)\n"
            f"  {HOURLY} * 24 > {floor:g}\n"
            f")\n"
            f"or on (service)\n"
            f"(\n"
            f"  {HOURLY}\n"
            f"  and on (service)\n"
            f"  {HOURLY} * 24 > {budget:g}\n"
            f")"
        ),
        for_=config.cost_for,
        severity="warning",
        summary="API cost anomaly on {service}",
        description=(
            "{service} spent ${value} on external APIs in the last hour: more than "
            f"{factor:g}× its hourly average of the previous {config.cost_baseline_window} "
            f"(past ${floor:g} a day), or on pace to exceed the daily budget of ${budget:g}."
        ),
        value_format='$value | printf "%.2f"',
    )


def cost_scenarios(config: AlertConfig) -> list[Scenario]:
    spec = cost_anomaly(config)
    budget, factor = config.cost_daily_budget_usd, config.cost_anomaly_factor
    hold = duration_seconds(config.cost_for) // 60
    baseline_hours = duration_seconds(config.cost_baseline_window) // 3600
    # A day of history sampled every minute makes promtool slow; the cost rules only look at
    # hours, so a sample (and an evaluation) every five minutes resolves them well.
    interval = "5m"
    per_hour = 12  # samples
    history = (baseline_hours + 1) * per_hour  # a full baseline before the spike
    spike_steps = per_hour * 2
    series = selector("api_cost_usd_total", endpoint="/api/analysis", model="gpt-4o", **API)

    def spend(base: float, spike: float) -> str:
        """Dollars per hour: `base` for the history, then `spike`."""
        spike_start = base / per_hour * history + spike / per_hour
        return (
            f"{counter(base / per_hour, history)} "
            f"{counter(spike / per_hour, spike_steps - 1, start=spike_start)}"
        )

    # Half the budget's pace as the usual spend, then twice the factor: over both limits.
    base = budget / 24 / 2
    spike = base * factor * 2
    # Past the first hour the spike fills the whole 1h window: increase() is exact.
    after_minutes = 60 + hold + 5
    start = history * 5
    # Minutes into the spike when an arm first holds (the 1h increase ramps linearly from
    # `base` to `spike`): the anomaly arm at `factor`× the baseline, the budget arm at the
    # budget's hourly pace (twice `base`); pending shortly after.
    ramp = spike - base
    crossing = 60 * min((factor - 1) * base / ramp, (budget / 24 - base) / ramp)
    pending_at = start + (int(crossing) // 5 + 2) * 5
    cheap = budget / 24 / 100
    over_budget = budget / 24 * 2  # dollars per hour, steady: no anomaly, twice the budget
    # A tenth of the budget's pace; the jump to (factor + 1)× clears the floor, not the budget.
    quiet = budget / 24 / 10
    assert config.cost_anomaly_min_daily_usd < quiet * (factor + 1) * 24 < budget

    def fires_at(minute: int, dollars_per_hour: float) -> list[Check]:
        alert = firing_alert(spec, API, fixed_two(dollars_per_hour))
        return [Check(at(minute), spec.name, firing=[alert])]

    return [
        pending_then_firing(
            spec,
            {series: spend(base, spike)},
            firing_alert(spec, API, fixed_two(spike)),
            pending_at=pending_at,
            firing_at=start + after_minutes,
            interval=interval,
        ),
        Scenario(
            name="CostAnomaly: steady spend over the daily budget fires without an anomaly",
            interval=interval,
            series={series: counter(over_budget / per_hour, history + spike_steps)},
            checks=fires_at(start + hold + 5, over_budget),
        ),
        Scenario(
            name="CostAnomaly: a jump under the daily budget but past the floor fires",
            interval=interval,
            series={series: spend(quiet, quiet * (factor + 1))},
            checks=fires_at(start + after_minutes, quiet * (factor + 1)),
        ),
        Scenario(
            name="CostAnomaly: a jump far below the anomaly floor stays silent",
            interval=interval,
            series={series: spend(cheap, cheap * factor * 3)},
            checks=silent(spec, [start + after_minutes]),
        ),
        Scenario(
            name="CostAnomaly: a counter reset at usual spend stays silent",
            interval=interval,
            series={
                series: counter_with_reset(
                    base / per_hour, history + spike_steps, history, start=500
                )
            },
            checks=silent(spec, (start + m for m in (10, 30, 60, 90))),
        ),
    ]
