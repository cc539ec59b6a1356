"""The three ways a line is written give one line: the CorrelationFilter then `format` (any
record), `JsonFormatter.correlated_line` (the two in one pass, for a common record) and
`JsonFormatter.line` (no record: access lines, `get_logger` lines corrstack alone handles)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instrumentation import bind_context, get_logger, log_format
from instrumentation.context import Connection, connection_var, fields_var
from instrumentation.handlers import SinkHandler
from instrumentation.log_filters import CorrelationFilter
from instrumentation.log_format import JsonFormatter
from tests.conftest import LogCapture, record_factory_adding

_SEQ = re.compile(r'"seq":\d+')
_FIELDS: dict[str, Any] = {
    "exercises_count": 8,
    "duration_ms": 12.5,
    "model": "gpt-4o-mini",
    "cost_usd": 0.0021,
    "cache_hit": False,
    "attempt": None,
    "plan": "pro",
}


@pytest.fixture
def bound_request() -> Iterator[None]:
    token = connection_var.set(
        Connection(None, "req-paths", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    )
    yield
    connection_var.reset(token)


def _record(
    name: str, msg: object, args: Any, fields: dict[str, Any], created: float = 1767225600.25
) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 42, msg, args, None, func="handler")
    record.created = created
    record.__dict__.update(fields)
    return record


def _both_record_paths(
    formatter: JsonFormatter, name: str, msg: object, args: Any, fields: dict[str, Any]
) -> tuple[str, str | None, logging.LogRecord, logging.LogRecord]:
    """(filter + format, correlated_line) of two copies of one record, and the two records."""
    generic = _record(name, msg, args, fields)
    fused = logging.LogRecord.__new__(logging.LogRecord)
    fused.__dict__.update(generic.__dict__)
    assert CorrelationFilter().filter(generic)
    before = dict(fused.__dict__)
    line = formatter.correlated_line(fused)
    if line is None:
        assert fused.__dict__ == before  # left untouched, for the filter and `format`
    return formatter.format(generic), line, generic, fused


def _same(one: str, other: str) -> None:
    assert _SEQ.sub('"seq":0', one) == _SEQ.sub('"seq":0', other)


def _without_seq(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k != "seq"}


def test_a_common_record_takes_one_pass_and_gets_the_same_line(bound_request: None) -> None:
    formatter = JsonFormatter("svc", "test")
    with bind_context(user_id="u-42"):
        _both_record_paths(formatter, "tests", "Routine generated", (), _FIELDS)  # keys seen
        generic_line, line, generic, fused = _both_record_paths(
            formatter, "tests", "Routine %s", ("generated",), _FIELDS
        )
    assert line is not None, "a common record must take the one-pass path"
    _same(line, generic_line)
    # The record carries what the filter puts on it, in the same order, for other handlers.
    assert list(fused.__dict__) == list(generic.__dict__)
    assert _without_seq(fused.__dict__) == _without_seq(generic.__dict__)
    assert fused.seq == generic.seq + 1
    assert '"request_id":"req-paths"' in line and '"user_id":"u-42"' in line


def test_bound_fields_take_one_pass_and_a_clash_takes_format(bound_request: None) -> None:
    formatter = JsonFormatter("svc", "test")
    with bind_context(order_id=7, region="eu-west-1"):
        _both_record_paths(formatter, "tests", "warm", (), {"plan": "pro"})
        generic_line, line, generic, fused = _both_record_paths(
            formatter, "tests", "bound", (), {"plan": "pro"}
        )
        assert line is not None
        _same(line, generic_line)
        assert list(fused.__dict__) == list(generic.__dict__)
        assert '"order_id":7,"region":"eu-west-1","plan":"pro"}' in line
        generic_line, line, _, _ = _both_record_paths(
            formatter, "tests", "clash", (), {"order_id": 8}
        )
        assert line is None  # a keyword field named like a bound one: both kept, by `format`
    assert '"order_id":7' in generic_line and '"field_order_id":8' in generic_line


def test_the_cached_bound_fields_follow_each_new_binding(bound_request: None) -> None:
    formatter = JsonFormatter("svc", "test")
    lines = []
    for tenant in ("acme", "globex", "acme"):
        with bind_context(tenant=tenant):
            _both_record_paths(formatter, "tests", "warm", (), {})
            generic_line, line, _, _ = _both_record_paths(formatter, "tests", "m", (), {})
            assert line is not None
            _same(line, generic_line)
            lines.append(line)
    tenants = ("acme", "globex", "acme")
    assert all(f'"tenant":"{t}"' in line for t, line in zip(tenants, lines, strict=True))
    assert fields_var.get() == {}


def test_the_one_pass_line_masks_what_format_masks(bound_request: None) -> None:
    formatter = JsonFormatter("svc", "test")
    fields = {"plan": "pro", "note": "retry with password=hunter2 now"}
    for _ in range(2):
        generic_line, line, _, _ = _both_record_paths(
            formatter, "tests", "login token=abc123 for %s", ("u\x1b[2J",), fields
        )
    assert line is not None
    _same(line, generic_line)
    assert "hunter2" not in line and "abc123" not in line and "\x1b" not in line
    assert fields["note"] == "retry with password=hunter2 now"  # the caller's value untouched


_KEYS = st.sampled_from(
    [
        "plan",
        "model",
        "attempt",
        "duration_ms",
        "api_key",
        "password",
        "level",
        "seq",
        "boot_id",
        "request_id",
        "user_id",
        "k\x1b[31m",
        "n" * 200,
        "ok",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(["GET", "pro", "Bearer abc.def", "x\u202eevil", "\ud800", "token=s3cr3t"]),
    st.text(max_size=40),
    st.text(min_size=2040, max_size=2100),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**70),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(st.integers(), st.sampled_from(["ok", "password=x"])), max_size=3),
    st.dictionaries(st.sampled_from(["a", "secret"]), st.text(max_size=5), max_size=2),
)
_MESSAGES = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["password=hunter2", "lone \udc00 surrogate", "x" * 17000, "%s and %d"]),
)
_NAMES = st.sampled_from(["tests", "app.api", "tests", "n" * 300, "t\u202eevil", "\ud800"])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=_NAMES,
    message=_MESSAGES,
    args=st.sampled_from([(), ("a",), ("a", 1), ({"k": 1},)]),
    fields=st.one_of(
        st.dictionaries(st.sampled_from(["plan", "model", "attempt", "ok"]), _VALUES, max_size=4),
        st.dictionaries(_KEYS, _VALUES, max_size=5),
    ),
    bound=st.one_of(
        st.just({}),
        st.dictionaries(st.sampled_from(["order_id", "plan", "level"]), _VALUES, max_size=2),
    ),
)
def test_any_record_gets_the_same_line_every_way(
    bound_request: None,
    name: str,
    message: str,
    args: Any,
    fields: dict[str, Any],
    bound: dict[str, Any],
) -> None:
    formatter = JsonFormatter("svc", "test")
    with bind_context(**bound):
        for _ in range(2):  # the second time, whatever the first made plain is known
            generic_line, line, generic, fused = _both_record_paths(
                formatter, name, message, args, fields
            )
            if line is not None:
                _same(line, generic_line)
                assert list(fused.__dict__) == list(generic.__dict__)
            attrs = generic.__dict__
            without_record = formatter.line(
                attrs["created"], attrs["levelname"], attrs["name"], message, args,
                attrs["module"], attrs["funcName"], attrs["lineno"], attrs["request_id"],
                attrs["trace_id"], attrs["span_id"], attrs["user_id"], attrs["seq"],
                attrs["boot_id"], fields_var.get(), dict(fields),
            )  # fmt: skip
            if not {"request_id", "user_id", "seq", "boot_id"} & set(fields):
                assert without_record == generic_line  # ids a record carries: its own path


class _Pass(logging.Filter):
    """A logger filter that lets everything through: enough to force the record path."""


def test_get_logger_alone_writes_without_a_record_and_the_same_line(
    log_capture: LogCapture, bound_request: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = get_logger("tests.paths")
    taken: list[str] = []
    original = SinkHandler.handle_fields

    def spy(self: SinkHandler, *args: Any) -> None:
        taken.append("direct")
        original(self, *args)

    monkeypatch.setattr(SinkHandler, "handle_fields", spy)

    def routine() -> None:
        log.info("Routine %s", "generated", **_FIELDS)

    with bind_context(user_id="u-7", order_id=3):
        routine()
        log.logger.addFilter(passing := _Pass())
        try:
            routine()
        finally:
            log.logger.removeFilter(passing)
    assert taken == ["direct"]
    direct, generic = log_capture.text.splitlines()
    _same(re.sub(r'"timestamp":"[^"]+"', "", direct), re.sub(r'"timestamp":"[^"]+"', "", generic))
    first = log_capture.records[0]
    assert (first["module"], first["function"]) == ("test_line_paths", "routine")
    assert first["user_id"] == "u-7" and first["order_id"] == 3


def test_get_logger_takes_the_record_path_when_anything_else_would_see_it(
    log_capture: LogCapture, bound_request: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = get_logger("tests.paths")
    monkeypatch.setattr(SinkHandler, "handle_fields", None)  # called: a TypeError
    other = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(other)
    try:
        log.info("seen twice", plan="pro")
    finally:
        logging.getLogger().removeHandler(other)
    assert "seen twice" in other.stream.getvalue()  # type: ignore[attr-defined]

    with record_factory_adding(tenant="acme"):
        log.info("made by the app's factory")
    log.info("explicit id", request_id="req-explicit")  # validated by the filter
    lines = log_capture.records
    assert [line["message"] for line in lines] == [
        "seen twice",
        "made by the app's factory",
        "explicit id",
    ]
    assert lines[1]["tenant"] == "acme"
    assert lines[2]["request_id"] == "req-explicit"


def test_the_identity_is_the_request_runtimes_else_the_formatters() -> None:
    import json

    from instrumentation.runtime import Runtime

    formatter = JsonFormatter('we "quote"', "test")
    lines = []
    for runtime in (None, Runtime.create(service="api", environment="prod"), None):
        token = connection_var.set(Connection(runtime, "req-1"))
        try:
            for _ in range(2):
                generic_line, line, _, _ = _both_record_paths(formatter, "tests", "m", (), {})
        finally:
            connection_var.reset(token)
        assert line is not None
        _same(line, generic_line)
        lines.append(json.loads(line))
    assert [(line["service"], line["environment"]) for line in lines] == [
        ('we "quote"', "test"),
        ("api", "prod"),
        ('we "quote"', "test"),
    ]


def test_a_patched_logger_dispatch_sees_every_line(
    log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error tracker that patches `Logger.callHandlers` (as Sentry's logging integration
    does) sees `get_logger` lines and access lines too: no direct path goes around it."""
    from instrumentation.access_record import AccessRecords

    seen: list[str] = []
    original = logging.Logger.callHandlers

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.append(record.getMessage())
        original(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", call_handlers)
    get_logger("tests.patched").error("payment failed", order_id=1)
    AccessRecords(logging.getLogger("corrstack.access")).emit(
        logging.INFO, "GET / 200", {"status": 200}, {}
    )
    assert seen == ["payment failed", "GET / 200"]
    assert [line["message"] for line in log_capture.records] == seen


def test_a_logger_class_of_its_own_handles_its_records(log_capture: LogCapture) -> None:
    class Dropping(logging.Logger):
        def handle(self, record: logging.LogRecord) -> None:
            if "drop" not in record.getMessage():
                super().handle(record)

    logger = Dropping("tests.dropping")
    logger.parent = logging.getLogger()
    from instrumentation.logger import CorrelatedLogger

    log = CorrelatedLogger(logger)
    log.info("drop me", plan="pro")
    log.info("keep me", plan="pro")
    assert [line["message"] for line in log_capture.records] == ["keep me"]


class _TenantLogger(logging.Logger):
    """Adds a field in `_log`, the one method every Logger.info/warning/… call goes through."""

    def _log(self, level: int, msg: object, args: Any, *more: Any, **kwargs: Any) -> None:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "tenant": "acme"}
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        super()._log(level, msg, args, *more, **kwargs)


class _CallerLogger(logging.Logger):
    def findCaller(self, stack_info: bool = False, stacklevel: int = 1) -> Any:
        return ("somewhere.py", 7, "chosen", None)


@pytest.mark.parametrize("with_passthrough", [False, True])
def test_a_logger_class_with_its_own_log_or_find_caller_sees_get_logger_calls(
    log_capture: LogCapture, with_passthrough: bool
) -> None:
    from instrumentation.logger import CorrelatedLogger

    extra: dict[str, Any] = {"stack_info": False} if with_passthrough else {}
    for kind, name in ((_TenantLogger, "tests.tenant"), (_CallerLogger, "tests.caller")):
        logger = kind(name)
        logger.parent = logging.getLogger()
        CorrelatedLogger(logger).info("placed", plan="pro", **extra)
    tenant, caller = log_capture.records
    assert (tenant.get("tenant"), caller["function"], caller["line"]) == ("acme", "chosen", 7)


def test_a_handler_subclass_emit_sees_every_record() -> None:
    from instrumentation.handlers import StreamSink

    emitted: list[str] = []

    class Counting(SinkHandler):
        def emit(self, record: logging.LogRecord) -> None:
            emitted.append(record.getMessage())
            super().emit(record)

    stream = io.StringIO()
    handler = Counting([StreamSink(stream)], JsonFormatter("svc"))
    handler.addFilter(CorrelationFilter())
    logger = logging.getLogger("tests.counting")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        for _ in range(2):
            logger.info("hello", extra={"plan": "pro"})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    assert emitted == ["hello", "hello"]
    assert len(stream.getvalue().splitlines()) == 2


def test_a_record_missing_an_attribute_is_still_written(log_capture: LogCapture) -> None:
    class Strip(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.__dict__.pop("stack_info", None)
            return True

    logger = logging.getLogger("tests.strip")
    logger.addFilter(strip := Strip())
    try:
        logger.info("hello")  # must not raise into the caller
    finally:
        logger.removeFilter(strip)
    assert [line["message"] for line in log_capture.records] == ["hello"]


def test_a_renamed_formatter_writes_its_new_name(bound_request: None) -> None:
    formatter = JsonFormatter("svc", "test")
    for _ in range(2):
        _both_record_paths(formatter, "tests", "m", (), {})
    formatter.service = "renamed"
    generic_line, line, _, _ = _both_record_paths(formatter, "tests", "m", (), {})
    assert line is not None
    _same(line, generic_line)
    assert '"service":"renamed"' in line


@pytest.mark.parametrize("odd_line", [True, 1.0])
def test_a_line_number_equal_to_a_known_sites_is_written_as_its_own(
    bound_request: None, odd_line: object
) -> None:
    formatter = JsonFormatter("svc", "test")
    for lineno in (1, 1, odd_line):  # line 1's site is known when the odd one comes
        generic = _record("tests", "site", (), {})
        generic.lineno = lineno  # a record made by hand
        fused = logging.LogRecord.__new__(logging.LogRecord)
        fused.__dict__.update(generic.__dict__)
        assert CorrelationFilter().filter(generic)
        line = formatter.correlated_line(fused)
        _same(line or formatter.format(fused), formatter.format(generic))
    assert f'"line":{json.dumps(odd_line)}' in formatter.format(generic)


def test_a_flood_of_messages_and_call_sites_keeps_the_kept_pieces_bounded(
    bound_request: None,
) -> None:
    formatter = JsonFormatter("svc", "test")
    for n in range(6000):
        record = _record(f"flood.{n}", f"message {n} " + "m" * 200, (), {})
        record.lineno = n
        record.funcName = "f" * 250
        assert CorrelationFilter().filter(record)
        assert json.loads(formatter.format(record))["line"] == n
        formatter.correlated_line(_record(f"flood.{n}", f"message {n}", (), {}))
    assert len(log_format._sites) <= log_format._SITE_ENTRIES
    assert len(log_format._message_json) <= log_format._PLAIN_KEY_ENTRIES
    kept = sum(len(k) + len(v) for k, v in log_format._message_json.items())
    assert kept <= log_format._PLAIN_KEY_ENTRIES * 3 * log_format._MESSAGE_CHARS


def test_a_message_with_a_secret_is_masked_and_not_kept(bound_request: None) -> None:
    formatter = JsonFormatter("svc", "test")
    message = "login with password=hunter2"
    for _ in range(2):
        generic_line, line, _, _ = _both_record_paths(formatter, "tests", message, (), {})
        assert line is not None
        _same(line, generic_line)
        assert "hunter2" not in line
    assert message not in log_format._message_json  # the text as logged stays out of memory
    _both_record_paths(formatter, "tests", "login with a passkey", (), {})
    assert "login with a passkey" in log_format._message_json  # a plain one is kept
