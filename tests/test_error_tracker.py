"""The error tracker: sliding windows, thresholds, cooldowns, its lines and its settings."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from instrumentation import (
    ErrorTracker,
    Thresholds,
    bind_context,
)
from instrumentation.faults import fault_count
from tests.conftest import LogCapture

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


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
