"""Business events with their per-user cost totals, and `log_performance` timings: their lines
and their metrics."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest
from prometheus_client import CollectorRegistry

from instrumentation import (
    BusinessEvents,
    bind_context,
    log_performance,
    testing,
)
from tests.conftest import LogCapture

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


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
