"""Where the time goes: top functions of a py-spy raw (collapsed-stack) profile.

    py-spy record --rate 2000 --format raw -o req.txt -- \\
        python -m benchmarks.request_worker corrstack 100000 5
    python -m benchmarks.stack_summary req.txt --under CorrelationMiddleware.__call__

`--under` keeps the samples whose stack passes through that function, so start-up and the
benchmark loop itself do not count; `--exclude` drops those that also pass through another
(`--exclude ServerErrorMiddleware.__call__` leaves corrstack's own share). Percentages are of
the samples kept.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE_NUMBER = re.compile(r":\d+\)$")


def _function(frame: str) -> str:
    # "send_with_id (instrumentation/middleware.py:131)" -> "send_with_id (instrumentation/...py)"
    return _LINE_NUMBER.sub(")", frame.strip())


def _passes(frames: list[str], function: str) -> int | None:
    return next((i for i, frame in enumerate(frames) if frame.startswith(function + " ")), None)


def summarise(
    raw: str, under: str | None, exclude: str | None = None
) -> tuple[int, Counter[str], Counter[str]]:
    """(samples kept, self samples by function, inclusive samples by function)."""
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [_function(frame) for frame in stack.split(";")]
        if under is not None:
            start = _passes(frames, under)
            if start is None:
                continue
            frames = frames[start:]
        if exclude is not None and _passes(frames, exclude) is not None:
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, own, inclusive


def report(raw: str, under: str | None, exclude: str | None, top: int) -> str:
    total, own, inclusive = summarise(raw, under, exclude)
    if total == 0:
        return "no samples matched\n"
    lines = [
        f"{total} samples"
        + (f" under {under}" if under else "")
        + (f" not under {exclude}" if exclude else "")
    ]
    for title, counts in (("self", own), ("inclusive", inclusive)):
        lines.append(f"\ntop {top} by {title} time:")
        for function, count in counts.most_common(top):
            lines.append(f"  {100 * count / total:5.1f}%  {function}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stack_summary")
    parser.add_argument("raw", type=Path, help="py-spy --format raw output")
    parser.add_argument("--under", help="only samples below this function (name as py-spy shows)")
    parser.add_argument("--exclude", help="drop samples that also pass through this function")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    sys.stdout.write(report(args.raw.read_text(), args.under, args.exclude, args.top))


if __name__ == "__main__":
    main(sys.argv[1:])
