"""`error_type` and `error_message` of an exception, the one way every corrstack line builds them.

An exception's ``__str__`` is user code: it may raise, or return megabytes. Neither reaches a
line or a caller — the text is bounded, cleaned and redacted here.
"""

from __future__ import annotations

from instrumentation.redaction import redact_text
from instrumentation.sanitize import clean_text

MAX_ERROR_MESSAGE_CHARS = 2048


def safe_str(value: object, limit: int = MAX_ERROR_MESSAGE_CHARS) -> str:
    """``str(value)``, bounded and cleaned; ``<unprintable T>`` when ``__str__`` raises."""
    try:
        text = value if type(value) is str else str(value)
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return clean_text(text, limit)


def error_type(error: BaseException | type[BaseException] | str) -> str:
    """The `error_type` of an exception or exception class; a plain string is an ``Error``."""
    if isinstance(error, str):
        return "Error"
    kind = error if isinstance(error, type) else type(error)
    return kind.__name__


def error_fields(error: BaseException | str) -> dict[str, str]:
    """``{"error_type": …, "error_message": …}``; a plain string is an ``Error``.

    >>> error_fields(TimeoutError("model timed out"))
    {'error_type': 'TimeoutError', 'error_message': 'model timed out'}
    """
    return {"error_type": error_type(error), "error_message": redact_text(safe_str(error))}


def error_summary(error: BaseException, limit: int = 256) -> str:
    """``"TimeoutError: model timed out"``, bounded and redacted: a fault's detail."""
    return f"{error_type(error)}: {redact_text(safe_str(error, limit))}"
