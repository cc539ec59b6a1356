"""Prometheus and Alertmanager configs: promtool and amtool, and a real Prometheus run.

The live test starts Prometheus on the committed prometheus.yml (rewritten as `python -m demo`
does for a no-Docker run) and follows a scraped exemplar through the Grafana link to the log
lines of that request.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import free_port, running, wait_http_ok, wait_until
from tests.support.stack import serve_app
from tests.support.stack_files import (
    PROMETHEUS_CONFIG,
    ROOT,
    VALUE_PLACEHOLDER,
    exemplar_destination,
    explore_queries,
    grafana_expand,
    load_yaml,
)

ALERTMANAGER_CONFIG = ROOT / "config" / "alertmanager" / "alertmanager.yml"


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
    config = load_yaml(PROMETHEUS_CONFIG)
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
    url = grafana_expand(exemplar_destination()["url"]).replace(VALUE_PLACEHOLDER, request_id)
    [query] = explore_queries(url)
    assert f'request_id="{request_id}"' in query["expr"]
    records = [json.loads(line) for line in app.log_file.read_text().splitlines() if line]
    matching = [r for r in records if r.get("request_id") == request_id]
    assert matching, f"no log line carries {request_id}"
    assert {r["service"] for r in matching} == {"api"}
