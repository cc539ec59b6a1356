"""Generate every rule file the stack loads, and the promtool tests for them.

    python -m alert_rules.build                       # write alert_rules/generated/
    python -m alert_rules.build --check               # exit 1 if a committed file is stale
    python -m alert_rules.build --out DIR --profile drill   # short windows, for a drill

Output (paths relative to --out): prometheus/alerts.yml, prometheus/slo.yml, loki/rules.yml
and, for the default profile, tests/<alert>.yml for `promtool test rules`. The same rules as
Kubernetes objects (`alert_rules.kubernetes`: a PrometheusRule, the Loki rules ConfigMap) go
to deploy/kubernetes/generated/, or to <--out>/kubernetes/ with --out. Files are written and
checked by `codegen`, as the dashboards are.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alert_rules import (
    cost_alerts,
    error_alerts,
    http_alerts,
    kubernetes,
    loki_rules,
    platform_alerts,
    slo_rules,
)
from alert_rules.config import PROFILES, AlertConfig
from alert_rules.render import to_yaml
from alert_rules.rule import group
from alert_rules.runbook_links import add_runbook_links
from alert_rules.unit_tests import Scenario, test_file
from codegen import Generator
from codegen.kubernetes import KUBERNETES_OUT, files_of, kubernetes_out

GENERATOR = Generator(
    "rule files", "python -m alert_rules.build", Path(__file__).resolve().parent / "generated"
)
# deploy/kubernetes/generated/ is shared with dashboards.build: each answers for its own files.
KUBERNETES = Generator("Kubernetes object files", GENERATOR.command, KUBERNETES_OUT, owns_out=False)
PROMETHEUS_RULE_FILES = ("prometheus/alerts.yml", "prometheus/slo.yml")
LOKI_RULE_FILES = ("loki/rules.yml",)

_SCENARIOS: dict[str, Callable[[AlertConfig], list[Scenario]]] = {
    "high_error_rate": http_alerts.error_rate_scenarios,
    "slow_responses": http_alerts.latency_scenarios,
    "critical_error_pattern": error_alerts.critical_error_scenarios,
    "cost_anomaly": cost_alerts.cost_scenarios,
    "target_down": platform_alerts.target_down_scenarios,
    "high_memory_usage": platform_alerts.memory_scenarios,
    "error_budget_burn": slo_rules.burn_scenarios,
}


def alerts_document(config: AlertConfig) -> dict[str, Any]:
    return {
        "groups": [
            group(
                "corrstack-http",
                [http_alerts.high_error_rate(config), http_alerts.slow_responses(config)],
            ),
            group("corrstack-errors", [error_alerts.critical_error_pattern(config)]),
            group(
                "corrstack-cost",
                [*cost_alerts.cost_recording_rules(config), cost_alerts.cost_anomaly(config)],
            ),
            group(
                "corrstack-platform",
                [platform_alerts.target_down(config), platform_alerts.high_memory_usage(config)],
            ),
        ]
    }


def slo_document(config: AlertConfig) -> dict[str, Any]:
    # Recording rules and the alerts reading them share a group: rules in a group run in
    # order, so an alert never sees the previous evaluation's ratio.
    return {
        "groups": [
            group(
                f"corrstack-slo-{slo.name}",
                [*slo_rules.recording_rules(config, slo), *slo_rules.burn_alerts(config, slo)],
            )
            for slo in slo_rules.slos(config)
        ]
    }


def loki_document(config: AlertConfig) -> dict[str, Any]:
    return {"groups": [group("corrstack-logs", [loki_rules.error_log_spike(config)])]}


def rule_documents(config: AlertConfig) -> dict[str, dict[str, Any]]:
    """{rule file: document}, runbook links added: what every output is made of."""
    documents = {
        "prometheus/alerts.yml": alerts_document(config),
        "prometheus/slo.yml": slo_document(config),
        "loki/rules.yml": loki_document(config),
    }
    return {path: add_runbook_links(document) for path, document in documents.items()}


def generated_files(config: AlertConfig, *, unit_tests: bool = True) -> dict[str, str]:
    """{relative path: file text} for the rule files (and promtool tests) the build writes."""
    files = {path: to_yaml(document) for path, document in rule_documents(config).items()}
    if unit_tests:
        rule_files = [f"../{path}" for path in PROMETHEUS_RULE_FILES]
        for name, scenarios in _SCENARIOS.items():
            files[f"tests/{name}.yml"] = to_yaml(test_file(rule_files, scenarios(config)))
    return files


def kubernetes_files(config: AlertConfig) -> dict[str, str]:
    """{file name: text} of the build's Kubernetes objects, and the kustomization."""
    documents = rule_documents(config)
    prometheus = {path: documents[path] for path in PROMETHEUS_RULE_FILES}
    loki = {path: to_yaml(documents[path]) for path in LOKI_RULE_FILES}
    objects = {
        kubernetes.PROMETHEUS_RULE_FILE: [kubernetes.prometheus_rule(prometheus)],
        kubernetes.LOKI_RULES_FILE: [kubernetes.loki_rules_config_map(loki)],
    }
    return files_of(GENERATOR.command, objects)


def main(argv: Sequence[str] | None = None) -> int:
    parser = GENERATOR.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    args = parser.parse_args(argv)
    # The promtool tests are written for minute-scale windows; the drill profile has none.
    default = args.profile == "default"
    files = generated_files(PROFILES[args.profile], unit_tests=default)
    options = () if default else ("--profile", args.profile)
    status = GENERATOR.run(files, args.out, check=args.check, options=options)
    objects_status = KUBERNETES.run(
        kubernetes_files(PROFILES[args.profile]),
        kubernetes_out(args.out, GENERATOR.default_out),
        check=args.check,
        rerun=GENERATOR.rerun_command(args.out, options),
    )
    return max(status, objects_status)


if __name__ == "__main__":
    sys.exit(main())
