"""Instructions per request and per record, counted by valgrind: a reading other load cannot move.

On a shared machine the timed parts of `python -m benchmarks` scatter by tens of percent from
one minute to the next. A count of executed instructions does not: the same code gives the same
count, to within a few hundred, whatever else runs. It is not a time — an instruction that
misses the cache costs more than one that hits, and the request loop runs every piece of code
colder than a loop of one function does — so it complements the timed targets, never replaces
them. Use it to see what a change to the request path did, before a timed run says how much.

python -m benchmarks.instructions                        # every app and formatter
python -m benchmarks.instructions --apps bare,corrstack --requests 300
python -m benchmarks.instructions --http-apps bare,corrstack,prometheus_fastapi_instrumentator

Over HTTP (`--http-apps`) the count is the uvicorn server's, serving 25 keep-alive connections
of a client outside valgrind, so the protocol, the event loop and requests interleaving as under
load all count.

Each figure is the difference of two runs of one worker process under
`valgrind --tool=callgrind`, after the same warm-up: with N measured operations and with none,
divided by N; so start-up, imports and warm-up cancel out. Both run at once, one per core.
The corrstack apps run with `LOG_BUFFER_BYTES=0`: their lines are written in the request
instead of by the writer threads, whose schedule under valgrind (about 50 times slower) is not
the real one and would make the count vary; the write costs about what the thread's does.
`PYTHONHASHSEED=0` makes dict and set layouts the same in every run. Needs `valgrind`
(`apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.apps import APPS, REQUEST_PATH, build
from benchmarks.http_load import PROJECT_ROOT, free_port
from benchmarks.multiprocess_mode import child_environment
from benchmarks.record_worker import FORMATTERS
from benchmarks.report import BARE
from benchmarks.request_worker import _discard, _receive, fresh_scope
from benchmarks.rounds import choose_names

WARM_UP = 200
CONNECTIONS = 25  # over HTTP: requests interleave on the server as under load
_REQUEST = f"GET {REQUEST_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
_COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")
STDLIB_BASELINE = "stdlib"
# The apps the in-process part compares (the OpenTelemetry ones take minutes under valgrind).
DEFAULT_APPS = ("bare", "corrstack", "prometheus_fastapi_instrumentator", "asgi_correlation_id")


def valgrind_available() -> bool:
    return shutil.which("valgrind") is not None


def parse_collected(output: str) -> int:
    """The total instruction count from callgrind's closing summary."""
    found = _COLLECTED.search(output)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{output[-2000:]}")
    return int(found.group(1).replace(",", ""))


def _environment() -> dict[str, str]:
    environment = child_environment(None)
    environment.update(PYTHONHASHSEED="0", LOG_BUFFER_BYTES="0")
    return environment


def _count(kind: str, name: str, operations: int) -> int:
    environment = _environment()
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--worker",
            kind,
            name,
            str(operations),
        ],
        cwd=PROJECT_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return parse_collected(done.stderr)


def count_http(name: str, requests: int) -> int:
    """Instructions of a uvicorn process under valgrind serving app `name`: started, warmed up
    with two requests a connection, sent `requests` more (a multiple of `CONNECTIONS`), stopped."""
    port = free_port()
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "uvicorn", "--factory", f"benchmarks.apps:{name}",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as errors:
        server = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
        try:
            asyncio.run(_load(port, requests // CONNECTIONS, server))
        finally:
            if server.poll() is None:
                os.kill(server.pid, signal.SIGTERM)  # uvicorn exits; valgrind then sums up
            try:
                server.wait(timeout=300)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
        errors.seek(0)
        return parse_collected(errors.read().decode(errors="replace"))


async def _load(port: int, each: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 600  # valgrind takes a minute or more to start uvicorn
    while True:
        try:
            await _connection(port, 1)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn under valgrind did not serve {port}") from None
            await asyncio.sleep(1)
    await asyncio.gather(*(_connection(port, 2) for _ in range(CONNECTIONS)))
    if each:
        await asyncio.gather(*(_connection(port, each) for _ in range(CONNECTIONS)))


async def _connection(port: int, requests: int) -> None:
    """`requests` requests, one after another, on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(requests):
            writer.write(_REQUEST)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{REQUEST_PATH} answered {head[:40]!r}")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
    finally:
        writer.close()


def per_operation(kind: str, name: str, operations: int) -> float:
    """Instructions one operation (`kind` "request" of app `name`, "http" request of app `name`
    or "record" of formatter `name`) executes: two counted runs, with `operations` and with
    none, at once."""
    count = (lambda n: count_http(name, n)) if kind == "http" else (lambda n: _count(kind, name, n))
    with ThreadPoolExecutor(max_workers=2) as pool:
        with_operations = pool.submit(count, operations)
        without = pool.submit(count, 0)
        return (with_operations.result() - without.result()) / operations


def _requests(name: str, count: int) -> None:
    app = build(name)

    async def serve(times: int) -> None:
        for _ in range(times):
            await app(fresh_scope(), _receive, _discard)

    asyncio.run(serve(WARM_UP + count))


def _records(name: str, count: int) -> None:
    write = FORMATTERS[name]()
    for _ in range(WARM_UP + count):
        write()


def _request_table(title: str, apps: dict[str, float]) -> str:
    floor = apps.get(BARE, 0.0)
    mine = apps["corrstack"] - floor if "corrstack" in apps else None
    rows = [
        f"#### Instructions per request, {title}",
        "",
        "| app | instructions | overhead | corrstack overhead ÷ this |",
        "|---|---:|---:|---:|",
    ]
    for name, count in apps.items():
        overhead = count - floor
        versus = (
            f"{mine / overhead:.2f}"
            if mine is not None and name not in (BARE, "corrstack") and overhead > 0
            else "–"
        )
        rows.append(f"| {name} | {count:,.0f} | {overhead:,.0f} | {versus} |")
    return "\n".join(rows)


def report(
    apps: dict[str, float], records: dict[str, float], http: dict[str, float] | None = None
) -> str:
    """The markdown tables: per request beside bare (and corrstack's overhead ÷ each peer's),
    in-process and over HTTP, per record beside the stdlib Formatter's."""
    parts = []
    if apps:
        parts.append(_request_table("in-process (valgrind; writer threads off)", apps))
    if http:
        parts.append(
            _request_table(
                f"over HTTP (the uvicorn process under valgrind, {CONNECTIONS} keep-alive "
                "connections; writer threads off)",
                http,
            )
        )
    if records:
        floor = records.get(STDLIB_BASELINE, 0.0)
        rows = [
            "#### Instructions per log record (valgrind)",
            "",
            f"| formatter | instructions | ÷ {STDLIB_BASELINE} Formatter |",
            "|---|---:|---:|",
        ]
        for name, count in records.items():
            ratio = f"{count / floor:.2f}" if floor else "–"
            rows.append(f"| {name} | {count:,.0f} | {ratio} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--worker"]:
        kind, name, count = argv[1], argv[2], int(argv[3])
        (_requests if kind == "request" else _records)(name, count)
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--apps", help=f"comma-separated subset of {','.join(APPS)}")
    parser.add_argument("--formatters", help=f"comma-separated subset of {','.join(FORMATTERS)}")
    parser.add_argument(
        "--http-apps", help="apps to count over HTTP too (none unless given; bare is added)"
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args(argv)
    if not valgrind_available():
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    apps = choose_names(args.apps, APPS) if args.apps else list(DEFAULT_APPS)
    formatters = choose_names(args.formatters, FORMATTERS)
    http_apps = choose_names(args.http_apps, APPS) if args.http_apps else []
    for names in (apps, http_apps):
        if names and BARE not in names:
            names.insert(0, BARE)
    if formatters and STDLIB_BASELINE not in formatters:
        formatters.insert(0, STDLIB_BASELINE)
    counts: dict[str, dict[str, float]] = {"request": {}, "http": {}, "record": {}}
    http_requests = max(CONNECTIONS, args.requests // CONNECTIONS * CONNECTIONS)
    for kind, names, operations in (
        ("request", apps, args.requests),
        ("http", http_apps, http_requests),
        ("record", formatters, args.records),
    ):
        for name in names:
            print(f"  counting: {kind} {name}", file=sys.stderr, flush=True)
            counts[kind][name] = per_operation(kind, name, operations)
    print(report(counts["request"], counts["record"], counts["http"]))


if __name__ == "__main__":
    main(sys.argv[1:])
