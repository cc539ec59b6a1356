"""Faults in the logging and alerting paths: records are dropped and counted, never raised."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from instrumentation import accounting, instrument_app, setup_logging
from instrumentation.alert_sender import AlertSender
from instrumentation.handlers import FileSink
from instrumentation.logging_setup import corrstack_handlers, flush_logging, shutdown_logging
from tests.support.processes import wait_until


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
            # The writer reopens the path on its first write after a rotation: on a busy
            # machine that may come after the next 700 records are logged.
            wait_until(path.exists, timeout=10, interval=0.01, what="the reopened log file")
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


PAD = "x" * 1000  # ~1.3 KB lines: a few hundred fill a small buffer


def _fill(fd: int) -> None:
    """Fill a pipe nobody reads, so the next write to it blocks (newlines: no stray lines)."""
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(fd, b"\n" * 4096)
    os.set_blocking(fd, True)


def _read_to_end(fd: int) -> tuple[threading.Thread, list[bytes]]:
    chunks: list[bytes] = []

    def read() -> None:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, chunks


@dataclass
class StalledRun:
    lines: int
    seconds_in_log_calls: float
    dropped_by_stream: int
    reached_the_stream: int
    reached_the_file: int


@pytest.fixture
def stalled_run(tmp_path: Path) -> StalledRun:
    """2000 lines logged while stdout is a full pipe nobody reads; then the pipe is read."""
    read_end, write_end = os.pipe()
    _fill(write_end)
    lines, path = 2000, tmp_path / "app.log"
    with os.fdopen(write_end, "w") as stalled:
        setup_logging(service="q", stream=stalled, log_file=str(path), buffer_bytes=256 * 1024)
        log = logging.getLogger("tests.stalled")
        dropped_before = drops("stream")
        in_calls = 0.0
        for burst in range(40):  # bursts with pauses, as a service logs
            started = time.perf_counter()
            for i in range(burst * 50, burst * 50 + 50):
                log.info("line %d", i, extra={"pad": PAD})
            in_calls += time.perf_counter() - started
            time.sleep(0.002)
        reader, chunks = _read_to_end(read_end)  # the reader comes back
        assert shutdown_logging(timeout=10)
    reader.join(10)
    os.close(read_end)
    written = [json.loads(line) for line in b"".join(chunks).splitlines() if line]
    return StalledRun(
        lines=lines,
        seconds_in_log_calls=in_calls,
        dropped_by_stream=drops("stream") - dropped_before,
        reached_the_stream=sum(r["service"] == "q" for r in written),
        reached_the_file=len(path.read_text().splitlines()),
    )


def test_a_stalled_stream_never_blocks_the_caller(stalled_run: StalledRun) -> None:
    assert stalled_run.seconds_in_log_calls < 1.0  # 2000 records: ~0.1 s when nothing waits


def test_a_stalled_stream_drops_what_its_buffer_cannot_hold_and_counts_it(
    stalled_run: StalledRun,
) -> None:
    run = stalled_run
    assert run.dropped_by_stream > 0
    assert run.reached_the_stream + run.dropped_by_stream == run.lines


def test_a_stalled_stream_does_not_starve_the_file(stalled_run: StalledRun) -> None:
    assert stalled_run.reached_the_file == stalled_run.lines


@pytest.fixture
def full_pipe() -> Iterator[TextIO]:
    """A pipe whose reader has stopped reading; closed afterwards, which frees a stuck write."""
    read_end, write_end = os.pipe()
    _fill(write_end)
    with os.fdopen(write_end, "w") as stalled:
        yield stalled
        os.close(read_end)  # the writer stuck on it gets EPIPE and ends
        shutdown_logging(timeout=5)


def test_shutdown_waits_a_bounded_time_for_a_stalled_sink(
    tmp_path: Path, full_pipe: TextIO
) -> None:
    path = tmp_path / "app.log"
    setup_logging(service="s", stream=full_pipe, log_file=str(path))
    for i in range(100):
        logging.getLogger("tests.shutdown").info("line %d", i)
    started = time.monotonic()
    written = shutdown_logging(timeout=0.5)
    waited = time.monotonic() - started
    assert (written, waited < 1.5, len(path.read_text().splitlines())) == (False, True, 100)


def test_a_zero_buffer_writes_in_the_caller() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    with os.fdopen(write_end, "w") as stream:
        setup_logging(service="z", stream=stream, buffer_bytes=0)
        logging.getLogger("tests.zero").info("written before the call returns")
        try:
            line = json.loads(os.read(read_end, 1 << 16))
        finally:
            shutdown_logging()
            os.close(read_end)
    assert line["message"] == "written before the call returns"


def test_a_forked_child_gets_fresh_buffers_and_its_own_writers(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    with open(os.devnull, "w") as devnull:  # a real descriptor: the threaded path
        setup_logging(service="fork", stream=devnull, log_file=str(path))
        log = logging.getLogger("tests.fork")
        for i in range(300):  # some are still in the buffer at the fork
            log.info("parent line", extra={"i": i})
        with warnings.catch_warnings():  # Python 3.12+ warns about fork with threads running
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                log.info("child line")
                code = 0 if flush_logging(timeout=5) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        shutdown_logging()
    messages = Counter(json.loads(line)["message"] for line in path.read_text().splitlines())
    assert (os.waitstatus_to_exitcode(status), messages) == (
        0,
        Counter({"parent line": 300, "child line": 1}),  # the parent's lines written once
    )


class Raising(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        raise RuntimeError("formatter bug")


def test_a_formatter_that_raises_drops_the_record_and_counts_it() -> None:
    setup_logging(service="f", stream=io.StringIO())
    [handler] = corrstack_handlers()
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
    flush_logging(timeout=5)  # the file's writer thread counts its failures
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
        url = f"http://127.0.0.1:{server.server_address[1]}"
        sender = AlertSender(url, registry=registry, timeout=0.3)
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
    sender = AlertSender("http://127.0.0.1:9", registry=registry, timeout=0.2, max_queued=2)
    results = [sender.send([{"labels": {"alertname": "T"}}]) for _ in range(50)]
    assert results.count(False) >= 40
    assert registry.get_sample_value("error_alerts_total", {"outcome": "dropped"}) == results.count(
        False
    )
    sender.join(timeout=10)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SERVICE_NAME", "a\nb"),
        ("SERVICE_NAME", "api gateway"),
        ("SERVICE_NAME", "x" * 64),
        ("SERVICE_NAME", "-api"),
        ("ENVIRONMENT", "prod/eu"),
        ("ENVIRONMENT", "prod\r\n"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_LEVEL", "99"),
        ("LOG_FORMAT", "xml"),
        ("LOG_BUFFER_BYTES", "-1"),
        ("LOG_BUFFER_BYTES", "8MiB"),
        ("LOG_BUFFER_BYTES", str(2**30 + 1)),
        ("LOG_QUEUE_SIZE", "10000"),
    ],
)
def test_a_bad_setting_in_the_environment_fails_at_startup_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        setup_logging(stream=io.StringIO())


@pytest.mark.parametrize(
    ("argument", "variable"),
    [
        ({"service": "a\nb"}, "SERVICE_NAME"),
        ({"service": "ünïcode"}, "SERVICE_NAME"),
        ({"environment": "a b"}, "ENVIRONMENT"),
        ({"level": "LOUD"}, "LOG_LEVEL"),
        ({"level": -1}, "LOG_LEVEL"),
        ({"log_format": "xml"}, "LOG_FORMAT"),
        ({"buffer_bytes": -1}, "LOG_BUFFER_BYTES"),
        ({"buffer_bytes": 2**30 + 1}, "LOG_BUFFER_BYTES"),
    ],
    ids=lambda value: repr(value) if isinstance(value, dict) else value,
)
def test_a_bad_setting_as_an_argument_fails_naming_its_variable(
    argument: dict[str, Any], variable: str
) -> None:
    with pytest.raises(ValueError, match=variable):
        setup_logging(stream=io.StringIO(), **argument)


def test_log_queue_size_names_its_replacement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_QUEUE_SIZE", "10000")
    with pytest.raises(ValueError, match="replaced by LOG_BUFFER_BYTES"):
        setup_logging(stream=io.StringIO())


def test_a_refused_setup_keeps_the_logging_already_set_up() -> None:
    stream = io.StringIO()
    setup_logging(service="kept", stream=stream)
    with pytest.raises(ValueError):
        setup_logging(service="a\nb", stream=io.StringIO())
    logging.getLogger("tests").info("still here")
    assert json.loads(stream.getvalue())["service"] == "kept"


@pytest.mark.parametrize(
    ("level", "expected"), [("debug", logging.DEBUG), ("Warning", logging.WARNING), (15, 15)]
)
def test_log_level_takes_a_name_in_any_case_or_a_number(level: str | int, expected: int) -> None:
    setup_logging(stream=io.StringIO(), level=level)
    assert logging.getLogger().level == expected
