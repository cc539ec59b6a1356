"""The demo's two services wired in-process: the api with its analysis client calling an
analysis app through `httpx.ASGITransport`, each on its own registry."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from demo.settings import DemoSettings

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
