"""Whatever a handler logs becomes a bounded, valid JSON line: containers at any depth, objects
with huge or failing ``__str__``, integers past 64 bits, lone surrogates in keys."""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import logging
import sys
import unicodedata
from typing import Any

import pytest
from pydantic import BaseModel

from instrumentation import get_logger, setup_logging
from instrumentation.field_values import DEPTH_MARK, MAX_DEPTH, MAX_ITEMS
from instrumentation.log_format import MAX_LINE_BYTES, ConsoleFormatter
from instrumentation.sanitize import MAX_FIELD_CHARS, UNSAFE_RANGES, escape_unsafe_json
from tests.conftest import LogCapture


class Huge:
    def __str__(self) -> str:
        return "x" * 5_000_000


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@dataclasses.dataclass
class Account:
    name: str
    tags: list[str]


class Model(BaseModel):
    name: str
    items: list[int]


class Colour(enum.Enum):
    RED = "red"


def only_line(capture: LogCapture) -> tuple[str, dict[str, Any]]:
    lines = capture.text.splitlines()
    assert len(lines) == 1, lines
    return lines[0], json.loads(lines[0])


@pytest.mark.parametrize(
    "value",
    [
        list(range(5_000_000)),
        b"\x00\xff" * 3_000_000,
        Huge(),
        {f"k{i}": "v" * 1000 for i in range(10_000)},
        [[["deep" * 1000] * 100] * 100] * 100,
        "é" * 10_000_000,
    ],
    ids=["5M-list", "6MB-bytes", "huge-str", "10k-keys", "nested-lists", "10M-chars"],
)
def test_a_huge_field_gives_a_bounded_valid_line(log_capture: LogCapture, value: object) -> None:
    get_logger("tests").info("big", payload=value)
    line, record = only_line(log_capture)
    assert len(line.encode()) <= MAX_LINE_BYTES
    assert record["message"] == "big"


@pytest.mark.parametrize("way", ["get_logger", "extra", "exception"])
def test_a_line_of_escaped_context_fields_still_fits(log_capture: LogCapture, way: str) -> None:
    # The fields a cut line keeps (task_id, task_name, job_name, event_type…) at their longest,
    # of characters that grow twelvefold when escaped (tag characters, as smuggled in a name).
    tag = "\U000e0041" * 2100
    fields = {"task_id": tag, "task_name": tag, "job_name": tag, "event_type": tag}
    if way == "get_logger":
        get_logger("tests").info(tag, **fields)
    elif way == "extra":
        logging.getLogger("tests").info(tag, extra=fields)
    else:
        try:
            raise ValueError(tag * 4)
        except ValueError:
            logging.getLogger("tests").exception(tag, extra=fields)
    line, record = only_line(log_capture)
    assert (len(line.encode()) <= MAX_LINE_BYTES, "truncated" in record) == (True, True)
    assert record["service"] == "test-svc"


def test_many_large_fields_are_cut_and_named(log_capture: LogCapture) -> None:
    get_logger("tests").info("wide", **{f"f{i}": "y" * 2000 for i in range(200)})
    line, record = only_line(log_capture)
    assert len(line.encode()) <= MAX_LINE_BYTES
    assert record["truncated"].startswith(f"line over {MAX_LINE_BYTES} bytes; fields cut: f0, ")
    assert record["service"] == "test-svc"


def test_cuts_are_marked(log_capture: LogCapture) -> None:
    get_logger("tests").info(
        "cuts", text="z" * (MAX_FIELD_CHARS + 10), items=list(range(MAX_ITEMS + 5))
    )
    _, record = only_line(log_capture)
    assert record["text"] == "z" * MAX_FIELD_CHARS + "…[truncated]"
    assert record["items"][-1] == "…[+5 more]"
    assert len(record["items"]) == MAX_ITEMS + 1


def test_past_the_depth_limit_a_marker_is_written(log_capture: LogCapture) -> None:
    value: Any = "bottom"
    for _ in range(MAX_DEPTH + 3):
        value = {"next": value}
    get_logger("tests").info("deep", tree=value)
    _, record = only_line(log_capture)
    node = record["tree"]
    for _ in range(MAX_DEPTH - 1):
        node = node["next"]
    assert node == {"next": DEPTH_MARK}


def test_containers_of_every_kind_become_json(log_capture: LogCapture) -> None:
    get_logger("tests").info(
        "kinds",
        account=Account("a", ["t"]),
        model=Model(name="m", items=[1, 2]),
        pair=(1, "two"),
        unique=frozenset({3}),
        colour=Colour.RED,
        raw=b"caf\xc3\xa9\xff",
    )
    _, record = only_line(log_capture)
    assert record["account"] == {"name": "a", "tags": ["t"]}
    assert record["model"] == {"name": "m", "items": [1, 2]}
    assert record["pair"] == [1, "two"]
    assert record["unique"] == [3]
    assert record["colour"] == "red"
    assert record["raw"] == "café\\xff"


@pytest.mark.parametrize(
    "value", [2**64, -(2**63) - 1, 10**5000], ids=["2**64", "below-int64", "5000-digits"]
)
def test_integers_past_64_bits_keep_the_line(log_capture: LogCapture, value: int) -> None:
    get_logger("tests").info("counted", total=value, nested={"n": [value]})
    _, record = only_line(log_capture)
    assert "format_error" not in record
    assert isinstance(record["total"], str)
    assert record["nested"]["n"][0] == record["total"]


def test_a_lone_surrogate_in_a_nested_key_keeps_every_field(log_capture: LogCapture) -> None:
    get_logger("tests").info("odd", keep="me", nested={"a\udc80b": {"c\ud800": 1}})
    _, record = only_line(log_capture)
    assert record["keep"] == "me"
    assert record["nested"] == {"a\ufffdb": {"c\ufffd": 1}}


def test_an_extra_seq_is_a_field_and_the_record_keeps_its_context(
    log_capture: LogCapture,
) -> None:
    from instrumentation import bind_context

    with bind_context(request_id="req-seq"):
        logging.getLogger("tests").info("seq", extra={"seq": 7, "boot_id": "mine"})
    _, record = only_line(log_capture)
    assert record["request_id"] == "req-seq"
    assert record["field_seq"] == 7
    assert record["field_boot_id"] == "mine"
    assert isinstance(record["seq"], int)
    assert record["boot_id"] != "mine"


def test_an_exception_whose_str_raises_keeps_type_and_stack(log_capture: LogCapture) -> None:
    try:
        raise Unprintable()
    except Unprintable:
        get_logger("tests").exception("boom")
    _, record = only_line(log_capture)
    assert record["error_type"] == "Unprintable"
    assert record["error_message"] == "<unprintable Unprintable>"
    assert "raise Unprintable()" in record["stacktrace"]


def test_unsafe_ranges_cover_every_format_and_control_character() -> None:
    covered = {code for low, high in UNSAFE_RANGES for code in range(low, high + 1)}
    expected = {
        code
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in ("Cc", "Cf", "Zl", "Zp", "Cs")
    }
    assert expected - covered == set()


@pytest.mark.parametrize(
    "char", ["\u061c", "\u200b", "\u2066", "\u00ad", "\ufeff", "\U000e0041", "\x85", "\x7f"]
)
def test_invisible_and_bidi_characters_are_escaped_in_json(
    log_capture: LogCapture, char: str
) -> None:
    logging.getLogger("tests").info(f"a{char}b", extra={f"k{char}": f"v{char}"})
    line, record = only_line(log_capture)
    assert char not in line
    assert record["message"] == f"a{char}b"  # escaped, so the value is unchanged
    assert escape_unsafe_json(f'"{char}"') != f'"{char}"'


def test_console_lines_clean_keys_values_and_the_service() -> None:
    stream = io.StringIO()
    setup_logging(service="console", log_format="console", stream=stream)
    bad = "k\r\n\x1b[31mfake INFO line\u202e"
    logging.getLogger("tests").info("hello", extra={bad: "v\x1b[2J\n"})
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "\r" not in text


def test_console_formatter_never_raises_on_a_bad_record() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    line = ConsoleFormatter("svc").format(record)
    assert "format_error" in line


def test_short_strings_are_checked_for_secrets_too() -> None:
    from instrumentation.field_values import field_value

    assert field_value("note", "pwd=x") == "pwd=[REDACTED]"
    assert field_value("note", ["pwd=x"]) == ["pwd=[REDACTED]"]


def test_distinct_short_values_pin_no_memory(log_capture: LogCapture) -> None:
    import tracemalloc

    log = logging.getLogger("tests.values")
    for i in range(5000):  # warm up: every cache at its bound
        log.info("v", extra={"value": f"{i:032d}"})
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(5000, 25000):
        log.info("v", extra={"value": f"{i:032d}"})
        log_capture.stream.truncate(0)
        log_capture.stream.seek(0)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 1024 * 1024
