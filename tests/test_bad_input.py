"""Bad input on every path that reaches a log line, a header or an exemplar: a named corpus and
hypothesis fuzzing. Each request is served, a bad ID is replaced, nothing unsafe or secret is
written, and the exemplar stays within prometheus_client's 128-character limit."""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from instrumentation import get_logger, instrument_app, setup_logging
from instrumentation.ids import valid_id_bytes
from tests.support.asgi import call_raw

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def build_app() -> tuple[FastAPI, io.StringIO, CollectorRegistry]:
    stream = io.StringIO()
    setup_logging(service="fuzz", stream=stream)
    registry = CollectorRegistry()
    app = FastAPI()
    instrument_app(app, registry=registry)
    log = get_logger("tests.fuzz")

    @app.get("/api/user/{user_id}/routine")
    async def routine(user_id: str) -> dict[str, str]:
        log.info("Handler line", user_supplied=user_id)
        return {"ok": "yes"}

    return app, stream, registry


def assert_safe_log(text: str, *forbidden: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        assert not UNSAFE.search(line), line
        records.append(json.loads(line))
    for value in forbidden:
        assert value not in text
    return records


def check_id_header(raw: bytes) -> None:
    app, stream, registry = build_app()
    status, headers = asyncio.run(call_raw(app, [(b"x-correlation-id", raw)]))
    assert status == 200
    echoed = headers[b"x-correlation-id"]
    if valid_id_bytes(raw):
        assert echoed == raw
    else:
        assert HEX32.match(echoed.decode())
    forbidden = (
        [raw.decode("latin-1"), raw.decode("utf-8", "replace")]
        if not valid_id_bytes(raw) and len(raw) > 4
        else []
    )
    assert_safe_log(stream.getvalue(), *forbidden)
    count = registry.get_sample_value(
        "http_request_duration_seconds_count",
        {"method": "GET", "route": "/api/user/{user_id}/routine"},
    )
    assert count == 1  # the exemplar was accepted: observe() did not raise


# --- the named corpus ---

CORPUS = {
    "crlf": b"abc\r\nSet-Cookie: x=1",
    "nul": b"abc\x00def",
    "esc": b"abc\x1bdef",
    "ansi": b"\x1b[31mred\x1b[0m",
    "u2028": "a\u2028b".encode(),
    "u2029": "a\u2029b".encode(),
    "u202e": "abc\u202etxt.exe".encode(),
    "lone-surrogate": "a\udc80b".encode("utf-8", "surrogatepass"),
    "128B": b"a" * 128,
    "1KB": b"b" * 1024,
    "20KB": b"c" * 20 * 1024,
    "latin-1": "caf\u00e9-\u00ff".encode("latin-1"),
    "uuid": b"123e4567-e89b-12d3-a456-426614174000",
    "uuid-braces": b"{123e4567-e89b-12d3-a456-426614174000}",
    "uuid-urn": b"urn:uuid:123e4567-e89b-12d3-a456-426614174000",
    "jwt": b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "email": b"jane.doe@example.com",
    "space": b"has space",
    "quote": b'a"b',
}


@pytest.mark.parametrize("raw", CORPUS.values(), ids=CORPUS.keys())
def test_named_corpus_of_correlation_ids(raw: bytes) -> None:
    check_id_header(raw)


USER_IDS = {
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "email": "jane.doe@example.com",
    "crlf": 'u\r\n{"level":"CRITICAL"}',
    "ansi": "\x1b[2Juser",
    "bidi": "user\u202egnp.exe",
    "separators": "a\u2028b\u2029c",
    "lone-surrogate": "u\udc80",
    "long": "u" * 20_000,
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
}


@pytest.mark.parametrize("user_id", USER_IDS.values(), ids=USER_IDS.keys())
def test_named_corpus_of_path_user_ids(user_id: str) -> None:
    app, stream, _ = build_app()
    status, _ = asyncio.run(call_raw(app, [], path=f"/api/user/{user_id}/routine"))
    assert status == 200
    records = assert_safe_log(stream.getvalue(), "eyJzdWIiOiIxIn0")
    for record in records:
        if "user_id" in record:
            assert len(record["user_id"]) <= 128 + len("…[truncated]")


@pytest.mark.parametrize(
    ("fields", "secret"),
    [
        ({"Authorization": "Bearer abc.def.ghi"}, "abc.def.ghi"),
        ({"password": "hunter2"}, "hunter2"),
        ({"token": "t0k3n-value"}, "t0k3n-value"),
        ({"note": "Authorization: Bearer s3cr3t-token-value"}, "s3cr3t-token-value"),
    ],
)
def test_secret_fields_never_reach_the_line(fields: dict[str, str], secret: str) -> None:
    stream = io.StringIO()
    setup_logging(service="fuzz", stream=stream)
    get_logger("tests").info("login attempt", **fields)
    assert_safe_log(stream.getvalue(), secret)


def test_a_bearer_token_in_an_authorization_header_is_not_logged() -> None:
    app, stream, _ = build_app()
    status, _ = asyncio.run(call_raw(app, [(b"authorization", b"Bearer very-secret-token-1")]))
    assert status == 200
    assert_safe_log(stream.getvalue(), "very-secret-token-1")


# --- fuzzing ---


@FUZZ
@given(st.binary(max_size=200))
def test_fuzzed_correlation_ids(raw: bytes) -> None:
    check_id_header(raw)


@FUZZ
@given(st.text(alphabet=st.characters(blacklist_categories=()), max_size=100))
def test_fuzzed_textual_correlation_ids(text: str) -> None:
    check_id_header(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda v, t, s, f: f"{v}-{t}-{s}-{f}".encode(),
            st.text("0123456789abcdefABCDEF", min_size=2, max_size=2),
            st.text("0123456789abcdef", min_size=31, max_size=33),
            st.text("0123456789abcdef", min_size=15, max_size=17),
            st.text("0123456789abcdef", min_size=2, max_size=2),
        ),
    )
)
def test_fuzzed_traceparent(raw: bytes) -> None:
    app, stream, _ = build_app()
    status, _ = asyncio.run(call_raw(app, [(b"traceparent", raw)]))
    assert status == 200
    for record in assert_safe_log(stream.getvalue()):
        if record["trace_id"]:
            assert TRACE_ID.match(record["trace_id"]) and record["trace_id"] != "0" * 32


@FUZZ
@given(st.text(max_size=300).filter(lambda s: "/" not in s and s not in ("", ".", "..")))
def test_fuzzed_path_user_ids(user_id: str) -> None:
    app, stream, _ = build_app()
    status, _ = asyncio.run(call_raw(app, [], path=f"/api/user/{user_id}/routine"))
    assert status in (200, 404)
    assert_safe_log(stream.getvalue())


@FUZZ
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=20).filter(
            lambda k: (
                k.isidentifier() and k not in ("exc_info", "stack_info", "stacklevel", "extra")
            )
        ),
        st.one_of(st.text(max_size=500), st.integers(), st.floats(), st.none(), st.booleans()),
        max_size=6,
    ),
    st.text(max_size=300),
)
def test_fuzzed_logged_fields(fields: dict[str, Any], message: str) -> None:
    stream = io.StringIO()
    setup_logging(service="fuzz", stream=stream)
    get_logger("tests").info(message, **fields)
    (record,) = assert_safe_log(stream.getvalue())
    assert record["service"] == "fuzz"
