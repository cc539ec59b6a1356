"""Builders for Prometheus/Loki rule dicts, with annotations that tests can expand too.

Annotation texts are written once with `{service}`-style fields. `AlertSpec.rule()` turns them
into Go templates for the rule file; `expected_annotations()` fills them with known values for
the promtool tests' `exp_annotations`, so a rule and its expected notification never drift
apart. `runbook_url` is not here: `alert_rules.runbook_links` adds it to every alert at the end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Rule = dict[str, Any]

# `{value}` is the alert expression's value; each alert says how to print it.
_LABEL_FIELDS = ("service", "instance", "slo", "long_window", "short_window")


@dataclass(frozen=True)
class AlertSpec:
    """One alerting rule: what it watches, when it fires, and what it tells a human."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    # A Go template pipeline printing `$value`, e.g. `$value | humanizePercentage`.
    value_format: str = "$value"
    labels: Mapping[str, str] = field(default_factory=dict)
    # The series labels the expression keeps (its `by (…)`), so every alert instance has them.
    by: tuple[str, ...] = ("service",)

    def rule(self) -> Rule:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **self.labels},
            "annotations": {
                "summary": _go_template(self.summary, self.value_format),
                "description": _go_template(self.description, self.value_format),
            },
        }

    def expected_annotations(self, **values: str) -> dict[str, str]:
        """The annotations promtool should see for an alert with these label values."""
        return {
            "summary": self.summary.format(**values),
            "description": self.description.format(**values),
        }


def record(name: str, expr: str) -> Rule:
    return {"record": name, "expr": expr}


def group(name: str, rules: Sequence[AlertSpec | Rule]) -> dict[str, Any]:
    """A rule group; alerts are given as `AlertSpec`s, recording rules as `record()` dicts."""
    return {
        "name": name,
        "rules": [rule.rule() if isinstance(rule, AlertSpec) else rule for rule in rules],
    }


def _go_template(text: str, value_format: str) -> str:
    fields = {name: f"{{{{ $labels.{name} }}}}" for name in _LABEL_FIELDS}
    fields["value"] = f"{{{{ {value_format} }}}}"
    return text.format(**fields)
