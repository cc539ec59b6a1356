"""The demo: api → analysis correlation, bad input, the load generator and `python -m demo`."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from demo import stack_config
from demo.loadgen import generate_load
from demo.settings import DemoSettings
from demo.simulation import plan_model_call
from demo.traffic import ARCHETYPES, archetype_of, plan_request
from tests.conftest import LogCapture
from tests.support.demo import call, demo_apps
from tests.support.processes import free_port, running, wait_http_ok, wait_until
from tests.support.stack import query, wait_for_scrape

REPO_ROOT = Path(__file__).resolve().parent.parent
VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"


def test_api_to_analysis_call_carries_correlation_id_and_trace(log_capture: LogCapture) -> None:
    seen: list[dict[str, str]] = []
    app = demo_apps(seen=seen)
    headers = {
        "X-Correlation-ID": "corr-test-1",
        "traceparent": f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01",
    }
    request = {"method": "POST", "url": "/api/user/user-0042/analysis", "json": {}}
    [response] = asyncio.run(call(app, [{**request, "headers": headers}]))

    assert response.status_code == 200, response.text
    [downstream] = seen
    assert downstream["x-correlation-id"] == "corr-test-1"
    version, trace_id, parent_span, _ = downstream["traceparent"].split("-")
    assert (version, trace_id) == ("00", CLIENT_TRACE_ID)
    assert parent_span != CLIENT_SPAN_ID  # the api's own span is the parent of the call
    analysis_lines = log_capture.by_logger("demo.analysis")
    assert analysis_lines, log_capture.text
    assert {(r["request_id"], r["trace_id"]) for r in analysis_lines} == {
        ("corr-test-1", CLIENT_TRACE_ID)
    }


def test_routine_generation_emits_its_business_event(log_capture: LogCapture) -> None:
    app = demo_apps()
    request = {
        "method": "POST",
        "url": "/api/user/user-0007/routine/generate",
        "json": {"goal": "mobility", "days_per_week": 2},
        "headers": {"X-Correlation-ID": "routine-1"},
    }
    [response] = asyncio.run(call(app, [request]))

    assert response.status_code == 200, response.text
    events = [r for r in log_capture.records if r.get("event_type") == "routine_generated"]
    assert [(e["request_id"], e["user_id"]) for e in events] == [("routine-1", "user-0007")]
    assert events[0]["exercises_count"] == len(response.json()["exercises"])


def _seed_failing_with(kind: str) -> int:
    """A seed whose first simulated model call fails as `kind`."""
    return next(
        seed
        for seed in range(1000)
        if plan_model_call(random.Random(seed), "progress", error_rate=1.0, slow_rate=0.0).failure
        == kind
    )


@pytest.mark.parametrize("kind", ["timeout", "overloaded"])
def test_analysis_failure_is_a_502_with_events_on_both_sides(
    log_capture: LogCapture, kind: str
) -> None:
    settings = DemoSettings(error_rate=1.0, slow_rate=0.0)
    app = demo_apps(settings, rng=random.Random(_seed_failing_with(kind)))
    request = {
        "method": "POST",
        "url": "/api/user/user-0001/analysis",
        "json": {"analysis_type": "progress"},
        "headers": {"X-Correlation-ID": f"fail-{kind}"},
    }
    [response] = asyncio.run(call(app, [request]))

    assert response.status_code == 502
    lines = [r for r in log_capture.records if r["request_id"] == f"fail-{kind}"]
    assert [r["event_type"] for r in lines if "event_type" in r] == [
        "analysis_started",
        "analysis_failed",
    ]
    tracked = [r["operation"] for r in lines if r["message"] == "Error tracked"]
    assert tracked == ["analysis.model_call", "analysis.request"]


BAD_REQUESTS = [
    pytest.param("GET", "/api/user/bad%20id/profile", None, id="user-id-with-space"),
    pytest.param("GET", "/api/user/guest/profile", None, id="unknown-user"),
    pytest.param("GET", "/api/user/user-0001/workouts", None, id="unknown-path"),
    pytest.param(
        "POST", "/api/user/user-0001/routine/generate", {"days_per_week": 12}, id="too-many-days"
    ),
    pytest.param("POST", "/api/user/user-0001/routine/generate", {"goal": "fly"}, id="bad-goal"),
    pytest.param(
        "POST", "/api/user/user-0001/routine/generate", {"unexpected": 1}, id="unknown-field"
    ),
    pytest.param("POST", "/api/user/user-0001/routine/generate", None, id="no-body"),
    pytest.param("POST", "/api/user/user-0001/routine/generate", [1, 2], id="body-not-object"),
    pytest.param(
        "POST", "/api/user/user-0001/analysis", {"analysis_type": "horoscope"}, id="bad-type"
    ),
    pytest.param("POST", "/api/user/user-0001/analysis", {"history_days": 0}, id="zero-days"),
    pytest.param("POST", "/api/user/" + "x" * 65 + "/analysis", {}, id="user-id-too-long"),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
def test_bad_input_is_a_4xx(log_capture: LogCapture, method: str, path: str, body: Any) -> None:
    app = demo_apps()
    [response] = asyncio.run(call(app, [{"method": method, "url": path, "json": body}]))
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


def test_load_mix_has_archetypes_bad_requests_and_valid_ids() -> None:
    rng = random.Random(7)
    plans = [plan_request(rng, users=50) for _ in range(3000)]

    kinds = {p.kind for p in plans}
    assert {"bad_correlation_id", "unknown_path", "bad_body", "unknown_user"} <= kinds
    bad_share = sum(p.kind not in ("profile", "analysis", "routine") for p in plans) / len(plans)
    assert 0.01 < bad_share < 0.08
    ids = [p.headers["X-Correlation-ID"] for p in plans]
    valid = [VALID_ID.match(i) is not None for i in ids]
    assert all(v == (p.kind != "bad_correlation_id") for v, p in zip(valid, plans, strict=True))
    assert len(set(ids)) > 0.99 * len(ids)
    population = [archetype_of(i, 50).name for i in range(50)]
    assert {a.name for a in ARCHETYPES} == set(population)
    new_users = {f"user-{i:04d}" for i, name in enumerate(population) if name == "new_user"}
    assert not [p for p in plans if p.kind == "analysis" and p.path.split("/")[3] in new_users]


def test_planned_requests_get_the_answers_their_kind_expects(log_capture: LogCapture) -> None:
    rng = random.Random(11)
    plans = [plan_request(rng, users=20) for _ in range(600)]
    bad = {p.kind: p for p in plans if p.kind not in ("profile", "analysis", "routine")}
    good = [p for p in plans if p.kind in ("profile", "analysis", "routine")][:30]
    chosen = [*bad.values(), *good]
    requests = [
        {"method": p.method, "url": p.path, "json": p.json, "headers": p.headers} for p in chosen
    ]
    responses = asyncio.run(call(demo_apps(), requests))

    expected_2xx = {"profile", "analysis", "routine", "bad_correlation_id"}
    outcomes = {(p.kind, r.status_code // 100) for p, r in zip(chosen, responses, strict=True)}
    assert outcomes == {(p.kind, 2 if p.kind in expected_2xx else 4) for p in chosen}


def counting_app(sleep_s: float, stats: dict[str, int]) -> Any:
    """A bare ASGI app that answers 200 after `sleep_s` and counts concurrent requests."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        stats["now"] += 1
        stats["max"] = max(stats["max"], stats["now"])
        try:
            await asyncio.sleep(sleep_s)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        finally:
            stats["now"] -= 1

    return app


@pytest.mark.parametrize(
    ("rate", "duration", "sleep_s", "concurrency", "most"),
    [
        pytest.param(40.0, 1.0, 0.0, 20, 42, id="fixed-rate"),
        pytest.param(200.0, 0.6, 0.2, 3, 12, id="concurrency-bound"),
    ],
)
def test_load_generator_is_bounded(
    rate: float, duration: float, sleep_s: float, concurrency: int, most: int
) -> None:
    stats = {"now": 0, "max": 0}

    async def run() -> int:
        transport = httpx.ASGITransport(app=counting_app(sleep_s, stats))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            summary = await generate_load(
                client,
                rate=rate,
                users=10,
                stop=asyncio.Event(),
                duration=duration,
                concurrency=concurrency,
                rng=random.Random(3),
            )
        return summary.sent

    sent = asyncio.run(run())
    assert most // 3 <= sent <= most
    assert stats["max"] <= concurrency


HOSTS = {
    "api": "127.0.0.1:18000",
    "analysis": "127.0.0.1:18001",
    "prometheus": "127.0.0.1:19090",
    "alertmanager": "127.0.0.1:19093",
}


def _targets(config: dict[str, Any]) -> dict[str, list[str]]:
    return {
        job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]]
        for job in config["scrape_configs"]
    }


def test_compose_prometheus_config_is_rendered_for_loopback() -> None:
    notes: list[str] = []
    source = stack_config.load_config(stack_config.PROMETHEUS_CONFIG, {}, notes)
    assert notes == [], "config/prometheus/prometheus.yml should exist"
    rendered = stack_config.render_prometheus_config(source, HOSTS, scrape_interval="1s")

    targets = _targets(rendered)
    assert targets["api"] == [HOSTS["api"]]
    assert targets["analysis"] == [HOSTS["analysis"]]
    assert all(t.startswith("127.0.0.1:") for ts in targets.values() for t in ts)
    services = {
        s["labels"]["service"]: job["job_name"]
        for job in rendered["scrape_configs"]
        for s in job["static_configs"]
    }
    assert services["api"] == "api" and services["analysis"] == "analysis"
    alerting = rendered["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alerting == [HOSTS["alertmanager"]]
    assert rendered["rule_files"] == [str(stack_config.RULES_DIR / "*.yml")]
    assert rendered["global"]["scrape_timeout"] == "1s"


def test_without_alertmanager_alerting_and_its_target_are_dropped() -> None:
    hosts = {k: v for k, v in HOSTS.items() if k != "alertmanager"}
    notes: list[str] = []
    rendered = stack_config.render_prometheus_config(
        stack_config.builtin_prometheus_config(), hosts, notes=notes
    )
    assert "alerting" not in rendered
    assert notes == ["alerting dropped: no Alertmanager runs here"]
    assert _targets(rendered) == {"api": [HOSTS["api"]], "analysis": [HOSTS["analysis"]]}


@pytest.mark.binary("promtool")
@pytest.mark.parametrize("source", ["compose", "builtin"])
def test_rendered_prometheus_config_passes_promtool(tmp_path: Path, source: str) -> None:
    config = (
        yaml.safe_load(stack_config.PROMETHEUS_CONFIG.read_text())
        if source == "compose"
        else stack_config.builtin_prometheus_config()
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(stack_config.render_prometheus_config(config, HOSTS)))
    result = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _lines_with(log_file: Path, request_id: str) -> list[str]:
    if not log_file.exists():
        return []
    return [line for line in log_file.read_text().splitlines() if request_id in line]


@pytest.mark.integration
@pytest.mark.binary("prometheus")
def test_python_m_demo_runs_scrapes_correlates_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "analysis", "prometheus", "alertmanager")}
    var_dir = tmp_path / "var"
    cmd = [sys.executable, "-m", "demo", "--var-dir", str(var_dir), "--duration", "55"]
    cmd += ["--rate", "10", "--scrape-interval", "1s"]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    api = f"http://127.0.0.1:{ports['api']}"
    prometheus = f"http://127.0.0.1:{ports['prometheus']}"
    output = tmp_path / "demo.out"
    env = {"ERROR_RATE": "0", "SLOW_RATE": "0", "LOG_FORMAT": ""}

    with running(cmd, log_path=output, env=env, cwd=REPO_ROOT) as demo:
        wait_http_ok(f"{api}/health", timeout=30)
        wait_http_ok(f"{prometheus}/-/ready", timeout=30)
        for service in ("api", "analysis"):
            wait_for_scrape(prometheus, service, timeout=30)
            assert query(prometheus, f'up{{service="{service}"}}')[0]["value"][1] == "1"

        request_id = f"it-{uuid.uuid4().hex}"
        response = httpx.post(
            f"{api}/api/user/user-0042/analysis",
            json={"analysis_type": "movement"},
            headers={"X-Correlation-ID": request_id},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        log_dir = var_dir / "log"
        for service in ("api", "analysis"):
            wait_until(
                lambda s=service: bool(_lines_with(log_dir / f"{s}.log", request_id)),
                timeout=10,
                what=f"{request_id} in {service}.log",
            )
        # The load generator's own requests reached both services too.
        assert _lines_with(log_dir / "analysis.log", '"request_id":"lg-')

        children = psutil.Process(demo.pid).children(recursive=True)
        names = {" ".join(c.cmdline()) for c in children}
        assert len(children) >= 4, names
        os.kill(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=40) == 0, output.read_text()

    assert [c.pid for c in children if not _dead(c)] == []
    assert "Stopped loadgen, prometheus" in output.read_text()


def test_the_local_alertmanager_notifies_the_local_webhook_receiver() -> None:
    from demo import stack_config

    source = stack_config.load_config(
        stack_config.ALERTMANAGER_CONFIG, stack_config.builtin_alertmanager_config(), []
    )
    rendered = stack_config.render_alertmanager_config(source, "http://127.0.0.1:19095")
    urls = [w["url"] for r in rendered["receivers"] for w in r.get("webhook_configs", [])]
    assert urls and all(u.startswith("http://127.0.0.1:19095/") for u in urls)


def test_the_rendered_scrape_targets_carry_the_services_environment() -> None:
    from demo import stack_config

    source = stack_config.load_config(
        stack_config.PROMETHEUS_CONFIG, stack_config.builtin_prometheus_config(), []
    )
    hosts = {"api": "127.0.0.1:18000", "analysis": "127.0.0.1:18001"}
    rendered = stack_config.render_prometheus_config(source, hosts, environment="local")
    labels = [s["labels"] for job in rendered["scrape_configs"] for s in job["static_configs"]]
    assert labels and all(label["environment"] == "local" for label in labels)
