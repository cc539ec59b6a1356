"""YAML with comments, for provisioning files people read as well as Grafana.

PyYAML writes no comments, and a provisioning file without its comments loses the why of every
link. This emitter writes the small subset such a file needs: block mappings, block lists,
empty lists, and strings, integers and booleans; a key may carry comment lines above it and a
scalar a comment after it (`Commented`).

>>> print(render({"a": 1, "b": {"c": Commented("5s", inline="why")}}, header="Title"), end="")
# Title
a: 1
<BLANKLINE>
b:
  c: 5s # why

The layout is fixed so the same data gives the same bytes: two-space indents, a list item's
keys under its `- `, a blank line between top-level keys and between the items of a top-level
list. A string is written plain when YAML reads it back as that very string and it looks like a
word, a name or a URL without query; otherwise in single quotes if it holds `"` or `\\`,
else in double quotes. Every rendering round-trips: `yaml.safe_load(render(d)) == plain(d)`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import yaml

Scalar: TypeAlias = str | int | bool
Node: TypeAlias = Scalar | Mapping[str, "Node | Commented"] | Sequence["Node"]


@dataclass(frozen=True)
class Commented:
    """A value with a comment: lines `above` its key, or `inline` after a scalar value."""

    value: Node
    above: str = ""
    inline: str = ""


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Plain only for words, names and URLs without a query; anything else is quoted, so a `?`,
# `$`, `#` or `{` never depends on YAML's plain-scalar rules.
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ()._/:-]*")
_INDENT = "  "


def render(document: Mapping[str, Node | Commented], header: str = "") -> str:
    """The document as YAML text: `header` as comment lines first, then the keys in order."""
    lines = _comment_lines(header, "")
    for number, (key, value) in enumerate(document.items()):
        if number:
            lines.append("")
        lines += _entry(key, value, "", spaced=True)
    return "\n".join(lines) + "\n"


def plain(node: Node | Commented) -> object:
    """The data without its comments: what `yaml.safe_load` reads back from `render`."""
    if isinstance(node, Commented):
        return plain(node.value)
    if isinstance(node, Mapping):
        return {key: plain(value) for key, value in node.items()}
    if isinstance(node, Sequence) and not isinstance(node, str):
        return [plain(item) for item in node]
    return node


def scalar(value: Scalar) -> str:
    """One scalar as YAML: `true`, `1000`, `http://loki:3100`, `'"x":\\s*"y"'`, `"$${a}"`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"no YAML scalar for {type(value).__name__}: {value!r}")
    if not value.isprintable():
        raise ValueError(f"a provisioning string must be one printable line: {value!r}")
    if _PLAIN.fullmatch(value) and not value.endswith(" ") and _reads_back(value):
        return value
    if '"' in value or "\\" in value:
        return "'" + value.replace("'", "''") + "'"
    return f'"{value}"'


def _reads_back(text: str) -> bool:
    """True when `text`, written plain, is read back as that string (not `true`, 1.5, …)."""
    try:
        return bool(yaml.safe_load(f"k: {text}") == {"k": text})
    except yaml.YAMLError:  # `a: b` inside a plain scalar
        return False


def _entry(key: str, node: Node | Commented, indent: str, *, spaced: bool = False) -> list[str]:
    if not _KEY.fullmatch(key):
        raise ValueError(f"not a plain YAML key: {key!r}")
    above = inline = ""
    if isinstance(node, Commented):
        above, inline, node = node.above, node.inline, node.value
    lines = _comment_lines(above, indent)
    if isinstance(node, str | int):  # a bool is an int
        comment = f" # {inline}" if inline else ""
        return [*lines, f"{indent}{key}: {scalar(node)}{comment}"]
    if inline:
        raise ValueError(f"{key}: an inline comment needs a scalar value")
    if not node:
        return [
            *lines,
            f"{indent}{key}: {{}}" if isinstance(node, Mapping) else f"{indent}{key}: []",
        ]
    lines.append(f"{indent}{key}:")
    if isinstance(node, Mapping):
        for child_key, child in node.items():
            lines += _entry(child_key, child, indent + _INDENT)
        return lines
    for number, item in enumerate(node):
        if spaced and number:
            lines.append("")
        lines += _item(item, indent + _INDENT)
    return lines


def _item(node: Node, indent: str) -> list[str]:
    """A list item: `- <scalar>`, or a mapping whose first key follows the dash."""
    if isinstance(node, str | int):
        return [f"{indent}- {scalar(node)}"]
    if not isinstance(node, Mapping):
        raise TypeError("lists of lists are not needed in provisioning files")
    if not node:
        return [f"{indent}- {{}}"]
    first = next(iter(node.values()))
    if isinstance(first, Commented) and first.above:
        raise ValueError("the first key of a list item cannot have a comment above it")
    lines = []
    for key, value in node.items():
        lines += _entry(key, value, indent + _INDENT)
    lines[0] = f"{indent}- {lines[0][len(indent) + len(_INDENT) :]}"
    return lines


def _comment_lines(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in text.splitlines()]
