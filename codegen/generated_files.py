"""One writer for generated files: write them, or `--check` them, with the same messages.

A build renders `{relative path: text}` and hands it to its `Generator`:

>>> from pathlib import Path
>>> generator = Generator("dashboards", "python -m dashboards.build", Path("dashboards/generated"))
>>> generator.rerun_command(Path("/tmp/out"))
'python -m dashboards.build --out /tmp/out'

Writing leaves a file whose bytes are already right untouched (its mtime too), so a rebuild
changes nothing a file watcher or `make` would notice. `--check` writes nothing and names every
file that differs, is missing, or has a generated file's suffix but is no longer generated —
unless the build shares its directory with files people write (`owns_out=False`, as in
Grafana's provisioning directory), where only the build's own files are looked at.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Generator:
    """What a build writes, where by default, and the command a person runs to rebuild it."""

    # A plural noun for the messages: "5 dashboards in … are up to date".
    what: str
    command: str
    default_out: Path
    # False when `out` also holds files nobody generates (a user's own datasources file next
    # to the generated one): those are left alone, never reported as "not generated any more".
    owns_out: bool = True

    def argument_parser(self, description: str) -> argparse.ArgumentParser:
        """A parser with the options every build has: `--out DIR` and `--check`."""
        parser = argparse.ArgumentParser(prog=self.command, description=description)
        parser.add_argument(
            "--out",
            type=Path,
            default=self.default_out,
            help=f"output directory (default: {self.default_out})",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="write nothing; exit 1 and name every stale file in --out",
        )
        return parser

    def rerun_command(self, out: Path, options: Sequence[str] = ()) -> str:
        """The command that rewrites `out`; `options` are the build's own (`--profile drill`)."""
        words = [self.command, *options]
        if out.resolve() != self.default_out.resolve():
            words += ["--out", str(out)]
        return " ".join(words)

    def run(
        self,
        files: Mapping[str, str],
        out: Path,
        *,
        check: bool,
        options: Sequence[str] = (),
        rerun: str | None = None,
    ) -> int:
        """Write `files` into `out` (or check them); print what happened; the exit status.

        `rerun` replaces the command `--check` tells people to run, for a directory the build
        derives from another one's `--out` (deploy/kubernetes/generated/ beside the rules)."""
        if check:
            problems = stale_files(out, files, owns_out=self.owns_out)
            if problems:
                print(
                    f"Stale {self.what} in {out}:",
                    *(f"  {problem}" for problem in problems),
                    f"Run: {rerun or self.rerun_command(out, options)}",
                    sep="\n",
                    file=sys.stderr,
                )
                return 1
            print(f"{len(files)} {self.what} in {out} are up to date")
            return 0
        written = write_files(out, files)
        print(f"{len(written)} of {len(files)} {self.what} written to {out}")
        leftovers = _leftovers(out, files) if self.owns_out else []
        if leftovers:
            print(f"Not generated any more (delete them): {', '.join(leftovers)}", file=sys.stderr)
        return 0


def stale_files(out: Path, files: Mapping[str, str], *, owns_out: bool = True) -> list[str]:
    """`<relative path>: <why>` for every file in `out` that a write would change or remove
    (with `owns_out=False`, only for the files of `files`)."""
    problems = []
    for relative, text in sorted(files.items()):
        path = out / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif path.read_bytes() != text.encode("utf-8"):
            problems.append(f"{relative}: differs from what the code generates")
    if owns_out:
        problems += [
            f"{relative}: not generated any more (delete it)" for relative in _leftovers(out, files)
        ]
    return problems


def write_files(out: Path, files: Mapping[str, str]) -> list[str]:
    """Write the files whose bytes differ from `files`; returns their relative paths."""
    written = []
    for relative, text in sorted(files.items()):
        path = out / relative
        data = text.encode("utf-8")
        if path.is_file() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(relative)
    return written


def _leftovers(out: Path, files: Mapping[str, str]) -> list[str]:
    """Files in `out` with a suffix the build generates that it does not generate (any more)."""
    if not out.is_dir():
        return []
    suffixes = {Path(relative).suffix for relative in files}
    found = {
        path.relative_to(out).as_posix()
        for suffix in suffixes
        for path in out.rglob(f"*{suffix}")
        if path.is_file()
    }
    return sorted(found - set(files))
