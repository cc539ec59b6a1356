"""Runbook links, added to every alert in one pass after the rules are built.

As kubernetes-mixin's `alerts/add-runbook-links.libsonnet` does: no rule passes its own link,
so none can forget it or spell it differently. Each link is `instrumentation.vocabulary`'s
`runbook_url(alertname)`, the section of docs/runbooks.md for that alert — the address the error
tracker's own alerts carry too. The promtool tests expect the same link (`alert_rules.unit_tests`).
"""

from __future__ import annotations

from typing import Any

from instrumentation.vocabulary import runbook_url

RuleFile = dict[str, Any]


def add_runbook_links(rule_file: RuleFile) -> RuleFile:
    """A copy of a rule file (`{"groups": […]}`) whose alerts carry `runbook_url`."""
    return {
        **rule_file,
        "groups": [
            {**group, "rules": [_with_link(rule) for rule in group["rules"]]}
            for group in rule_file["groups"]
        ],
    }


def _with_link(rule: dict[str, Any]) -> dict[str, Any]:
    if "alert" not in rule:
        return rule  # a recording rule
    annotations = {**rule["annotations"], "runbook_url": runbook_url(rule["alert"])}
    return {**rule, "annotations": annotations}
