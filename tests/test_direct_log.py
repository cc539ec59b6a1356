"""A plain stdlib logger's call writes its line without a LogRecord where corrstack's handler is
the only one it reaches (`instrumentation.logger.direct_log`, installed by setup_logging): the
same line as the record path, and every other call is stdlib's `_log`'s, with the same record."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from instrumentation import bind_context, get_logger, setup_logging, shutdown_logging
from instrumentation import logger as logger_module
from instrumentation.context import Connection, connection_var
from instrumentation.handlers import SinkHandler
from tests.conftest import LogCapture, record_factory_adding

_STDLIB_LOG = logging.Logger._log
_VARYING = re.compile(r'"(timestamp|seq)":("[^"]*"|\d+)')


class _Shown:
    def __str__(self) -> str:
        return "shown by __str__"


def _calls() -> list[Callable[[], None]]:
    log = logging.getLogger("tests.direct")
    shown = _Shown()

    def plain() -> None:
        log.info("Routine generated", extra={"exercises_count": 8, "model": "gpt-4o-mini"})

    def with_args() -> None:
        log.warning("Routine %s of %d", "generated", 3)

    def mapping_args() -> None:
        log.info("%(a)s-%(b)s", {"a": 1, "b": 2})

    secret_fields: dict[Any, Any] = {
        "password": "hunter2",
        "nested": {"api_key": "x", "ok": [1, 2]},
        3: "int",
    }

    def secrets() -> None:
        log.error("token=abc123secretvalue0123456789", extra=secret_fields)
        assert secret_fields["password"] == "hunter2"  # the caller's dict is left as it was
        assert secret_fields["nested"] == {"api_key": "x", "ok": [1, 2]}

    def hostile() -> None:
        log.info(
            "ctrl \x00\x1b[31m é ✓ \ud800",
            extra={"long": "x" * 5000, "big": 2**70, "weird key\n": 1, "nan": float("nan")},
        )

    def not_a_string() -> None:
        log.info(shown, extra={"color_message": "\x1b[1mshown\x1b[0m", "extra": 1})

    def module_function() -> None:
        logging.info("through the module's function")

    def through_log() -> None:
        log.log(logging.ERROR, "through Logger.log", extra={"stacklevel": "a field"})

    def through_adapter() -> None:
        logging.LoggerAdapter(log, {"tenant": "acme"}).info("through an adapter")

    def bound() -> None:
        with bind_context(user_id="u-42", order_id=7):
            log.info("bound", extra={"plan": "pro"})
            log.info("clash", extra={"order_id": 8})

    def in_request() -> None:
        token = connection_var.set(
            Connection(None, "req-direct", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
        )
        try:
            log.info("in a request", extra={"plan": "pro"})
        finally:
            connection_var.reset(token)

    return [
        plain, with_args, mapping_args, secrets, hostile, not_a_string, module_function,
        through_log, through_adapter, bound, in_request,
    ]  # fmt: skip


@pytest.fixture
def direct_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The loggers' names of the lines `handle_fields` writes (plain calls and get_logger's)."""
    taken: list[str] = []
    original = SinkHandler.handle_fields

    def spy(self: SinkHandler, level: int, logger: str, *args: Any) -> None:
        taken.append(logger)
        original(self, level, logger, *args)

    monkeypatch.setattr(SinkHandler, "handle_fields", spy)
    return taken


def _lines(capture: LogCapture) -> list[str]:
    return [_VARYING.sub("", line) for line in capture.text.splitlines()]


def _run_twice(capture: LogCapture, calls: list[Callable[[], None]]) -> tuple[list[str], ...]:
    """The lines of `calls` written with the direct path, then with stdlib's `_log` only."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for call in calls:  # the first time makes names plain; both runs then see the same caches
        call()
    start = len(capture.text)
    for call in calls:
        call()
    direct = _lines(capture)[-len(capture.text[start:].splitlines()) :]
    logger_module.uninstall()
    try:
        start = len(capture.text)
        for call in calls:
            call()
        generic = [_VARYING.sub("", line) for line in capture.text[start:].splitlines()]
    finally:
        logger_module.install()
    return direct, generic


def test_setup_logging_installs_the_direct_path_and_shutdown_puts_stdlibs_back() -> None:
    assert logging.Logger._log is _STDLIB_LOG
    setup_logging(service="api", stream=io.StringIO())
    assert logging.Logger._log is logger_module.direct_log
    shutdown_logging()
    assert logging.Logger._log is _STDLIB_LOG


def test_plain_calls_write_without_a_record_and_the_same_lines(
    log_capture: LogCapture, direct_calls: list[str]
) -> None:
    calls = _calls()
    direct, generic = _run_twice(log_capture, calls)
    assert direct == generic
    assert len(direct) == len(calls) + 1  # `bound` writes two
    # Every call took the direct path in the first two runs, none in the third.
    assert len(direct_calls) == 2 * len(direct)
    records = log_capture.records[-len(direct) :]
    assert [(r["module"], r["function"]) for r in records[:3]] == [
        ("test_direct_log", "plain"),
        ("test_direct_log", "with_args"),
        ("test_direct_log", "mapping_args"),
    ]
    assert records[2]["message"] == "1-2"
    assert "hunter2" not in log_capture.text and "abc123secretvalue" not in log_capture.text
    assert records[-1]["request_id"] == "req-direct"
    assert records[-2]["field_order_id"] == 8 and records[-2]["user_id"] == "u-42"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _caller_fields(record: logging.LogRecord) -> tuple[Any, ...]:
    error = record.exc_info[0] if record.exc_info else None
    stack = record.stack_info
    if stack is not None:  # from the frame of `_call_each` in: the frames outside it differ
        stack = stack[stack.index(", in _call_each") :]
    return (record.pathname, record.lineno, record.funcName, stack, error)


def _uncommon_calls() -> list[Callable[[], None]]:
    log = logging.getLogger("tests.direct.uncommon")

    def helper(**kwargs: Any) -> None:
        log.info("from the helper", **kwargs)

    def outer(**kwargs: Any) -> None:
        helper(**kwargs)

    def with_exception() -> None:
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")

    return [
        lambda: outer(stacklevel=2),
        lambda: outer(stacklevel=3),
        lambda: outer(stacklevel=50),  # deeper than the stack: the outermost frame
        lambda: outer(stack_info=True),
        lambda: outer(extra={"request_id": "req-explicit"}),
        with_exception,
        lambda: logging.LoggerAdapter(log, {}).warning("adapted", stacklevel=2),
    ]


def _call_each(calls: list[Callable[[], None]]) -> None:
    for call in calls:  # from one line: the stacks printed are the same
        call()


@pytest.mark.parametrize("others", ["a handler of its own", "none"])
def test_calls_for_stdlibs_path_get_the_records_stdlib_makes(
    log_capture: LogCapture, others: str
) -> None:
    """stdlib's `_log` called from `direct_log` (one frame more) finds the same caller, stack
    and exception; with another handler on the root, plain calls take that path too."""
    capture = _Capture()
    logging.getLogger("tests.direct.uncommon").addHandler(capture)
    calls = _uncommon_calls()
    if others == "a handler of its own":
        calls += [lambda: logging.getLogger("tests.direct.uncommon").info("plain")]
    try:
        _call_each(calls)
        with_direct = [_caller_fields(record) for record in capture.records]
        capture.records.clear()
        logger_module.uninstall()
        try:
            _call_each(calls)
        finally:
            logger_module.install()
        stdlib = [_caller_fields(record) for record in capture.records]
    finally:
        logging.getLogger("tests.direct.uncommon").removeHandler(capture)
    assert with_direct == stdlib
    assert len(stdlib) == len(calls)
    assert (stdlib[0][2], stdlib[1][2]) == ("outer", "<lambda>")
    assert stdlib[3][3].endswith('in helper\n    log.info("from the helper", **kwargs)')
    lines = log_capture.records
    assert lines[4]["request_id"] == "req-explicit"
    assert lines[5]["error_type"] == "ValueError"


@pytest.fixture
def chain() -> Iterator[tuple[logging.Logger, logging.Logger]]:
    parent, child = logging.getLogger("tests.chain"), logging.getLogger("tests.chain.child")
    yield parent, child
    for logger in (parent, child):
        logger.handlers.clear()
        logger.filters.clear()
        logger.disabled = False
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def test_the_logging_hierarchy_is_honoured(
    log_capture: LogCapture,
    direct_calls: list[str],
    chain: tuple[logging.Logger, logging.Logger],
) -> None:
    parent, child = chain
    capture = _Capture()
    parent.addHandler(capture)
    child.info("seen by the parent's handler too")
    parent.removeHandler(capture)

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "drop" not in record.getMessage()

    child.addFilter(Drop())
    child.info("drop me")
    child.info("keep me")
    child.filters.clear()
    child.disabled = True
    child.warning("from a disabled logger")
    child.disabled = False
    child.propagate = False
    child.warning("not propagated, no handler: stdlib's last resort")
    child.propagate = True
    logging.getLogger().handlers[0].setLevel(logging.ERROR)
    child.warning("under the handler's level")
    logging.getLogger().handlers[0].setLevel(logging.NOTSET)
    child.info("direct again")
    assert [r.getMessage() for r in capture.records] == ["seen by the parent's handler too"]
    assert [line["message"] for line in log_capture.records] == [
        "seen by the parent's handler too",
        "keep me",
        "direct again",
    ]
    assert direct_calls == ["tests.chain.child"]


def test_what_patches_or_replaces_logging_sees_every_plain_call(
    log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch, direct_calls: list[str]
) -> None:
    seen: list[str] = []
    call_handlers = logging.Logger.callHandlers

    def tracking(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.append(record.getMessage())  # an error tracker's patch (Sentry's is so)
        call_handlers(self, record)

    with monkeypatch.context() as patch:
        patch.setattr(logging.Logger, "callHandlers", tracking)
        logging.getLogger("tests.patched").error("payment failed")

    with record_factory_adding(tenant="acme"):
        logging.getLogger("tests.factory").info("made by the app's factory")

    class Stamped(logging.Logger):
        def makeRecord(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
            record = super().makeRecord(*args, **kwargs)
            record.stamp = "made"
            return record

    class Placed(logging.Logger):
        def findCaller(self, stack_info: bool = False, stacklevel: int = 1) -> Any:
            return ("somewhere.py", 7, "chosen", None)

    for kind in (Stamped, Placed):
        own = kind(f"tests.{kind.__name__}")
        own.parent = logging.getLogger()
        own.info("a logger class of its own")
    assert seen == ["payment failed"]
    lines = log_capture.records
    assert lines[1]["tenant"] == "acme"
    assert lines[2]["stamp"] == "made"
    assert (lines[3]["function"], lines[3]["line"]) == ("chosen", 7)
    assert direct_calls == []


@pytest.mark.parametrize("key", ["message", "asctime", "name", "lineno"])
def test_an_extra_field_logging_refuses_raises_as_stdlib_does(
    log_capture: LogCapture, key: str
) -> None:
    with pytest.raises(KeyError, match="Attempt to overwrite"):
        logging.getLogger("tests.refused").info("refused", extra={key: 1})


def test_without_caller_lookup_the_line_is_stdlibs(
    log_capture: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "_srcfile", None)  # how an app turns off findCaller's cost
    logging.getLogger("tests.nocaller").warning("no caller")
    [line] = log_capture.records
    assert (line["module"], line["function"], line["line"]) == (
        "(unknown file)",
        "(unknown function)",
        0,
    )


def test_a_log_patched_before_setup_logging_is_left_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[object] = []

    def patched(self: logging.Logger, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        seen.append(msg)

    monkeypatch.setattr(logging.Logger, "_log", patched)
    stream = io.StringIO()
    setup_logging(service="api", stream=stream)
    assert logging.Logger._log is patched
    logging.getLogger("tests.patched").warning("the patch's")
    get_logger("tests.patched").warning("the patch's too", plan="pro")
    shutdown_logging()
    assert logging.Logger._log is patched
    assert seen == ["the patch's", "the patch's too"] and stream.getvalue() == ""


def test_get_logger_keeps_its_direct_path_beside_it(
    log_capture: LogCapture, direct_calls: list[str]
) -> None:
    get_logger("tests.get_logger").info("keyword fields", plan="pro")
    get_logger("tests.get_logger").info("passed through", stacklevel=1, plan="pro")
    assert direct_calls == ["tests.get_logger"]
    assert [line["function"] for line in log_capture.records] == [
        sys._getframe().f_code.co_name
    ] * 2
