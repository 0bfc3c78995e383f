"""Ctrl-C on `make local` (python -m localmesh): one line, no traceback, nothing left running.

Ctrl-C reaches the whole foreground process group: the services, the Envoys and the jsii kernel
get it as well as the local mesh itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.localmesh.conftest import MISSING_RUNTIMES, REPO_ROOT

pytestmark = pytest.mark.integration


def _run_and_interrupt(ready_line: str | None, delay: float = 0.0) -> tuple[subprocess.CompletedProcess[str], int]:
    """Start the local mesh as a terminal's foreground job; Ctrl-C once `ready_line` has been
    printed (or after `delay` seconds). Returns the result and the process group."""
    if MISSING_RUNTIMES:
        pytest.skip(f"{', '.join(MISSING_RUNTIMES)} not installed: run scripts/install-runtimes.sh")
    # As from a shell: jsii finds Node by itself (the tests' own JSII_NODE is not inherited).
    env = {k: v for k, v in os.environ.items() if k != "JSII_NODE"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    def as_a_terminal_job() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setpgid(0, 0)

    process = subprocess.Popen(
        [sys.executable, "-m", "localmesh", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        preexec_fn=as_a_terminal_job,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            stdout.append(line)
            if ready_line and line.startswith(ready_line):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if ready_line:
        assert ready.wait(timeout=180), "".join(stdout)
    else:
        time.sleep(delay)
    os.killpg(process.pid, signal.SIGINT)
    assert process.stderr is not None
    stderr = process.stderr.read()
    process.wait(timeout=60)
    reader.join(timeout=10)
    return subprocess.CompletedProcess(process.args, process.returncode, "".join(stdout), stderr), process.pid


def _group_is_gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


def test_ctrl_c_on_a_running_local_mesh_stops_it_in_one_line() -> None:
    result, group = _run_and_interrupt("local mesh ready")
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.stdout.rstrip().endswith("stopping...")
    assert result.stderr == ""
    assert result.returncode == 0
    deadline = time.monotonic() + 15
    while not _group_is_gone(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_is_gone(group), "a process the local mesh started is still running"


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_ctrl_c_while_the_local_mesh_starts_is_one_line(delay: float) -> None:
    """Early, it stops before the mesh started (one line, exit 130); later, while the processes
    start, it stops them (one line, exit 0). Where the Ctrl-C lands depends on the machine's speed:
    either way, one line, no traceback, nothing left running."""
    result, group = _run_and_interrupt(None, delay=delay)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    if result.returncode == 130:
        assert result.stderr.strip().splitlines() == ["stopped before the local mesh started"]
    else:
        assert (result.returncode, result.stderr, result.stdout.rstrip().rsplit("\n", 1)[-1]) == (0, "", "stopping...")
    deadline = time.monotonic() + 15
    while not _group_is_gone(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_is_gone(group), "a process the local mesh started is still running"
