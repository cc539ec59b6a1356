"""Instructions per request and per record, counted by valgrind: a reading other load cannot move.

On a shared machine the timed parts of `python -m benchmarks` scatter by tens of percent from
one minute to the next. A count of executed instructions does not: the same code gives the same
count, to within a few hundred, whatever else runs. It is not a time — an instruction that
misses the cache costs more than one that hits, and the request loop runs every piece of code
colder than a loop of one function does — so it complements the timed targets, never replaces
them. Use it to see what a change to the request path did, before a timed run says how much.

python -m benchmarks.instructions                        # every app and formatter
python -m benchmarks.instructions --apps bare,corrstack --requests 300

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
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from benchmarks.apps import APPS, build
from benchmarks.http_load import PROJECT_ROOT
from benchmarks.multiprocess_mode import child_environment
from benchmarks.record_worker import FORMATTERS
from benchmarks.report import BARE
from benchmarks.request_worker import _discard, _receive, fresh_scope
from benchmarks.rounds import choose_names

WARM_UP = 200
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


def _count(kind: str, name: str, operations: int) -> int:
    environment = child_environment(None)
    environment.update(PYTHONHASHSEED="0", LOG_BUFFER_BYTES="0")
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


def per_operation(kind: str, name: str, operations: int) -> float:
    """Instructions one operation (`kind` "request" of app `name`, or "record" of formatter
    `name`) executes: two counted runs, with `operations` and with none, at once."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        with_operations = pool.submit(_count, kind, name, operations)
        without = pool.submit(_count, kind, name, 0)
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


def report(apps: dict[str, float], records: dict[str, float]) -> str:
    """The markdown tables: per request beside bare (and corrstack's overhead ÷ each peer's),
    per record beside the stdlib Formatter's."""
    parts = []
    if apps:
        floor = apps.get(BARE, 0.0)
        mine = apps["corrstack"] - floor if "corrstack" in apps else None
        rows = [
            "#### Instructions per request, in-process (valgrind; writer threads off)",
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
        parts.append("\n".join(rows))
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
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args(argv)
    if not valgrind_available():
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    apps = choose_names(args.apps, APPS) if args.apps else list(DEFAULT_APPS)
    formatters = choose_names(args.formatters, FORMATTERS)
    if apps and BARE not in apps:
        apps.insert(0, BARE)
    if formatters and STDLIB_BASELINE not in formatters:
        formatters.insert(0, STDLIB_BASELINE)
    counts: dict[str, dict[str, float]] = {"request": {}, "record": {}}
    for kind, names, operations in (
        ("request", apps, args.requests),
        ("record", formatters, args.records),
    ):
        for name in names:
            print(f"  counting: {kind} {name}", file=sys.stderr, flush=True)
            counts[kind][name] = per_operation(kind, name, operations)
    print(report(counts["request"], counts["record"]))


if __name__ == "__main__":
    main(sys.argv[1:])
