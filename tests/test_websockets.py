"""Websocket connections: one correlation context each, one close line, the websocket metrics.

In-process through the ASGI websocket protocol itself (no HTTP client speaks it in-process), and
on a real uvicorn with the `websockets` client: 50 concurrent connections."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from instrumentation import accounting, current_context
from tests.apps.websocket_app import APP_CLOSE_CODE, BYE, build_app
from tests.conftest import LogCapture
from tests.support.log_fields import settled_records
from tests.support.processes import wait_until
from tests.support.stack import serve_app

HEX32 = re.compile(r"^[0-9a-f]{32}$")
CHAT = "/ws/user/{user_id}"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
BAD_IDS = [b"has spaces in it", b"a" * 200, b"caf\xc3\xa9", b""]


def ws_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"user-agent", b"ws-test/1"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
        "state": {},
    }


class Connection:
    """One websocket connection to an ASGI app, driven message by message."""

    def __init__(self, app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            self.sent.append(message)
            self._arrived.set()

        self.to_app.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.ensure_future(app(ws_scope(path, headers), self.to_app.get, send))

    async def next_sent(self, kind: str) -> dict[str, Any]:
        while True:
            for message in self.sent:
                if message["type"] == kind:
                    self.sent.remove(message)
                    return message
            if self.task.done():
                self.task.result()
                raise AssertionError(f"the app ended without sending {kind}")
            self._arrived.clear()
            arrived = asyncio.ensure_future(self._arrived.wait())
            done, _ = await asyncio.wait(
                [self.task, arrived], timeout=5, return_when=asyncio.FIRST_COMPLETED
            )
            arrived.cancel()
            assert done, f"no {kind} within 5 s"

    def text(self, text: str) -> None:
        self.to_app.put_nowait({"type": "websocket.receive", "text": text})

    def disconnect(self, code: int = 1000) -> None:
        self.to_app.put_nowait({"type": "websocket.disconnect", "code": code})

    async def ended(self) -> None:
        await asyncio.wait_for(self.task, 5)


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def closed(registry: CollectorRegistry, code: str, route: str = CHAT) -> float | None:
    labels = {"route": route, "code": code}
    return registry.get_sample_value("websocket_connections_closed_total", labels)


def open_now(registry: CollectorRegistry, route: str = CHAT) -> float | None:
    return registry.get_sample_value("websocket_connections_open", {"route": route})


def close_lines(log_capture: LogCapture) -> list[dict[str, Any]]:
    return log_capture.by_logger("corrstack.access")


async def chat(
    app: Any, headers: list[tuple[bytes, bytes]], user: str = "u-1", texts: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the accept message, the replies) of a connection the client closes with 1000."""
    connection = Connection(app, f"/ws/user/{user}", headers)
    accept = await connection.next_sent("websocket.accept")
    replies = []
    for text in texts:
        connection.text(text)
        replies.append(await connection.next_sent("websocket.send"))
    connection.disconnect(1000)
    await connection.ended()
    return accept, replies


async def test_the_id_is_kept_echoed_and_on_every_line(
    log_capture: LogCapture, registry: CollectorRegistry
) -> None:
    app = build_app(registry)
    accept, replies = await chat(app, [(b"x-correlation-id", b"ws-abc-1")], "u-7", ("a", "b"))
    assert (b"x-correlation-id", b"ws-abc-1") in accept["headers"]
    assert all('"request_id":"ws-abc-1"' in r["text"] for r in replies)
    lines = [r for r in log_capture.records if r["logger"].startswith(("tests.", "corrstack."))]
    assert [r["message"] for r in lines] == [
        "Connection opened",
        "Message received",
        "Message received",
        "Client left",
        "WEBSOCKET /ws/user/u-7 closed 1000",
    ]
    assert {(r["request_id"], r.get("user_id")) for r in lines} == {("ws-abc-1", "u-7")}
    assert len({r["trace_id"] for r in lines}) == 1 and HEX32.match(lines[0]["trace_id"])


async def test_one_close_line_with_its_fields(
    log_capture: LogCapture, registry: CollectorRegistry
) -> None:
    app = build_app(registry)
    await chat(app, [(b"x-correlation-id", b"ws-2")], "u-2", ("a", "b", "c"))
    [line] = close_lines(log_capture)
    assert line["level"] == "INFO"
    assert {k: line[k] for k in ("method", "route", "path", "status", "close_code")} == {
        "method": "WEBSOCKET",
        "route": CHAT,
        "path": "/ws/user/u-2",
        "status": 101,
        "close_code": 1000,
    }
    assert (line["messages_in"], line["messages_out"]) == (3, 3)
    assert line["client_addr"] == "127.0.0.1:5000" and line["user_agent"] == "ws-test/1"
    assert isinstance(line["connection_ms"], float) and line["connection_ms"] >= 3  # 3 × 1 ms
    assert "duration_ms" not in line  # not read as a slow request by the dashboards


async def test_the_open_gauge_counts_a_connection_while_it_is_open(
    log_capture: LogCapture, registry: CollectorRegistry
) -> None:
    app = build_app(registry)
    connection = Connection(app, "/ws/user/u-1", [])
    await connection.next_sent("websocket.accept")
    assert open_now(registry) == 1
    assert closed(registry, "1000") is None
    connection.disconnect(1001)
    await connection.ended()
    assert open_now(registry) == 0
    assert closed(registry, "1001") == 1
    assert close_lines(log_capture)[0]["close_code"] == 1001


async def test_the_apps_close_code_is_counted(
    log_capture: LogCapture, registry: CollectorRegistry
) -> None:
    app = build_app(registry)
    connection = Connection(app, "/ws/user/u-1", [])
    await connection.next_sent("websocket.accept")
    connection.text("hello")
    await connection.next_sent("websocket.send")
    connection.text(BYE)
    assert (await connection.next_sent("websocket.close"))["code"] == APP_CLOSE_CODE
    await connection.ended()
    assert closed(registry, str(APP_CLOSE_CODE)) == 1
    [line] = close_lines(log_capture)
    assert (line["close_code"], line["messages_in"], line["messages_out"]) == (4001, 2, 1)


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda b: repr(b[:20]))
async def test_an_invalid_id_is_replaced(
    log_capture: LogCapture, registry: CollectorRegistry, bad: bytes
) -> None:
    app = build_app(registry)
    accept, _ = await chat(app, [(b"x-correlation-id", bad)], "u-1", ("a",))
    echoed = dict(accept["headers"])[b"x-correlation-id"].decode()
    assert HEX32.match(echoed) and echoed.encode() != bad
    [warning] = log_capture.by_logger("corrstack.correlation")
    assert warning["message"] == "Invalid correlation ID replaced"
    assert warning["header"] == "x-correlation-id" and warning["request_id"] == echoed
    assert {r["request_id"] for r in log_capture.records} == {echoed}


async def test_x_request_id_and_traceparent_are_followed(
    log_capture: LogCapture, registry: CollectorRegistry
) -> None:
    app = build_app(registry)
    headers = [
        (b"x-request-id", b"rid-9"),
        (b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode()),
    ]
    accept, _ = await chat(app, headers)
    assert (b"x-correlation-id", b"rid-9") in accept["headers"]
    assert {(r["request_id"], r["trace_id"]) for r in log_capture.records} == {("rid-9", TRACE)}


async def test_a_rejected_handshake_is_a_403_line_and_no_connection(
    log_capture: LogCapture, registry: CollectorRegistry
) -> None:
    app = build_app(registry)
    connection = Connection(app, "/ws/reject", [(b"x-correlation-id", b"rej-1")])
    assert (await connection.next_sent("websocket.close"))["code"] == 1008
    await connection.ended()
    [refused, line] = [r for r in log_capture.records if r["request_id"] == "rej-1"]
    assert refused["message"] == "Handshake refused"
    assert (line["message"], line["status"], line["close_code"]) == (
        "WEBSOCKET /ws/reject closed 1008",
        403,
        1008,
    )
    assert open_now(registry, "/ws/reject") is None
    assert closed(registry, "1008", "/ws/reject") is None


async def test_an_app_error_is_one_error_line_with_the_stack_and_code_1006(
    log_capture: LogCapture, registry: CollectorRegistry
) -> None:
    app = build_app(registry)
    connection = Connection(app, "/ws/boom/u-5", [(b"x-correlation-id", b"boom-1")])
    await connection.next_sent("websocket.accept")
    connection.text("x")
    with pytest.raises(RuntimeError, match="websocket handler failed"):
        await connection.ended()
    [line] = close_lines(log_capture)
    assert (line["level"], line["close_code"], line["status"]) == ("ERROR", 1006, 101)
    assert line["request_id"] == "boom-1" and line["user_id"] == "u-5"
    assert line["error_type"] == "RuntimeError" and "websocket handler failed" in line["stacktrace"]
    assert closed(registry, "1006", "/ws/boom/{user_id}") == 1
    assert open_now(registry, "/ws/boom/{user_id}") == 0


async def test_a_raising_log_filter_does_not_break_the_connection(
    log_capture: LogCapture, registry: CollectorRegistry
) -> None:
    class Broken(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("third-party filter bug")

    app = build_app(registry)
    access = logging.getLogger("corrstack.access")
    broken = Broken()
    access.addFilter(broken)
    before = accounting.dropped("access_line")
    try:
        accept, replies = await chat(app, [(b"x-correlation-id", b"f-1")], "u-1", ("a",))
    finally:
        access.removeFilter(broken)
    assert (b"x-correlation-id", b"f-1") in accept["headers"] and len(replies) == 1
    assert accounting.dropped("access_line") == before + 1
    assert (open_now(registry), closed(registry, "1000")) == (0, 1)
    assert current_context() == {}  # and the autouse fixture checks every ContextVar


async def test_concurrent_connections_keep_their_own_context(
    log_capture: LogCapture, registry: CollectorRegistry
) -> None:
    app = build_app(registry)
    texts = tuple(str(n) for n in range(5))
    await asyncio.gather(
        *(chat(app, [(b"x-correlation-id", f"c-{i}".encode())], f"u-{i}", texts) for i in range(20))
    )
    lines = [r for r in log_capture.records if r["request_id"].startswith("c-")]
    assert len(lines) == 20 * (1 + 5 + 1 + 1)
    assert all(r["user_id"] == "u-" + r["request_id"][2:] for r in lines)
    assert closed(registry, "1000") == 20 and open_now(registry) == 0


# --- a real uvicorn --------------------------------------------------------------------------

CONNECTIONS = 50
MESSAGES = 6


async def _connection(url: str, i: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    request_id, user_id = f"wsreq-{i:04d}", f"user-{i:04d}"
    headers = {"X-Correlation-ID": request_id}
    replies = []
    async with connect(f"{url}/ws/user/{user_id}", additional_headers=headers) as ws:
        echoed = ws.response.headers["x-correlation-id"]
        for n in range(MESSAGES):
            await asyncio.sleep(random.uniform(0, 0.01))  # interleave the connections
            await ws.send(f"{i}:{n}")
            replies.append(await ws.recv())
        if i % 2:  # half of them ask the server to close
            await ws.send(BYE)
            await ws.wait_closed()
        code = ws.close_code if i % 2 else 1000
    return {
        "request_id": request_id,
        "user_id": user_id,
        "echoed": echoed,
        "replies": replies,
        "code": code,
    }


async def _invalid(url: str) -> str:
    from websockets.asyncio.client import connect

    headers = {"X-Correlation-ID": "not a valid id " + "x" * 200}
    async with connect(f"{url}/ws/user/bad-1", additional_headers=headers) as ws:
        await ws.send("hi")
        await ws.recv()
        return str(ws.response.headers["x-correlation-id"])


def _closed_samples(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line.startswith(("websocket_connections_closed_total{", "websocket_connections_open{")):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.mark.integration
@pytest.mark.anyio
async def test_50_concurrent_connections_on_uvicorn(tmp_path: Path) -> None:
    with serve_app(tmp_path, "tests.apps.websocket_app:app", service="ws") as app:
        url = app.url.replace("http://", "ws://")
        results = await asyncio.gather(*(_connection(url, i) for i in range(CONNECTIONS)))
        replaced = await _invalid(url)
        closed_1000 = f'websocket_connections_closed_total{{code="1000",route="{CHAT}"}}'
        closed_app = f'websocket_connections_closed_total{{code="{APP_CLOSE_CODE}",route="{CHAT}"}}'
        gauge = f'websocket_connections_open{{route="{CHAT}"}}'
        wait_until(
            lambda: _closed_samples(app.url).get(closed_1000) == CONNECTIONS // 2 + 1,
            10,
            what="the closed counter",
        )
        samples = _closed_samples(app.url)
        lines = settled_records(app.log_file)
    assert samples == {closed_1000: CONNECTIONS // 2 + 1, closed_app: CONNECTIONS // 2, gauge: 0}

    for result in results:
        assert result["echoed"] == result["request_id"]
        assert all(f'"request_id":"{result["request_id"]}"' in r for r in result["replies"])
    assert [r["code"] for r in results] == [APP_CLOSE_CODE if i % 2 else 1000 for i in range(50)]

    per_id: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if str(line["request_id"]).startswith("wsreq-"):
            per_id.setdefault(str(line["request_id"]), []).append(line)
    assert sorted(per_id) == sorted(r["request_id"] for r in results)
    mismatched = [
        (rid, line["message"], line.get("user_id"))
        for rid, own in per_id.items()
        for line in own
        if line.get("user_id") != "user-" + rid[6:]
    ]
    assert mismatched == []
    for i, result in enumerate(results):
        own = per_id[result["request_id"]]
        messages = [line["message"] for line in own]
        assert messages.count("Message received") == MESSAGES + (i % 2), messages
        [close] = [line for line in own if line["logger"] == "corrstack.access"]
        expected_code = APP_CLOSE_CODE if i % 2 else 1000
        assert close["message"] == f"WEBSOCKET /ws/user/{result['user_id']} closed {expected_code}"
        assert (close["route"], close["status"], close["close_code"]) == (CHAT, 101, expected_code)
        assert (close["messages_in"], close["messages_out"]) == (MESSAGES + i % 2, MESSAGES)
        assert close["client_addr"].startswith("127.0.0.1:") and close["connection_ms"] > 0
        assert close["user_agent"].startswith("Python/") or "websockets" in close["user_agent"]

    assert HEX32.match(replaced)
    invalid = [line for line in lines if line["request_id"] == replaced]
    assert {line["logger"] for line in invalid} >= {"corrstack.correlation", "corrstack.access"}
    # the warning is written before routing, like HTTP's: the path's user_id is not known yet
    assert {
        line.get("user_id") for line in invalid if line["logger"] != "corrstack.correlation"
    } == {"bad-1"}
