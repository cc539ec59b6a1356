"""Grafana's side of the stack as Kubernetes objects, for kube-prometheus-stack's sidecars.

`python -m dashboards.build` writes them into `deploy/kubernetes/generated/`: one ConfigMap per
dashboard, its one key `<uid>.json` holding the file of `dashboards/generated/` byte for byte
(each change touches one object, and each stays far below the 256 KiB `kubectl apply` keeps in
an annotation), and one ConfigMap with the datasources provisioning file built for the
cluster's URLs (`config.CLUSTER`).

>>> dashboard_config_maps({"errors.json": "{}\\n"})[0]["metadata"]["name"]
'corrstack-dashboard-errors'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from codegen.kubernetes import config_map
from dashboards import config

DASHBOARDS_FILE = "grafana-dashboards-configmaps.yaml"
DATASOURCES_FILE = "grafana-datasources-configmap.yaml"
DATASOURCES_CONFIG_MAP = "corrstack-grafana-datasources"


def dashboard_config_maps(dashboards: Mapping[str, str]) -> list[dict[str, Any]]:
    """A ConfigMap per dashboard ({`<uid>.json`: JSON text}), in the order of the file names."""
    return [
        config_map(
            f"corrstack-dashboard-{PurePosixPath(name).stem}",
            {name: text},
            labels=config.DASHBOARD_CONFIG_MAP_LABELS,
            annotations=config.DASHBOARD_FOLDER_ANNOTATION,
        )
        for name, text in sorted(dashboards.items())
    ]


def datasources_config_map(files: Mapping[str, str]) -> dict[str, Any]:
    """The datasources sidecar's ConfigMap: {provisioning file name: its text}."""
    return config_map(DATASOURCES_CONFIG_MAP, files, labels=config.DATASOURCE_CONFIG_MAP_LABELS)
