"""Metrics, exemplars and exposition; business events, timings and the error tracker."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import instrumentation.middleware as middleware_module
from instrumentation import (
    BusinessEvents,
    ErrorTracker,
    Thresholds,
    bind_context,
    instrument_app,
    log_performance,
    testing,
)
from instrumentation.faults import fault_count
from tests.conftest import LogCapture

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def make_app(registry: CollectorRegistry) -> FastAPI:
    app = FastAPI()
    instrument_app(app, registry=registry)

    @app.get("/api/user/{user_id}/routine")
    async def routine(user_id: str) -> dict[str, str]:
        return {"user_id": user_id}

    return app


async def get_all(app: FastAPI, requests: list[tuple[str, dict[str, str]]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return [await client.get(path, headers=headers) for path, headers in requests]


def scrape(app: FastAPI, accept: str = OPENMETRICS) -> httpx.Response:
    return asyncio.run(get_all(app, [("/metrics", {"accept": accept})]))[0]


def test_golden_openmetrics_lines_with_exemplar(
    registry: CollectorRegistry, log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(registry)
    ticks = iter([100.0, 100.5])
    monkeypatch.setattr(middleware_module, "perf_counter", lambda: next(ticks))
    monkeypatch.setattr("prometheus_client.metrics.time.time", lambda: 1764000000.5)
    headers = {"X-Correlation-ID": "golden-1", "traceparent": TRACEPARENT}
    asyncio.run(get_all(app, [("/api/user/u-1/routine", headers)]))
    monkeypatch.undo()
    response = scrape(app)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    lines = response.text.splitlines()
    route = 'method="GET",route="/api/user/{user_id}/routine"'
    assert (
        f'http_request_duration_seconds_bucket{{le="0.5",{route}}} 1.0 '
        '# {request_id="golden-1",trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.5 1764000000.5'
    ) in lines
    assert f'http_request_duration_seconds_bucket{{le="0.25",{route}}} 0.0' in lines
    assert f'http_requests_total{{{route},status="200"}} 1.0' in lines
    assert f"http_request_duration_seconds_sum{{{route}}} 0.5" in lines
    assert f"http_requests_in_progress{{{route}}} 0.0" in lines


def test_text_format_without_openmetrics_accept_has_no_exemplars(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    app = make_app(registry)
    asyncio.run(get_all(app, [("/api/user/u-1/routine", {"X-Correlation-ID": "plain-1"})]))
    response = scrape(app, accept="text/plain")
    assert response.headers["content-type"].startswith("text/plain")
    assert "http_request_duration_seconds_bucket" in response.text
    assert "plain-1" not in response.text and "# {" not in response.text


def test_process_platform_and_log_collectors_are_exposed(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    text = scrape(make_app(registry)).text
    for name in ("process_resident_memory_bytes", "python_info", "log_records_total"):
        assert re.search(rf"^{name}", text, re.M), name


def test_a_64_character_id_fits_the_exemplar_limit(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    long_id = "a" * 64
    response = asyncio.run(
        get_all(make_app(registry), [("/api/user/u-1/routine", {"X-Correlation-ID": long_id})])
    )[0]
    assert response.status_code == 200
    assert response.headers["x-correlation-id"] == long_id


def series_count(registry: CollectorRegistry) -> int:
    return sum(len(metric.samples) for metric in registry.collect())


def test_ten_thousand_paths_and_users_leave_the_series_count_unchanged(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    app = make_app(registry)
    warmup = [("/api/user/u-0/routine", {}), ("/no/such/0", {})]
    asyncio.run(get_all(app, warmup))
    before = series_count(registry)
    requests = [
        (f"/api/user/user-{i}/routine" if i % 2 else f"/no/such/{i}", {}) for i in range(10_000)
    ]
    asyncio.run(get_all(app, requests))
    assert series_count(registry) == before
    assert (
        registry.get_sample_value(
            "http_requests_total", {"method": "GET", "route": "unmatched", "status": "404"}
        )
        == 5001
    )
    assert "user-" not in scrape(app, accept="text/plain").text


def test_unknown_methods_do_not_become_label_values(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    app = make_app(registry)

    async def custom() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            for i in range(5):
                await c.request(f"X{i}", "/api/user/u/routine")

    asyncio.run(custom())
    assert (
        registry.get_sample_value(
            "http_requests_total",
            {"method": "OTHER", "route": "/api/user/{user_id}/routine", "status": "405"},
        )
        == 5
    )


# --- business events ---


def test_each_business_event_logs_its_type_and_counts() -> None:
    events = BusinessEvents()
    with (
        testing.capture_logs() as lines,
        testing.capture_metrics() as registry,
        bind_context(request_id="biz-1", user_id="user-1"),
    ):
        events.analysis_started("movement")
        events.analysis_completed("movement", duration_ms=812.5, insights_count=3, cost_usd=0.01)
        events.analysis_failed("movement", TimeoutError("model timed out"))
        events.routine_generated(exercises_count=8)
        events.api_cost_tracked("analyze", "gpt-4o-mini", 0.25)
    records = {r["event_type"]: r for r in lines}
    assert list(records) == [
        "analysis_started",
        "analysis_completed",
        "analysis_failed",
        "routine_generated",
        "api_cost_tracked",
    ]
    assert all(r["request_id"] == "biz-1" and r["user_id"] == "user-1" for r in records.values())
    assert records["analysis_completed"]["insights_count"] == 3
    assert records["analysis_failed"]["error_type"] == "TimeoutError"
    assert records["analysis_failed"]["level"] == "ERROR"
    assert records["routine_generated"]["exercises_count"] == 8
    assert records["api_cost_tracked"]["daily_cost_usd"] == 0.25
    assert (
        records["routine_generated"]["function"]
        == "test_each_business_event_logs_its_type_and_counts"
    )
    for event_type in records:
        assert registry.get_sample_value("business_events_total", {"event_type": event_type}) == 1
    assert (
        registry.get_sample_value(
            "api_cost_usd_total", {"endpoint": "analyze", "model": "gpt-4o-mini"}
        )
        == 0.25
    )


def test_daily_cost_is_per_user_bounded_and_rolls_over_at_utc_midnight(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    today = [date(2026, 11, 28)]
    events = BusinessEvents(max_users=2, today=lambda: today[0])
    assert events.api_cost_tracked("a", "m", 1.0, user_id="u1") == 1.0
    assert events.api_cost_tracked("a", "m", 2.0, user_id="u1") == 3.0
    events.api_cost_tracked("a", "m", 1.0, user_id="u2")
    events.api_cost_tracked("a", "m", 1.0, user_id="u3")  # u1 is the least recent: forgotten
    assert (events.daily_cost("u1"), events.daily_cost("u3")) == (0.0, 1.0)
    today[0] = date(2026, 11, 29)
    assert events.daily_cost("u3") == 0.0
    assert events.api_cost_tracked("a", "m", 0.5, user_id="u3") == 0.5


# --- log_performance ---


def test_log_performance_times_sync_async_and_blocks() -> None:
    @log_performance("sync_op", track_memory=True)
    def sync_op() -> int:
        return 1

    @log_performance("async_op")
    async def async_op() -> int:
        return 2

    with (
        testing.capture_logs() as lines,
        testing.capture_metrics() as registry,
        bind_context(request_id="perf-1"),
    ):
        assert sync_op() == 1
        assert asyncio.run(async_op()) == 2
        with log_performance("block"):
            pass
    records = {r["operation"]: r for r in lines}
    assert set(records) == {"sync_op", "async_op", "block"}
    assert "memory_delta_mb" in records["sync_op"] and "memory_delta_mb" not in records["block"]
    assert all(r["status"] == "success" and r["duration_ms"] >= 0 for r in records.values())
    for operation in records:
        count = registry.get_sample_value(
            "operation_duration_seconds_count", {"operation": operation, "status": "success"}
        )
        assert count == 1


def test_log_performance_logs_and_reraises_errors_with_a_request_exemplar(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    @log_performance("failing")
    async def failing() -> None:
        raise ValueError("bad input")

    with bind_context(request_id="perf-err"), pytest.raises(ValueError):
        asyncio.run(failing())
    (record,) = log_capture.records
    assert (record["status"], record["error_type"], record["level"]) == (
        "error",
        "ValueError",
        "ERROR",
    )
    from prometheus_client.openmetrics.exposition import generate_latest

    exposition = generate_latest(registry).decode()
    assert 'operation="failing",status="error"} 1.0 # {request_id="perf-err"}' in exposition


# --- error tracker ---


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_error_tracker_alerts_when_the_window_count_crosses_the_threshold(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    clock = Clock()
    tracker = ErrorTracker(
        registry=registry,
        alertmanager_url="",
        thresholds=Thresholds(count=3, window=60, cooldown=300),
        clock=clock,
    )
    results = []
    for _ in range(3):
        results.append(tracker.track(KeyError("k"), "lookup"))
        clock.now += 1
    assert results == [False, False, True]
    assert tracker.track(KeyError("k"), "lookup") is False  # cooldown: no alert storm
    assert (
        registry.get_sample_value(
            "app_errors_total",
            {"error_type": "KeyError", "operation": "lookup", "severity": "error"},
        )
        == 4
    )


def test_error_tracker_window_slides(registry: CollectorRegistry, log_capture: LogCapture) -> None:
    clock = Clock()
    tracker = ErrorTracker(
        registry=registry,
        alertmanager_url="",
        thresholds=Thresholds(count=3, window=60, cooldown=0),
        clock=clock,
    )
    tracker.track(KeyError("k"), "lookup")
    tracker.track(KeyError("k"), "lookup")
    clock.now += 61  # both fall out of the window
    assert tracker.track(KeyError("k"), "lookup") is False
    assert tracker.track(KeyError("k"), "lookup") is False
    assert tracker.track(KeyError("k"), "lookup") is True


def test_three_critical_errors_alert_sooner(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    tracker = ErrorTracker(
        registry=registry, alertmanager_url="", thresholds=Thresholds(), clock=Clock()
    )
    results = [tracker.track(TimeoutError("t"), "model", severity="critical") for _ in range(3)]
    assert results == [False, False, True]
    alert_lines = [r for r in log_capture.records if r["message"] == "Error pattern alert"]
    assert alert_lines[0]["severity"] == "critical"


def test_error_tracker_logs_each_error_with_its_context(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    tracker = ErrorTracker(
        registry=registry, alertmanager_url="", thresholds=Thresholds(), clock=Clock()
    )
    try:
        raise ConnectionError("downstream refused")
    except ConnectionError as error:
        with bind_context(request_id="err-ctx", user_id="u-5"):
            tracker.track(error, "call_analysis", severity="error", attempt=2)
    record: dict[str, Any] = log_capture.records[0]
    assert (record["request_id"], record["user_id"], record["operation"]) == (
        "err-ctx",
        "u-5",
        "call_analysis",
    )
    assert (
        record["error_type"] == "ConnectionError" and "downstream refused" in record["stacktrace"]
    )
    assert record["attempt"] == 2


def test_metrics_scrapes_are_labelled_with_their_route_not_unmatched(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    app = make_app(registry)
    scrape(app)
    scrape(app)
    labels = {"method": "GET", "route": "/metrics", "status": "200"}
    assert registry.get_sample_value("http_requests_total", labels) == 2
    unmatched = {"method": "GET", "route": "unmatched", "status": "200"}
    assert registry.get_sample_value("http_requests_total", unmatched) is None


def test_a_custom_registry_gets_process_platform_and_gc_collectors(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    text = scrape(make_app(registry), accept="text/plain").text
    for name in ("process_open_fds", "python_info", "python_gc_collections_total"):
        assert re.search(rf"^{name}", text, re.M), name


def test_the_tracker_keeps_only_what_its_thresholds_need(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    tracker = ErrorTracker(
        registry=registry, alertmanager_url="", thresholds=Thresholds(count=5), clock=Clock()
    )
    for _ in range(2000):
        tracker.track(KeyError("k"), "lookup", severity="critical")
    assert tracker.retained_times() == 5 + 3  # `count` times, `critical_count` critical ones


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ERROR_ALERT_THRESHOLD", "ten"),
        ("ERROR_ALERT_WINDOW_SECONDS", "1h"),
        ("ERROR_ALERT_CRITICAL_THRESHOLD", "0"),
    ],
)
def test_bad_alert_settings_fail_at_startup_but_never_in_a_request(
    registry: CollectorRegistry,
    log_capture: LogCapture,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        ErrorTracker(alertmanager_url="").configure()
    lazy = ErrorTracker(registry=registry, alertmanager_url="", clock=Clock())
    assert lazy.track(KeyError("k"), "lookup") is False  # defaults, counted as a fault
    assert fault_count("error_tracker", "invalid_setting") == 1
    faults = log_capture.by_logger("corrstack.faults")
    assert [f["component"] for f in faults] == ["error_tracker"]


def test_a_mounted_apps_routes_are_labelled_with_the_full_template(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/items/{user_id}", ok)])
    app = Starlette(routes=[Route("/u/{user_id}", ok), Mount("/sub", app=inner)])
    instrument_app(app, registry=registry)
    asyncio.run(get_all(app, [("/sub/items/bob", {}), ("/sub/items/eve", {}), ("/u/al", {})]))
    assert (
        registry.get_sample_value(
            "http_requests_total",
            {"method": "GET", "route": "/sub/items/{user_id}", "status": "200"},
        )
        == 2
    )
    assert (
        registry.get_sample_value(
            "http_requests_total", {"method": "GET", "route": "/u/{user_id}", "status": "200"}
        )
        == 1
    )
