"""Every dependency range in pyproject.toml stops before the next major version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_PROJECT = tomllib.loads(PYPROJECT.read_text())["project"]
REQUIREMENTS = [
    pytest.param(requirement, id=f"{group}:{requirement}")
    for group, requirements in [
        ("dependencies", _PROJECT["dependencies"]),
        *_PROJECT["optional-dependencies"].items(),
    ]
    for requirement in requirements
    if not requirement.startswith(_PROJECT["name"] + "[")  # the project's own extras
]


@pytest.mark.parametrize("requirement", REQUIREMENTS)
def test_the_range_has_an_upper_bound(requirement: str) -> None:
    spec = re.sub(r"^[A-Za-z0-9._-]+(\[[^\]]*\])?", "", requirement)
    assert re.search(r"<[^=]|==", spec), f"{requirement!r} has no upper bound"
