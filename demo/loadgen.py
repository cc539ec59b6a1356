"""Load generator: many users of the fitness app at a bounded rate, with a summary at the end.

`python -m demo.loadgen --target http://api:8000 --rate 5 [--duration 60] [--users 50]`.
Requests start at a fixed interval (1/rate s) and at most `--concurrency` are in flight, so a
slow target lowers the rate instead of piling up requests. Each request carries its own
X-Correlation-ID (a few carry an invalid one on purpose).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from demo.traffic import PlannedRequest, plan_request
from instrumentation import get_logger, setup_logging

MAX_RATE = 500.0
REQUEST_TIMEOUT_S = 10.0
_LATENCY_SAMPLES = 10_000

log = get_logger("demo.loadgen")


@dataclass
class Summary:
    """Counts by request kind and outcome, and recent latencies."""

    sent: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_SAMPLES))

    def record(self, kind: str, outcome: str, latency_ms: float) -> None:
        self.sent += 1
        self.by_kind[kind] += 1
        self.by_outcome[outcome] += 1
        self.latencies_ms.append(latency_ms)

    def fields(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def percentile(p: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

        return {
            "sent": self.sent,
            "by_kind": dict(self.by_kind),
            "by_outcome": dict(self.by_outcome),
            "latency_p50_ms": percentile(0.50) if ordered else None,
            "latency_p95_ms": percentile(0.95) if ordered else None,
        }


def _outcome(status: int) -> str:
    return f"{status // 100}xx"


async def send(client: httpx.AsyncClient, planned: PlannedRequest, summary: Summary) -> None:
    """Send one planned request and record how it went; never raises for HTTP trouble."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        response = await client.request(
            planned.method, planned.path, json=planned.json, headers=planned.headers
        )
    except httpx.HTTPError as exc:
        summary.record(planned.kind, "error", (loop.time() - started) * 1000)
        log.warning(
            "Request failed",
            kind=planned.kind,
            path=planned.path,
            error=repr(exc),
            extra={"request_id": planned.headers.get("X-Correlation-ID", "")},
        )
        return
    summary.record(planned.kind, _outcome(response.status_code), (loop.time() - started) * 1000)
    if response.status_code >= 500:
        # The id to search for in the services' logs: the one the server answered with.
        log.warning(
            "Server error",
            kind=planned.kind,
            path=planned.path,
            status=response.status_code,
            extra={"request_id": response.headers.get("x-correlation-id", "")},
        )


async def wait_for_target(client: httpx.AsyncClient, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if (await client.get("/health")).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.5)


async def generate_load(
    client: httpx.AsyncClient,
    *,
    rate: float,
    users: int,
    stop: asyncio.Event,
    duration: float | None = None,
    concurrency: int = 20,
    rng: random.Random | None = None,
    report_every: float = 30.0,
) -> Summary:
    """Send requests at `rate` per second until `stop` is set or `duration` has passed."""
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be in (0, {MAX_RATE}], not {rate}")
    rng = rng or random.Random()
    loop = asyncio.get_running_loop()
    summary = Summary()
    slots = asyncio.Semaphore(concurrency)
    in_flight: set[asyncio.Task[None]] = set()
    interval = 1.0 / rate
    deadline = None if duration is None else loop.time() + duration
    next_start = next_report = loop.time()

    def finished(task: asyncio.Task[None]) -> None:
        in_flight.discard(task)
        slots.release()

    while not stop.is_set() and (deadline is None or loop.time() < deadline):
        await slots.acquire()
        task = asyncio.create_task(send(client, plan_request(rng, users), summary))
        in_flight.add(task)
        task.add_done_callback(finished)
        now = loop.time()
        if now >= next_report + report_every:
            next_report = now
            log.info("Load progress", **summary.fields())
        # Behind schedule (a saturated target): start again from now rather than bursting.
        next_start = max(next_start + interval, now - 1.0)
        pause = next_start - now
        if deadline is not None:
            pause = min(pause, deadline - now)
        if pause > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
    if in_flight:
        _, pending = await asyncio.wait(in_flight, timeout=REQUEST_TIMEOUT_S)
        for task in pending:
            task.cancel()
    return summary


async def _main(options: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    limits = httpx.Limits(max_connections=options.concurrency)
    async with httpx.AsyncClient(
        base_url=options.target, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:
        if not await wait_for_target(client, options.wait):
            log.error("Target not healthy", target=options.target, waited_s=options.wait)
            return 2
        log.info(
            "Load started",
            target=options.target,
            rate=options.rate,
            users=options.users,
            duration_s=options.duration,
        )
        summary = await generate_load(
            client,
            rate=options.rate,
            users=options.users,
            stop=stop,
            duration=options.duration,
            concurrency=options.concurrency,
            rng=random.Random(options.seed),
            report_every=options.report_every,
        )
    log.info("Load finished", **summary.fields())
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m demo.loadgen", description=__doc__)
    parser.add_argument("--target", default=env.get("TARGET_URL") or "http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=float(env.get("RATE") or 5))
    parser.add_argument("--users", type=int, default=int(env.get("USERS") or 50))
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds; default: until SIGINT/SIGTERM"
    )
    parser.add_argument("--concurrency", type=int, default=20, help="max requests in flight")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for /health")
    parser.add_argument("--report-every", type=float, default=30.0, help="progress log period")
    options = parser.parse_args(argv)
    if not 0 < options.rate <= MAX_RATE:
        parser.error(f"--rate must be in (0, {MAX_RATE:g}]")
    if options.users < 1 or options.concurrency < 1:
        parser.error("--users and --concurrency must be at least 1")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    setup_logging(service=os.environ.get("SERVICE_NAME") or "loadgen")
    # One "HTTP Request: …" line per request would drown the summary.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(_main(options))


if __name__ == "__main__":
    sys.exit(main())
