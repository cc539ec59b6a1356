"""Bad settings are refused at startup, naming the variable; bad arguments and failing probes at
run time are counted faults and the request still gets its 200."""

from __future__ import annotations

import asyncio
import logging

import httpx
import psutil
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from instrumentation import error_tracker, instrument_app, log_performance
from instrumentation.error_tracking import ErrorTracker, Thresholds
from instrumentation.faults import fault_count
from tests.conftest import LogCapture


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ERROR_ALERT_THRESHOLD", "nan"),
        ("ERROR_ALERT_THRESHOLD", "1e12"),
        ("ERROR_ALERT_THRESHOLD", "-1"),
        ("ERROR_ALERT_WINDOW_SECONDS", "nan"),
        ("ERROR_ALERT_WINDOW_SECONDS", "inf"),
        ("ERROR_ALERT_WINDOW_SECONDS", "1e12"),
        ("ERROR_ALERT_CRITICAL_THRESHOLD", "inf"),
        ("ERROR_ALERT_CRITICAL_WINDOW_SECONDS", "-inf"),
        ("ERROR_ALERT_COOLDOWN_SECONDS", "nan"),
        ("ERROR_ALERT_COOLDOWN_SECONDS", "-5"),
        ("ALERTMANAGER_URL", "alertmanager:9093"),
        ("ALERTMANAGER_URL", "http://user:pass@alertmanager:9093"),
        ("RUNBOOK_URL_BASE", "javascript:alert(1)"),
    ],
)
def test_bad_alert_settings_are_refused_at_startup(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        instrument_app(FastAPI(), registry=CollectorRegistry())


def test_thresholds_given_in_code_are_checked_too() -> None:
    with pytest.raises(ValueError, match="window"):
        Thresholds(window=float("nan"))


def app_with_faults() -> FastAPI:
    app = FastAPI()
    instrument_app(app, registry=CollectorRegistry())

    @app.get("/memory")
    @log_performance("measured", track_memory=True)
    async def memory() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/unprintable")
    async def unprintable() -> dict[str, bool]:
        return {"alerted": error_tracker.track(Unprintable(), "op", severity="critical")}

    @app.get("/bad-severity")
    async def bad_severity() -> dict[str, bool]:
        return {"alerted": error_tracker.track("x", "op", severity="loud")}  # type: ignore[arg-type]

    @app.get("/clashing-fields")
    async def clashing_fields() -> dict[str, bool]:
        return {"alerted": error_tracker.track("x", "op", error_type="mine", stacklevel=9)}

    return app


def get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(call())


def test_a_failing_memory_probe_gives_a_200_and_a_counted_fault(
    log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: psutil.Process) -> None:
        raise psutil.AccessDenied(pid=self.pid)

    monkeypatch.setattr(psutil.Process, "memory_info", broken)
    app = app_with_faults()
    assert get(app, "/memory").status_code == 200
    assert fault_count("performance", "memory_probe_failed") == 1
    timing = log_capture.by_logger("corrstack.performance")[0]
    assert timing["status"] == "success"
    assert "memory_delta_mb" not in timing
    assert len(log_capture.by_logger("corrstack.faults")) == 1  # logged once


@pytest.mark.parametrize("path", ["/unprintable", "/bad-severity", "/clashing-fields"])
def test_bad_tracker_arguments_give_200s(log_capture: LogCapture, path: str) -> None:
    response = get(app_with_faults(), path)
    assert response.status_code == 200
    tracked = log_capture.by_logger("corrstack.errors")
    assert tracked and tracked[0]["message"] == "Error tracked"


def test_an_unprintable_exception_is_tracked_with_its_type(log_capture: LogCapture) -> None:
    tracker = ErrorTracker(alertmanager_url="")
    tracker.track(Unprintable(), "op")
    tracked = log_capture.by_logger("corrstack.errors")[0]
    assert (tracked["error_type"], tracked["error_message"]) == (
        "Unprintable",
        "<unprintable Unprintable>",
    )


def test_a_failing_filter_on_the_invalid_id_warning_never_fails_the_request(
    log_capture: LogCapture,
) -> None:
    class Raising(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("third-party filter bug")

    warn = logging.getLogger("corrstack.correlation")
    raising = Raising()
    warn.addFilter(raising)
    try:
        response = get(app_with_faults(), "/memory", {"X-Correlation-ID": "bad id!"})
    finally:
        warn.removeFilter(raising)
    assert response.status_code == 200
