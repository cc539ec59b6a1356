"""No flood of client-controlled strings pins memory: a real uvicorn's RSS per flood, and the
bounds of the caches and tables that used to keep such strings."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import h11
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.routing import Route

from instrumentation import BusinessEvents
from instrumentation.faults import fault_count
from instrumentation.routes import RouteResolver
from instrumentation.vocabulary import UNMATCHED_ROUTE
from tests.conftest import LogCapture
from tests.support.processes import free_port, running, uvicorn_cmd, wait_http_ok

APP = "tests.apps.memory_app:app"
MiB = 1 << 20
FLOOD_BUDGET = 25 * MiB  # the most RSS any one flood may add
MAX_LINE_BYTES = 65536
CONCURRENCY = 8
FLOOD_SECONDS = 180.0
# h11 (uvicorn's only HTTP implementation here: no httptools) refuses a request head over this
# with a 400 before the app sees it; the paths stay below it, so they reach the app and its 404.
REQUEST_HEAD_LIMIT = h11._connection.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE


# --- the floods ---


def long_path(i: int) -> str:
    """A distinct 404 path of ~14 KB on the wire whose str costs 4 bytes per character: `é`
    is the cheapest non-ASCII character to send (6 bytes encoded), and one character outside
    the BMP makes the whole str UCS-4."""
    return quote(f"/missing/{i}/" + "é" * 2300 + "😀")


def body_with_long_key(i: int) -> bytes:
    return json.dumps({f"{i:03d}-" + "k" * MiB: 1}).encode()


def cost_for_long_user(i: int) -> bytes:
    return json.dumps({"user_id": f"{i:05d}-" + "u" * 50_000}).encode()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def settled_rss(pid: int) -> int:
    """RSS once two readings 0.5 s apart agree within 1 MiB (at most ~10 s)."""
    last = rss_bytes(pid)
    for _ in range(20):
        time.sleep(0.5)
        now = rss_bytes(pid)
        if abs(now - last) < MiB:
            return now
        last = now
    return last


Send = Callable[[httpx.AsyncClient, int], Any]


async def flood(url: str, count: int, send: Send) -> Counter[int]:
    """`count` requests from CONCURRENCY keep-alive connections; their status codes."""
    statuses: Counter[int] = Counter()
    numbers = iter(range(count))
    deadline = time.monotonic() + FLOOD_SECONDS
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for i in numbers:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flood not done within {FLOOD_SECONDS} s")
                response = await send(client, i)
                statuses[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


FLOODS: dict[str, tuple[int, Send]] = {
    "404 paths": (4000, lambda client, i: client.get(long_path(i))),
    "body keys": (60, lambda client, i: client.post("/body", content=body_with_long_key(i))),
    "user ids": (
        2000,
        lambda client, i: client.post("/api/user/u/cost", content=cost_for_long_user(i)),
    ),
}


async def warm_up(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for i in range(200):
            await client.get("/ok")
            await client.get(f"/missing/{i}")
            await client.post("/body", content=json.dumps({"short_key": i}).encode())
            await client.post("/api/user/u/cost", content=json.dumps({"user_id": f"u{i}"}))


@dataclass
class FloodRun:
    log_file: Path
    growth: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def flooded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FloodRun]:
    """One server, warmed up, then each flood in turn with its RSS growth recorded."""
    tmp_path = tmp_path_factory.mktemp("memory")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    run = FloodRun(tmp_path / "memory.log")
    cmd = uvicorn_cmd(APP, port, "--http", "h11")
    with running(cmd, log_path=tmp_path / "uvicorn.out", env={"LOG_FILE": str(run.log_file)}) as p:
        wait_http_ok(f"{url}/ok", timeout=30)
        asyncio.run(warm_up(url))
        before = settled_rss(p.pid)
        for name, (count, send) in FLOODS.items():
            run.statuses[name] = asyncio.run(flood(url, count, send))
            after = settled_rss(p.pid)
            run.growth[name] = after - before
            before = after
    yield run


def test_the_long_paths_reach_the_app_below_the_servers_head_limit() -> None:
    head = len(long_path(9999)) + 200  # request line and httpx's headers
    assert head < REQUEST_HEAD_LIMIT


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "status"), [("404 paths", 404), ("body keys", 200), ("user ids", 200)]
)
def test_a_flood_of_long_strings_adds_at_most_25_mib_of_rss(
    flooded: FloodRun, name: str, status: int
) -> None:
    assert flooded.statuses[name] == {status: FLOODS[name][0]}
    growth = flooded.growth[name]
    assert growth <= FLOOD_BUDGET, f"{name}: +{growth / MiB:.1f} MiB"


@pytest.mark.integration
def test_after_the_floods_every_line_is_json_and_at_most_64_kib(flooded: FloodRun) -> None:
    lines = flooded.log_file.read_bytes().splitlines()
    unparsable = []
    for number, line in enumerate(lines):
        try:
            json.loads(line)
        except ValueError:
            unparsable.append(number)
    too_long = [
        (number, len(line)) for number, line in enumerate(lines) if len(line) > MAX_LINE_BYTES
    ]
    assert (len(lines) > 6000, unparsable, too_long[:5]) == (True, [], [])


# --- RouteResolver ---


def traced_growth(action: Callable[[], object]) -> int:
    """Bytes still allocated (tracemalloc) after `action` ran and its garbage was collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = action()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del kept
    return grown


def resolver() -> RouteResolver:
    async def ok() -> None: ...

    return RouteResolver(lambda: [Route("/api/user/{user_id}/routine", ok)])


@pytest.mark.parametrize("chars", [16_000, 250])  # a 16 KB path; the longest one cached
def test_the_route_cache_keeps_at_most_2_mib_for_10000_distinct_paths(chars: int) -> None:
    paths = resolver()

    def flood_cache() -> RouteResolver:
        for i in range(10_000):
            assert paths.template(f"/missing/{i:05d}/" + "é" * chars + "😀") == UNMATCHED_ROUTE
        return paths

    assert traced_growth(flood_cache) < 2 * MiB


def test_short_paths_are_still_resolved_and_cached() -> None:
    paths = resolver()
    templates = [paths.template("/api/user/u-1/routine") for _ in range(2)]
    assert (templates, paths.cached_paths) == (["/api/user/{user_id}/routine"] * 2, 1)


def test_a_long_path_still_resolves_to_its_template() -> None:
    assert resolver().template("/api/user/" + "é" * 16_000 + "/routine") == (
        "/api/user/{user_id}/routine"
    )


# --- per-user cost table ---


def test_two_long_ids_sharing_their_first_kilobyte_keep_separate_totals(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    events = BusinessEvents()
    first, second = "u" * 1024 + "a" * 49_000, "u" * 1024 + "b" * 49_000
    events.api_cost_tracked("a", "m", 1.0, user_id=first)
    events.api_cost_tracked("a", "m", 2.0, user_id=second)
    assert (events.daily_cost(first), events.daily_cost(second)) == (1.0, 2.0)


def test_short_and_long_ids_never_share_a_total(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    events = BusinessEvents()
    ids = ["u" * 128, "u" * 129, "é" * 200, "é" * 201, "x\ud800" * 100]
    for n, user_id in enumerate(ids, 1):
        events.api_cost_tracked("a", "m", float(n), user_id=user_id)
    assert [events.daily_cost(user_id) for user_id in ids] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_the_cost_table_keeps_under_400_bytes_per_user_whatever_the_id_length(
    registry: CollectorRegistry,
) -> None:
    events = BusinessEvents(max_users=500)
    events.api_cost_tracked("a", "m", 0.001, user_id="warm-up")  # the metrics, created once

    def charge_long_ids() -> BusinessEvents:
        for i in range(2000):
            events.api_cost_tracked("a", "m", 0.001, user_id=f"{i:05d}" + "é" * 50_000)
        return events

    assert traced_growth(charge_long_ids) < 500 * 400


# --- bad costs ---


@pytest.mark.parametrize(
    "cost",
    [math.nan, math.inf, -math.inf, -0.5, "abc", "0.5", None, True, 10**400],
    ids=["nan", "inf", "-inf", "negative", "abc", "numeric-str", "None", "True", "10**400"],
)
def test_a_bad_cost_is_counted_as_a_fault_and_leaves_the_totals_alone(
    registry: CollectorRegistry, log_capture: LogCapture, cost: Any
) -> None:
    events = BusinessEvents()
    events.api_cost_tracked("a", "m", 0.25, user_id="u1")
    faults = fault_count("business_events", "invalid_cost")
    returned = events.api_cost_tracked("a", "m", cost, user_id="u1")
    state = (
        returned,
        events.daily_cost("u1"),
        registry.get_sample_value("api_cost_usd_total", {"endpoint": "a", "model": "m"}),
        fault_count("business_events", "invalid_cost") - faults,
    )
    assert state == (0.25, 0.25, 0.25, 1)


def test_the_event_of_a_bad_cost_is_still_logged_without_a_cost(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    BusinessEvents().api_cost_tracked("a", "m", math.nan, user_id="u1")
    line = log_capture.records[-1]
    assert (line["event_type"], "cost_usd" in line, line["daily_cost_usd"]) == (
        "api_cost_tracked",
        False,
        0.0,
    )


@pytest.mark.parametrize("cost", [0, 0.0, 3, 0.125])
def test_good_costs_are_counted(
    registry: CollectorRegistry, log_capture: LogCapture, cost: float
) -> None:
    assert BusinessEvents().api_cost_tracked("a", "m", cost, user_id="u1") == cost


def test_a_failure_whose_str_raises_still_logs_its_event(
    registry: CollectorRegistry, log_capture: LogCapture
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    BusinessEvents().analysis_failed("movement", Unprintable())
    line = log_capture.records[-1]
    assert (line["error_type"], line["error_message"]) == (
        "Unprintable",
        "<unprintable Unprintable>",
    )


# --- what a copied context keeps once the request is over ---


class _Sentinel:
    """Put in a request's scope: alive as long as anything still holds the scope."""


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [(b"host", b"test")], "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000), "test.sentinel": _Sentinel(),
    }  # fmt: skip


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _run_without_collections(main: Callable[[], Any]) -> Any:
    """`asyncio.run(main())` with the collector off: what is freed, reference counting freed."""
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(main())
    finally:
        gc.enable()


def _timer_app() -> Any:
    from fastapi import FastAPI
    from starlette.responses import StreamingResponse

    from instrumentation import instrument_app

    app = FastAPI()

    @app.get("/api/user/{user_id}/routine")
    async def routine(user_id: str) -> dict[str, str]:
        return {"user_id": user_id}

    @app.get("/api/user/{user_id}/stream")
    async def stream(user_id: str) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"a"
            yield b"b"

        return StreamingResponse(chunks())

    instrument_app(app, service="api", registry=CollectorRegistry())
    return app


@pytest.mark.parametrize(
    ("path", "spec_version"),
    [
        ("/api/user/42/routine", "2.3"),
        # Starlette streams from a task of its own below ASGI 2.4, as under uvicorn (2.3).
        ("/api/user/42/stream", "2.3"),
        ("/api/user/42/stream", "2.4"),
    ],
)
def test_a_timer_the_server_arms_in_the_last_send_keeps_nothing_of_the_request(
    path: str, spec_version: str
) -> None:
    """uvicorn arms its keep-alive timer from inside the response's last `send`, and a timer
    keeps a copy of the context of that moment — cancelled, for as long as it stays in the
    loop's heap (up to the keep-alive timeout). Kept with the request's binding (its ids, its
    scope with FastAPI's exit stacks, the headers, the route), thousands of such copies under
    keep-alive load were promoted to the collector's old generations: it ran 7 times as often
    as without corrstack, with full collections of 40 ms that every in-flight request waited
    for."""
    import weakref

    from instrumentation.context import NO_CONNECTION, connection_var

    app = _timer_app()
    timers: list[asyncio.TimerHandle] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(1)  # no disconnect while the response streams
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            timers.append(asyncio.get_running_loop().call_later(60, lambda: None))

    async def main() -> tuple[bool, object]:
        scope = _scope(path)
        scope["asgi"]["spec_version"] = spec_version
        sentinel = weakref.ref(scope["test.sentinel"])
        await app(scope, receive, send)
        del scope
        for _ in range(3):  # a streamed response's cancelled disconnect listener ends
            await asyncio.sleep(0)
        timers[0].cancel()  # as the next request on the connection does; it stays in the heap
        context = timers[0]._context  # type: ignore[attr-defined]  # what the timer keeps
        return sentinel() is not None, context.get(connection_var, NO_CONNECTION)

    assert _run_without_collections(main) == (False, NO_CONNECTION)


def test_a_task_the_handler_leaves_running_still_logs_in_its_request(
    log_capture: LogCapture,
) -> None:
    """The server's last send runs outside the request's binding; a task the handler started
    before it keeps the request's ids and the path's user_id for its lines."""
    from fastapi import FastAPI

    from instrumentation import instrument_app

    app = FastAPI()
    release = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def later() -> None:
        await release.wait()
        logging.getLogger("app.later").info("after the response")

    @app.get("/api/user/{user_id}/routine")
    async def routine(user_id: str) -> dict[str, str]:
        tasks.append(asyncio.create_task(later()))
        return {"user_id": user_id}

    instrument_app(app, service="api", registry=CollectorRegistry())

    async def send(message: dict[str, Any]) -> None:
        pass

    async def main() -> None:
        await app(_scope("/api/user/42/routine"), _receive, send)
        release.set()  # the response is out and the access line written: now the task logs
        await tasks[0]

    asyncio.run(main())
    access = log_capture.by_logger("corrstack.access")[0]
    line = log_capture.by_logger("app.later")[0]
    assert (line["user_id"], line["request_id"]) == ("42", access["request_id"])


class _RecordingSink:
    """A sink that keeps the size of each write (the writer's side of the interface only)."""

    name = "recording"
    formatter = None

    def __init__(self) -> None:
        self.writes: list[int] = []

    def write(self, text: str) -> None:
        self.writes.append(len(text))

    def close(self) -> None:
        pass


def test_a_writer_writes_a_backlog_in_pieces_of_at_most_64_kib() -> None:
    """A joined write of hundreds of KB, freed after each interval, moves glibc's mmap threshold
    up and grows the heap for good (the soak's RSS); pieces of at most 64 KiB never do."""
    from instrumentation.handlers import BackgroundWriter

    sink = _RecordingSink()
    writer = BackgroundWriter(sink, 8 << 20)  # type: ignore[arg-type]  # the writer's interface
    writer.put("first")  # written at once; what follows waits for the interval
    long_line = "x" * 40_000  # longer than half a piece: a piece holds one
    lines = ["y" * 500] * 1000 + [long_line] * 5
    for line in lines:
        writer.put(line)
    assert writer.request_flush(stop=True).done.wait(5)
    assert sum(sink.writes) == len("first\n") + sum(len(line) + 1 for line in lines)
    assert max(sink.writes) <= 64 * 1024
    assert len(sink.writes) >= 1 + 500_000 // (64 * 1024)
