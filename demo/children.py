"""Child processes of `python -m demo`: each in its own session, stopped by PID.

Own sessions keep a terminal's Ctrl-C away from the children: only the supervisor gets it, and
it stops them in reverse start order, so the load stops before the services it talks to.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT_S = 10.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    output: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        """The exit code once the child has ended, else None."""
        return self.process.poll()


def start_child(
    name: str,
    cmd: Sequence[str],
    *,
    output: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start `cmd` with stdin from /dev/null and stdout/stderr appended to `output`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "ab") as sink:
        process = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return Child(name, process, output)


def stop_child(child: Child, timeout: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM by PID, SIGKILL after `timeout`; returns the exit code (reaped, no zombie).

    The SIGKILL goes to the child's process group (its own session's, whose id is its PID), so
    the workers of a `uvicorn --workers N` that did not stop in time go with their master.
    """
    if child.exited() is None:
        try:
            os.kill(child.pid, signal.SIGTERM)
            return child.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Not reaped yet, so the PID, and with it the group id, is still the child's.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return child.process.wait()


class Children:
    """The running children, stopped last-started first."""

    def __init__(self) -> None:
        self.running: list[Child] = []

    def start(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        output: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        child = start_child(name, cmd, output=output, env=env, cwd=cwd)
        self.running.append(child)
        return child

    def stop(self, child: Child) -> int:
        self.running.remove(child)
        return stop_child(child)

    def first_exited(self) -> Child | None:
        return next((c for c in self.running if c.exited() is not None), None)

    def stop_all(self) -> dict[str, int]:
        """Stop every child; {name: exit code}."""
        codes: dict[str, int] = {}
        while self.running:
            child = self.running[-1]
            codes[child.name] = self.stop(child)
        return codes
