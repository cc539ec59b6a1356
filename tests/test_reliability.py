"""Faults in the logging and alerting paths: records are dropped and counted, never raised."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from instrumentation import accounting, instrument_app, setup_logging
from instrumentation.alert_sender import AlertSender
from instrumentation.handlers import FileSink
from instrumentation.logging_setup import shutdown_logging


def drops(sink: str) -> int:
    return accounting.dropped(sink)


def seqs_of(lines: list[str]) -> list[int]:
    return [json.loads(line)["seq"] for line in lines]


def test_nothing_is_lost_across_a_log_file_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sink looks for a rotation once a second; a tenth of that keeps the test short.
    monkeypatch.setattr(FileSink, "recheck_seconds", 0.1)
    path = tmp_path / "app.log"
    setup_logging(service="acct", log_file=str(path), stream=io.StringIO())
    log = logging.getLogger("tests.acct")
    accepted_before, dropped_before = accounting.accepted(), drops("file")
    rotated = []
    for i in range(3000):
        log.info("record %d", i, extra={"i": i})
        if i in (700, 1500, 2200):  # logrotate-style: rename, the handler reopens the path
            target = tmp_path / f"app.log.{len(rotated) + 1}"
            path.rename(target)
            rotated.append(target)
            time.sleep(0.15)  # lines written meanwhile go on into the renamed file
    shutdown_logging()
    lines = [line for p in [*rotated, path] for line in p.read_text().splitlines()]
    accepted = accounting.accepted() - accepted_before
    dropped = drops("file") - dropped_before
    assert len(lines) == accepted - dropped == 3000
    seqs = seqs_of(lines)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gaps, in order
    assert [json.loads(line)["i"] for line in lines] == list(range(3000))


class Stalled(io.TextIOBase):
    """A sink that blocks on write until released, like a pipe nobody reads."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.release.wait(30)
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_stalled_sink_behind_the_queue_drops_and_counts_instead_of_blocking() -> None:
    sink = Stalled()
    setup_logging(service="q", stream=sink, queue_size=10)  # type: ignore[arg-type]
    accepted_before, dropped_before = accounting.accepted(), drops("queue")
    started = time.monotonic()
    for i in range(500):
        logging.getLogger("tests.queue").info("line %d", i)
    elapsed = time.monotonic() - started
    sink.release.set()
    shutdown_logging()
    accepted = accounting.accepted() - accepted_before
    dropped = drops("queue") - dropped_before
    assert elapsed < 2.0  # 500 records against a stalled sink: the caller never waited on it
    assert dropped >= 500 - 12
    written = [line for chunk in sink.lines for line in chunk.splitlines() if line]
    assert len(written) == accepted - dropped
    assert all(json.loads(line)["service"] == "q" for line in written)


class Raising(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        raise RuntimeError("formatter bug")


def test_a_formatter_that_raises_drops_the_record_and_counts_it() -> None:
    setup_logging(service="f", stream=io.StringIO())
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_corrstack_handler", 0))
    handler.setFormatter(Raising())
    before = drops("stream")
    logging.getLogger("tests").error("this cannot be formatted")  # must not raise
    assert drops("stream") == before + 1


@pytest.mark.parametrize(
    "log_file",
    ["{tmp}/a-file/app.log", "/proc/corrstack-cannot-write-here.log", "/dev/full"],
    ids=["parent-is-a-file", "unwritable", "disk-full"],
)
def test_an_unusable_log_file_never_fails_a_request(
    tmp_path: Path, log_file: str, registry: CollectorRegistry
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    setup_logging(service="u", log_file=log_file.format(tmp=tmp_path), stream=io.StringIO())
    app = FastAPI()
    instrument_app(app, registry=registry)

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        logging.getLogger("tests").info("handler line")
        return {"ok": True}

    before = drops("file")
    transport = httpx.ASGITransport(app=app)

    async def run() -> list[int]:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [(await client.get("/ok")).status_code for _ in range(5)]

    import asyncio

    assert asyncio.run(run()) == [200] * 5
    assert drops("file") >= before + 10  # handler line + access line, each request


class _Handler(BaseHTTPRequestHandler):
    mode = "ok"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.mode == "slow":
            time.sleep(1.5)
        self.send_response(500 if self.mode == "error" else 200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("mode", ["slow", "error"])
def test_a_slow_or_failing_alert_receiver_costs_the_caller_nothing(
    mode: str, registry: CollectorRegistry
) -> None:
    handler = type("H", (_Handler,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sender = AlertSender(f"http://127.0.0.1:{server.server_address[1]}", timeout=0.3)
        started = time.monotonic()
        for _ in range(5):
            sender.send([{"labels": {"alertname": "Test"}}])
        assert time.monotonic() - started < 0.1  # queued, not sent, on the caller's time
        assert sender.join(timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    assert registry.get_sample_value("error_alerts_total", {"outcome": "failed"}) == 5


def test_a_full_alert_queue_drops_and_counts(registry: CollectorRegistry) -> None:
    sender = AlertSender("http://127.0.0.1:9", timeout=0.2, max_queued=2)
    results = [sender.send([{"labels": {"alertname": "T"}}]) for _ in range(50)]
    assert results.count(False) >= 40
    assert registry.get_sample_value("error_alerts_total", {"outcome": "dropped"}) == results.count(
        False
    )
    sender.join(timeout=10)
