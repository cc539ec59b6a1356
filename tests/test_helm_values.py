"""deploy/helm: the values files for kube-prometheus-stack, loki and alloy.

No Helm, chart, cluster or Alloy binary runs here, so the files are parsed (PyYAML for the
values, a parser of the Alloy configuration syntax below for the Alloy config inside
alloy.yaml) and held to what the stack needs and to the compose files they mirror: exemplar
storage and the Grafana sidecars, Loki in simple-scalable mode on v13/TSDB with compose's
limits, retention and ruler, and the same Alloy pipeline as config/alloy/config.alloy. Each
check also fails on a broken copy of its file.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.stack_files import COMPOSE_FILE, PROMETHEUS_CONFIG, ROOT, load_yaml

HELM_DIR = ROOT / "deploy" / "helm"
KPS_VALUES = HELM_DIR / "kube-prometheus-stack.yaml"
LOKI_VALUES = HELM_DIR / "loki.yaml"
LOKI_LOCAL_VALUES = HELM_DIR / "loki-local-cluster.yaml"
ALLOY_VALUES = HELM_DIR / "alloy.yaml"
HELM_README = HELM_DIR / "README.md"
LOKI_CONFIG = ROOT / "loki-config.yaml"
COMPOSE_ALLOY = ROOT / "config" / "alloy" / "config.alloy"

# The install the names below assume (docs/kubernetes.md, deploy/helm/README.md).
NAMESPACE = "monitoring"
KPS_RELEASE = "kube-prometheus-stack"
LOKI_RELEASE = "loki"
LOKI_LABELS = {"service", "environment", "level"}
NEVER_LABELS = {"request_id", "trace_id", "span_id", "user_id"}
# Label key and value of the ConfigMaps each sidecar loads (README.md names them).
SIDECAR_LABELS = {
    "grafana dashboards": ("grafana_dashboard", "1"),
    "grafana datasources": ("grafana_datasource", "1"),
    "loki rules": ("loki_rule", "1"),
}
DASHBOARD_FOLDER_ANNOTATION = "grafana_folder"
# The pod label every instrumented pod carries (deploy/kubernetes): Alloy reads those pods.
POD_ENVIRONMENT = "corrstack/environment"


def helm_fullname(release: str, chart: str, limit: int) -> str:
    """The charts' `fullname` helper: the release alone when it contains the chart's name."""
    name = release if chart in release else f"{release}-{chart}"
    return name[:limit].rstrip("-")


def helm_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`helm -f base -f override`: maps merge key by key, a null deletes, the rest replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_values(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict), "a values file is a mapping"
    return data


def dig(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        assert isinstance(node, dict) and key in node, f"{path}: no {key!r}"
        node = node[key]
    return node


# --- the Alloy configuration syntax -------------------------------------------------------
# After the grammar of Alloy's syntax reference: a body is attributes (`name = expression`,
# ended by a newline) and blocks (`a.b "label" { body }`); expressions are literals, arrays and
# objects (elements separated by commas), identifier paths, calls, indexing, unary and binary
# operators. No Alloy binary exists here, so this parser is the syntax check.

_TOKEN = re.compile(
    r"""
    (?P<newline>\n)
    | (?P<space>[ \t\r]+)
    | (?P<comment>//[^\n]*|/\*.*?\*/)
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<rawstring>`[^`]*`)
    | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%^<>!=])
    | (?P<punct>[{}\[\](),.])
    """,
    re.VERBOSE | re.DOTALL,
)
COMPONENT_NAMESPACES = {"discovery", "local", "loki", "prometheus", "otelcol", "remote", "mimir"}
_BINARY = {"||", "&&", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "^"}


@dataclass
class Token:
    kind: str
    text: str
    line: int


@dataclass
class Block:
    name: str
    label: str | None
    attributes: dict[str, list[list[str]]] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)


def alloy_tokens(text: str) -> list[Token]:
    tokens: list[Token] = []
    position, line = 0, 1
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise AssertionError(f"line {line}: unexpected {text[position : position + 20]!r}")
        kind = match.lastgroup or ""
        if kind in {"newline", "op", "punct", "ident", "string", "rawstring", "number"}:
            tokens.append(Token(kind, match.group(), line))
        line += match.group().count("\n")
        position = match.end()
    tokens.append(Token("eof", "", line))
    return tokens


class AlloyParser:
    """A recursive-descent parser; raises AssertionError with the line of the first error."""

    def __init__(self, text: str) -> None:
        self.tokens = alloy_tokens(text)
        self.index = 0
        self.nesting = 0  # inside (), [] or {} of an expression newlines do not end anything

    def peek(self) -> Token:
        index = self.index
        while self.nesting and self.tokens[index].kind == "newline":
            index += 1
        return self.tokens[index]

    def take(self, text: str | None = None, kind: str | None = None) -> Token:
        token = self.peek()
        self.index = self.tokens.index(token, self.index)
        wanted = text if text is not None else kind
        if (text is not None and token.text != text) or (kind is not None and token.kind != kind):
            raise AssertionError(f"line {token.line}: expected {wanted!r}, got {token.text!r}")
        self.index += 1
        return token

    def skip_newlines(self) -> None:
        while self.tokens[self.index].kind == "newline":
            self.index += 1

    def parse(self) -> Block:
        root = self.body(Block("", None))
        self.take(kind="eof")
        return root

    def body(self, block: Block) -> Block:
        while True:
            self.skip_newlines()
            token = self.tokens[self.index]
            if token.kind == "eof" or token.text == "}":
                return block
            name = self.take(kind="ident").text
            if self.peek().text == "=":
                self.take("=")
                paths: list[list[str]] = []
                self.expression(paths)
                end = self.tokens[self.index]
                if end.kind not in {"newline", "eof"} and end.text != "}":
                    raise AssertionError(f"line {end.line}: {end.text!r} after {name} = …")
                assert name not in block.attributes, f"line {token.line}: {name} set twice"
                block.attributes[name] = paths
                continue
            while self.peek().text == ".":
                self.take(".")
                name += "." + self.take(kind="ident").text
            label = None
            if self.peek().kind == "string":
                label = self.take(kind="string").text[1:-1]
            self.take("{")
            child = self.body(Block(name, label))
            self.take("}")
            block.blocks.append(child)

    def expression(self, paths: list[list[str]]) -> None:
        self.unary(paths)
        while self.peek().kind == "op" and self.peek().text in _BINARY:
            self.take(kind="op")
            self.unary(paths)

    def unary(self, paths: list[list[str]]) -> None:
        if self.peek().text in {"!", "-"}:
            self.take(kind="op")
        self.postfix(paths)

    def postfix(self, paths: list[list[str]]) -> None:
        path = self.primary(paths)
        while self.peek().text in {".", "[", "("}:
            opener = self.take(kind="punct").text
            if opener == ".":
                name = self.take(kind="ident").text
                if path is not None:
                    path.append(name)
            elif opener == "[":
                self.nested(lambda: self.expression(paths), "]")
                path = None
            else:
                self.nested(lambda: self.elements(paths, ")", self.expression), ")")
                path = None
        if path is not None:
            paths.append(path)

    def primary(self, paths: list[list[str]]) -> list[str] | None:
        token = self.peek()
        if token.kind in {"string", "rawstring", "number"}:
            self.take(kind=token.kind)
            return None
        if token.kind == "ident":
            self.take(kind="ident")
            return None if token.text in {"true", "false", "null"} else [token.text]
        if token.text == "[":
            self.take("[")
            self.nested(lambda: self.elements(paths, "]", self.expression), "]")
            return None
        if token.text == "{":
            self.take("{")
            self.nested(lambda: self.elements(paths, "}", self.object_field), "}")
            return None
        if token.text == "(":
            self.take("(")
            self.nested(lambda: self.expression(paths), ")")
            return None
        raise AssertionError(f"line {token.line}: expected a value, got {token.text!r}")

    def nested(self, inside: Callable[[], None], closer: str) -> None:
        self.nesting += 1
        inside()
        self.take(closer)
        self.nesting -= 1

    def elements(self, paths: list[list[str]], closer: str, element: Callable[..., None]) -> None:
        while self.peek().text != closer:
            element(paths)
            if self.peek().text != closer:
                self.take(",")

    def object_field(self, paths: list[list[str]]) -> None:
        key = self.peek()
        if key.kind not in {"ident", "string"}:
            raise AssertionError(f"line {key.line}: expected an object key, got {key.text!r}")
        self.take(kind=key.kind)
        self.take("=")
        self.expression(paths)


def alloy_components(text: str) -> dict[tuple[str, str | None], Block]:
    """The top-level components of an Alloy config, checked for syntax and references."""
    root = AlloyParser(text).parse()
    assert not root.attributes, "attributes outside any component"
    components: dict[tuple[str, str | None], Block] = {}
    for block in root.blocks:
        key = (block.name, block.label)
        assert key not in components, f"{block.name} {block.label!r} declared twice"
        assert block.label, f"{block.name} needs a label"
        components[key] = block

    def check_refs(block: Block) -> None:
        # A path into a component namespace (loki.process.x.receiver) must name a declared
        # component and one of its exports; sys.env(...) and the like are the standard library.
        for paths in block.attributes.values():
            for path in paths:
                if path[0] not in COMPONENT_NAMESPACES:
                    continue
                dotted = ".".join(path)
                found = [
                    cut
                    for cut in range(2, len(path) - 1)
                    if (".".join(path[:cut]), path[cut]) in components
                ]
                assert found, f"{dotted}: no such component"
        for child in block.blocks:
            check_refs(child)

    for block in components.values():
        check_refs(block)
    return components


def alloy_block_text(text: str, header: str) -> str:
    """The text of a top-level block from its header line to its closing brace."""
    match = re.search(rf"^{re.escape(header)} \{{\n.*?^\}}$", text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no `{header} {{` block"
    return match.group()


def forward_targets(block: Block) -> list[str]:
    return [".".join(path) for path in block.attributes.get("forward_to", [])]


def stage_blocks(block: Block) -> list[Block]:
    return [child for child in block.blocks if child.name.startswith("stage.")]


# --- kube-prometheus-stack ---------------------------------------------------------------


def check_kube_prometheus_stack(values: dict[str, Any]) -> None:
    spec = dig(values, "prometheus.prometheusSpec")
    assert "exemplar-storage" in spec["enableFeatures"]
    compose_exemplars = load_yaml(PROMETHEUS_CONFIG)["storage"]["exemplars"]["max_exemplars"]
    assert spec["exemplars"]["maxSize"] == compose_exemplars
    # Every ServiceMonitor and PrometheusRule, with or without the release label.
    for selector in ("rule", "serviceMonitor", "podMonitor"):
        assert spec[f"{selector}SelectorNilUsesHelmValues"] is False, selector
        assert spec.get(f"{selector}NamespaceSelector", {}) == {}, selector

    alertmanager = dig(values, "alertmanager.alertmanagerSpec")
    assert alertmanager["replicas"] >= 2, "Alertmanager needs 2+ replicas to form a cluster"
    budget = dig(values, "alertmanager.podDisruptionBudget")
    assert budget["enabled"] is True and 1 <= budget["minAvailable"] < alertmanager["replicas"]
    assert alertmanager["useExistingSecret"] is True and alertmanager["configSecret"]

    grafana = values["grafana"]
    compose_grafana = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["grafana"]["image"]
    assert compose_grafana == f"grafana/grafana:{grafana['image']['tag']}"
    assert grafana["admin"]["existingSecret"], "the admin password comes from a Secret"
    assert "adminPassword" not in grafana, "no password in the values"
    assert grafana["grafana.ini"]["auth.anonymous"]["enabled"] is False
    dashboards = grafana["sidecar"]["dashboards"]
    assert dashboards["enabled"] is True
    label, value = SIDECAR_LABELS["grafana dashboards"]
    assert (dashboards["label"], dashboards["labelValue"]) == (label, value)
    assert dashboards["searchNamespace"] == "ALL"
    assert dashboards["folderAnnotation"] == DASHBOARD_FOLDER_ANNOTATION
    assert dashboards["provider"]["foldersFromFilesStructure"] is True
    datasources = grafana["sidecar"]["datasources"]
    assert datasources["enabled"] is True
    label, value = SIDECAR_LABELS["grafana datasources"]
    assert (datasources["label"], datasources["labelValue"]) == (label, value)
    assert datasources["searchNamespace"] == "ALL"
    # The corrstack ConfigMap provides uids prometheus and alertmanager; the chart must not.
    assert datasources["defaultDatasourceEnabled"] is False
    assert datasources["alertmanager"]["enabled"] is False


def test_kube_prometheus_stack_values_parse_and_hold_the_settings() -> None:
    check_kube_prometheus_stack(parse_values(KPS_VALUES.read_text()))


# --- loki ---------------------------------------------------------------------------------


def check_loki(values: dict[str, Any]) -> None:
    compose = load_yaml(LOKI_CONFIG)
    assert values["deploymentMode"] == "SimpleScalable"
    loki = values["loki"]
    storage_type = loki["storage"]["type"]
    assert storage_type in {"s3", "gcs", "azure"}, "simple-scalable needs object storage"
    assert loki["storage"]["bucketNames"]["chunks"] and loki["storage"]["bucketNames"]["ruler"]

    [schema] = loki["schemaConfig"]["configs"]
    [compose_schema] = compose["schema_config"]["configs"]
    assert (schema["store"], schema["schema"]) == ("tsdb", "v13")
    assert schema["object_store"] == storage_type
    assert str(schema["from"]) == str(compose_schema["from"])
    assert schema["index"] == compose_schema["index"]

    assert loki["limits_config"] == compose["limits_config"]
    assert loki["auth_enabled"] is compose["auth_enabled"] is False
    compactor = dict(loki["compactor"])
    assert compactor.pop("delete_request_store") == storage_type
    compactor.pop("working_directory")
    compose_compactor = {
        key: value
        for key, value in compose["compactor"].items()
        if key not in {"delete_request_store", "working_directory"}
    }
    assert compactor == compose_compactor

    ruler = loki["rulerConfig"]
    for key in ("evaluation_interval", "enable_alertmanager_v2", "enable_api"):
        assert ruler[key] == compose["ruler"][key], key
    assert values["ruler"]["enabled"] is True
    # Rules: the sidecar's folder is <local directory>/<tenant>; tenant "fake" without auth.
    assert ruler["storage"]["type"] == "local"
    rules_folder = values["sidecar"]["rules"]["folder"]
    assert rules_folder == ruler["storage"]["local"]["directory"] + "/fake"
    assert not ruler["rule_path"].startswith(ruler["storage"]["local"]["directory"] + "/")
    label, value = SIDECAR_LABELS["loki rules"]
    rules = values["sidecar"]["rules"]
    assert rules["enabled"] is True and (rules["label"], rules["labelValue"]) == (label, value)
    # Every Alertmanager replica, through the SRV record of the operator's headless Service.
    kps = parse_values(KPS_VALUES.read_text())
    port_name = dig(kps, "alertmanager.alertmanagerSpec.portName")
    assert ruler["enable_alertmanager_discovery"] is True
    host = urlsplit(ruler["alertmanager_url"]).hostname
    assert host == f"_{port_name}._tcp.alertmanager-operated.{NAMESPACE}.svc.cluster.local"

    replication = loki["commonConfig"]["replication_factor"]
    assert values["write"]["replicas"] >= replication >= 1
    assert values["read"]["replicas"] >= 1 and values["backend"]["replicas"] >= 1
    assert values["singleBinary"]["replicas"] == 0
    assert values["gateway"]["enabled"] is True


def check_loki_credentials(values: dict[str, Any]) -> None:
    """Object-store credentials come from the environment, never the values."""
    s3 = values["loki"]["storage"]["s3"]
    for key in ("accessKeyId", "secretAccessKey"):
        assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", s3[key]), f"{key} must be an env reference"
    for target in ("write", "read", "backend"):
        assert "-config.expand-env=true" in values[target]["extraArgs"], target
        assert values[target]["extraEnvFrom"], target


def test_loki_values_parse_and_hold_the_settings() -> None:
    values = parse_values(LOKI_VALUES.read_text())
    check_loki(values)
    check_loki_credentials(values)
    assert values["write"]["replicas"] >= 3 and values["read"]["replicas"] >= 2


def test_loki_on_a_local_cluster_keeps_schema_limits_and_ruler() -> None:
    merged = helm_merge(
        parse_values(LOKI_VALUES.read_text()), parse_values(LOKI_LOCAL_VALUES.read_text())
    )
    check_loki(merged)
    assert merged["minio"]["enabled"] is True
    # The MinIO subchart's buckets, and one pod of each target on one node.
    assert merged["loki"]["storage"]["bucketNames"] == {"chunks": "chunks", "ruler": "ruler"}
    assert {merged[t]["replicas"] for t in ("write", "read", "backend", "gateway")} == {1}
    assert "rootPassword" not in merged["minio"], "the password is set on the command line"


# --- alloy --------------------------------------------------------------------------------


def alloy_content(values: dict[str, Any]) -> str:
    content = dig(values, "alloy.configMap.content")
    assert isinstance(content, str)
    return content


def check_alloy(values: dict[str, Any]) -> None:
    assert dig(values, "controller.type") == "daemonset"
    assert dig(values, "alloy.mounts.varlog") is True
    content = alloy_content(values)
    assert "{{" not in content, "the chart passes the content through tpl"
    components = alloy_components(content)

    # Discovery: this node's pods that carry corrstack/environment, their files only.
    [selectors] = components[("discovery.kubernetes", "pods")].blocks
    assert selectors.name == "selectors"
    assert re.search(rf'label\s*=\s*"{POD_ENVIRONMENT}"', content)
    assert re.search(r'field\s*=\s*"spec\.nodeName="\s*\+\s*sys\.env\("HOSTNAME"\)', content)
    assert 'replacement   = "/var/log/pods/*$1/*.log"' in content
    # service and environment start as the pod labels deploy/kubernetes reads SERVICE_NAME and
    # ENVIRONMENT from; nothing else but the path is kept.
    for pod_label, label in (
        ("app.kubernetes.io/name", "service"),
        (POD_ENVIRONMENT, "environment"),
    ):
        meta = "__meta_kubernetes_pod_label_" + re.sub(r"[^A-Za-z0-9_]", "_", pod_label)
        rule = rf'source_labels = \["{re.escape(meta)}"\]\s*\n\s*target_label\s*=\s*"{label}"'
        assert re.search(rule, content), label
    keep = re.findall(r'regex\s*=\s*"([^"]*)"\s*\n\s*action\s*=\s*"labelkeep"', content)
    assert keep == ["__path__|service|environment"]

    # The chain: files → cri → corrstack → gateway.
    source = components[("loki.source.file", "pods")]
    assert forward_targets(source) == ["loki.process.cri.receiver"]
    cri = components[("loki.process", "cri")]
    assert [stage.name for stage in stage_blocks(cri)] == ["stage.cri", "stage.label_drop"]
    assert 'values = ["filename"]' in alloy_block_text(content, 'loki.process "cri"')
    assert forward_targets(cri) == ["loki.process.corrstack.receiver"]
    corrstack = components[("loki.process", "corrstack")]
    [write_target] = forward_targets(corrstack)
    write_name, write_label, export = write_target.rsplit(".", 2)
    assert (write_name, export) == ("loki.write", "receiver")
    [endpoint] = components[("loki.write", write_label)].blocks
    url = urlsplit(
        re.findall(r'url = "([^"]+)"', alloy_block_text(content, f'loki.write "{write_label}"'))[0]
    )
    gateway = helm_fullname(LOKI_RELEASE, "loki", 63) + "-gateway"
    assert (url.hostname, url.path) == (
        f"{gateway}.{NAMESPACE}.svc.cluster.local",
        "/loki/api/v1/push",
    )
    assert endpoint.name == "endpoint"

    # The stages are compose's, line for line (only where the block forwards to differs).
    compose_text = COMPOSE_ALLOY.read_text()
    ours = alloy_block_text(content, 'loki.process "corrstack"')
    theirs = alloy_block_text(compose_text, 'loki.process "corrstack"')

    def without_forward(block: str) -> list[str]:
        return [line for line in block.splitlines() if not line.strip().startswith("forward_to")]

    assert without_forward(ours) == without_forward(theirs)
    stages = [stage.name for stage in stage_blocks(corrstack)]
    assert stages == ["stage.json", "stage.timestamp", "stage.labels"]
    # Labels: exactly service, environment, level, made in one place.
    labels_stage = alloy_block_text(ours.replace("\n  ", "\n"), "stage.labels")
    assert set(re.findall(r"^\s+(\w+)\s*=\s*\"\"", labels_stage, re.MULTILINE)) == LOKI_LABELS
    label_stages = re.findall(
        r"^\s*stage\.(labels|static_labels|structured_metadata|label_keep)\s*\{",
        content,
        re.MULTILINE,
    )
    assert label_stages == ["labels"], label_stages
    timestamp = alloy_block_text(ours.replace("\n  ", "\n"), "stage.timestamp")
    assert 'source = "timestamp"' in timestamp and 'format = "RFC3339Nano"' in timestamp
    for name in NEVER_LABELS:
        assert not re.search(rf"\b{name}\s*=", content), f"{name} is set somewhere"


def test_alloy_values_parse_and_run_the_compose_pipeline() -> None:
    check_alloy(parse_values(ALLOY_VALUES.read_text()))


def test_the_alloy_syntax_check_accepts_compose_config_and_finds_its_chain() -> None:
    components = alloy_components(COMPOSE_ALLOY.read_text())
    assert forward_targets(components[("loki.source.file", "corrstack")]) == [
        "loki.process.corrstack.receiver"
    ]
    assert forward_targets(components[("loki.process", "corrstack")]) == [
        "loki.write.local.receiver"
    ]


@pytest.mark.parametrize(
    ("broken", "error"),
    [
        ('loki.process "x" {\n  forward_to = [loki.write.a.receiver]\n', "expected '}'"),
        ('loki.write "a" {\n  endpoint {\n    url = "http://x\n  }\n}\n', "unexpected"),
        (
            'loki.process "x" {\n  stage.json {\n    expressions = { a = "a" b = "b" }\n  }\n}\n',
            "expected ','",
        ),
        ('loki.process "x" {\n  forward_to = [loki.write.nowhere.receiver]\n}\n', "nowhere"),
        ('loki.write "a" {\n  url = "x" "y"\n}\n', "after url"),
        (
            'loki.process "x" {\n  stage.labels {\n    values = {a = ""}\n  }\n}\n'
            'loki.process "x" {\n}\n',
            "declared twice",
        ),
    ],
)
def test_the_alloy_syntax_check_fails_on_broken_configs(broken: str, error: str) -> None:
    with pytest.raises(AssertionError, match=error):
        alloy_components(broken)


# --- the names other objects use ----------------------------------------------------------


def test_service_names_follow_the_charts_fullname_rule() -> None:
    # kube-prometheus-stack cuts its fullname to 26 characters.
    assert helm_fullname(KPS_RELEASE, "kube-prometheus-stack", 26) == "kube-prometheus-stack"
    assert helm_fullname("corrstack", "kube-prometheus-stack", 26) == "corrstack-kube-prometheus"
    assert helm_fullname(LOKI_RELEASE, "loki", 63) == "loki"


def test_readme_names_every_sidecar_label_and_the_service_urls() -> None:
    readme = HELM_README.read_text()
    for what, (label, value) in SIDECAR_LABELS.items():
        assert f'`{label}: "{value}"`' in readme, what
    assert f"`{DASHBOARD_FOLDER_ANNOTATION}`" in readme
    kps = helm_fullname(KPS_RELEASE, "kube-prometheus-stack", 26)
    for url in (
        f"http://{kps}-prometheus.{NAMESPACE}.svc:9090",
        f"http://{kps}-alertmanager.{NAMESPACE}.svc:9093",
        f"http://{helm_fullname(LOKI_RELEASE, 'loki', 63)}-gateway.{NAMESPACE}.svc",
    ):
        assert url in readme, url
    for uid in ("prometheus", "loki", "alertmanager"):
        assert f"`{uid}`" in readme, uid


# --- broken copies ------------------------------------------------------------------------

BROKEN_COPIES = [
    (KPS_VALUES, "      - exemplar-storage\n", "      - memory-snapshot-on-shutdown\n"),
    (KPS_VALUES, "    replicas: 2\n", "    replicas: 1\n"),
    (KPS_VALUES, "      label: grafana_dashboard\n", "      label: dashboards\n"),
    (
        KPS_VALUES,
        "      defaultDatasourceEnabled: false\n",
        "      defaultDatasourceEnabled: true\n",
    ),
    (
        KPS_VALUES,
        "    ruleSelectorNilUsesHelmValues: false",
        "    ruleSelectorNilUsesHelmValues: true",
    ),
    (LOKI_VALUES, "deploymentMode: SimpleScalable", "deploymentMode: SingleBinary"),
    (LOKI_VALUES, "schema: v13", "schema: v12"),
    (LOKI_VALUES, "store: tsdb", "store: boltdb-shipper"),
    (LOKI_VALUES, "    ingestion_rate_mb: 8\n", "    ingestion_rate_mb: 80\n"),
    (LOKI_VALUES, "    retention_period: 168h\n", "    retention_period: 720h\n"),
    (LOKI_VALUES, "    retention_enabled: true\n", "    retention_enabled: false\n"),
    (LOKI_VALUES, "    folder: /rules/fake\n", "    folder: /rules\n"),
    (LOKI_VALUES, "    replication_factor: 3", "    replication_factor: 5"),
    (
        ALLOY_VALUES,
        '          level       = "",\n',
        '          level       = "",\n          request_id  = "",\n',
    ),
    (ALLOY_VALUES, '          format = "RFC3339Nano"\n', '          format = "RFC3339"\n'),
    (ALLOY_VALUES, "        stage.cri {}\n", ""),
    (ALLOY_VALUES, 'label = "corrstack/environment"', 'label = "app=api"'),
    (
        ALLOY_VALUES,
        '      loki.process "corrstack" {\n',
        '      loki.process "corrstack" {\n        stage.static_labels {\n'
        '          values = {pod = "x"}\n        }\n',
    ),
    (ALLOY_VALUES, "loki-gateway.monitoring", "loki-write.monitoring"),
    (ALLOY_VALUES, '"__path__|service|environment"', '"__path__|service|environment|pod"'),
    (ALLOY_VALUES, '            service     = "service",\n', ""),
]
CHECKS: dict[Path, Callable[[dict[str, Any]], None]] = {
    KPS_VALUES: check_kube_prometheus_stack,
    LOKI_VALUES: check_loki,
    ALLOY_VALUES: check_alloy,
}


@pytest.mark.parametrize(
    ("path", "old", "new"),
    BROKEN_COPIES,
    ids=[
        f"{path.name}:{new.strip()[:40] or 'removed ' + old.strip()[:30]}"
        for path, old, new in BROKEN_COPIES
    ],
)
def test_a_broken_copy_fails_its_check(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} must occur once in {path.name}"
    with pytest.raises(AssertionError):
        CHECKS[path](parse_values(text.replace(old, new)))
