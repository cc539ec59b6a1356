"""HTTP metrics, exemplars and their exposition on /metrics."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import instrumentation.middleware as middleware_module
from instrumentation import (
    instrument_app,
)
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
