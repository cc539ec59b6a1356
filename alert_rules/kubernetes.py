"""The rule files as Kubernetes objects: a PrometheusRule and the Loki ruler's ConfigMap.

`python -m alert_rules.build` writes them into `deploy/kubernetes/generated/` from the same
documents as `alert_rules/generated/`: the PrometheusRule's `spec.groups` are the groups of
every Prometheus rule file, in file order; the ConfigMap's values are the Loki rule files, byte
for byte.

>>> rule = prometheus_rule({"prometheus/a.yml": {"groups": [{"name": "g", "rules": []}]}})
>>> rule["kind"], rule["spec"]["groups"][0]["name"]
('PrometheusRule', 'g')
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from alert_rules import config
from codegen.kubernetes import config_map

PROMETHEUS_RULE_FILE = "prometheusrule.yaml"
LOKI_RULES_FILE = "loki-rules-configmap.yaml"


def prometheus_rule(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One PrometheusRule holding the groups of `documents` ({rule file: document}) in order."""
    groups = [group for document in documents.values() for group in document["groups"]]
    names = [group["name"] for group in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"rule group names must be unique in one PrometheusRule: {names}")
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": config.PROMETHEUS_RULE_NAME, "labels": config.PROMETHEUS_RULE_LABELS},
        "spec": {"groups": groups},
    }


def loki_rules_config_map(files: Mapping[str, str]) -> dict[str, Any]:
    """The Loki ruler sidecar's ConfigMap: one key per rule file ({path: text}), text as is."""
    data = {
        config.LOKI_RULES_KEY_PREFIX + PurePosixPath(path).name: text
        for path, text in files.items()
    }
    return config_map(config.LOKI_RULES_CONFIG_MAP, data, labels=config.LOKI_RULES_LABELS)
