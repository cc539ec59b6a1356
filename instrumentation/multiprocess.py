"""Several workers per service: prometheus_client's multiprocess mode, with corrstack's checks.

With `PROMETHEUS_MULTIPROC_DIR` set in the server's environment (before anything imports
prometheus_client), every worker of ``uvicorn --workers N`` or ``gunicorn -w N`` writes its
metrics to files of its own in that directory and `/metrics` serves their sum, exemplars
included (`instrumentation.shared_metrics`). This module checks the directory when a worker
starts, so a wrong one fails there with a message rather than later as a crash or a 500:

- not a directory, or not writable: `MultiprocessDirectoryError`;
- holding files that are not metrics (a foreign directory): the error names them;
- in use by another server that is still running: the error names it;
- left by an earlier run of the server (stale): its files are removed, in one warning line —
  an earlier run's counters would otherwise be added to this one's;
- too full to hold a worker's files: the error says so. Each worker's files are allocated when
  it starts (about 1.3 MiB), because a write into an mmap'd file on a full disk is a SIGBUS.

A run is told by the process group of its workers (the server's master and its workers share
one) and that group leader's start time, kept in ``corrstack.run``; ``corrstack.lock`` makes the
workers starting together check one after the other.

What a dead worker leaves: its counter and histogram files stay, since the sums over all workers
must not go down; its live-gauge files (`http_requests_in_progress`) and its exemplar file are
removed by `mark_process_dead(pid)` — gunicorn calls it through `child_exit` in
gunicorn.conf.py — or, under uvicorn, by the next worker that starts. A scrape never counts the
live gauges of a process that has exited.

>>> # gunicorn.conf.py
>>> from instrumentation.multiprocess import child_exit
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
from typing import Any

from prometheus_client import multiprocess as _client_multiprocess
from prometheus_client import values as _client_values

from instrumentation.exemplar_store import FILE_PATTERN, ExemplarFile, ExemplarFileError
from instrumentation.exemplar_store import exemplar_path as _exemplar_path
from instrumentation.settings import env

ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK_FILE = "corrstack.lock"
RUN_FILE = "corrstack.run"
# prometheus_client's files: `<type>_<pid>.db`, gauges `gauge_<mode>_<pid>.db`.
DB_PATTERN = re.compile(r"^(counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db$")
# Allocated for each worker when it starts (prometheus_client grows a file past this itself).
PREALLOCATED = {"counter": 256 << 10, "histogram": 512 << 10, "gauge_livesum": 64 << 10}

_log = logging.getLogger("corrstack.multiprocess")


class MultiprocessDirectoryError(RuntimeError):
    """PROMETHEUS_MULTIPROC_DIR cannot be used; the message says why and what to do."""


def multiprocess_directory() -> str | None:
    """The metrics directory when prometheus_client runs in multiprocess mode, else None.

    Raises MultiprocessDirectoryError when the variable is set but prometheus_client was
    imported before it was: its metrics would then be per process without a word.
    """
    # prometheus_client still honours the old lower-case spelling.
    path = env("PROMETHEUS_MULTIPROC_DIR") or env("prometheus_multiproc_dir")
    active = bool(getattr(_client_values.ValueClass, "_multiprocess", False))
    if active and not path:  # it turns the mode on when the variable merely exists
        raise MultiprocessDirectoryError(
            f"{ENV} is set but empty: prometheus_client would write its files into the working "
            "directory; name an empty directory of the server's own, or unset the variable"
        )
    if path and not active:
        raise MultiprocessDirectoryError(
            f"{ENV} is set but prometheus_client was imported before it was, so metrics are "
            "per process: set it in the server's environment, before Python starts"
        )
    return path if active else None


def prepare_directory(directory: str, service: str) -> ExemplarFile:
    """Check `directory` for this worker and allocate the worker's files (see the module);
    returns the worker's exemplar file, open."""
    if not os.path.isdir(directory):
        raise MultiprocessDirectoryError(
            f"{ENV}={directory!r} is not a directory: create an empty one for the server "
            "before it starts"
        )
    try:
        lock = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise MultiprocessDirectoryError(
            f"{ENV}={directory!r} cannot be written ({error.strerror}): the server's workers "
            "write their metrics there"
        ) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        names = os.listdir(directory)
        foreign = sorted(n for n in names if not _is_ours(n))
        if foreign:
            raise MultiprocessDirectoryError(
                f"{ENV}={directory!r} holds files that are not metrics files "
                f"({', '.join(map(repr, foreign[:5]))}): give the server an empty directory "
                "of its own"
            )
        _settle_run(directory, names, service)
        for pid in _pids(os.listdir(directory)):
            if pid != os.getpid() and not process_alive(pid):
                mark_process_dead(pid, directory)
        return allocate_worker_files(directory, os.getpid())
    finally:
        os.close(lock)  # and with it the lock


def allocate_worker_files(directory: str, pid: int) -> ExemplarFile:
    """Allocate the files of worker `pid` in full; its exemplar file is returned, open."""
    for prefix, size in PREALLOCATED.items():
        path = os.path.join(directory, f"{prefix}_{pid}.db")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError as error:
            raise MultiprocessDirectoryError(_space_message(directory, path, error)) from None
    try:
        return ExemplarFile.create(directory, pid)
    except ExemplarFileError as error:
        raise MultiprocessDirectoryError(
            _space_message(directory, _exemplar_path(directory, pid), error)
        ) from None


def mark_process_dead(pid: int, directory: str | None = None) -> None:
    """Remove what worker `pid` leaves that must not outlive it: its live gauges and exemplars.

    Its counters and histograms stay: the sums over every worker include the dead ones.
    """
    directory = directory or env("PROMETHEUS_MULTIPROC_DIR") or env("prometheus_multiproc_dir")
    if not directory:
        return
    _client_multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    with contextlib.suppress(FileNotFoundError):
        os.remove(_exemplar_path(directory, pid))


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn's `child_exit` hook: ``from instrumentation.multiprocess import child_exit``."""
    mark_process_dead(worker.pid)


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; one that exited and waits to be reaped (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return not os.path.exists("/proc/self")  # reaped meanwhile, unless there is no /proc
    except (OSError, IndexError):
        return True  # kill(0) is all there is


def worker_pids(names: list[str]) -> set[int]:
    """The pids that have metrics files among `names`."""
    return set(_pids(names))


def _pids(names: list[str]) -> list[int]:
    pids = []
    for name in names:
        match = DB_PATTERN.match(name) or FILE_PATTERN.match(name)
        if match:
            pids.append(int(match.group(match.lastindex or 1)))
    return pids


def _is_ours(name: str) -> bool:
    return bool(
        name in (LOCK_FILE, RUN_FILE)
        or name.startswith(RUN_FILE + ".")  # a marker being written
        or DB_PATTERN.match(name)
        or FILE_PATTERN.match(name)
    )


def _settle_run(directory: str, names: list[str], service: str) -> None:
    """Adopt the directory for this run, removing an earlier run's files (see the module)."""
    run = _run_identity()
    if run is None:  # no /proc: runs cannot be told apart
        return
    marker = _read_marker(directory)
    if marker.get("run") == run:
        return
    others_alive = any(process_alive(p) for p in _pids(names) if p != os.getpid())
    previous = str(marker.get("run", ""))
    if previous and _leader_running(previous):
        raise MultiprocessDirectoryError(
            f"{ENV}={directory!r} is in use by another running server (service "
            f"{marker.get('service', '?')!r}, process group {previous.split(':')[0]}): give "
            "each server a directory of its own"
        )
    if not others_alive:
        stale = sorted(_files_of_others(names, os.getpid()))
        for name in stale:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(directory, name))
        if stale:
            _log.warning(
                f"{ENV} held {len(stale)} files of an earlier run of the server: removed, so "
                "its counts are not added to this run's; start each run with an empty directory",
                extra={"directory": directory, "files_removed": len(stale)},
            )
    _write_marker(directory, {"run": run, "service": service})


def _files_of_others(names: list[str], own: int) -> set[str]:
    files = set()
    for name in names:
        match = DB_PATTERN.match(name) or FILE_PATTERN.match(name)
        if match and int(match.group(match.lastindex or 1)) != own:
            files.add(name)
    return files


def _run_identity() -> str | None:
    group = os.getpgid(0)
    started = _group_started(group)
    return None if started is None else f"{group}:{started}"


def _leader_running(run: str) -> bool:
    group, _, started = run.partition(":")
    return group.isdigit() and _group_started(int(group)) == started


def _group_started(group: int) -> str | None:
    """When process group `group` started: its leader's start time, or, once the leader has
    exited (a server started in the background by a shell that is gone), the oldest member's
    — the server's master. None without /proc."""
    leader = _stat_fields(group)
    if leader is not None and leader[2] == str(group):
        return leader[19]
    oldest: int | None = None
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        fields = _stat_fields(int(entry)) if entry.isdigit() else None
        if fields is not None and fields[2] == str(group):
            started = int(fields[19])
            oldest = started if oldest is None else min(oldest, started)
    return None if oldest is None else str(oldest)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return None


def _read_marker(directory: str) -> dict[str, Any]:
    try:
        with open(os.path.join(directory, RUN_FILE), encoding="utf-8") as file:
            marker = json.load(file)
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _write_marker(directory: str, marker: dict[str, str]) -> None:
    path = os.path.join(directory, RUN_FILE)
    temporary = f"{path}.{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(marker, file)
        os.replace(temporary, path)
    except OSError as error:
        raise MultiprocessDirectoryError(_space_message(directory, path, error)) from None


def _space_message(directory: str, path: str, error: OSError) -> str:
    return (
        f"{ENV}={directory!r}: cannot allocate {os.path.basename(path)} ({error.strerror}); "
        "each worker needs about 1.3 MiB there, allocated when it starts"
    )
