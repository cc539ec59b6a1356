"""gunicorn with uvicorn workers, logging corrstack's JSON lines (docs/logging-config.md).

    gunicorn -c docs/examples/gunicorn.conf.py app:app

SERVICE_NAME, ENVIRONMENT, LOG_LEVEL, LOG_LEVELS, LOG_FILE and LOG_BUFFER_BYTES are read here,
in the master, and a bad value stops gunicorn before it forks a worker.

Several workers (`-w N` or WEB_CONCURRENCY) need PROMETHEUS_MULTIPROC_DIR in gunicorn's
environment, an empty directory of the server's own (docs/stack.md, "Several workers per
service").
"""

from typing import Any

from instrumentation.log_config import logging_config
from instrumentation.logging_setup import reclaim_server_loggers
from instrumentation.multiprocess import child_exit

__all__ = ["child_exit", "logconfig_dict", "post_fork", "worker_class"]

worker_class = "uvicorn_worker.UvicornWorker"
logconfig_dict = logging_config()


def post_fork(server: Any, worker: Any) -> None:
    # UvicornWorker, when gunicorn creates it, hands uvicorn's loggers gunicorn's handlers
    # and stops them propagating: give them back to corrstack's handler before the worker
    # logs "Started server process".
    reclaim_server_loggers()


# `child_exit`, imported above, is gunicorn's hook for a worker that exited: with
# PROMETHEUS_MULTIPROC_DIR set it removes that worker's live gauges and exemplars (its counts
# stay in the sums); without it, it does nothing.
