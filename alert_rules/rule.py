"""Builders for Prometheus/Loki rule dicts, with annotations that tests can expand too.

Annotation texts are written once with `{service}`-style fields. `alert()` turns them into Go
templates for the rule file; `expand()` fills them with known values for the promtool tests'
`exp_annotations`, so a rule and its expected notification never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alert_rules.config import AlertConfig

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

    @property
    def anchor(self) -> str:
        # GitHub's anchor for a `## HighErrorRate` heading in docs/runbooks.md.
        return self.name.lower()

    def rule(self, config: AlertConfig) -> Rule:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **self.labels},
            "annotations": {
                "summary": _go_template(self.summary, self.value_format),
                "description": _go_template(self.description, self.value_format),
                "runbook_url": config.runbook_url(self.anchor),
            },
        }

    def expected_annotations(self, config: AlertConfig, **values: str) -> dict[str, str]:
        """The annotations promtool should see for an alert with these label values."""
        return {
            "summary": self.summary.format(**values),
            "description": self.description.format(**values),
            "runbook_url": config.runbook_url(self.anchor),
        }


def record(name: str, expr: str) -> Rule:
    return {"record": name, "expr": expr}


def group(name: str, rules: list[Rule]) -> dict[str, Any]:
    return {"name": name, "rules": rules}


def _go_template(text: str, value_format: str) -> str:
    fields = {name: f"{{{{ $labels.{name} }}}}" for name in _LABEL_FIELDS}
    fields["value"] = f"{{{{ {value_format} }}}}"
    return text.format(**fields)
