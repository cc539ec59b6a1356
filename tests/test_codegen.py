"""The one writer of generated files (`codegen`), on its own and under both builds."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from alert_rules import build as alert_rules_build
from codegen import Generator
from dashboards import build as dashboards_build

BUILDS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "dashboards": dashboards_build.main,
    "alert_rules": alert_rules_build.main,
}
FILES = {"a.json": "{}\n", "sub/b.json": "[]\n"}


@pytest.fixture
def generator(tmp_path: Path) -> Generator:
    return Generator("widgets", "python -m widgets.build", tmp_path / "default")


def _mtimes(root: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize("build", BUILDS.values(), ids=BUILDS.keys())
def test_a_second_build_rewrites_nothing(
    build: Callable[[Sequence[str] | None], int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert build(["--out", str(tmp_path)]) == 0
    first = _mtimes(tmp_path)
    capsys.readouterr()
    assert build(["--out", str(tmp_path)]) == 0
    assert _mtimes(tmp_path) == first
    # One line per kind of file the build writes (dashboards, their datasources file).
    counts = [re.match(r"(\d+) of (\d+) ", line) for line in capsys.readouterr().out.splitlines()]
    assert all(counts), counts
    assert [int(m.group(1)) for m in counts if m] == [0] * len(counts)
    assert sum(int(m.group(2)) for m in counts if m) == len(first)


def test_write_then_check(
    generator: Generator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert generator.run(FILES, out, check=False) == 0
    assert capsys.readouterr().out == f"2 of 2 widgets written to {out}\n"
    assert (out / "sub" / "b.json").read_bytes() == b"[]\n"
    assert generator.run(FILES, out, check=True) == 0
    assert capsys.readouterr().out == f"2 widgets in {out} are up to date\n"


def test_check_names_each_problem_and_the_command(
    generator: Generator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    generator.run(FILES, out, check=False)
    (out / "a.json").write_text("{ }\n")
    (out / "sub" / "b.json").unlink()
    (out / "old.json").write_text("{}\n")
    (out / "notes.txt").write_text("not a generated kind of file\n")
    capsys.readouterr()

    assert generator.run(FILES, out, check=True, options=["--fast"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"Stale widgets in {out}:",
        "  a.json: differs from what the code generates",
        "  sub/b.json: missing",
        "  old.json: not generated any more (delete it)",
        f"Run: python -m widgets.build --fast --out {out}",
    ]


def test_check_writes_nothing(generator: Generator, tmp_path: Path) -> None:
    assert generator.run(FILES, tmp_path / "out", check=True) == 1
    assert not (tmp_path / "out").exists()


def test_the_command_for_the_default_directory_has_no_out(generator: Generator) -> None:
    assert generator.rerun_command(generator.default_out) == "python -m widgets.build"


def test_a_shared_directory_keeps_the_files_nobody_generates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = Generator("widgets", "python -m widgets.build", tmp_path / "out", owns_out=False)
    out = tmp_path / "out"
    shared.run(FILES, out, check=False)
    (out / "mine.json").write_text("{}\n")  # a person's own file next to the generated ones
    capsys.readouterr()
    assert shared.run(FILES, out, check=True) == 0
    assert shared.run(FILES, out, check=False) == 0
    assert "mine.json" not in capsys.readouterr().err
    (out / "a.json").write_text("{ }\n")
    assert shared.run(FILES, out, check=True) == 1
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  a.json: differs from what the code generates",
        "Run: python -m widgets.build",
    ]
