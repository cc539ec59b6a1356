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


def error_fields(error: BaseException | str) -> dict[str, str]:
    """``{"error_type": …, "error_message": …}``; a plain string is an ``Error``."""
    if isinstance(error, BaseException):
        return {
            "error_type": type(error).__name__,
            "error_message": redact_text(safe_str(error)),
        }
    return {"error_type": "Error", "error_message": redact_text(safe_str(error))}
