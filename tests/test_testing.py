"""instrumentation.testing: what users' tests of their handlers get."""

from __future__ import annotations

import asyncio
import io
import logging

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from instrumentation import (
    bind_context,
    business_events,
    current_runtime,
    error_tracker,
    get_logger,
    instrument_app,
    log_performance,
    setup_logging,
    testing,
)
from instrumentation.accounting import count_drop, dropped
from instrumentation.faults import fault_count, report_fault
from instrumentation.logging_setup import logging_configured


def test_capture_logs_gives_the_parsed_lines_with_their_context() -> None:
    with testing.capture_logs() as lines, bind_context(request_id="req-1", user_id="u-1"):
        get_logger("tests.app").info("Order placed", order_id=7, password="hunter2")
    [line] = lines
    assert (line["message"], line["request_id"], line["user_id"], line["order_id"]) == (
        "Order placed",
        "req-1",
        "u-1",
        7,
    )
    assert line["password"] == "[REDACTED]"  # the real formatter: secrets masked
    assert isinstance(line["seq"], int)  # the real filter: seq and boot_id


def test_capture_logs_takes_its_level_and_restores_the_roots() -> None:
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    with testing.capture_logs() as infos:
        logging.getLogger("tests.app").debug("debug")
        logging.getLogger("tests.app").info("info")
    with testing.capture_logs(level="DEBUG") as debugs:
        logging.getLogger("tests.app").debug("debug")
    assert ([r["message"] for r in infos], [r["message"] for r in debugs]) == (
        ["info"],
        ["debug"],
    )
    assert root.level == logging.WARNING


def test_capture_logs_sees_an_apps_lines_with_its_service() -> None:
    app = FastAPI()
    instrument_app(app, service="api", registry=CollectorRegistry())

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        get_logger("tests.handler").info("Handled")
        return {"ok": True}

    async def call() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            (await client.get("/ok", headers={"X-Correlation-ID": "req-ok"})).raise_for_status()

    with testing.capture_logs() as lines:
        asyncio.run(call())
    in_request = [(r["logger"], r["service"]) for r in lines if r["request_id"] == "req-ok"]
    assert in_request == [("tests.handler", "api"), ("corrstack.access", "api")]


ERROR = {"error_type": "KeyError", "operation": "lookup", "severity": "error"}


def test_capture_metrics_counts_what_runs_outside_an_app_in_a_fresh_registry() -> None:
    before = REGISTRY.get_sample_value("business_events_total", {"event_type": "routine_generated"})
    with testing.capture_metrics() as registry:
        business_events.routine_generated(exercises_count=3)
        with log_performance("load"):
            pass
        error_tracker.track(KeyError("k"), "lookup")
    assert (
        registry.get_sample_value("business_events_total", {"event_type": "routine_generated"}),
        registry.get_sample_value(
            "operation_duration_seconds_count", {"operation": "load", "status": "success"}
        ),
        registry.get_sample_value(
            "app_errors_total",
            {"error_type": "KeyError", "operation": "lookup", "severity": "error"},
        ),
    ) == (1.0, 1.0, 1.0)
    after = REGISTRY.get_sample_value("business_events_total", {"event_type": "routine_generated"})
    assert after == before  # nothing reached the global registry
    assert current_runtime().registry is REGISTRY  # restored


def test_capture_metrics_keeps_its_registry_when_setup_logging_runs_inside() -> None:
    with testing.capture_metrics() as registry:
        setup_logging(service="inside", stream=io.StringIO())
        business_events.routine_generated(exercises_count=1)
        assert current_runtime().service == "inside"
    labels = {"event_type": "routine_generated"}
    assert registry.get_sample_value("business_events_total", labels) == 1


def test_reset_puts_back_every_piece_of_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERROR_ALERT_THRESHOLD", "2")
    setup_logging(service="before", environment="staging", stream=io.StringIO())
    runtime = current_runtime()
    assert error_tracker.track(KeyError("k"), "lookup") is False  # 1 of 2
    report_fault("tests", "broken")
    count_drop("tests", "full")
    business_events.api_cost_tracked("analyze", "m", 0.5, user_id="u-1")

    testing.reset()

    assert logging_configured() is False
    assert logging.getLogger().level == logging.WARNING
    fresh = current_runtime()
    assert (fresh is runtime, fresh.service, fresh.environment, fresh.registry) == (
        False,
        "unknown",
        "development",
        REGISTRY,
    )
    assert error_tracker.track(KeyError("k"), "lookup") is False  # 1 of 2 again: no pattern
    assert (fault_count("tests"), dropped("tests"), business_events.daily_cost("u-1")) == (0, 0, 0)
