"""The demo's two services wired in-process: the api with its analysis client calling an
analysis app through `httpx.ASGITransport`, each on its own registry. And, for the demo run
for real, what a service's `/metrics` and access lines say."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from demo.settings import DemoSettings
from tests.support.processes import wait_until

NO_FAILURES = DemoSettings(error_rate=0.0, slow_rate=0.0)


def recording(app: Any, seen: list[dict[str, str]]) -> Any:
    """An ASGI wrapper that keeps the headers of every HTTP request reaching `app`."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)

    return wrapper


def demo_apps(
    settings: DemoSettings = NO_FAILURES,
    rng: random.Random | None = None,
    seen: list[dict[str, str]] | None = None,
) -> FastAPI:
    """The api app, its analysis client wired in-process to an analysis app."""
    from demo import analysis, api

    downstream = analysis.create_app(settings, registry=CollectorRegistry(), rng=rng)
    transport = httpx.ASGITransport(
        app=recording(downstream, seen if seen is not None else []),
        raise_app_exceptions=False,  # an unhandled error must reach the api as the 500 it is
    )
    return api.create_app(settings, registry=CollectorRegistry(), transport=transport)


async def call(app: FastAPI, requests: list[dict[str, Any]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        try:
            return list(await asyncio.gather(*(client.request(**r) for r in requests)))
        finally:
            await app.state.analysis_client.aclose()


# Real servers: what `/metrics` and the access lines say, with one worker or several.
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def scrape(base_url: str) -> list[Metric]:
    """`base_url`/metrics in OpenMetrics (exemplars included), on a connection of its own: with
    several workers, any of them may answer."""
    response = httpx.get(f"{base_url}/metrics", headers={"Accept": OPENMETRICS}, timeout=10)
    response.raise_for_status()
    return list(text_string_to_metric_families(response.text))


def samples(families: list[Metric], name: str) -> list[Sample]:
    """The samples called `name` (`http_requests_total`, `…_bucket`) in a scrape."""
    return [s for family in families for s in family.samples if s.name == name]


def access_lines(log_file: Path) -> dict[str, dict[str, Any]]:
    """The access lines of a JSON log file, by request_id (one line per request)."""
    if not log_file.exists():
        return {}
    lines = {}
    for text in log_file.read_text().splitlines():
        if '"corrstack.access"' in text:
            line = json.loads(text)
            if line.get("logger") == "corrstack.access":
                lines[line["request_id"]] = line
    return lines


def served_by(log_file: Path, request_ids: list[str], timeout: float = 10.0) -> dict[str, str]:
    """{request_id: boot_id of the worker that served it}, once every id has its access line."""
    lines: dict[str, dict[str, Any]] = {}

    def logged() -> bool:
        lines.update(access_lines(log_file))
        return all(i in lines for i in request_ids)

    wait_until(logged, timeout=timeout, what=f"access lines of {len(request_ids)} requests")
    return {i: lines[i]["boot_id"] for i in request_ids}


def send_each(base_url: str, method: str, path: str, request_ids: list[str]) -> list[int]:
    """One request per id, all at once, each on a connection of its own (so the server's
    workers share them); their status codes, in order."""

    async def send() -> list[int]:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10) as client:
            requests = [
                client.request(method, path, headers={"X-Correlation-ID": i}) for i in request_ids
            ]
            responses = await asyncio.gather(*requests)
        return [r.status_code for r in responses]

    return asyncio.run(send())
