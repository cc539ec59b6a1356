"""Shared fixtures: a clean corrstack state and context per test, and binary requirements."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from instrumentation import context, testing


def pytest_runtest_setup(item: pytest.Item) -> None:
    # CI sets CORRSTACK_REQUIRE_BINARIES=1: a missing binary fails the test instead of skipping.
    for marker in item.iter_markers(name="binary"):
        for name in marker.args:
            if shutil.which(name) is None:
                message = f"needs {name!r} on PATH"
                if os.environ.get("CORRSTACK_REQUIRE_BINARIES") == "1":
                    pytest.fail(message + " (CORRSTACK_REQUIRE_BINARIES=1)", pytrace=False)
                pytest.skip(message)


@pytest.fixture(autouse=True)
def _clean_corrstack_and_context() -> Iterator[None]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    testing.reset()  # every piece of corrstack's process state, as a fresh process has it
    yield
    testing.reset()
    for handler in root.handlers[:]:
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved_level)
    assert context.connection_var.get() is context.NO_CONNECTION, "a connection leaked out"
    assert context.user_id_var.get() is None, "a user_id leaked out of a test"


class LogCapture:
    """corrstack JSON lines written to a StringIO, parsed."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line]

    def by_logger(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["logger"] == name]


@contextlib.contextmanager
def record_factory_adding(**attrs: Any) -> Iterator[None]:
    """An app's own LogRecord factory, adding `attrs` to every record, while in the block."""

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = logging.LogRecord(*args, **kwargs)
        record.__dict__.update(attrs)
        return record

    previous = logging.getLogRecordFactory()
    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


@pytest.fixture
def log_capture() -> LogCapture:
    from instrumentation import setup_logging

    stream = io.StringIO()
    setup_logging(service="test-svc", environment="test", level="INFO", stream=stream)
    return LogCapture(stream)


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """A fresh registry the process's runtime uses: business events, timings and errors
    tracked outside an app with its own registry are counted in it."""
    with testing.capture_metrics() as registry:
        yield registry
