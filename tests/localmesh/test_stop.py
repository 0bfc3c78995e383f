"""Stopping a child: SIGTERM, the grace, SIGKILL; and never an exception, so one child that is slow
to go cannot cut short the stopping of the others (CI once saw a SIGKILLed frontend take over 5 s to
be reaped, and the traceback that followed left the rest running)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from localmesh import processes
from localmesh.processes import terminate


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "up\n"
    assert terminate(child, [], grace=0.5) == -signal.SIGKILL


class _Unreaped:
    """A child the kernel has not reaped: every wait runs out."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.args = ["stuck"]

    def poll(self) -> None:
        return None

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        raise subprocess.TimeoutExpired(self.args, timeout)


def test_a_child_not_reaped_after_its_sigkill_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "KILL_WAIT_S", 0.01, raising=False)
    child = _Unreaped()
    assert terminate(child, [], grace=0.01) is None  # type: ignore[arg-type]
    assert child.signals == [signal.SIGTERM, signal.SIGKILL]
