"""Context-isolation and soak app: background work, threads, streaming, late tasks."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import StreamingResponse

from instrumentation import current_context, get_logger, instrument_app, setup_logging

_lag = {"max_ms": 0.0, "samples": 0}
_tasks: set[asyncio.Task[None]] = set()


@asynccontextmanager
async def watch_event_loop_lag(app: FastAPI) -> AsyncIterator[None]:
    async def watch() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.05)
            lag_ms = (time.perf_counter() - started - 0.05) * 1000
            _lag["max_ms"] = max(_lag["max_ms"], lag_ms)
            _lag["samples"] += 1

    task = asyncio.get_running_loop().create_task(watch(), context=contextvars.Context())
    yield
    task.cancel()


setup_logging()
app = FastAPI(lifespan=watch_event_loop_lag)
instrument_app(app)
log = get_logger(__name__)


@app.get("/lag")
async def lag() -> dict[str, float]:
    return dict(_lag)


@app.get("/context")
async def context() -> dict[str, object]:
    return current_context()


@app.post("/api/user/{user_id}/upload")
async def upload(user_id: str, request: Request) -> dict[str, object]:
    body = await request.body()
    log.info("Upload received", size=len(body))
    return {**current_context(), "size": len(body)}


@app.get("/api/user/{user_id}/work")
async def work(user_id: str, lines: int = 5) -> dict[str, object]:
    for step in range(lines):
        log.info("Work step", step=step)
        await asyncio.sleep(0)
    return current_context()


def _in_thread(label: str) -> None:
    logging.getLogger("tests.thread").info("Thread line", extra={"via": label})


@app.get("/api/user/{user_id}/threads")
async def threads(user_id: str) -> dict[str, object]:
    await asyncio.to_thread(_in_thread, "to_thread")
    await asyncio.get_running_loop().run_in_executor(None, _in_thread, "run_in_executor")
    return current_context()


def _after_response(label: str) -> None:
    logging.getLogger("tests.background").info("Background task", extra={"label": label})


@app.get("/api/user/{user_id}/background")
async def background(user_id: str, tasks: BackgroundTasks) -> dict[str, object]:
    tasks.add_task(_after_response, "background")
    return current_context()


async def _late(delay: float) -> None:
    await asyncio.sleep(delay)
    logging.getLogger("tests.late").info("Task outlived its request")


@app.get("/api/user/{user_id}/late")
async def late(user_id: str) -> dict[str, object]:
    task = asyncio.create_task(_late(0.3))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return current_context()


@app.get("/api/user/{user_id}/stream")
async def stream(user_id: str) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            logging.getLogger("tests.stream").info("Chunk", extra={"chunk": i})
            await asyncio.sleep(0.01)
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")
