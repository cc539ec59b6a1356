"""deploy/kubernetes/generated/: the rules, dashboards and datasources as Kubernetes objects.

Written by `python -m alert_rules.build` and `python -m dashboards.build` (codegen.kubernetes),
and held here to the files compose mounts: the PrometheusRule's groups are the generated
Prometheus rule files' (and promtool accepts them), each dashboard ConfigMap holds its
`dashboards/generated/` file byte for byte, the Loki rules ConfigMap the Loki rule file (whose
LogQL parses with the real grammar), the datasources ConfigMap compose's links with the
cluster's URLs. The objects are read from `kubectl kustomize deploy/kubernetes` (the real
kubectl) and checked with the real schemas (tests/test_kubernetes.py's helpers), and their
labels against what the Helm values' selectors and sidecars look for.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from alert_rules import build as alert_rules_build
from codegen.kubernetes import KUBERNETES_OUT, KUSTOMIZATION, OUT_SUBDIRECTORY, RESOURCES
from dashboards import build as dashboards_build
from tests.support.checkers import logql_errors
from tests.support.stack_files import (
    DATASOURCES,
    ROOT,
    derived_fields,
    exemplar_destinations,
    load_yaml,
    provisioned_datasources,
)
from tests.test_kubernetes import (
    KUBERNETES_DIR,
    KUBERNETES_VERSIONS,
    build,
    core_objects,
    operator_errors,
    operator_objects,
)

RULES_OUT = alert_rules_build.GENERATOR.default_out
PROMETHEUS_RULE_FILES = sorted((RULES_OUT / "prometheus").glob("*.yml"))
LOKI_RULE_FILES = sorted((RULES_OUT / "loki").glob("*.yml"))
DASHBOARD_FILES = sorted((ROOT / "dashboards" / "generated").glob("*.json"))
HELM_DIR = ROOT / "deploy" / "helm"
KPS_VALUES = load_yaml(HELM_DIR / "kube-prometheus-stack.yaml")
LOKI_VALUES = load_yaml(HELM_DIR / "loki.yaml")
SERVICEMONITOR = KUBERNETES_DIR / "components" / "servicemonitor" / "servicemonitor.yaml"
# deploy/helm/README.md: the charts' Services in `monitoring`.
CLUSTER_URLS = {
    "prometheus": "http://kube-prometheus-stack-prometheus.monitoring.svc:9090",
    "loki": "http://loki-gateway.monitoring.svc",
    "alertmanager": "http://kube-prometheus-stack-alertmanager.monitoring.svc:9093",
}
BUILDS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "alert_rules": alert_rules_build.main,
    "dashboards": dashboards_build.main,
}


def _of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _labelled(objects: list[dict[str, Any]], label: str, value: str) -> list[dict[str, Any]]:
    return [
        o
        for o in _of_kind(objects, "ConfigMap")
        if o["metadata"].get("labels", {}).get(label) == value
    ]


def _sidecar_config_maps(sidecar: dict[str, Any]) -> list[dict[str, Any]]:
    """The built ConfigMaps a sidecar of the Helm values loads: by its label, and in its
    namespace unless it searches them ALL."""
    found = _labelled(build("base"), sidecar["label"], sidecar["labelValue"])
    if sidecar.get("searchNamespace") != "ALL":
        found = [o for o in found if o["metadata"]["namespace"] == "monitoring"]
    return found


def _groups(paths: list[Path]) -> list[dict[str, Any]]:
    return [group for path in paths for group in load_yaml(path)["groups"]]


def _prometheus_rule() -> dict[str, Any]:
    (rule,) = _of_kind(build("base"), "PrometheusRule")
    return rule


def _dashboard_config_maps() -> list[dict[str, Any]]:
    return _sidecar_config_maps(KPS_VALUES["grafana"]["sidecar"]["dashboards"])


def _datasources_text() -> str:
    (config_map,) = _sidecar_config_maps(KPS_VALUES["grafana"]["sidecar"]["datasources"])
    ((name, text),) = config_map["data"].items()
    assert name.endswith((".yml", ".yaml"))
    return str(text)


def _loki_rules_config_map() -> dict[str, Any]:
    (config_map,) = _sidecar_config_maps(LOKI_VALUES["sidecar"]["rules"])
    return config_map


# --- the directory and the kustomize build ----------------------------------------------------


def test_the_directory_holds_exactly_the_listed_files() -> None:
    listed = load_yaml(KUBERNETES_OUT / KUSTOMIZATION)["resources"]
    assert listed == list(RESOURCES)
    on_disk = sorted(p.name for p in KUBERNETES_OUT.iterdir())
    assert on_disk == sorted([*listed, KUSTOMIZATION])


def test_the_base_builds_with_every_generated_object() -> None:
    built = {(o["kind"], o["metadata"]["name"]) for o in build("base")}
    generated = {
        (o["kind"], o["metadata"]["name"])
        for name in RESOURCES
        for o in yaml.safe_load_all((KUBERNETES_OUT / name).read_text())
    }
    assert len(generated) == 1 + len(DASHBOARD_FILES) + 2
    assert generated <= built


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_generated_config_map_validates_strictly(version: str) -> None:
    config_maps = [o for o in core_objects(build("base")) if o["kind"] == "ConfigMap"]
    assert len(config_maps) >= len(DASHBOARD_FILES) + 2
    for obj in config_maps:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.binary("node")
def test_the_prometheusrule_validates_against_the_operator_schemas() -> None:
    objects = operator_objects(build("base"))
    assert "PrometheusRule" in {o["kind"] for o in objects}
    assert operator_errors(objects) == {}


@pytest.mark.parametrize("name", BUILDS)
def test_committed_objects_equal_a_fresh_build(name: str, tmp_path: Path) -> None:
    assert BUILDS[name](["--out", str(tmp_path)]) == 0
    fresh = tmp_path / OUT_SUBDIRECTORY
    mine = {p.name for p in fresh.iterdir()}
    assert mine == {KUSTOMIZATION, *(f for f, c in RESOURCES.items() if name in c)}
    stale = [
        f for f in sorted(mine) if (fresh / f).read_bytes() != (KUBERNETES_OUT / f).read_bytes()
    ]
    assert not stale, (
        f"deploy/kubernetes/generated is stale ({stale}): run `python -m {name}.build`"
    )


@pytest.mark.parametrize("name", BUILDS)
def test_a_stale_copy_fails_check(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert BUILDS[name](["--out", str(tmp_path)]) == 0
    assert BUILDS[name](["--out", str(tmp_path), "--check"]) == 0
    stale = next(f for f, command in RESOURCES.items() if name in command)
    path = tmp_path / OUT_SUBDIRECTORY / stale
    path.write_text(path.read_text().replace("corrstack", "corrstak", 1))
    capsys.readouterr()
    assert BUILDS[name](["--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert f"{stale}: differs from what the code generates" in err
    assert f"Run: python -m {name}.build --out {tmp_path}" in err


# --- the PrometheusRule -------------------------------------------------------------------------


def test_the_prometheusrule_carries_exactly_the_generated_rule_files_groups() -> None:
    assert [p.name for p in PROMETHEUS_RULE_FILES] == ["alerts.yml", "slo.yml"]
    assert _prometheus_rule()["spec"]["groups"] == _groups(PROMETHEUS_RULE_FILES)


@pytest.mark.binary("promtool")
def test_promtool_accepts_the_prometheusrules_groups(tmp_path: Path) -> None:
    path = tmp_path / "spec.yml"
    path.write_text(yaml.safe_dump(_prometheus_rule()["spec"], sort_keys=False))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in _groups(PROMETHEUS_RULE_FILES))
    assert f"SUCCESS: {rules} rules found" in result.stdout


@pytest.mark.binary("promtool")
def test_promtool_rejects_a_broken_prometheusrule(tmp_path: Path) -> None:
    spec = _prometheus_rule()["spec"]
    spec["groups"][0]["rules"][0]["expr"] = "sum by (service) (rate(http_requests_total))"
    path = tmp_path / "spec.yml"
    path.write_text(yaml.safe_dump(spec))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1 and "range vector" in result.stdout + result.stderr


def test_kube_prometheus_stack_selects_the_prometheusrule() -> None:
    spec = KPS_VALUES["prometheus"]["prometheusSpec"]
    labels = _prometheus_rule()["metadata"]["labels"]
    # Every namespace, and any label; the chart's default selector (release) matches too.
    assert spec["ruleNamespaceSelector"] == {}
    assert spec["ruleSelectorNilUsesHelmValues"] is False and "ruleSelector" not in spec
    assert labels["release"] == "kube-prometheus-stack"


# --- Grafana's ConfigMaps -----------------------------------------------------------------------


def test_each_dashboard_config_map_holds_its_generated_file_byte_for_byte() -> None:
    found = {
        key: value
        for config_map in _dashboard_config_maps()
        for key, value in config_map["data"].items()
    }
    assert sorted(found) == [p.name for p in DASHBOARD_FILES]
    for path in DASHBOARD_FILES:
        assert found[path.name].encode("utf-8") == path.read_bytes(), path.name


def test_the_dashboards_land_in_composes_folder() -> None:
    sidecar = KPS_VALUES["grafana"]["sidecar"]["dashboards"]
    (provider,) = load_yaml(ROOT / "config/grafana/provisioning/dashboards/corrstack.yml")[
        "providers"
    ]
    config_maps = _dashboard_config_maps()
    assert len(config_maps) == len(DASHBOARD_FILES)  # one per dashboard
    for config_map in config_maps:
        annotations = config_map["metadata"]["annotations"]
        assert annotations[sidecar["folderAnnotation"]] == provider["folder"]


def test_the_datasources_config_map_is_composes_file_with_the_clusters_urls() -> None:
    cluster, compose = provisioned_datasources(_datasources_text()), provisioned_datasources()
    assert sorted(cluster) == ["alertmanager", "loki", "prometheus"]
    assert {uid: ds["url"] for uid, ds in cluster.items()} == CLUSTER_URLS
    for datasource in (*cluster.values(), *compose.values()):
        del datasource["url"]
    interval = load_yaml(SERVICEMONITOR)["spec"]["endpoints"][0]["interval"]
    assert cluster["prometheus"]["jsonData"].pop("timeInterval") == interval == "15s"
    compose["prometheus"]["jsonData"].pop("timeInterval")
    assert cluster == compose


def test_the_exemplar_link_and_the_derived_field_are_composes() -> None:
    text = _datasources_text()
    assert exemplar_destinations(text) == exemplar_destinations()
    assert derived_fields(text) == derived_fields()
    # Only the URL lines and the interval differ from the committed file.
    differing = set(text.splitlines()) ^ set(DATASOURCES.read_text().splitlines())
    assert all("url: http" in line or "timeInterval" in line for line in differing), differing


# --- Loki's ConfigMap ---------------------------------------------------------------------------


def test_the_loki_rules_config_map_holds_the_loki_rule_files_as_they_are() -> None:
    data = _loki_rules_config_map()["data"]
    assert [p.name for p in LOKI_RULE_FILES] == ["rules.yml"]
    assert {key: value.encode("utf-8") for key, value in data.items()} == {
        f"corrstack-{p.name}": p.read_bytes() for p in LOKI_RULE_FILES
    }


def test_the_loki_sidecar_writes_the_rules_into_the_rulers_tenant_directory() -> None:
    directory = LOKI_VALUES["loki"]["rulerConfig"]["storage"]["local"]["directory"]
    assert LOKI_VALUES["sidecar"]["rules"]["folder"] == f"{directory}/fake"  # auth off: "fake"


@pytest.mark.binary("node")
def test_the_loki_rule_config_maps_logql_parses() -> None:
    exprs = [
        rule["expr"]
        for text in _loki_rules_config_map()["data"].values()
        for group in yaml.safe_load(text)["groups"]
        for rule in group["rules"]
    ]
    assert exprs
    assert logql_errors(exprs) == {}
    assert logql_errors([exprs[0].replace("count_over_time(", "count_over_time", 1)])
