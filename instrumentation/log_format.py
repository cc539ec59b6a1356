"""JSON and console formatters for corrstack log lines.

The JSON formatter builds on python-json-logger's orjson formatter but assembles the record in
one pass: the field order and spelling of DESIGN.md, context from the CorrelationFilter, extra
keyword fields as top-level keys, secrets masked, unsafe characters escaped.
"""

from __future__ import annotations

import logging
import time
import traceback
from itertools import islice
from typing import Any

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter, orjson_default

from instrumentation.redaction import redact_text, redact_value, secret_key_cache
from instrumentation.sanitize import clean_text, deep_clean, escape_unsafe_json

# Attributes a caller's field may not take: LogRecord's own and corrstack's bookkeeping.
# (`request_id`, `trace_id`, `span_id` and `user_id` may be passed; the filter validates them.)
UNSETTABLE_ATTRS = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
        "seq",
        "boot_id",
        "corrstack_fields",
        "_corrstack_line",
    }
)
# Attributes that are not extra fields of the line.
RESERVED_ATTRS = UNSETTABLE_ATTRS | {
    "color_message",  # uvicorn's copy of the message with terminal colour codes
    "request_id",
    "trace_id",
    "span_id",
    "user_id",
}
_STANDARD_ATTR_COUNT = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_SCALARS = frozenset({int, float, bool, type(None)})
_MAX_MESSAGE_CHARS = 16 * 1024
_MAX_STACK_CHARS = 32 * 1024
_second_cache: tuple[int, str] = (-1, "")
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]  # the timestamp's tail, formatted once


def format_timestamp(created: float) -> str:
    """RFC 3339 UTC with milliseconds and `Z`; the date part is cached per second."""
    global _second_cache
    second = int(created)
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache = (second, prefix)
    return prefix + _MILLIS[int((created - second) * 1000)]


def _error_fields(record: logging.LogRecord, data: dict[str, Any]) -> None:
    exc_type, exc, tb = record.exc_info or (None, None, None)
    if exc_type is not None:
        data["error_type"] = exc_type.__name__
        data["error_message"] = redact_text(clean_text(str(exc)))
        if not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(exc_type, exc, tb))
    if record.exc_text:
        data["stacktrace"] = redact_text(record.exc_text[-_MAX_STACK_CHARS:])
    if record.stack_info:
        data["stack_info"] = record.stack_info[-_MAX_STACK_CHARS:]


class JsonFormatter(OrjsonFormatter):
    """One JSON object per record, keys as DESIGN.md spells them.

    >>> handler.setFormatter(JsonFormatter(service="api", environment="prod"))
    """

    def __init__(self, service: str = "unknown", environment: str = "development") -> None:
        super().__init__()
        self.service = service
        self.environment = environment

    def format(self, record: logging.LogRecord) -> str:
        # Two handlers (stdout and file) share one rendering of the record.
        line: str | None = record.__dict__.get("_corrstack_line")
        if line is not None:
            return line
        try:
            encoded = self._encode(self.record_fields(record))
        except Exception as error:  # a formatter must never raise into the caller
            encoded = self._encode(self._fallback_fields(record, error))
        line = escape_unsafe_json(encoded).decode()
        record._corrstack_line = line
        return line

    def record_fields(self, record: logging.LogRecord) -> dict[str, Any]:
        attrs = record.__dict__
        message = record.msg
        if record.args or type(message) is not str:
            message = record.getMessage()
        if len(message) > _MAX_MESSAGE_CHARS:
            message = message[:_MAX_MESSAGE_CHARS] + "…[truncated]"
        data: dict[str, Any] = {
            "timestamp": format_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(message),
            "service": self.service,
            "environment": self.environment,
            "request_id": attrs.get("request_id") or "",
            "trace_id": attrs.get("trace_id") or "",
            "span_id": attrs.get("span_id") or "",
        }
        user_id = attrs.get("user_id")
        if user_id is not None:
            data["user_id"] = user_id
        data["module"] = record.module
        data["function"] = record.funcName
        data["line"] = record.lineno
        seq = attrs.get("seq")
        if seq is not None:
            data["seq"] = seq
            data["boot_id"] = attrs["boot_id"]
        bound = attrs.get("corrstack_fields")
        if bound:
            for key, value in bound.items():
                data[key if key not in data else "field_" + key] = redact_value(key, value)
        # Extra fields come after the attributes every LogRecord sets in __init__.
        secret_keys = secret_key_cache
        for key, value in islice(attrs.items(), _STANDARD_ATTR_COUNT, None):
            if key in RESERVED_ATTRS:
                continue
            if key in data:  # a field named like a line key ("level", "service"): keep both
                key = "field_" + key
            if type(value) in _SCALARS and secret_keys.get(key) is False:
                data[key] = value  # the common case, without a call
            else:
                data[key] = redact_value(key, value)
        if record.exc_info or record.exc_text or record.stack_info:
            _error_fields(record, data)
        return data

    def _encode(self, data: dict[str, Any]) -> bytes:
        try:
            return orjson.dumps(data, default=orjson_default, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # lone surrogates and other strings orjson refuses
            return orjson.dumps(
                deep_clean(data), default=_repr_default, option=orjson.OPT_NON_STR_KEYS
            )

    def _fallback_fields(self, record: logging.LogRecord, error: Exception) -> dict[str, Any]:
        return {
            "timestamp": format_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": clean_text(str(record.msg)),
            "service": self.service,
            "environment": self.environment,
            "request_id": record.__dict__.get("request_id") or "",
            "trace_id": record.__dict__.get("trace_id") or "",
            "span_id": record.__dict__.get("span_id") or "",
            "module": record.module,
            "function": record.funcName,
            "line": record.lineno,
            "format_error": f"{type(error).__name__}: {clean_text(str(error), 256)}",
        }


def _repr_default(value: Any) -> Any:
    try:
        return orjson_default(value)
    except Exception:
        return clean_text(repr(value), 256)


class ConsoleFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the same context and no unsafe characters."""

    def __init__(self, service: str = "unknown", environment: str = "development") -> None:
        super().__init__()
        self._json = JsonFormatter(service, environment)

    def format(self, record: logging.LogRecord) -> str:
        data = self._json.record_fields(record)
        head = (
            f"{data.pop('timestamp')} {data.pop('level'):<8} {data.pop('service')} "
            f"{data.pop('logger')}: {clean_text(data.pop('message'))}"
        )
        for key in ("environment", "module", "function", "line", "seq", "boot_id"):
            data.pop(key, None)
        stack = data.pop("stacktrace", None)
        tail = " ".join(
            f"{key}={clean_text(str(value), 256)}"
            for key, value in data.items()
            if value not in ("", None)
        )
        line = f"{head} {tail}".rstrip()
        if stack:
            line += "".join(f"\n  {clean_text(part)}" for part in stack.splitlines())
        return line
