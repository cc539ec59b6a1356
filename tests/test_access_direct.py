"""The access line's direct path (`SinkHandler.handle_attrs`) writes what the record path would,
and is taken only when nothing but corrstack's handler would see the record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instrumentation import bind_context, setup_logging
from instrumentation.access_record import AccessRecords
from instrumentation.context import Connection, connection_var
from instrumentation.handlers import SinkHandler, direct_handler
from tests.conftest import LogCapture

_ACCESS = logging.getLogger("corrstack.access")
_FIELDS: dict[str, Any] = {
    "method": "GET",
    "route": "/api/user/{user_id}/routine",
    "path": "/api/user/u-1/routine",
    "status": 200,
    "duration_ms": 1.25,
    "client_addr": "127.0.0.1:5000",
    "user_agent": "curl/8 password=hunter2",
}
# The routed request's path parameters: the access line's user_id comes from there.
_SCOPE: dict[str, Any] = {"path_params": {"user_id": "u-1\x1b[31m"}}


@pytest.fixture
def bound_request() -> Iterator[None]:
    token = connection_var.set(
        Connection(None, "req-direct", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    )
    yield
    connection_var.reset(token)


class _Pass(logging.Filter):
    """A logger filter that lets everything through: enough to force the record path."""


def _emit_both_ways(
    log_capture: LogCapture, fields: dict[str, Any], late_span: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    access = AccessRecords(_ACCESS)
    message = "GET /api/user/u-1/routine 200"
    assert direct_handler(_ACCESS, logging.INFO) is not None
    access.emit(logging.INFO, message, dict(fields), _SCOPE, late_span)
    _ACCESS.addFilter(passing := _Pass())
    try:
        assert direct_handler(_ACCESS, logging.INFO) is None
        access.emit(logging.INFO, message, dict(fields), _SCOPE, late_span)
    finally:
        _ACCESS.removeFilter(passing)
    return log_capture.records


def _comparable(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k not in ("timestamp", "seq")}


def test_the_direct_line_equals_the_record_line(
    log_capture: LogCapture, bound_request: None
) -> None:
    direct, generic = _emit_both_ways(log_capture, _FIELDS)
    assert list(direct) == list(generic)  # the same keys in the same order
    assert _comparable(direct) == _comparable(generic)
    assert direct["seq"] + 1 == generic["seq"]
    assert direct["request_id"] == "req-direct"
    assert direct["user_id"] == "u-1\ufffd[31m"  # validated as the filter validates it
    assert direct["user_agent"] == "curl/8 password=[REDACTED]"


def test_bound_fields_and_a_late_span_agree_too(
    log_capture: LogCapture, bound_request: None
) -> None:
    late_span = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    with bind_context(order_id=7, level="shadowed"):
        direct, generic = _emit_both_ways(log_capture, _FIELDS, late_span)
    assert _comparable(direct) == _comparable(generic)
    assert (direct["trace_id"], direct["span_id"]) == late_span
    assert direct["order_id"] == 7 and direct["field_level"] == "shadowed"
    assert direct["level"] == "INFO"


def test_the_direct_path_is_taken_only_when_corrstack_alone_handles_the_record(
    log_capture: LogCapture,
) -> None:
    handler = direct_handler(_ACCESS, logging.INFO)
    assert isinstance(handler, SinkHandler)
    root = logging.getLogger()

    other = logging.StreamHandler(io.StringIO())
    root.addHandler(other)
    assert direct_handler(_ACCESS, logging.INFO) is None  # a second handler must see it
    root.removeHandler(other)

    parent = logging.getLogger("corrstack")
    parent.addHandler(other)
    assert direct_handler(_ACCESS, logging.INFO) is None  # a handler on the way up
    parent.removeHandler(other)

    handler.addFilter(_Pass())
    assert direct_handler(_ACCESS, logging.INFO) is None  # the handler's own filter
    handler.filters.pop()

    handler.setLevel(logging.WARNING)
    assert direct_handler(_ACCESS, logging.INFO) is None  # below the handler's level
    assert direct_handler(_ACCESS, logging.ERROR) is handler
    handler.setLevel(logging.NOTSET)

    _ACCESS.propagate = False
    try:
        assert direct_handler(_ACCESS, logging.INFO) is None  # no handler: stdlib's last resort
    finally:
        _ACCESS.propagate = True
    assert direct_handler(_ACCESS, logging.INFO) is handler


def test_the_console_format_takes_the_record_path() -> None:
    setup_logging(service="svc", log_format="console", stream=io.StringIO())
    assert direct_handler(_ACCESS, logging.INFO) is None


def test_a_later_filters_attributes_are_fields_and_another_formatters_are_not(
    log_capture: LogCapture,
) -> None:
    class AddsTenant(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.tenant = "acme"
            return True

    (handler,) = (h for h in logging.getLogger().handlers if isinstance(h, SinkHandler))
    plain = logging.StreamHandler(io.StringIO())
    plain.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    root = logging.getLogger()
    root.handlers.insert(0, plain)  # runs first: sets record.message and record.asctime
    handler.addFilter(AddsTenant())
    try:
        logging.getLogger("tests").info("hello %s", "there", extra={"plan": "pro"})
    finally:
        root.removeHandler(plain)
    (line,) = log_capture.records
    assert line["message"] == "hello there"
    assert line["plan"] == "pro" and line["tenant"] == "acme"
    assert "asctime" not in line and "field_message" not in line


def test_a_bound_field_named_like_a_line_key_never_shadows_it_later(
    log_capture: LogCapture,
) -> None:
    log = logging.getLogger("tests")
    with bind_context(logger="bound"):
        log.info("one")
    log.info("two", extra={"logger": "extra"})
    one, two = log_capture.records
    assert one["logger"] == two["logger"] == "tests"
    assert one["field_logger"] == "bound" and two["field_logger"] == "extra"
    assert json.loads(json.dumps(two)) == two


def test_a_remembered_user_id_is_only_one_left_as_it_was() -> None:
    from instrumentation import sanitize

    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJl"
    for _ in range(2):  # the second call may answer from the cache: the same answer
        assert sanitize.clean_user_id("u-42") == "u-42"
        assert sanitize.clean_user_id(token) == sanitize.MASK
        assert sanitize.clean_user_id("u\x1b[2J") == "u\ufffd[2J"
        assert sanitize.clean_user_id("password=hunter2") == "password=[REDACTED]"
    assert "u-42" in sanitize._plain_user_ids
    assert token not in sanitize._plain_user_ids and "u\x1b[2J" not in sanitize._plain_user_ids
    sanitize._plain_user_ids.update(dict.fromkeys(map(str, range(5000)), True))
    sanitize.clean_user_id("u-43")  # full: cleared, never more than its bound
    assert len(sanitize._plain_user_ids) <= 4096


_ODD_VALUES = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=2040, max_size=2100),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.text(max_size=60),
    user_agent=st.sampled_from(["curl/8", "Bearer abc.def", "x\u202eevil", "token=s3cr3t"]),
    odd=st.dictionaries(
        st.sampled_from(["path", "route", "client_addr", "plan", "api_key", "level", "seq"]),
        _ODD_VALUES,
        max_size=4,
    ),
)
def test_any_values_give_the_same_line_both_ways(
    log_capture: LogCapture, bound_request: None, path: str, user_agent: str, odd: dict[str, Any]
) -> None:
    log_capture.stream.seek(0)
    log_capture.stream.truncate()
    fields = {**_FIELDS, "path": path, "user_agent": user_agent, **odd}
    direct, generic = _emit_both_ways(log_capture, fields)
    assert _comparable(direct) == _comparable(generic)
    assert list(direct) == list(generic)
