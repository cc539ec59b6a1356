"""A service's LOGGING_CONFIG with corrstack's handler, for `logging.config.dictConfig`.

It is what `logging_config(service="api", environment="production",
levels={"httpx": "WARNING"})` returns, written out to copy and edit; lines are the ones
setup_logging() writes (docs/logging-config.md).

    import logging.config
    logging.config.dictConfig(LOGGING_CONFIG)
    apply_log_levels()          # LOG_LEVELS=uvicorn=WARNING,... from the environment
"""

from typing import Any

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    # corrstack's own loggers (the access line's among them) exist before this runs.
    "disable_existing_loggers": False,
    "formatters": {
        "json": {
            "()": "instrumentation.log_config.json_formatter",
            "service": "api",
            "environment": "production",
        },
    },
    "filters": {
        "correlation": {"()": "instrumentation.log_filters.CorrelationFilter"},
    },
    "handlers": {
        "corrstack": {
            "class": "instrumentation.log_config.CorrelatedHandler",
            "formatter": "json",
            "filters": ["correlation"],
            "stream": "ext://sys.stdout",
            "file": None,  # None: $LOG_FILE, if set
            "buffer_bytes": 8 * 1024 * 1024,  # per sink; 0 writes in the caller
            # The per-logger levels below, applied again to the servers' loggers when the app
            # starts (a server may set their levels after this config has run).
            "log_levels": {"httpx": "WARNING"},
        },
    },
    "loggers": {
        "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
        "uvicorn.error": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": False},
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": False},
        "httpx": {"level": "WARNING"},
    },
    "root": {"level": "INFO", "handlers": ["corrstack"]},
}
