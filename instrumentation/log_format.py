"""JSON and console formatters for corrstack log lines.

The JSON formatter builds on python-json-logger's orjson formatter but assembles the record in
one pass: the field order and spelling of DESIGN.md, context from the CorrelationFilter, extra
keyword fields as top-level keys, secrets masked, unsafe characters escaped.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

import orjson
from pythonjsonlogger.orjson import OrjsonFormatter

from instrumentation.accounting import boot_id, next_seq
from instrumentation.context import connection_var, current_user_id, fields_var
from instrumentation.error_fields import error_fields, error_summary, error_type, safe_str
from instrumentation.field_values import (
    INT_MAX,
    INT_MIN,
    MAX_KEY_CHARS,
    TRUNCATED,
    field_key,
    field_value,
    key_is_secret,
)
from instrumentation.log_filters import BOUND_FIELDS_ATTR, FILTER_ATTRS, FILTERED_ATTR, Filtered
from instrumentation.redaction import redact_text
from instrumentation.sanitize import MAX_FIELD_CHARS, clean_text, deep_clean, escape_unsafe_json
from instrumentation.tracing import current_span_ids

# The attributes `LogRecord.__init__` sets, in the order it sets them. `Logger.makeRecord` adds
# `extra=` fields after them, so a record's extra fields are its attributes past this many
# (tests/test_framework_contracts.py fails if a Python version changes that).
STANDARD_ATTRS = tuple(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
# Attributes a caller's field may not take: LogRecord's own and corrstack's bookkeeping.
# (`request_id`, `trace_id`, `span_id` and `user_id` may be passed; the filter validates them.)
UNSETTABLE_ATTRS = frozenset({*STANDARD_ATTRS, "message", "asctime", "taskName", *FILTER_ATTRS})
# Attributes that are not extra fields of the line.
RESERVED_ATTRS = UNSETTABLE_ATTRS | {
    "color_message",  # uvicorn's copy of the message with terminal colour codes
    "request_id",
    "trace_id",
    "span_id",
    "user_id",
}
# The most a line may take, in bytes of UTF-8, newline excluded: well under Loki's default
# 256 KB `max_line_size`. A record that would be longer keeps its context and message and
# names the fields it dropped in `truncated`.
MAX_LINE_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 16 * 1024
MAX_STACK_CHARS = 32 * 1024
_MAX_NAME_CHARS = 256
_CONTEXT_KEYS = (
    "timestamp",
    "level",
    "logger",
    "service",
    "environment",
    "request_id",
    "trace_id",
    "span_id",
    "user_id",
    "module",
    "function",
    "line",
    "seq",
    "boot_id",
    "task_id",
    "task_name",
    "job_name",
    "error_type",
    "event_type",
)
STANDARD_ATTR_COUNT = len(STANDARD_ATTRS)
_UNCACHED_KEYS = (
    RESERVED_ATTRS
    | {"function", "line", "service", "environment", "level", "logger"}
    | frozenset(_CONTEXT_KEYS)
)
_second_cache: tuple[int, str] = (-1, "")
# Keys seen that are written as they are — short, printable, no secret — so the hot loop of
# `record_fields` takes them with a lookup instead of a call. Read and written only here; at
# most 4096 keys of at most 64 characters: a flood of odd keys costs recomputation only.
_PLAIN_KEY_CHARS = 64
_PLAIN_KEY_ENTRIES = 4096
# Never among them: the line's own keys and the attributes that are not fields, so a plain key
# is neither skipped nor in `data` already (unless bound fields are).
_plain_keys: dict[str, bool] = {}
# Short values seen that `redact_text` leaves as they are (`"GET"`, `"strength"`, `"eu-west-1"`):
# fields repeat a small vocabulary of values, and a lookup is cheaper than the call. Same bounds
# in bytes: at most 4096 values of at most 32 characters.
_PLAIN_TEXT_CHARS = 32
_plain_texts: dict[str, bool] = {}
# Values written as they are once their key is known to be plain (ints are range-checked).
_NATIVE_TYPES = frozenset({float, bool, type(None)})
# The values a line writes as orjson writes them (strings once redacted, integers of 64 bits).
_FAST_TYPES = _NATIVE_TYPES | {str, int}
# User ids written on lines as JSON strings: at most 4096 of at most 256 characters.
_json_names: dict[str, str] = {}
# A call site's parts of its lines, kept as JSON: (level, logger, module, function, line) ->
# (`","level":…,"logger":…,"message":`, `,"module":…,"function":…,"line":…,"seq":`). A
# program has few sites; at most 1024 are kept, of names of at most 256 characters.
_SITE_ENTRIES = 1024
_sites: dict[tuple[Any, ...], tuple[str, str]] = {}
# Messages redaction leaves as they are, as JSON strings: at most 4096 of at most 256
# characters. Most lines repeat a message; one with arguments formatted in is new each time.
_MESSAGE_CHARS = 256
_message_json: dict[str, str] = {}
# (service, environment) -> `"service":…,"environment":…`, as `_fast_line` writes them.
_identities: dict[tuple[str, str], str] = {}
# The bound fields last seen (one snapshot serves all of a request's lines) and their JSON.
_bound_json: tuple[object, str] = (None, "")
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]  # the timestamp's tail, formatted once
# (message, stack, each kept field) in characters for the cuts of a line over MAX_LINE_BYTES,
# each tried only when the one before it still does not fit once escaped. The last keeps at
# most 19 fields of 128 characters, a message of 256 and the names of 20 cut fields: at 12
# bytes a character, ~52 KB.
_CUTS = ((2048, 4096, None), (1024, 1024, 512), (256, 0, 128))
# The access line's `module`, `function` and `line`.
ACCESS_SITE = ("middleware", "access_line", 0)


def format_timestamp(created: float) -> str:
    """RFC 3339 UTC with milliseconds and `Z`; the date part is cached per second."""
    second = int(created)
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = _second_prefix(second)
    return prefix + _MILLIS[int((created - second) * 1000)]


def _second_prefix(second: int) -> str:
    global _second_cache
    prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    _second_cache = (second, prefix)
    return prefix


def _name_json(name: object) -> str | None:
    """`name` as a JSON string, for a string of at most `_MAX_NAME_CHARS` characters."""
    if type(name) is not str or len(name) > _MAX_NAME_CHARS:
        return None
    try:
        return orjson.dumps(name).decode()
    except TypeError:  # a lone surrogate
        return None


def _json_name(name: object) -> str | None:
    """`_name_json(name)`, kept."""
    encoded = _name_json(name)
    if encoded is not None:
        if len(_json_names) >= _PLAIN_KEY_ENTRIES:
            _json_names.clear()
        _json_names[name] = encoded  # type: ignore[index]  # a str: _name_json said so
    return encoded


def _site_json(
    level: str, logger: str, module: str, function: str, lineno: int
) -> tuple[str, str] | None:
    """The two pieces of `_sites` for a call site (kept), or None for a name only `_render`
    writes: one that is not a string of at most `_MAX_NAME_CHARS` characters."""
    names = [_name_json(name) for name in (level, logger, module, function)]
    if None in names:
        return None
    level_json, logger_json, module_json, function_json = names
    site = (
        f'","level":{level_json},"logger":{logger_json},"message":',
        f',"module":{module_json},"function":{function_json},"line":{lineno},"seq":',
    )
    if len(_sites) >= _SITE_ENTRIES:
        _sites.clear()
    _sites[(level, logger, module, function, lineno)] = site
    return site


def _new_message_json(message: str) -> str | None:
    """The message as its line writes it — cut to `MAX_MESSAGE_CHARS`, redacted, a JSON
    string —, kept when short and left as it is (a secret is not kept in memory, even as a
    key); None for a lone surrogate."""
    text = message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + TRUNCATED
    if text not in _plain_texts:
        text = _redacted_text(text)
    try:
        encoded = orjson.dumps(text).decode()
    except TypeError:  # a lone surrogate
        return None
    if text is message and len(message) <= _MESSAGE_CHARS:  # one redaction changed is not kept
        if len(_message_json) >= _PLAIN_KEY_ENTRIES:
            _message_json.clear()
        _message_json[message] = encoded
    return encoded


def _fields_json(fields: Mapping[str, Any]) -> str | None:
    """`,"key":value…` of keyword fields ("" for none), when every key is one seen before as
    plain and every value a string, number, bool or None: what `_add_fields` writes for them,
    strings redacted. None for anything else (an unknown key, a container, a long string…),
    which only `_add_field` writes. `fields` itself is left as it is."""
    if not fields:
        return ""
    out = fields
    plain_keys, plain_texts, fast_types = _plain_keys, _plain_texts, _FAST_TYPES
    for key, value in fields.items():
        if key not in plain_keys:
            return None
        kind = type(value)
        if kind is str:
            if value not in plain_texts:
                if len(value) > MAX_FIELD_CHARS:
                    return None
                redacted = _redacted_text(value)
                if redacted is not value:
                    if out is fields:
                        out = dict(fields)
                    out[key] = redacted  # type: ignore[index]  # our copy
        elif kind not in fast_types:
            return None
    try:
        return "," + orjson.dumps(out).decode()[1:-1]
    except TypeError:  # an integer past 64 bits, a lone surrogate: `_add_field` writes them
        return None


def _record_fields_json(attrs: dict[str, Any]) -> str | None:
    """`_fields_json` of a record's keyword fields, its attributes past LogRecord's own, read
    in one pass over them: no copy of the fields first, as `_fields_json` would need (~2,000
    instructions a record)."""
    out: dict[str, Any] = {}
    plain_keys, plain_texts, fast_types = _plain_keys, _plain_texts, _FAST_TYPES
    for key, value in islice(attrs.items(), STANDARD_ATTR_COUNT, None):
        if key not in plain_keys:
            return None
        kind = type(value)
        if kind is str:
            if value not in plain_texts:
                if len(value) > MAX_FIELD_CHARS:
                    return None
                value = _redacted_text(value)
        elif kind not in fast_types:
            return None
        out[key] = value
    try:
        return "," + orjson.dumps(out).decode()[1:-1] if out else ""
    except TypeError:  # as in `_fields_json`
        return None


def _extra_json(bound: Mapping[str, Any], fields: Mapping[str, Any]) -> str | None:
    """The bound fields and then the keyword fields as `_fields_json` writes them; None when
    either has an uncommon one or a keyword field has a bound field's name."""
    fields_json = _fields_json(fields)
    return _with_bound(bound, fields, fields_json) if bound else fields_json


def _with_bound(
    bound: Mapping[str, Any], keys: Iterable[Any], fields_json: str | None
) -> str | None:
    """The JSON of the (non-empty) bound fields, then `fields_json` of keyword fields named
    `keys`; None when either has an uncommon field or a keyword field has a bound field's name
    (`_add_field` keeps both, the keyword one renamed). The bound fields' JSON is kept for the
    snapshot last seen: one serves all of a request's lines."""
    if fields_json is None or not bound.keys().isdisjoint(keys):
        return None
    global _bound_json
    last, bound_json = _bound_json
    if bound is not last:
        encoded = _fields_json(bound)
        if encoded is None:
            return None  # not kept: a key may be known plain by the next line
        _bound_json = (bound, bound_json := encoded)
    return bound_json + fields_json


def _identity_json(service: str, environment: str) -> str:
    """`"service":…,"environment":…` as a line writes them, kept (at most 64 pairs)."""
    identity = orjson.dumps({"service": service, "environment": environment}).decode()[1:-1]
    if len(_identities) >= 64:
        _identities.clear()
    _identities[(service, environment)] = identity
    return identity


def _message(msg: object, args: Any) -> str:
    """`LogRecord.getMessage()` of a record made with `msg` and `args`."""
    if args and len(args) == 1 and isinstance(args[0], Mapping) and args[0]:
        args = args[0]  # as LogRecord.__init__ takes `log.info("%(a)s", {"a": 1})`
    message = str(msg)
    return message % args if args else message


def _redacted_text(value: str) -> str:
    """`redact_text(value)`, remembering a short value it leaves unchanged."""
    redacted = redact_text(value)
    if redacted is value and len(value) <= _PLAIN_TEXT_CHARS:
        if len(_plain_texts) >= _PLAIN_KEY_ENTRIES:
            _plain_texts.clear()
        _plain_texts[value] = True
    return redacted


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + TRUNCATED


def _error_fields(record: logging.LogRecord, data: dict[str, Any]) -> None:
    exc_type, exc, tb = record.exc_info or (None, None, None)
    if exc_type is not None:
        if exc is not None:
            data.update(error_fields(exc))
        else:
            data["error_type"] = error_type(exc_type)
        if not record.exc_text:
            try:
                record.exc_text = "".join(traceback.format_exception(exc_type, exc, tb))
            except Exception:  # a traceback that cannot be rendered still leaves error_type
                record.exc_text = ""
    if record.exc_text:
        data["stacktrace"] = redact_text(record.exc_text[-MAX_STACK_CHARS:])
    if record.stack_info:
        data["stack_info"] = redact_text(record.stack_info[-MAX_STACK_CHARS:])


def _json_default(value: Any) -> Any:
    # Values are JSON-native after `field_value`; this only guards what slipped past it.
    return clean_text(redact_text(safe_str(value, 256)), 256)


class JsonFormatter(OrjsonFormatter):
    """One JSON object per record, keys as docs/reference.md spells them.

    Every line is valid JSON of at most `MAX_LINE_BYTES` bytes, with secrets masked and unsafe
    characters escaped. `service` and `environment` are those of the runtime bound for the
    request being served (`instrument_app(app, service=...)`), else the ones given here.

    >>> handler.setFormatter(JsonFormatter(service="api", environment="prod"))
    """

    def __init__(self, service: str = "unknown", environment: str = "development") -> None:
        super().__init__()
        self.service = clean_text(service, 64)
        self.environment = clean_text(environment, 64)

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._render(self.record_fields(record))
        except Exception as error:  # a formatter must never raise into the caller
            return self._render(self._fallback(record.__dict__, error))

    def _identity(self) -> tuple[str, str]:
        runtime = connection_var.get().runtime
        if runtime is None:
            return self.service, self.environment
        return runtime.service, runtime.environment

    def record_fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The fields of `record`'s line, in their order; its keyword fields are the attributes
        after those every LogRecord sets in __init__ (the filter's own left out)."""
        attrs = record.__dict__
        message = attrs["msg"]
        if attrs["args"] or type(message) is not str:
            message = record.getMessage()
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + TRUNCATED
        if message not in _plain_texts:
            message = _redacted_text(message)
        created = attrs["created"]
        second = int(created)
        cached_second, prefix = _second_cache
        if second != cached_second:
            prefix = _second_prefix(second)
        runtime = connection_var.get().runtime
        name = attrs["name"]
        data: dict[str, Any] = {
            "timestamp": prefix + _MILLIS[int((created - second) * 1000)],
            "level": attrs["levelname"],
            "logger": name if len(name) <= _MAX_NAME_CHARS else _bounded(name, _MAX_NAME_CHARS),
            "message": message,
            "service": self.service if runtime is None else runtime.service,
            "environment": self.environment if runtime is None else runtime.environment,
            "request_id": attrs.get("request_id") or "",
            "trace_id": attrs.get("trace_id") or "",
            "span_id": attrs.get("span_id") or "",
        }
        user_id = attrs.get("user_id")
        if user_id is not None:
            data["user_id"] = user_id
        function = attrs["funcName"] or ""
        data["module"] = attrs["module"]
        data["function"] = (
            function if len(function) <= _MAX_NAME_CHARS else _bounded(function, _MAX_NAME_CHARS)
        )
        data["line"] = attrs["lineno"]
        seq = attrs.get("seq")
        if seq is not None:
            data["seq"] = seq
            data["boot_id"] = attrs["boot_id"]
        bound = attrs.get(BOUND_FIELDS_ATTR)
        if bound:
            for key, value in bound.items():
                self._add_field(data, key, value)
        mark = attrs.get(FILTERED_ATTR)
        # The filter's attributes are not keyword fields: skipped in one step.
        block = mark if type(mark) is Filtered else None
        self._add_fields(
            data,
            islice(attrs.items(), STANDARD_ATTR_COUNT, None if block is None else block[0]),
            bound,
        )
        if block is not None and block[1] < len(attrs):  # set after the filter ran
            for key, value in islice(attrs.items(), block[1], None):
                if key not in RESERVED_ATTRS:
                    self._add_field(data, key, value)
        if record.exc_info or record.exc_text or record.stack_info:
            _error_fields(record, data)
        return data

    def correlated_line(self, record: logging.LogRecord) -> str | None:
        """What the CorrelationFilter and `format` together make of a common record — no
        error, keyword and bound fields of plain names and values — in one pass: the
        filter's attributes set as the filter sets them, and the same line, written from its
        parts without a dict of fields. None for any other record, left untouched: it takes
        the filter and `format`. tests/test_line_paths.py holds the paths to one line."""
        attrs = record.__dict__
        try:
            if attrs["exc_info"] or attrs["exc_text"] or attrs["stack_info"]:
                return None
        except KeyError:  # a record some filter took attributes from: `format` copes
            return None
        # Plain names are never an id, the filter's own or an attribute that is not a field.
        extra = _record_fields_json(attrs) if len(attrs) > STANDARD_ATTR_COUNT else ""
        bound = fields_var.get()
        if bound:
            extra = _with_bound(bound, islice(attrs, STANDARD_ATTR_COUNT, None), extra)
        if extra is None:
            return None
        connection = connection_var.get()
        trace_id, span_id = current_span_ids() or (connection.trace_id, connection.span_id)
        request_id = connection.request_id
        user_id = current_user_id()
        start = len(attrs)
        attrs[FILTERED_ATTR] = mark = Filtered((start, 0))
        attrs["request_id"] = request_id
        attrs["trace_id"] = trace_id
        attrs["span_id"] = span_id
        attrs["user_id"] = user_id
        if bound:
            attrs[BOUND_FIELDS_ATTR] = bound
        attrs["seq"] = seq = next_seq()
        attrs["boot_id"] = boot = boot_id()
        mark[1] = len(attrs)
        try:  # filtered now: anything uncommon from here on is `format`'s
            message = attrs["msg"]
            if attrs["args"] or type(message) is not str:
                message = record.getMessage()
            line = self._fast_line(
                attrs["created"], attrs["levelname"], attrs["name"], message,
                connection.runtime, request_id, trace_id, span_id, user_id,
                attrs["module"], attrs["funcName"] or "", attrs["lineno"], seq, boot, extra,
            )  # fmt: skip
        except Exception:
            line = None
        return self.format(record) if line is None else line

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        msg: object,
        args: Any,
        module: str,
        function: str,
        lineno: int,
        request_id: str | None,
        trace_id: str | None,
        span_id: str | None,
        user_id: str | None,
        seq: int,
        boot_id: str,
        bound: Mapping[str, Any],
        fields: dict[str, Any],
    ) -> str:
        """The line `format` would render for a record of these parts with the ids, `seq` and
        bound fields the CorrelationFilter gives it, made without a record: an access line, a
        `get_logger` line. Its fields are added as keyword fields are."""
        runtime = connection_var.get().runtime
        try:
            message = msg if not args and type(msg) is str else _message(msg, args)
            extra = _extra_json(bound, fields)
            if extra is not None:
                line = self._fast_line(
                    created, level, logger, message, runtime, request_id, trace_id, span_id,
                    user_id, module, function, lineno, seq, boot_id, extra,
                )  # fmt: skip
                if line is not None:
                    return line
            if len(message) > MAX_MESSAGE_CHARS:
                message = message[:MAX_MESSAGE_CHARS] + TRUNCATED
            data: dict[str, Any] = {
                "timestamp": format_timestamp(created),
                "level": level,
                "logger": _bounded(logger, _MAX_NAME_CHARS),
                "message": message if message in _plain_texts else _redacted_text(message),
                "service": self.service if runtime is None else runtime.service,
                "environment": self.environment if runtime is None else runtime.environment,
                "request_id": request_id or "",
                "trace_id": trace_id or "",
                "span_id": span_id or "",
            }
            if user_id is not None:
                data["user_id"] = user_id
            data["module"] = module
            data["function"] = _bounded(function, _MAX_NAME_CHARS)
            data["line"] = lineno
            data["seq"] = seq
            data["boot_id"] = boot_id
            if bound:
                for key, value in bound.items():
                    self._add_field(data, key, value)
            self._add_fields(data, fields.items(), bound)
            return self._render(data)
        except Exception as error:  # as in `format`: never raise into the caller
            attrs = {
                "created": created,
                "levelname": level,
                "name": logger,
                "msg": msg,
                "request_id": request_id,
                "trace_id": trace_id,
                "span_id": span_id,
                "module": module,
                "funcName": function,
                "lineno": lineno,
            }
            return self._render(self._fallback(attrs, error))

    def _fast_line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        runtime: Any,
        request_id: str | None,
        trace_id: str | None,
        span_id: str | None,
        user_id: str | None,
        module: str,
        function: str,
        lineno: int,
        seq: int,
        boot_id: str,
        extra: str,
    ) -> str | None:
        """The line of these parts, written from pieces kept as JSON (names, the identity) and
        the fields' JSON (`extra`), byte for byte what `_render` makes of `record_fields`;
        None for parts that need `_render`: a name over `_MAX_NAME_CHARS` characters, a line
        over `MAX_LINE_BYTES`, a lone surrogate."""
        if type(lineno) is not int:  # (a bool or float line would find an int's site)
            return None
        site = _sites.get((level, logger, module, function, lineno)) or _site_json(
            level, logger, module, function, lineno
        )
        if site is None:
            return None
        if user_id is None:
            user = ""
        else:
            user_json = _json_names.get(user_id) or _json_name(user_id)
            if user_json is None:
                return None
            user = ',"user_id":' + user_json
        message_json = _message_json.get(message) or _new_message_json(message)
        if message_json is None:
            return None
        if runtime is None:
            service, environment = self.service, self.environment
        else:
            service, environment = runtime.service, runtime.environment
        identity = _identities.get((service, environment)) or _identity_json(service, environment)
        second = int(created)
        cached_second, prefix = _second_cache
        if second != cached_second:
            prefix = _second_prefix(second)
        head, tail = site
        line = (
            f'{{"timestamp":"{prefix}{_MILLIS[int((created - second) * 1000)]}{head}'
            f'{message_json},{identity},"request_id":"{request_id or ""}"'
            f',"trace_id":"{trace_id or ""}","span_id":"{span_id or ""}"{user}{tail}{seq}'
            f',"boot_id":"{boot_id}"{extra}}}'
        )
        if not line.isascii() or "\x7f" in line:
            line = escape_unsafe_json(line)
        if len(line) > MAX_LINE_BYTES // 4 and len(line.encode()) > MAX_LINE_BYTES:
            return None
        return line

    def _add_fields(
        self, data: dict[str, Any], items: Iterable[tuple[Any, Any]], bound: object
    ) -> None:
        """Keyword fields into `data`, attributes that are not fields left out. A key seen
        before as plain is written without a call; `bound`: bound fields are in `data` already,
        so such a key may clash with one of them."""
        plain_keys, plain_texts, native = _plain_keys, _plain_texts, _NATIVE_TYPES
        for key, value in items:
            if key in plain_keys and (not bound or key not in data):  # the common case
                kind = type(value)
                if kind is str:
                    if len(value) <= MAX_FIELD_CHARS:
                        data[key] = value if value in plain_texts else _redacted_text(value)
                        continue
                elif kind in native or (kind is int and INT_MIN <= value <= INT_MAX):
                    data[key] = value
                    continue
            elif key in RESERVED_ATTRS:
                continue
            self._add_field(data, key, value)

    @staticmethod
    def _add_field(data: dict[str, Any], key: Any, value: Any) -> None:
        if type(key) is not str or len(key) > MAX_KEY_CHARS or not key.isprintable():
            raw = key if type(key) is str else safe_str(key, MAX_KEY_CHARS)
            key = field_key(raw)
            value = field_value(raw, value)  # judged by the whole key, written bounded
        else:
            value = field_value(key, value)
            if (
                len(key) <= _PLAIN_KEY_CHARS
                and key not in _plain_keys
                and key not in _UNCACHED_KEYS
                and not key_is_secret(key)
            ):
                if len(_plain_keys) >= _PLAIN_KEY_ENTRIES:
                    _plain_keys.clear()
                _plain_keys[key] = True
        if key in data:  # a field named like a line key ("level", "service"): keep both
            key = "field_" + key
        data[key] = value

    def _render(self, data: dict[str, Any]) -> str:
        line = escape_unsafe_json(self._encode(data).decode())
        # A character takes at most 4 bytes: only a long line needs its bytes counted.
        if len(line) > MAX_LINE_BYTES // 4 and len(line.encode()) > MAX_LINE_BYTES:
            # Cut, then cut harder: what a kept field holds may still grow when escaped (a
            # character can take 12 bytes as two \u escapes). The last cut always fits.
            for limits in _CUTS:
                line = escape_unsafe_json(self._encode(self._shrunk(data, *limits)).decode())
                if len(line.encode()) <= MAX_LINE_BYTES:
                    break
        return line

    def _shrunk(
        self, data: dict[str, Any], message: int, stack: int, field: int | None
    ) -> dict[str, Any]:
        """The record cut to fit `MAX_LINE_BYTES`: context, a shorter message and stack, and,
        with a `field` limit, every kept string at most that long."""
        kept = {key: data[key] for key in _CONTEXT_KEYS if key in data}
        if field is not None:
            for key, value in kept.items():
                if isinstance(value, str):
                    kept[key] = _bounded(value, field)
        kept["message"] = _bounded(data.get("message", ""), message)
        if "error_message" in data:
            kept["error_message"] = _bounded(data["error_message"], message // 2)
        if "stacktrace" in data and stack:
            kept["stacktrace"] = data["stacktrace"][-stack:]
        dropped = [key for key in data if key not in kept]
        names = ", ".join(key[:64] for key in dropped[:20])
        more = f" and {len(dropped) - 20} more" if len(dropped) > 20 else ""
        kept["truncated"] = f"line over {MAX_LINE_BYTES} bytes; fields cut: {names}{more}"
        return kept

    def _encode(self, data: dict[str, Any]) -> bytes:
        try:
            # Keys are strings by construction (`_add_field`): no OPT_NON_STR_KEYS, ~20 % more.
            return orjson.dumps(data, default=_json_default)
        except TypeError:  # lone surrogates and other values orjson refuses
            return orjson.dumps(deep_clean(data), default=_json_default)

    def fallback_fields(self, record: logging.LogRecord, error: Exception) -> dict[str, Any]:
        """The fields of a record `record_fields` failed on: its context and the failure."""
        return self._fallback(record.__dict__, error)

    def _fallback(self, attrs: dict[str, Any], error: Exception) -> dict[str, Any]:
        service, environment = self._identity()
        try:
            timestamp = format_timestamp(float(attrs.get("created") or time.time()))
        except (TypeError, ValueError, OverflowError):  # a record made by hand: NaN, "soon"…
            timestamp = format_timestamp(time.time())
        return {
            "timestamp": timestamp,
            "level": safe_str(attrs.get("levelname"), 16),
            "logger": safe_str(attrs.get("name"), _MAX_NAME_CHARS),
            "message": redact_text(safe_str(attrs.get("msg"), 2048)),
            "service": service,
            "environment": environment,
            "request_id": attrs.get("request_id") or "",
            "trace_id": attrs.get("trace_id") or "",
            "span_id": attrs.get("span_id") or "",
            "module": safe_str(attrs.get("module"), _MAX_NAME_CHARS),
            "function": safe_str(attrs.get("funcName") or "", _MAX_NAME_CHARS),
            "line": attrs.get("lineno") if type(attrs.get("lineno")) is int else 0,
            "format_error": error_summary(error),
        }


class ConsoleFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the same context and no unsafe characters."""

    def __init__(self, service: str = "unknown", environment: str = "development") -> None:
        super().__init__()
        self._json = JsonFormatter(service, environment)

    def format(self, record: logging.LogRecord) -> str:
        try:
            data = self._json.record_fields(record)
        except Exception as error:  # as in JsonFormatter: never raise into the caller
            data = self._json.fallback_fields(record, error)
        head = (
            f"{data.pop('timestamp')} {data.pop('level'):<8} {clean_text(data.pop('service'))} "
            f"{clean_text(data.pop('logger'))}: {clean_text(data.pop('message'))}"
        )
        for key in ("environment", "module", "function", "line", "seq", "boot_id"):
            data.pop(key, None)
        stack = data.pop("stacktrace", None)
        tail = " ".join(
            f"{clean_text(key, MAX_KEY_CHARS)}={clean_text(str(value), 256)}"
            for key, value in data.items()
            if value not in ("", None)
        )
        line = f"{head} {tail}".rstrip()
        if stack:
            line += "".join(f"\n  {clean_text(part)}" for part in stack.splitlines())
        return line
