"""One in-process measurement: call an app's ASGI callable directly, no sockets.

`python -m benchmarks.request_worker APP REQUESTS CHUNKS [GC_REQUESTS]` builds APP, checks that
the route answers 200, warms up, then times CHUNKS batches of REQUESTS/CHUNKS requests and prints
the fastest batch's µs per request. The receive/send pair does nothing, so the figure is the
app's own cost. After the timed batches, an untimed loop of GC_REQUESTS requests (10 000 unless
given) counts the garbage collections per generation and the net allocated blocks
(`count_gc_and_blocks`), reported per 10 000 requests.
APP may name an app in multiprocess mode (``corrstack[multiprocess]``): its process must start
with PROMETHEUS_MULTIPROC_DIR set, and after warm-up the mode is checked to be in use
(`benchmarks.multiprocess_mode`). The apps with or without OpenTelemetry are likewise checked to
be on the tracing path their name says (`benchmarks.tracing_check`).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable
from time import perf_counter_ns, process_time_ns
from typing import Any

from starlette.types import ASGIApp, Message

from benchmarks import multiprocess_mode, tracing_check
from benchmarks.apps import REQUEST_PATH, build
from benchmarks.worker_result import GC_REQUESTS, GcCount, Timing, emit

_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"corrstack-bench/1"),
    (b"accept", b"application/json"),
]
_SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": REQUEST_PATH,
    "raw_path": REQUEST_PATH.encode(),
    "root_path": "",
    "query_string": b"",
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}
_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


def fresh_scope() -> dict[str, Any]:
    # Middlewares write into the scope and even append to its header list (asgi-correlation-id
    # does); every request gets its own, as a server would give it.
    return {**_SCOPE, "headers": list(_HEADERS)}


async def _receive() -> Message:
    return _REQUEST


async def _discard(message: Message) -> None:
    return None


async def check_route(app: ASGIApp) -> None:
    statuses: list[int] = []

    async def record_status(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(fresh_scope(), _receive, record_status)
    if statuses != [200]:
        raise SystemExit(f"{REQUEST_PATH} answered {statuses}, not [200]")


async def time_requests(
    app: ASGIApp,
    requests: int,
    chunks: int,
    after_warm_up: Callable[[int], Awaitable[None]] | None = None,
) -> list[Timing]:
    """CPU and wall µs per request of each of `chunks` timed batches, after a warm-up batch;
    `after_warm_up(requests served so far)` runs between the two, untimed."""
    await check_route(app)
    batch = max(1, requests // chunks)
    for _ in range(batch):
        await app(fresh_scope(), _receive, _discard)
    if after_warm_up is not None:
        await after_warm_up(1 + batch)
    per_chunk: list[Timing] = []
    for _ in range(chunks):
        cpu, wall = process_time_ns(), perf_counter_ns()
        for _ in range(batch):
            await app(fresh_scope(), _receive, _discard)
        per_chunk.append(Timing.per_operation(cpu, wall, batch))
    return per_chunk


async def count_gc_and_blocks(app: ASGIApp, requests: int) -> GcCount:
    """Garbage collections per generation and net allocated blocks over `requests` requests.

    Untimed, after the timed batches. A full `gc.collect()` before the loop and another after
    it bracket the blocks (`sys.getallocatedblocks()`: blocks held by Python's object allocator,
    so the difference is what the requests left allocated once garbage is collected, not what
    they allocated in all); the collections are the `gc.get_stats()` counts of the loop alone,
    the collector's own automatic runs, the two explicit ones excluded. The cyclic garbage is
    the unreachable objects those runs found plus what the closing `gc.collect()` found: objects
    the requests left that only the collector, not reference counting, frees.
    """
    gc.collect()
    blocks = sys.getallocatedblocks()
    before = gc.get_stats()
    for _ in range(requests):
        await app(fresh_scope(), _receive, _discard)
    after = gc.get_stats()
    left_over = gc.collect()
    pairs = list(zip(before, after, strict=True))
    return GcCount(
        requests=requests,
        collections=[end["collections"] - start["collections"] for start, end in pairs],
        cyclic_garbage=sum(end["collected"] - start["collected"] for start, end in pairs)
        + left_over,
        allocated_blocks=sys.getallocatedblocks() - blocks,
    )


async def measure(
    app: ASGIApp,
    requests: int,
    chunks: int,
    gc_requests: int,
    after_warm_up: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[list[Timing], GcCount]:
    """`time_requests`, then `count_gc_and_blocks` of `gc_requests` more, untimed."""
    timings = await time_requests(app, requests, chunks, after_warm_up)
    return timings, await count_gc_and_blocks(app, gc_requests)


def main(argv: list[str]) -> None:
    name, requests, chunks = argv[0], int(argv[1]), int(argv[2])
    gc_requests = int(argv[3]) if len(argv) > 3 else GC_REQUESTS
    if gc_requests < 1:
        raise SystemExit("GC_REQUESTS must be at least 1")
    multiprocess_mode.check_environment(name)
    app_name = multiprocess_mode.split(name)[0]
    app = build(app_name)

    async def verify(served: int) -> None:
        await multiprocess_mode.verify(name, app, served)  # first: it counts the requests served
        await tracing_check.verify(app_name, app)

    timings, gc_count = asyncio.run(measure(app, requests, chunks, gc_requests, verify))
    emit(name, timings, gc_count)


if __name__ == "__main__":
    main(sys.argv[1:])
