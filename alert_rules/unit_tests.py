"""promtool unit tests (`promtool test rules`) as data, generated next to the rules they test.

Each alert module describes scenarios: input series, then what must hold at given times — an
alert pending but not yet firing (its `for:` has not elapsed), firing with its full labels and
annotations, or silent (e.g. across a counter reset). The pieces every module's scenarios share
are here: the scrape target's labels, counters with and without a reset, the expected alert,
pending-then-firing and silent checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alert_rules.config import duration_seconds, format_duration
from alert_rules.rule import AlertSpec
from instrumentation.vocabulary import runbook_url


@dataclass(frozen=True)
class Alert:
    """An alert instance promtool should report: labels without `alertname`, annotations."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Check:
    """At `eval_time`, `alertname` fires exactly `firing` and is pending exactly for `pending`.

    `pending=None` leaves the pending state unchecked (a blip shorter than `for:` is pending).
    """

    eval_time: str
    alertname: str
    firing: Sequence[Alert] = ()
    pending: Sequence[Mapping[str, str]] | None = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    interval: str
    series: Mapping[str, str]
    checks: Sequence[Check] = field(default_factory=tuple)

    def promtool(self) -> dict[str, Any]:
        alert_tests = [
            {
                "eval_time": check.eval_time,
                "alertname": check.alertname,
                "exp_alerts": [
                    {
                        "exp_labels": dict(a.labels),
                        # What the rule carries after alert_rules.runbook_links' pass.
                        "exp_annotations": {
                            **a.annotations,
                            "runbook_url": runbook_url(check.alertname),
                        },
                    }
                    for a in check.firing
                ],
            }
            for check in self.checks
        ]
        # ALERTS{alertstate="pending"} proves the condition already holds while the alert
        # is still silent — a check that "nothing fires" alone would also pass on a dead rule.
        pending_tests = [
            {
                "expr": f'ALERTS{{alertname="{check.alertname}", alertstate="pending"}}',
                "eval_time": check.eval_time,
                "exp_samples": [
                    {"labels": _series_text(check.alertname, labels), "value": 1}
                    for labels in check.pending
                ],
            }
            for check in self.checks
            if check.pending is not None
        ]
        test: dict[str, Any] = {
            "name": self.name,
            "interval": self.interval,
            "input_series": [
                {"series": series, "values": values} for series, values in self.series.items()
            ],
            "alert_rule_test": alert_tests,
            "promql_expr_test": pending_tests,
        }
        return test


def test_file(rule_files: Sequence[str], scenarios: Sequence[Scenario]) -> dict[str, Any]:
    """A promtool test file; rules are evaluated as often as the densest input has samples."""
    return {
        "rule_files": list(rule_files),
        "evaluation_interval": min((s.interval for s in scenarios), key=duration_seconds),
        "tests": [scenario.promtool() for scenario in scenarios],
    }


def scrape_target(service: str, port: int = 8000) -> dict[str, str]:
    """The labels Prometheus gives every series it scrapes from `service` (prometheus.yml)."""
    return {"job": service, "instance": f"{service}:{port}", "service": service}


API = scrape_target("api")


def http_series(metric: str, route: str = "/api/items", **labels: str) -> str:
    """A series of HTTP metric `metric` for `GET route` on the `api` target."""
    return selector(metric, **API, method="GET", route=route, **labels)


def at(minutes: float) -> str:
    """An `eval_time` `minutes` into the test: `at(90) == "1h30m"`."""
    return format_duration(int(minutes * 60))


def firing_alert(spec: AlertSpec, target: Mapping[str, str], value: str | None = None) -> Alert:
    """The alert `spec` raises for series from `target`, its annotations printing `value`."""
    labels = {name: target[name] for name in spec.by}
    values = dict(target) if value is None else {**target, "value": value}
    return Alert(
        {**labels, "severity": spec.severity, **spec.labels},
        spec.expected_annotations(**values),
    )


def pending_then_firing(
    spec: AlertSpec,
    series: Mapping[str, str],
    alert: Alert,
    *,
    pending_at: float,
    firing_at: float,
    interval: str = "1m",
) -> Scenario:
    """The condition holds, but `for:` has not elapsed at `pending_at`; at `firing_at` it has."""
    return Scenario(
        name=f"{spec.name}: pending until for elapses, then firing",
        interval=interval,
        series=series,
        checks=[
            Check(at(pending_at), spec.name, pending=[alert.labels]),
            Check(at(firing_at), spec.name, firing=[alert]),
        ],
    )


def silent(spec: AlertSpec, minutes: Iterable[float], *, check_pending: bool = True) -> list[Check]:
    """`spec` fires at none of `minutes` (nor is pending, unless `check_pending` is off)."""
    pending: Sequence[Mapping[str, str]] | None = () if check_pending else None
    return [Check(at(minute), spec.name, pending=pending) for minute in minutes]


def selector(metric: str, **labels: str) -> str:
    """`metric{a="1", b="2"}` with labels in the given order."""
    inner = ", ".join(f'{name}="{value}"' for name, value in labels.items())
    return f"{metric}{{{inner}}}"


def counter(per_interval: float, steps: int, start: float = 0) -> str:
    """promtool expanding notation for a counter growing by `per_interval` for `steps`."""
    return f"{_number(start)}+{_number(per_interval)}x{steps}"


def counter_with_reset(per_interval: float, steps: int, reset_at: int, start: float = 0) -> str:
    """`counter()` from `start` whose process restarts after `reset_at` steps: back to zero."""
    return f"{counter(per_interval, reset_at, start)} {counter(per_interval, steps - reset_at - 1)}"


def _series_text(alertname: str, labels: Mapping[str, str]) -> str:
    all_labels = {"alertname": alertname, "alertstate": "pending", **labels}
    inner = ", ".join(f'{name}="{value}"' for name, value in sorted(all_labels.items()))
    return f"ALERTS{{{inner}}}"


def _number(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(float(value))
