"""Write the Grafana dashboards as JSON: `python -m dashboards.build [--out DIR] [--check]`.

One file per dashboard, `<uid>.json`, deterministic (sorted keys, two-space indent, trailing
newline), so the committed files change only when a dashboard does. `--check` writes nothing:
it exits 1 and names every file that differs from what the code would write.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import config
from dashboards.business import business
from dashboards.errors import errors
from dashboards.request_trace import request_trace
from dashboards.service_overview import service_overview
from dashboards.system_health import system_health

DEFAULT_OUT = Path(__file__).resolve().parent / "generated"
COMMAND = "python -m dashboards.build"

DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "service-overview": service_overview,
    "errors": errors,
    "request-trace": request_trace,
    "system-health": system_health,
    "business": business,
}


def render(builder: Dashboard) -> str:
    """The dashboard as deterministic JSON; panels are numbered 1, 2, … in layout order."""
    model = builder.build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def render_all() -> dict[str, str]:
    """{file name: JSON text} for every dashboard."""
    config.validate()
    rendered = {}
    for uid, factory in DASHBOARDS.items():
        builder = factory()
        built_uid = builder.build().uid
        if built_uid != uid:
            raise ValueError(f"{factory.__name__}() built uid {built_uid!r}, registered as {uid!r}")
        rendered[f"{uid}.json"] = render(builder)
    return rendered


def stale_files(out: Path, rendered: dict[str, str]) -> list[str]:
    """Why each file in `out` differs from `rendered`: changed, missing or no longer generated."""
    problems = []
    for name, text in sorted(rendered.items()):
        path = out / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from what the code generates")
    for path in sorted(out.glob("*.json")):
        if path.name not in rendered:
            problems.append(f"{path}: no dashboard generates it any more (delete it)")
    return problems


def write(out: Path, rendered: dict[str, str]) -> list[Path]:
    """Write the files that changed; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(rendered.items()):
        path = out / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description="Write the Grafana dashboards.")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a file in --out is stale",
    )
    args = parser.parse_args(argv)
    rendered = render_all()
    if args.check:
        problems = stale_files(args.out, rendered)
        if problems:
            default_out = args.out.resolve() == DEFAULT_OUT
            command = COMMAND if default_out else f"{COMMAND} --out {args.out}"
            print("Stale dashboards:", *problems, f"Run: {command}", sep="\n  ", file=sys.stderr)
            return 1
        print(f"{len(rendered)} dashboards in {args.out} are up to date")
        return 0
    written = write(args.out, rendered)
    print(f"{len(written)} of {len(rendered)} dashboards written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
