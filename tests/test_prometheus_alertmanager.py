"""The instrumented app against a real Prometheus (exemplar storage) and a real Alertmanager."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import wait_until
from tests.support.stack import (
    alertmanager,
    prometheus,
    serve_app,
    stop_server,
    wait_for_scrape,
    webhook_receiver,
)

pytestmark = pytest.mark.integration
APP = "tests.apps.correlation_app:app"


@pytest.mark.binary("prometheus")
def test_prometheus_exemplars_lead_to_the_requests_log_lines(tmp_path: Path) -> None:
    with serve_app(tmp_path, APP, service="api") as app:
        host = app.url.removeprefix("http://")
        with prometheus(tmp_path, {"api": [host]}) as prom:
            sent: list[str] = []
            for i in range(30):
                response = httpx.get(f"{app.url}/api/user/user-{i}/echo")
                sent.append(response.headers["x-correlation-id"])
            wait_for_scrape(prom, "api")

            def exemplar_ids() -> set[str]:
                response = httpx.get(
                    f"{prom}/api/v1/query_exemplars",
                    params={
                        "query": "histogram_quantile(0.99, sum by (le) (rate("
                        'http_request_duration_seconds_bucket{service="api"}[5m])))',
                        "start": time.time() - 600,
                        "end": time.time() + 60,
                    },
                    timeout=10,
                )
                response.raise_for_status()
                return {
                    exemplar["labels"]["request_id"]
                    for series in response.json()["data"]
                    for exemplar in series["exemplars"]
                    if "request_id" in exemplar["labels"]
                }

            found: set[str] = set()

            def have_exemplars() -> bool:
                found.update(exemplar_ids() & set(sent))
                return bool(found)

            wait_until(have_exemplars, 60, interval=1, what="exemplars with our request_ids")
    logged = {
        json.loads(line)["request_id"]
        for line in app.log_file.read_text().splitlines()
        if json.loads(line)["logger"] == "corrstack.access"
    }
    assert found <= logged
    for request_id in found:
        assert request_id in sent


def alert_config(webhook_url: str) -> dict[str, object]:
    return {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname", "service"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook_url}]}],
    }


@pytest.mark.binary("prometheus-alertmanager")
def test_error_patterns_reach_alertmanager_and_a_dead_one_costs_nothing(tmp_path: Path) -> None:
    with webhook_receiver() as hook, alertmanager(tmp_path, alert_config(hook.url)) as am:
        env = {
            "ALERTMANAGER_URL": am,
            "ERROR_ALERT_CRITICAL_THRESHOLD": "3",
            "ERROR_ALERT_COOLDOWN_SECONDS": "0",
        }
        with serve_app(tmp_path, APP, service="api", env=env) as app:
            statuses = [httpx.post(f"{app.url}/api/user/u-1/fail").status_code for _ in range(3)]
            assert statuses == [200, 200, 200]

            def alert_in_alertmanager() -> bool:
                alerts = httpx.get(f"{am}/api/v2/alerts", timeout=5).json()
                return any(a["labels"].get("operation") == "generate_routine" for a in alerts)

            wait_until(alert_in_alertmanager, 20, what="alert in Alertmanager")
            wait_until(lambda: bool(hook.alerts()), 20, what="webhook delivery")
            (delivered, *_) = hook.alerts()
            assert delivered["labels"]["service"] == "api"
            assert delivered["labels"]["error_type"] == "TimeoutError"
            assert delivered["labels"]["severity"] == "critical"
            assert delivered["annotations"]["summary"]

            # Alertmanager goes away: the same traffic still succeeds, the failures are counted.
            stop_server(am)
            started = time.monotonic()
            statuses = [httpx.post(f"{app.url}/api/user/u-1/fail").status_code for _ in range(6)]
            elapsed = time.monotonic() - started
            assert statuses == [200] * 6
            assert elapsed < 5  # sending is off the request path

            def failures_counted() -> bool:
                text = httpx.get(f"{app.url}/metrics").text
                match = re.search(r'error_alerts_total\{outcome="failed"\} (\d+)', text)
                return bool(match) and int(match.group(1)) >= 1

            wait_until(failures_counted, 20, what="failed alert sends counted")
