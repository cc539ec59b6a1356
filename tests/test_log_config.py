"""corrstack's logging from dictConfig, `uvicorn --log-config` and gunicorn's `logconfig_dict`:
the same lines setup_logging() writes, per-logger levels from LOG_LEVELS."""

from __future__ import annotations

import copy
import io
import json
import logging
import logging.config
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from instrumentation import (
    bind_context,
    flush_logging,
    get_logger,
    instrument_app,
    setup_logging,
    shutdown_logging,
)
from instrumentation.log_config import (
    CorrelatedHandler,
    apply_log_levels,
    log_levels,
    logging_config,
)
from instrumentation.logging_setup import reclaim_server_loggers
from instrumentation.runtime import process_runtime, set_process_runtime

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
APP = "tests.apps.log_config_app:app"
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")
SETTINGS = (
    "SERVICE_NAME",
    "ENVIRONMENT",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "LOG_FILE",
    "LOG_BUFFER_BYTES",
)
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def example_dict() -> dict[str, Any]:
    config: dict[str, Any] = runpy.run_path(str(EXAMPLES / "dictconfig.py"))["LOGGING_CONFIG"]
    return copy.deepcopy(config)


def example_yaml() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((EXAMPLES / "logging.yaml").read_text())
    return config


@pytest.fixture(autouse=True)
def _restore_loggers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """dictConfig resets loggers (and the root's handlers), and the handler the process's
    runtime, which conftest does not restore."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    saved_root = root.handlers[:]
    saved_runtime = process_runtime()
    saved = {
        name: (logger.level, logger.handlers[:], logger.propagate, logger.disabled)
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    set_process_runtime(saved_runtime)
    for handler in root.handlers[:]:
        if handler not in saved_root:
            root.removeHandler(handler)
            handler.close()
    for handler in saved_root:
        if handler not in root.handlers:
            root.addHandler(handler)
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            level, handlers, propagate, disabled = saved.get(name, (0, [], True, False))
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate, logger.disabled = propagate, disabled


def configured(config: dict[str, Any], stream: io.StringIO) -> None:
    config["handlers"]["corrstack"]["stream"] = stream  # dictConfig passes objects as they are
    logging.config.dictConfig(config)


def emit_sample_lines() -> None:
    """A request's lines of each kind: fields, a plain stdlib line, an exception, a server line."""
    plain = logging.getLogger("tests.plain")
    with bind_context(request_id="req-sample-1", trace_id=TRACE_ID, user_id="u-7"):
        get_logger("tests.sample").info("Order placed", order_id=7, amount=9.5)
        plain.warning("plain %s", "line")
        try:
            raise ValueError("bad input")
        except ValueError:
            plain.exception("failed")
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)


def comparable(text: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in text.splitlines() if line]
    return [
        {key: value for key, value in record.items() if key not in ("timestamp", "seq")}
        for record in records
    ]


def setup_logging_lines(service: str, environment: str) -> list[dict[str, Any]]:
    stream = io.StringIO()
    setup_logging(service, environment=environment, stream=stream)
    emit_sample_lines()
    shutdown_logging()
    return comparable(stream.getvalue())


def test_the_example_dict_writes_setup_loggings_lines() -> None:
    expected = setup_logging_lines("api", "production")
    stream = io.StringIO()
    configured(example_dict(), stream)
    emit_sample_lines()
    assert comparable(stream.getvalue()) == expected


def test_the_uvicorn_yaml_writes_setup_loggings_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "billing")
    monkeypatch.setenv("ENVIRONMENT", "staging")
    expected = setup_logging_lines("billing", "staging")
    stream = io.StringIO()
    configured(example_yaml(), stream)
    emit_sample_lines()
    assert comparable(stream.getvalue()) == expected


def test_sample_lines_are_correlated() -> None:
    stream = io.StringIO()
    configured(example_dict(), stream)
    emit_sample_lines()
    request_lines = comparable(stream.getvalue())[:3]
    assert [(r["request_id"], r["trace_id"], r["user_id"]) for r in request_lines] == [
        ("req-sample-1", TRACE_ID, "u-7")
    ] * 3


def test_the_configured_service_is_the_processs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Alerts and lines outside an app's requests carry the process runtime's service.
    monkeypatch.setenv("SERVICE_NAME", "billing")
    configured(example_yaml(), io.StringIO())
    runtime = process_runtime()
    assert (runtime.service, runtime.environment) == ("billing", "development")


def test_logging_config_is_the_example_dict() -> None:
    built = logging_config(service="api", environment="production", levels={"httpx": "WARNING"})
    assert built == example_dict()


@pytest.mark.parametrize(
    ("example", "names"),
    [(example_dict, SERVER_LOGGERS), (example_yaml, SERVER_LOGGERS[:3])],  # the YAML: uvicorn's
    ids=["dict", "yaml"],
)
def test_the_examples_set_the_server_loggers_as_instrument_app_does(
    example: Any, names: tuple[str, ...]
) -> None:
    configured(example(), io.StringIO())

    def state() -> dict[str, tuple[list[logging.Handler], bool]]:
        return {
            n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in names
        }

    before = state()
    reclaim_server_loggers()
    assert state() == before


def test_instrument_app_keeps_the_configured_handler(registry: CollectorRegistry) -> None:
    configured(example_dict(), io.StringIO())
    (handler,) = logging.getLogger().handlers
    instrument_app(FastAPI(), registry=registry)
    assert logging.getLogger().handlers == [handler]


def test_flush_and_shutdown_logging_reach_the_handler(tmp_path: Path) -> None:
    config = logging_config(service="api", log_file=str(tmp_path / "api.log"))
    logging.config.dictConfig(config)
    for i in range(200):
        logging.getLogger("tests.flush").info("line %d", i)
    assert flush_logging(timeout=5)
    assert len((tmp_path / "api.log").read_text().splitlines()) == 200
    assert shutdown_logging(timeout=5)
    assert not any(isinstance(h, CorrelatedHandler) for h in logging.getLogger().handlers)


@pytest.mark.parametrize("logger", ["root", "tests.only"])
def test_buffered_lines_are_written_at_exit(tmp_path: Path, logger: str) -> None:
    # On the root logger shutdown_logging() closes the handler at exit; on another logger only
    # logging.shutdown() does, through handler.close().
    log_file = tmp_path / "exit.log"
    script = f"""
import logging, logging.config
from instrumentation.log_config import logging_config
config = logging_config(service="api", log_file={str(log_file)!r})
if {logger!r} != "root":
    config["root"]["handlers"] = []
    config["loggers"][{logger!r}] = {{"handlers": ["corrstack"], "level": "INFO"}}
logging.config.dictConfig(config)
for i in range(5000):
    logging.getLogger("tests.only").info("line %d", i)
"""
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    assert len(log_file.read_text().splitlines()) == 5000


def test_a_console_stream_still_writes_json_to_the_file(tmp_path: Path) -> None:
    config = logging_config(service="api", log_file=str(tmp_path / "api.log"), buffer_bytes=0)
    config["formatters"]["json"] = {"()": "instrumentation.log_format.ConsoleFormatter"}
    stream = io.StringIO()
    configured(config, stream)
    logging.getLogger("tests.console").info("hello")
    (record,) = comparable((tmp_path / "api.log").read_text())
    assert (record["message"], stream.getvalue().startswith("{")) == ("hello", False)


def exception_chain(error: BaseException | None) -> str:
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return " | ".join(messages)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SERVICE_NAME", "api service"),
        ("ENVIRONMENT", "-prod"),
        ("LOG_BUFFER_BYTES", "lots"),
        ("LOG_BUFFER_BYTES", "-1"),
    ],
)
def test_a_bad_setting_stops_dictconfig_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError) as raised:
        configured(example_yaml(), io.StringIO())
    assert f"{variable}=" in exception_chain(raised.value)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("uvicorn=WARNING,httpx=ERROR", {"uvicorn": 30, "httpx": 40}),
        (" uvicorn.error = warning , root=DEBUG ", {"uvicorn.error": 30, "root": 10}),
        ("my-app.jobs=15", {"my-app.jobs": 15}),
        ("", {}),
        ("   ", {}),
    ],
)
def test_log_levels_parses_logger_level_pairs(spec: str, expected: dict[str, int]) -> None:
    assert log_levels(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "uvicorn",
        "uvicorn=",
        "=INFO",
        "uvicorn=LOUD",
        "uvicorn=99",
        "uvicorn=WARNING,",
        "uvicorn=WARNING;httpx=ERROR",
        "httpx=INFO,httpx=ERROR",
        "bad name=INFO",
    ],
)
def test_a_bad_log_levels_entry_is_refused_naming_log_levels(spec: str) -> None:
    with pytest.raises(ValueError, match="LOG_LEVELS"):
        log_levels(spec)


def test_apply_log_levels_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVELS", "tests.levels.a=ERROR,tests.levels.b=DEBUG")
    apply_log_levels()
    levels = [logging.getLogger(f"tests.levels.{n}").level for n in "ab"]
    assert levels == [logging.ERROR, logging.DEBUG]


def test_a_bad_entry_changes_no_level() -> None:
    with pytest.raises(ValueError, match="LOG_LEVELS"):
        apply_log_levels("tests.levels.c=ERROR,tests.levels.d=LOUD")
    assert logging.getLogger("tests.levels.c").level == logging.NOTSET


def test_log_levels_from_the_environment_quiet_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVELS", "uvicorn=WARNING,root=DEBUG")
    stream = io.StringIO()
    configured(logging_config(service="api"), stream)
    logging.getLogger("uvicorn.error").info("quiet")
    logging.getLogger("uvicorn.error").warning("kept")
    logging.getLogger("tests.levels").debug("debug kept")
    assert [r["message"] for r in comparable(stream.getvalue())] == ["kept", "debug kept"]


def test_log_levels_survive_uvicorn_configuring_logging_after_setup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `uvicorn.run(app, log_level="debug")` runs uvicorn's own dictConfig after setup_logging():
    # uvicorn and uvicorn.error get levels again, which the app's first ASGI call reclaims.
    from uvicorn.config import LOGGING_CONFIG

    monkeypatch.setenv("LOG_LEVELS", "uvicorn=WARNING")
    stream = io.StringIO()
    setup_logging(service="api", stream=stream)
    logging.config.dictConfig(LOGGING_CONFIG)
    logging.getLogger("uvicorn.error").setLevel(logging.DEBUG)  # what log_level="debug" does
    reclaim_server_loggers()
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("uvicorn").info("quiet too")
    logging.getLogger("uvicorn.error").warning("kept")
    assert [r["message"] for r in comparable(stream.getvalue())] == ["kept"]


def test_logging_config_levels_survive_uvicorn_configuring_logging_after_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `levels=` spells what LOG_LEVELS does: uvicorn setting uvicorn.error's level after the
    # dictConfig (log_level="info") must not undo it at the app's start either.
    from uvicorn.config import LOGGING_CONFIG

    stream = io.StringIO()
    configured(logging_config(service="api", levels={"uvicorn": "WARNING"}), stream)
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)  # what log_level="info" does
    monkeypatch.setenv("LOG_LEVELS", "uvicorn=DEBUG")  # read at setup only, not at the start
    reclaim_server_loggers()
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("uvicorn.error").warning("kept")
    assert [r["message"] for r in comparable(stream.getvalue())] == ["kept"]
    assert LOGGING_CONFIG["loggers"]["uvicorn.error"]["level"] == "INFO"  # what uvicorn sets


@pytest.mark.parametrize(
    ("spec", "error_level"),
    [
        ("gunicorn=WARNING", "NOTSET"),  # follows gunicorn's entry
        ("gunicorn=WARNING,gunicorn.error=DEBUG", "DEBUG"),  # named: its own
        ("httpx=ERROR", None),  # not named: gunicorn's --log-level, set before, stays
    ],
)
def test_logging_config_lets_gunicorn_error_follow_a_gunicorn_entry(
    monkeypatch: pytest.MonkeyPatch, spec: str, error_level: str | None
) -> None:
    monkeypatch.setenv("LOG_LEVELS", spec)
    assert logging_config(service="api")["loggers"]["gunicorn.error"].get("level") == error_level


def test_logging_config_refuses_a_bad_log_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVELS", "uvicorn:WARNING")
    with pytest.raises(ValueError, match="LOG_LEVELS"):
        logging_config(service="api")


# --- real servers -------------------------------------------------------------------------


def test_setup_logging_applies_and_checks_log_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    from instrumentation import setup_logging

    monkeypatch.setenv("LOG_LEVELS", "tests.quiet=ERROR")
    stream = io.StringIO()
    setup_logging(service="levels", stream=stream)
    logging.getLogger("tests.quiet").warning("hidden")
    logging.getLogger("tests.loud").warning("shown")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["shown"]
    monkeypatch.setenv("LOG_LEVELS", "tests.quiet=LOUD")
    with pytest.raises(ValueError, match="LOG_LEVELS"):
        setup_logging(service="levels", stream=io.StringIO())
