"""The secret corpus, end to end: every shape placed everywhere a handler can put it — fields,
every container type at depth, messages, exception messages, bound context, the access line and
alerts posted to a real HTTP receiver on 127.0.0.1 — and no marker in any output."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from instrumentation import (
    bind_context,
    business_events,
    get_logger,
    instrument_app,
    log_performance,
    setup_logging,
)
from instrumentation.error_tracking import ErrorTracker, Thresholds
from tests.support.stack import WebhookReceiver, webhook_receiver
from tests.test_redaction import FALSE_POSITIVE_TEXTS, SECRET_KEYS, SECRET_TEXTS

MARKERS = [marker for _, marker in SECRET_TEXTS.values()]
KEY_MARKERS = {shape: f"KEYMRK{n:03d}value" for n, shape in enumerate(SECRET_KEYS)}
ALL_MARKERS = MARKERS + list(KEY_MARKERS.values())


@dataclasses.dataclass
class Settings:
    note: str
    password: str


class Login(BaseModel):
    note: str
    client_secret: str


class Rendered:
    """An object a handler logs as is: only its text reaches the line."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return f"Rendered({self.text})"


class ReprOnly:
    def __init__(self, password: str) -> None:
        self.password = password

    def __repr__(self) -> str:
        return f"ReprOnly(password={self.password!r})"


def containers(text: str, key: str, marker: str) -> dict[str, Any]:
    """`text` and `{key: marker}` in every container type a handler is likely to log."""
    secret = {key: marker}
    return {
        "dict": {"outer": {"inner": {"text": text, **secret}}},
        "list": [{"text": text}, [secret]],
        "tuple": ({"a": (text,)}, secret),
        "set": {text},
        "frozenset": frozenset({text}),
        "dataclass": Settings(note=text, password=marker),
        "model": Login(note=text, client_secret=marker),
        "str_object": Rendered(text),
        "repr_object": ReprOnly(marker),
        "bytes": text.encode(),
    }


def log_everywhere(text: str, key: str, marker: str) -> None:
    log = get_logger("tests.secrets")
    log.info(text)
    logging.getLogger("tests.secrets").info("args %s", text)
    log.info("field", note=text, **{key: marker})
    log.info("containers", **containers(text, key, marker))
    with bind_context(note=text, **{key: marker}):
        log.info("bound")
    try:
        raise ValueError(text)
    except ValueError as error:
        log.exception("failed")
        business_events.analysis_failed("a", error)
    with pytest.raises(RuntimeError), log_performance("op"):
        raise RuntimeError(text)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as hook:
        yield hook


def assert_no_marker(text: str, markers: list[str]) -> None:
    leaked = [marker for marker in markers if marker in text]
    assert leaked == []


def test_the_corpus_has_at_least_thirty_shapes() -> None:
    assert len(SECRET_TEXTS) >= 30
    assert len(set(ALL_MARKERS)) == len(ALL_MARKERS)


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_no_secret_reaches_a_line_in_any_placement(log_format: str, registry: object) -> None:
    stream = io.StringIO()
    setup_logging(service="secrets", log_format=log_format, stream=stream)  # type: ignore[arg-type]
    keys = list(SECRET_KEYS.values())
    for n, (text, _) in enumerate(SECRET_TEXTS.values()):
        key = keys[n % len(keys)]
        log_everywhere(text, key, KEY_MARKERS[list(SECRET_KEYS)[n % len(keys)]])
    for shape, key in SECRET_KEYS.items():
        get_logger("tests.secrets").info("key", **{key: KEY_MARKERS[shape]})
    output = stream.getvalue()
    assert_no_marker(output, ALL_MARKERS)
    if log_format == "json":  # (console lines of a stack span several lines)
        lines = output.splitlines()
        assert len(lines) == 8 * len(SECRET_TEXTS) + len(SECRET_KEYS)  # every record written
        assert all(json.loads(line) for line in lines)


def test_no_secret_reaches_the_access_line(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    setup_logging(service="secrets", stream=stream)
    # The test client's own request lines show the percent-encoded URL it sent; not the subject.
    monkeypatch.setattr(logging.getLogger("httpx"), "disabled", True)
    app = FastAPI()
    instrument_app(app, registry=CollectorRegistry())

    @app.get("/api/user/{user_id}/routine")
    async def routine(user_id: str) -> dict[str, str]:
        return {"ok": "yes"}

    async def calls() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for text, _ in SECRET_TEXTS.values():
                for path in (f"/api/user/{quote(text, safe='')}/routine", "/" + quote(text)):
                    response = await client.get(path)
                    assert response.status_code in (200, 404)

    asyncio.run(calls())
    output = stream.getvalue()
    assert output.count('"logger":"corrstack.access"') == 2 * len(SECRET_TEXTS)
    assert_no_marker(output, MARKERS)


def test_no_secret_reaches_an_alert(
    receiver: WebhookReceiver, registry: CollectorRegistry, log_capture: object
) -> None:
    tracker = ErrorTracker(
        registry=registry,
        alertmanager_url=receiver.url,
        thresholds=Thresholds(count=1, critical_count=1, cooldown=0),
    )
    for n, (text, _) in enumerate(SECRET_TEXTS.values()):
        try:
            raise ConnectionError(text)
        except ConnectionError as error:
            assert tracker.track(error, operation=f"op{n} {text}", severity="critical")
    assert tracker.flush_alerts(10)
    assert len(receiver.payloads) == len(SECRET_TEXTS)
    assert_no_marker(receiver.text(), MARKERS)
    alert = receiver.alerts()[0]
    assert alert["labels"]["alertname"] == "ErrorPatternDetected"
    assert "[REDACTED]" in alert["annotations"]["description"]


def test_ordinary_words_stay_readable(log_capture: Any) -> None:
    for text in FALSE_POSITIVE_TEXTS:
        logging.getLogger("tests.words").info(text)
        get_logger("tests.words").info("field", note=text)
    records = log_capture.records
    assert [r["message"] for r in records if r["message"] != "field"] == FALSE_POSITIVE_TEXTS
    assert [r["note"] for r in records if r["message"] == "field"] == FALSE_POSITIVE_TEXTS
