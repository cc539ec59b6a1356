"""setup_logging, the JSON line format, context binding and redaction."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest

from instrumentation import bind_context, get_logger, setup_logging
from tests.conftest import LogCapture
from tests.support.log_fields import DESIGN_FIELDS, RFC3339_MS_UTC


def test_a_line_has_every_design_field_and_a_utc_millisecond_timestamp(
    log_capture: LogCapture,
) -> None:
    logging.getLogger("tests.fields").info("hello")
    (record,) = log_capture.records
    assert record.keys() >= DESIGN_FIELDS
    assert RFC3339_MS_UTC.match(record["timestamp"])
    assert (record["level"], record["logger"], record["message"]) == (
        "INFO",
        "tests.fields",
        "hello",
    )
    assert (record["service"], record["environment"]) == ("test-svc", "test")
    assert (
        record["function"] == "test_a_line_has_every_design_field_and_a_utc_millisecond_timestamp"
    )


def test_unknown_context_is_empty_never_none(log_capture: LogCapture) -> None:
    logging.getLogger("tests").warning("outside a request")
    (record,) = log_capture.records
    assert record["request_id"] == record["trace_id"] == record["span_id"] == ""
    assert "user_id" not in record
    assert "None" not in log_capture.text


def test_setup_logging_twice_writes_each_record_once() -> None:
    stream = io.StringIO()
    setup_logging(service="a", stream=stream)
    setup_logging(service="b", stream=stream)
    logging.getLogger("tests").info("once")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["service"], r["message"]) for r in lines if r["logger"] == "tests"] == [
        ("b", "once")
    ]


def test_a_second_setup_logging_with_another_service_says_so_naming_both() -> None:
    stream = io.StringIO()
    setup_logging(service="a", environment="dev", stream=stream)
    setup_logging(service="b", environment="dev", stream=stream)
    [line] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (line["logger"], line["previous_service"], line["service"]) == (
        "corrstack.runtime",
        "a",
        "b",
    )
    assert "service='b'" in line["message"] and "service='a'" in line["message"]


def test_environment_configures_service_level_and_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SERVICE_NAME", "billing")
    monkeypatch.setenv("ENVIRONMENT", "staging")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    stream = io.StringIO()
    setup_logging(stream=stream)
    logging.getLogger("tests").info("filtered out")
    logging.getLogger("tests").warning("kept")
    (record,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (record["service"], record["environment"], record["message"]) == (
        "billing",
        "staging",
        "kept",
    )


def test_console_format_is_human_readable_and_carries_context() -> None:
    stream = io.StringIO()
    setup_logging(service="api", log_format="console", stream=stream)
    with bind_context(request_id="req-1", user_id="u-7"):
        logging.getLogger("tests").info("ready\x1b[31m")
    line = stream.getvalue()
    assert not line.startswith("{")
    assert "ready" in line and "request_id=req-1" in line and "user_id=u-7" in line
    assert "\x1b" not in line


def test_bad_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        setup_logging(log_format="xml")  # type: ignore[arg-type]


def test_exception_becomes_error_fields(log_capture: LogCapture) -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("tests").exception("lookup failed")
    (record,) = log_capture.records
    assert record["error_type"] == "KeyError"
    assert record["error_message"] == "'missing'"
    assert (
        "Traceback" in record["stacktrace"] and 'raise KeyError("missing")' in record["stacktrace"]
    )


def test_get_logger_keyword_fields_become_top_level_keys(log_capture: LogCapture) -> None:
    get_logger("tests.kw").info("Routine generated", exercises_count=8, name="clashes")
    (record,) = log_capture.records
    assert record["exercises_count"] == 8
    assert record["field_name"] == "clashes"
    assert record["function"] == "test_get_logger_keyword_fields_become_top_level_keys"


def test_stdlib_extra_fields_pass_through(log_capture: LogCapture) -> None:
    logging.getLogger("tests").info("order", extra={"order_id": 42})
    assert log_capture.records[0]["order_id"] == 42


def test_bind_context_nests_and_restores(log_capture: LogCapture) -> None:
    log = get_logger("tests")
    with bind_context(request_id="outer", tenant="t1"):
        with bind_context(request_id="inner", user_id="u-1"):
            log.info("inner")
        log.info("outer")
    log.info("after")
    inner, outer, after = log_capture.records
    assert (inner["request_id"], inner["user_id"], inner["tenant"]) == ("inner", "u-1", "t1")
    assert (outer["request_id"], outer.get("user_id"), outer["tenant"]) == ("outer", None, "t1")
    assert after["request_id"] == "" and "tenant" not in after


def test_bind_context_replaces_an_invalid_id(log_capture: LogCapture) -> None:
    with bind_context(request_id="bad id\n"):
        logging.getLogger("tests").info("x")
    assert re.fullmatch(r"[0-9a-f]{32}", log_capture.records[0]["request_id"])


def test_context_reaches_records_of_other_libraries(log_capture: LogCapture) -> None:
    with bind_context(request_id="lib-req"):
        logging.getLogger("httpx").info("HTTP Request: GET /")
        logging.getLogger("uvicorn.error").info("server line")
    assert [r["request_id"] for r in log_capture.records] == ["lib-req", "lib-req"]


@pytest.mark.parametrize(
    ("fields", "secret"),
    [
        ({"password": "hunter2"}, "hunter2"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "dXNlcjpwYXNz"),
        ({"api_key": "sk-live-123456"}, "sk-live-123456"),
        ({"client_secret": "s3cr3t-value"}, "s3cr3t-value"),
        ({"headers": {"cookie": "session=abcdef123"}}, "abcdef123"),
        ({"access_token": "tok-987654321"}, "tok-987654321"),
    ],
)
def test_secret_fields_are_masked(
    log_capture: LogCapture, fields: dict[str, object], secret: str
) -> None:
    get_logger("tests").info("login", **fields)
    assert secret not in log_capture.text
    assert "[REDACTED]" in log_capture.text


@pytest.mark.parametrize(
    ("message", "secret"),
    [
        ("calling upstream with Bearer abc.DEF-123_xyz", "abc.DEF-123_xyz"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature here", "eyJzdWIiOiIxIn0"),
        ("retry with password=hunter2&user=bob", "hunter2"),
    ],
)
def test_secrets_inside_messages_are_masked(
    log_capture: LogCapture, message: str, secret: str
) -> None:
    logging.getLogger("tests").info(message)
    assert secret not in log_capture.text


def test_fields_that_are_not_secrets_are_kept(log_capture: LogCapture) -> None:
    get_logger("tests").info("usage", tokens_used=1200, user_id_hint="u-1")
    record = log_capture.records[0]
    assert (record["tokens_used"], record["user_id_hint"]) == (1200, "u-1")


@pytest.mark.parametrize(
    "text",
    ["line\nbreak", "nul\x00byte", "esc\x1b[2J", "sep\u2028arator", "bidi\u202eevil", "del\x7f"],
)
def test_no_raw_control_or_bidi_character_reaches_the_line(
    log_capture: LogCapture, text: str
) -> None:
    get_logger("tests").info(text, field=text)
    line = log_capture.text.rstrip("\n")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", line)
    assert json.loads(line)["field"] == text  # escaped, not lost


def test_lone_surrogates_do_not_lose_the_line(log_capture: LogCapture) -> None:
    get_logger("tests").info("bad \udc80 text", value="\ud800")
    (record,) = log_capture.records
    assert record["message"].startswith("bad ")


def test_unformattable_record_still_writes_a_line(log_capture: LogCapture) -> None:
    logging.getLogger("tests").info("%s %s", "only one")
    (record,) = log_capture.records
    assert "format_error" in record


def test_records_carry_seq_and_boot_id(log_capture: LogCapture) -> None:
    for i in range(3):
        logging.getLogger("tests").info("n%d", i)
    seqs = [r["seq"] for r in log_capture.records]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    assert len({r["boot_id"] for r in log_capture.records}) == 1


def test_fields_named_like_line_keys_are_kept_beside_them(log_capture: LogCapture) -> None:
    get_logger("tests").info("x", level="high", service="billing", msg="m", timestamp=1)
    (record,) = log_capture.records
    assert (record["level"], record["service"]) == ("INFO", "test-svc")
    assert (record["field_level"], record["field_service"], record["field_msg"]) == (
        "high",
        "billing",
        "m",
    )
    assert record["field_timestamp"] == 1


def test_explicit_context_fields_are_kept_valid_and_bounded(log_capture: LogCapture) -> None:
    log = get_logger("tests")
    log.info("by keyword", user_id="u-9", request_id="given-1")
    logging.getLogger("tests").info(
        "by extra", extra={"user_id": "x" * 5000 + "\r\n", "request_id": "bad id\n"}
    )
    keyword, extra = log_capture.records
    assert (keyword["user_id"], keyword["request_id"]) == ("u-9", "given-1")
    assert "field_user_id" not in keyword
    assert len(extra["user_id"]) <= 128 + len("…[truncated]") and "\r" not in extra["user_id"]
    assert extra["request_id"] == ""  # invalid and no request: not written, never replaced


@pytest.mark.parametrize("method", ["info", "warning", "error", "critical", "log"])
def test_get_logger_with_plain_fields_names_the_callers_place(
    log_capture: LogCapture, method: str
) -> None:
    log = get_logger("tests.place")
    call = getattr(log, method)
    line = sys._getframe().f_lineno + 1
    (call(logging.ERROR, "At the caller", n=1) if method == "log" else call("At the caller", n=1))
    (record,) = log_capture.records
    assert (record["module"], record["function"], record["line"], record["n"]) == (
        "test_logging",
        "test_get_logger_with_plain_fields_names_the_callers_place",
        line,
        1,
    )


def test_get_logger_records_go_through_the_loggers_filters(log_capture: LogCapture) -> None:
    logger = logging.getLogger("tests.filtered")

    def drop_secret(record: logging.LogRecord) -> bool:
        return getattr(record, "kind", "") != "secret"

    logger.addFilter(drop_secret)
    try:
        get_logger("tests.filtered").info("Kept", kind="public")
        get_logger("tests.filtered").info("Dropped", kind="secret")
    finally:
        logger.removeFilter(drop_secret)
    assert [r["message"] for r in log_capture.records] == ["Kept"]
