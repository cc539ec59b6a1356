"""What corrstack relies on in stdlib logging, Starlette, FastAPI and uvicorn beyond their
documented API. Each test states one assumption and fails when a new release breaks it."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

import httpx
import uvicorn.protocols.http.h11_impl
import uvicorn.server
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from instrumentation import get_logger, instrument_app
from instrumentation.access_record import AccessRecords
from instrumentation.log_format import STANDARD_ATTRS
from instrumentation.logging_setup import LAST_WORDS
from instrumentation.middleware import CorrelationMiddleware
from instrumentation.routes import RouteResolver, is_mounted, route_template

# --- stdlib logging ----------------------------------------------------------------------------


def test_extra_fields_come_after_every_attribute_a_logrecord_sets() -> None:
    # log_format reads a record's extra fields as its attributes past len(STANDARD_ATTRS).
    logger = logging.getLogger("tests.contracts")
    record = logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, "m", None, None, extra={"order_id": 7}
    )
    names = list(record.__dict__)
    assert (tuple(names[: len(STANDARD_ATTRS)]), names[len(STANDARD_ATTRS) :]) == (
        STANDARD_ATTRS,
        ["order_id"],
    )


def test_an_access_record_has_the_standard_attributes_in_their_order() -> None:
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger = logging.getLogger("tests.contracts.access")
    logger.addHandler(Keep())
    logger.propagate = False
    AccessRecords(logger).emit(logging.INFO, "GET / 200", {"status": 200}, {})
    names = list(captured[0].__dict__)
    assert (tuple(names[: len(STANDARD_ATTRS)]), names[len(STANDARD_ATTRS) :]) == (
        STANDARD_ATTRS,
        ["status"],
    )


def test_an_access_records_relative_time_is_what_a_logrecord_of_now_has() -> None:
    # access_record derives relativeCreated's reference point from a LogRecord, not from
    # logging._startTime (whose unit changed in Python 3.13).
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger = logging.getLogger("tests.contracts.relative")
    logger.addHandler(Keep())
    logger.propagate = False
    AccessRecords(logger).emit(logging.INFO, "GET / 200", {}, {})
    reference = logging.LogRecord("", logging.INFO, "", 0, "", None, None)
    made, now = captured[0], time.time()
    assert abs(made.relativeCreated - reference.relativeCreated) < 50  # milliseconds
    assert abs(made.created - now) < 0.05


def test_get_logger_lines_name_the_callers_function_and_line() -> None:
    # CorrelatedLogger calls Logger._log(level, msg, args, extra=, exc_info=, stacklevel=).
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger = logging.getLogger("tests.contracts.caller")
    logger.addHandler(Keep())
    logger.propagate = False
    logger.setLevel(logging.INFO)
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    get_logger(logger.name).info("hello %s", "you", order_id=7, stack_info=True)
    record = captured[0]
    assert (record.funcName, record.lineno, record.getMessage(), record.order_id) == (
        "test_get_logger_lines_name_the_callers_function_and_line",
        line,
        "hello you",
        7,
    )
    assert record.stack_info


# --- Starlette and FastAPI -----------------------------------------------------------------------


def _app_with_routes() -> FastAPI:
    app = FastAPI()

    @app.get("/api/user/{user_id}/routine")
    async def routine(user_id: str) -> dict[str, str]:
        return {"user_id": user_id}

    inner = Starlette(routes=[Route("/items/{user_id}", lambda r: PlainTextResponse("x"))])
    app.mount("/sub", inner)
    return app


def _scope_after_the_app_ran(app: Any, path: str) -> dict[str, Any]:
    """The scope dict the outermost middleware holds, as it is once the app has answered."""
    seen: dict[str, Any] = {}

    async def outermost(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)
        if scope["type"] == "http":
            seen.update(scope)

    async def call() -> None:
        transport = httpx.ASGITransport(app=outermost)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            (await client.get(path)).raise_for_status()

    asyncio.run(call())
    return seen


def test_the_router_leaves_the_matched_route_in_the_outer_scope() -> None:
    # route_template() reads scope["route"] after the app ran: FastAPI sets it and Starlette's
    # router updates the caller's scope dict in place.
    scope = _scope_after_the_app_ran(_app_with_routes(), "/api/user/u-1/routine")
    assert (route_template(scope), scope["path_params"], is_mounted(scope)) == (
        "/api/user/{user_id}/routine",
        {"user_id": "u-1"},
        False,
    )


def test_a_mount_shows_in_root_path_beside_app_root_path() -> None:
    # is_mounted() compares root_path with app_root_path, which Starlette keeps as it was.
    scope = _scope_after_the_app_ran(_app_with_routes(), "/sub/items/u-2")
    assert (scope["root_path"], scope.get("app_root_path"), is_mounted(scope)) == (
        "/sub",
        "",
        True,
    )


def test_a_mounts_regex_has_the_rest_of_the_path_as_its_path_group() -> None:
    # RouteResolver reads path_regex, path, path_format, a Mount's routes and its `path` group.
    mount = Mount("/sub", routes=[Route("/items/{user_id}", lambda r: PlainTextResponse("x"))])
    match = mount.path_regex.match("/sub/items/7")
    assert match is not None and match.groupdict() == {"path": "items/7"}
    resolver = RouteResolver(lambda: [mount])
    assert resolver.template("/sub/items/7") == "/sub/items/{user_id}"


def test_the_middleware_stack_is_built_on_the_first_call_through_build_middleware_stack() -> None:
    # instrument_app() replaces app.build_middleware_stack, which Starlette calls once, on the
    # first ASGI call, to set app.middleware_stack: CorrelationMiddleware must end up outside
    # ServerErrorMiddleware.
    app = FastAPI()
    instrument_app(app, registry=CollectorRegistry())

    @app.get("/ok")
    async def ok(request: Request) -> dict[str, bool]:
        return {"ok": True}

    assert app.middleware_stack is None
    _scope_after_the_app_ran(app, "/ok")
    stack = app.middleware_stack
    assert isinstance(stack, CorrelationMiddleware)
    assert isinstance(stack.app, ServerErrorMiddleware)


# --- uvicorn -------------------------------------------------------------------------------------


def test_uvicorns_last_line_is_the_one_setup_logging_waits_for() -> None:
    # SinkHandler writes out its buffers on this record: uvicorn re-raises SIGTERM after it.
    [(logger_name, prefix)] = LAST_WORDS
    assert uvicorn.server.logger.name == logger_name
    assert f'"{prefix} [%d]"' in inspect.getsource(uvicorn.server)


def test_uvicorn_reports_an_apps_exception_on_the_logger_the_filter_watches() -> None:
    # CorrelationFilter drops uvicorn.error's "Exception in ASGI application" for an exception
    # the middleware logged already.
    # (h11 is the protocol of the tests' servers; httptools is not installed here.)
    source = inspect.getsource(uvicorn.protocols.http.h11_impl)
    assert 'self.logger = logging.getLogger("uvicorn.error")' in source
    assert 'msg = "Exception in ASGI application\\n"' in source
    assert "self.logger.error(msg, exc_info=exc)" in source
