"""Alert drill: real app → real Prometheus with the generated rules → real Alertmanager → webhook.

The rules are built with the `drill` profile (10 s window, 5 s `for:`), the Alertmanager runs
the committed config with its receivers pointed at a local webhook and a 1 s group_wait.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from alert_rules.build import main as build_rules
from instrumentation.vocabulary import runbook_url
from tests.support.processes import wait_until
from tests.support.stack import (
    alertmanager,
    prometheus,
    serve_app,
    wait_for_scrape,
    webhook_receiver,
)

ROOT = Path(__file__).resolve().parent.parent
ALERTMANAGER_CONFIG = ROOT / "config" / "alertmanager" / "alertmanager.yml"
SERVICE = "drill"


def _drill_alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The committed config, delivering to `webhook_url` without the production waits."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(ALERTMANAGER_CONFIG.read_text()))
    for receiver in config["receivers"]:
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = webhook_url
    for route in [config["route"], *config["route"].get("routes", [])]:
        route["group_wait"] = "1s"
    return config


def _rule_groups(prometheus_url: str) -> list[str]:
    response = httpx.get(f"{prometheus_url}/api/v1/rules", timeout=5)
    response.raise_for_status()
    return [group["name"] for group in response.json()["data"]["groups"]]


@pytest.mark.integration
@pytest.mark.binary("prometheus", "prometheus-alertmanager")
def test_high_error_rate_reaches_the_webhook(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    assert build_rules(["--out", str(rules), "--profile", "drill"]) == 0
    rule_files = sorted((rules / "prometheus").glob("*.yml"))

    with (
        webhook_receiver() as receiver,
        alertmanager(tmp_path, _drill_alertmanager_config(receiver.url)) as alertmanager_url,
        serve_app(tmp_path, "tests.apps.alert_drill_app:app", service=SERVICE) as app,
        prometheus(
            tmp_path,
            {SERVICE: [app.url.removeprefix("http://")]},
            rule_files=rule_files,
            alertmanager_url=alertmanager_url,
        ) as prometheus_url,
        httpx.Client(base_url=app.url, timeout=5) as client,
    ):
        assert len(_rule_groups(prometheus_url)) == 6  # every generated group loaded
        wait_for_scrape(prometheus_url, SERVICE, timeout=20)

        def alert_arrived() -> bool:
            # Keep the error ratio up while waiting: five requests per poll, bounded by the
            # timeout to about a thousand.
            for _ in range(5):
                client.get("/flaky")
            return any(a["labels"]["alertname"] == "HighErrorRate" for a in receiver.alerts())

        wait_until(alert_arrived, timeout=45, interval=0.2, what="HighErrorRate at the webhook")

    payload = next(
        p for p in receiver.payloads if p["groupLabels"].get("alertname") == "HighErrorRate"
    )
    # Routed as a critical alert, grouped by alertname and service.
    assert payload["receiver"] == "oncall-pager"
    assert payload["groupLabels"] == {"alertname": "HighErrorRate", "service": SERVICE}
    (alert,) = payload["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == {
        "alertname": "HighErrorRate",
        "service": SERVICE,
        "severity": "critical",
    }
    annotations = alert["annotations"]
    assert annotations["summary"] == f"High 5xx error rate on {SERVICE}"
    assert annotations["description"].endswith(
        f"% of requests to {SERVICE} failed with a 5xx status over the last 10s (threshold 5%)."
    )
    ratio = float(annotations["description"].split("%", 1)[0])
    assert 70 <= ratio <= 90  # four in five requests fail
    assert annotations["runbook_url"] == runbook_url("HighErrorRate")
    assert alert["generatorURL"].startswith(prometheus_url)
