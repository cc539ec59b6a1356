"""A bounded soak on a real uvicorn: zero mismatched IDs, zero lost lines, flat memory and a
constant series count. CORRSTACK_SOAK_SECONDS sets the length (CI: 20 s; the README's figures
come from a 60 s run)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from instrumentation.handlers import BackgroundWriter
from tests.support.processes import free_port, running, uvicorn_cmd, wait_http_ok

pytestmark = pytest.mark.integration
SECONDS = float(os.environ.get("CORRSTACK_SOAK_SECONDS", "20"))
CONCURRENCY = 50
LINES_PER_REQUEST = 5
USERS = 500
REST_SECONDS = 2 * BackgroundWriter.write_interval + 0.1


def series_count(url: str) -> int:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def metric(url: str, pattern: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(m) for m in re.findall(pattern + r" ([0-9.e+]+)$", text, re.M))


async def load(url: str, seconds: float, first: int = 0) -> tuple[int, list[str]]:
    deadline = time.monotonic() + seconds
    counter = itertools.count(first)
    mismatches: list[str] = []
    sent = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal sent
            while time.monotonic() < deadline:
                n = next(counter)
                rid, uid = f"soak-{n}", f"user-{n % USERS}"
                response = await client.get(
                    f"/api/user/{uid}/work",
                    params={"lines": LINES_PER_REQUEST},
                    headers={"X-Correlation-ID": rid},
                )
                sent += 1
                body = response.json()
                if (
                    response.status_code != 200
                    or response.headers["x-correlation-id"] != rid
                    or body.get("request_id") != rid
                    or body.get("user_id") != uid
                ):
                    mismatches.append(rid)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return sent, mismatches


def test_soak(tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "soak.log"
    env = {"SERVICE_NAME": "soak", "LOG_FILE": str(log_file)}
    cmd = uvicorn_cmd("tests.apps.isolation_app:app", port)
    with running(cmd, log_path=tmp_path / "out.log", env=env) as process:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/context")
        server = psutil.Process(process.pid)
        warmup = max(3.0, SECONDS * 0.25)
        sent_warm, mismatched_warm = asyncio.run(load(url, warmup))
        series_count(url)  # the first scrape adds the /metrics route's own series
        # Each RSS reading at rest, once the writers have written what the load left buffered
        # (up to `write_interval` of lines): both then hold the buffers' high-water mark.
        time.sleep(REST_SECONDS)
        series_before, rss_before = series_count(url), server.memory_info().rss
        sent, mismatched = asyncio.run(load(url, SECONDS - warmup, first=10**9))
        time.sleep(REST_SECONDS)
        series_after, rss_after = series_count(url), server.memory_info().rss
        dropped = metric(url, r"log_records_dropped_total\{[^}]*\}")
        lag = httpx.get(f"{url}/lag").json()
    total = sent_warm + sent
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    per_request = Counter(
        (r["request_id"], r["logger"]) for r in records if r["request_id"].startswith("soak-")
    )
    steps = [n for (rid, logger), n in per_request.items() if logger.endswith("isolation_app")]
    access = [n for (rid, logger), n in per_request.items() if logger == "corrstack.access"]
    wrong_user = [
        r["request_id"]
        for r in records
        if r["request_id"].startswith("soak-")
        and r.get("user_id") != f"user-{int(r['request_id'][5:]) % USERS}"
    ]
    growth = (rss_after - rss_before) / rss_before
    print(
        f"\nsoak: {total} requests in {SECONDS:.0f} s ({total / SECONDS:.0f} req/s), "
        f"{CONCURRENCY} concurrent, {len(records)} lines, dropped {dropped:.0f}, "
        f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB ({growth:+.1%}), "
        f"series {series_before} -> {series_after}, event-loop lag max {lag['max_ms']:.1f} ms "
        f"over {lag['samples']:.0f} samples"
    )
    assert mismatched_warm == mismatched == []
    assert wrong_user == []
    assert len(steps) == len(access) == total
    assert set(steps) == {LINES_PER_REQUEST} and set(access) == {1}
    assert dropped == 0
    assert series_after == series_before
    assert growth <= 0.05
