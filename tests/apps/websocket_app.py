"""An instrumented app with websocket routes, for the websocket tests (in-process and uvicorn)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from prometheus_client import CollectorRegistry

from instrumentation import current_context, get_logger, instrument_app, setup_logging

BYE = "bye"  # the client asks the server to close, with APP_CLOSE_CODE
APP_CLOSE_CODE = 4001
log = get_logger(__name__)
plain = logging.getLogger("tests.plain")


def build_app(registry: CollectorRegistry | None = None) -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws/user/{user_id}")
    async def chat(websocket: WebSocket, user_id: str) -> None:
        await websocket.accept()
        log.info("Connection opened")
        try:
            while True:
                text = await websocket.receive_text()
                await asyncio.sleep(0.001)  # let the other connections' messages interleave
                plain.info("Message received")
                if text == BYE:
                    await websocket.close(code=APP_CLOSE_CODE)
                    return
                context = current_context()
                await websocket.send_json(
                    {"echo": text, "request_id": context["request_id"], "user_id": user_id}
                )
        except WebSocketDisconnect:
            log.info("Client left")

    @app.websocket("/ws/reject")
    async def reject(websocket: WebSocket) -> None:
        log.info("Handshake refused")
        await websocket.close(code=1008)

    @app.websocket("/ws/boom/{user_id}")
    async def boom(websocket: WebSocket, user_id: str) -> None:
        await websocket.accept()
        await websocket.receive_text()
        raise RuntimeError("websocket handler failed")

    if registry is None:
        instrument_app(app)
    else:
        instrument_app(app, service="test-svc", registry=registry)
    return app


_served: list[FastAPI] = []


def __getattr__(name: str) -> FastAPI:
    """`tests.apps.websocket_app:app` for uvicorn: logging set up from the environment then."""
    if name != "app":
        raise AttributeError(name)
    if not _served:
        setup_logging()
        _served.append(build_app())
    return _served[0]
