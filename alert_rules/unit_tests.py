"""promtool unit tests (`promtool test rules`) as data, generated next to the rules they test.

Each alert module describes scenarios: input series, then what must hold at given times — an
alert pending but not yet firing (its `for:` has not elapsed), firing with its full labels and
annotations, or silent (e.g. across a counter reset).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


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
                    {"exp_labels": dict(a.labels), "exp_annotations": dict(a.annotations)}
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


def test_file(
    rule_files: Sequence[str], scenarios: Sequence[Scenario], evaluation_interval: str = "1m"
) -> dict[str, Any]:
    return {
        "rule_files": list(rule_files),
        "evaluation_interval": evaluation_interval,
        "tests": [scenario.promtool() for scenario in scenarios],
    }


def selector(metric: str, **labels: str) -> str:
    """`metric{a="1", b="2"}` with labels in the given order."""
    inner = ", ".join(f'{name}="{value}"' for name, value in labels.items())
    return f"{metric}{{{inner}}}"


def counter(per_interval: float, steps: int, start: float = 0) -> str:
    """promtool expanding notation for a counter growing by `per_interval` for `steps`."""
    return f"{_number(start)}+{_number(per_interval)}x{steps}"


def _series_text(alertname: str, labels: Mapping[str, str]) -> str:
    all_labels = {"alertname": alertname, "alertstate": "pending", **labels}
    inner = ", ".join(f'{name}="{value}"' for name, value in sorted(all_labels.items()))
    return f"ALERTS{{{inner}}}"


def _number(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(float(value))
