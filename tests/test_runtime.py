"""The runtime: which service and registry a line, a metric and an alert belong to.

Each app's business events, timings and tracked errors land in that app's registry; an
app's `service=` wins over setup_logging()'s for its requests and says so; an alert carries
the service of the runtime it was tracked in.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from instrumentation import (
    business_events,
    current_runtime,
    error_tracker,
    get_logger,
    instrument_app,
    log_performance,
    setup_logging,
    testing,
)
from tests.support.processes import wait_until
from tests.support.stack import WebhookReceiver, webhook_receiver

OPERATION = {"operation": "work", "status": "success"}
EVENT = {"event_type": "routine_generated"}
ERROR = {"error_type": "KeyError", "operation": "lookup", "severity": "error"}


def working_app(service: str | None, registry: CollectorRegistry | None) -> FastAPI:
    """An app whose one route emits a business event, a timing and a tracked error."""
    app = FastAPI()
    instrument_app(app, service=service, registry=registry)
    log = get_logger("tests.work")

    @log_performance("work")
    def work() -> None:
        business_events.routine_generated(exercises_count=3)
        error_tracker.track(KeyError("k"), "lookup")
        log.info("Worked")

    @app.get("/work")
    async def route() -> dict[str, str]:
        work()
        return {"service": current_runtime().service}

    return app


async def get(app: FastAPI, path: str, times: int = 1) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return [await client.get(path) for _ in range(times)]


def samples(registry: CollectorRegistry) -> tuple[float | None, float | None, float | None]:
    return (
        registry.get_sample_value("business_events_total", EVENT),
        registry.get_sample_value("operation_duration_seconds_count", OPERATION),
        registry.get_sample_value("app_errors_total", ERROR),
    )


def test_each_apps_events_timings_and_errors_land_in_its_own_registry() -> None:
    setup_logging(service="proc", stream=io.StringIO())
    alpha_registry, beta_registry = CollectorRegistry(), CollectorRegistry()
    alpha = working_app("alpha", alpha_registry)
    beta = working_app("beta", beta_registry)
    with testing.capture_metrics() as process_registry:

        async def both() -> None:
            await asyncio.gather(get(alpha, "/work", times=2), get(beta, "/work", times=1))

        asyncio.run(both())
    assert (samples(alpha_registry), samples(beta_registry), samples(process_registry)) == (
        (2.0, 2.0, 2.0),
        (1.0, 1.0, 1.0),
        (None, None, None),
    )


def test_the_first_app_shares_the_process_runtime_and_the_second_has_its_own() -> None:
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    first = working_app("first", first_registry)  # setup_logging() runs here, with its registry
    second = working_app("second", second_registry)
    asyncio.run(get(first, "/work", times=3))
    asyncio.run(get(second, "/work", times=1))
    business_events.routine_generated(exercises_count=1)  # outside a request: the process's
    assert (samples(first_registry), samples(second_registry)) == (
        (4.0, 3.0, 3.0),
        (1.0, 1.0, 1.0),
    )


def test_an_apps_service_wins_over_setup_logging_for_its_requests_and_says_so() -> None:
    stream = io.StringIO()
    setup_logging(service="first", environment="staging", stream=stream)
    app = working_app("api", CollectorRegistry())
    [response] = asyncio.run(get(app, "/work"))
    get_logger("tests.outside").info("Outside a request")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]

    assert response.json() == {"service": "api"}
    assert {(r["logger"], r["service"], r["environment"]) for r in lines} == {
        ("corrstack.runtime", "first", "staging"),  # the notice, written at startup
        ("tests.work", "api", "staging"),
        ("corrstack.business", "api", "staging"),
        ("corrstack.errors", "api", "staging"),
        ("corrstack.performance", "api", "staging"),
        ("corrstack.access", "api", "staging"),
        ("tests.outside", "first", "staging"),
        ("httpx", "first", "staging"),  # the test client's line: outside the app
    }
    [notice] = [r for r in lines if r["logger"] == "corrstack.runtime"]
    assert notice["message"].startswith(
        "instrument_app(service='api') differs from setup_logging(service='first')"
    )


def test_without_a_service_an_app_logs_as_setup_logging_said() -> None:
    stream = io.StringIO()
    setup_logging(service="first", stream=stream)
    app = working_app(None, CollectorRegistry())
    [response] = asyncio.run(get(app, "/work"))
    services = {json.loads(line)["service"] for line in stream.getvalue().splitlines()}
    assert (response.json(), services) == ({"service": "first"}, {"first"})


@pytest.mark.parametrize(
    ("again", "named"),
    [
        ({"service": "other"}, "service='other'"),
        ({"registry": CollectorRegistry()}, "registry="),
    ],
    ids=["service", "registry"],
)
def test_instrumenting_an_app_again_differently_fails_naming_both(
    again: dict[str, Any], named: str
) -> None:
    setup_logging(service="first", stream=io.StringIO())
    app = FastAPI()
    registry = CollectorRegistry()
    instrument_app(app, service="api", registry=registry)
    assert instrument_app(app, service="api", registry=registry) is app  # the same: a no-op
    with pytest.raises(ValueError, match="conflicts with the app's earlier") as raised:
        instrument_app(app, **{"service": "api", "registry": registry, **again})
    assert named in str(raised.value)


def test_an_invalid_service_for_an_app_is_refused() -> None:
    with pytest.raises(ValueError, match="service='api service'"):
        instrument_app(FastAPI(), service="api service", registry=CollectorRegistry())


@pytest.fixture
def alert_receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


def test_an_alert_carries_the_service_of_the_runtime_it_was_tracked_in(
    alert_receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = alert_receiver.url
    monkeypatch.setenv("ALERTMANAGER_URL", url)
    monkeypatch.setenv("ERROR_ALERT_CRITICAL_THRESHOLD", "1")
    setup_logging(service="first", environment="staging", stream=io.StringIO())
    app = FastAPI()
    instrument_app(app, service="api", registry=CollectorRegistry())

    @app.get("/fail")
    async def fail() -> dict[str, bool]:
        return {"alerted": error_tracker.track(TimeoutError("t"), "in_request", "critical")}

    [response] = asyncio.run(get(app, "/fail"))
    outside = error_tracker.track(TimeoutError("t"), "outside", severity="critical")
    wait_until(
        lambda: len(alert_receiver.alerts()) == 2, timeout=10, what="two alerts at the receiver"
    )
    alerts = alert_receiver.alerts()

    labels = {a["labels"]["operation"]: a["labels"] for a in alerts}
    assert (response.json(), outside) == ({"alerted": True}, True)
    assert {op: (lab["service"], lab["environment"]) for op, lab in labels.items()} == {
        "in_request": ("api", "staging"),
        "outside": ("first", "staging"),
    }


def test_the_tracked_error_line_names_the_caller_of_error_tracker_track() -> None:
    def handler() -> None:
        error_tracker.track(KeyError("k"), "lookup")

    with testing.capture_logs() as lines:
        handler()
    [line] = lines
    assert (line["message"], line["function"], line["module"]) == (
        "Error tracked",
        "handler",
        "test_runtime",
    )
