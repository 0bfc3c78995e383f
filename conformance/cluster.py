"""A Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver and kube-controller-manager.

Everything listens on loopback, on ports chosen free at start. Certificates come from openssl: a
cluster CA, the API server's serving certificate (127.0.0.1 and localhost only), and one client
certificate per identity that talks to it, each with the name and group the real component
would have (so RBAC and the Node authorizer treat the stand-ins of conformance/kubelet.py exactly as
they treat a kubelet and a scheduler). A service-account signing key makes `kubectl create token`
and the Jobs' own tokens work.

The API server runs with its defaults (PodSecurity admission is on by default) plus
NodeRestriction, which EKS also enables, and `--allow-privileged` (EKS allows privileged pods; the
namespace's Pod Security level decides). What differs from EKS is listed in the README.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPSConnection
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 15
REQUEST_TIMEOUT_S = 30
KUBECTL_TIMEOUT_S = 120
SERVICE_CIDR = "10.96.0.0/16"  # ClusterIPs are data: nothing here routes to them
NODE_NAME = "conformance-node"


class ClusterError(Exception):
    """The control plane did not start or answer: one line (the log's last line, and where it is)."""


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent exits (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _openssl(*arguments: str, cwd: Path) -> None:
    try:
        result = subprocess.run(["openssl", *arguments], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ClusterError("conformance: `openssl` is not on PATH; it makes the cluster's certificates (apt-get install openssl)") from None
    if result.returncode != 0:
        raise ClusterError(f"conformance: openssl {arguments[0]} failed: {result.stderr.strip().splitlines()[-1:]}")


@dataclass(frozen=True)
class Identity:
    name: str  # certificate CN: the user
    groups: tuple[str, ...]  # certificate O: the groups


# Who talks to the API server here, named as the real components are.
ADMIN = Identity("conformance-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("system:kube-controller-manager", ())
SCHEDULER = Identity("system:kube-scheduler", ())
KUBELET = Identity(f"system:node:{NODE_NAME}", ("system:nodes",))


class Certificates:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        _openssl("genrsa", "-out", "ca.key", "2048", cwd=folder)
        _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=conformance-ca", "-days", "2", "-out", "ca.crt", cwd=folder)
        # The service-account signing key pair (RSA, as the API server's default issuer expects).
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)
        self._issue("apiserver", "/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1,DNS:localhost", "serverAuth")

    def _issue(self, name: str, subject: str, alt_names: str | None, usage: str) -> None:
        _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=self.folder)
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=self.folder)
        extensions = self.folder / f"{name}.ext"
        extensions.write_text(f"extendedKeyUsage={usage}\n" + (f"{alt_names}\n" if alt_names else ""))
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", extensions.name, "-out", f"{name}.crt", cwd=self.folder,
        )  # fmt: skip

    def client(self, identity: Identity) -> tuple[Path, Path]:
        name = identity.name.replace(":", "-")
        if not (self.folder / f"{name}.crt").is_file():
            subject = "".join(f"/O={group}" for group in identity.groups) + f"/CN={identity.name}"
            self._issue(name, subject, None, "clientAuth")
        return self.folder / f"{name}.crt", self.folder / f"{name}.key"

    def path(self, name: str) -> Path:
        return self.folder / name


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class Api:
    """A small JSON client of the API server for one identity (stdlib only: the stand-ins of the
    kubelet and the scheduler need a few verbs, not a client library)."""

    def __init__(self, port: int, ca: Path, certificate: Path, key: Path) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca))
        self.context.load_cert_chain(str(certificate), str(key))
        self._connection: HTTPSConnection | None = None
        # One connection, used by the stand-ins' threads in turn.
        self._lock = threading.Lock()

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        # A 429 with Retry-After (e.g. "storage is (re)initializing" while a CRD's storage is
        # rebuilt) is retried as client-go retries it: up to 10 times, waiting as told.
        for attempt in range(10):
            try:
                with self._lock:
                    return self._request(method, path, body, content_type)
            except ApiError as error:
                if error.status != 429 or attempt == 9:
                    raise
                time.sleep(min(float(json.loads(error.body).get("details", {}).get("retryAfterSeconds", 1)), 5.0))
        return None

    def _request(self, method: str, path: str, body: Any, content_type: str) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = content_type
        for attempt in range(2):  # a kept-alive connection the server closed is retried once
            if self._connection is None:
                self._connection = HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=REQUEST_TIMEOUT_S)
            try:
                self._connection.request(method, path, body=payload, headers=headers)
                response = self._connection.getresponse()
                data = response.read().decode()
            except (ConnectionError, OSError):
                self._connection.close()
                self._connection = None
                if attempt:
                    raise
                continue
            if response.status >= 400:
                raise ApiError(response.status, data)
            if response.getheader("Content-Type", "").startswith("application/json"):
                return json.loads(data)
            return data
        return None

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path + (f"?{urllib.parse.urlencode(query)}" if query else ""))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def kubeconfig(port: int, ca: Path, certificate: Path | None, key: Path | None, token: str | None = None) -> dict[str, Any]:
    user: dict[str, str] = {"token": token} if token else {"client-certificate": str(certificate), "client-key": str(key)}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "conformance", "cluster": {"server": f"https://127.0.0.1:{port}", "certificate-authority": str(ca)}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "conformance", "context": {"cluster": "conformance", "user": "user"}}],
        "current-context": "conformance",
    }


class ControlPlane:
    """Start with `start()`, stop with `stop()` (or use it as a context manager)."""

    def __init__(self, workdir: Path, binaries: Mapping[str, Path], *, extra_apiserver_flags: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.binaries = dict(binaries)
        self.extra_apiserver_flags = extra_apiserver_flags
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.port = 0
        self.certificates: Certificates | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _spawn(self, name: str, arguments: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        # Its own process group, so that stop() ends it and nothing else; and ended by the kernel
        # if this process dies without stopping it (a killed CI job leaves no API server behind).
        self.processes[name] = subprocess.Popen(
            [str(self.binaries[name]), *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def _log_tail(self, name: str) -> str:
        lines = (self.workdir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "(empty log)"

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise ClusterError(f"conformance: {name} exited ({process.returncode}): {self._log_tail(name)} ({self.workdir / name}.log)")

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        certificates = self.certificates = Certificates(self.workdir / "pki")
        etcd_client, etcd_peer, self.port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        self._spawn(
            "etcd",
            [
                "--name=conformance",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=conformance=http://127.0.0.1:{etcd_peer}",
                # A throw-away store: fsync would only slow a 2-core CI machine down.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        pki = certificates.path
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--tls-cert-file={pki('apiserver.crt')}",
                f"--tls-private-key-file={pki('apiserver.key')}",
                f"--client-ca-file={pki('ca.crt')}",
                f"--service-account-key-file={pki('sa.pub')}",
                f"--service-account-signing-key-file={pki('sa.key')}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                # The `kubernetes` Service's endpoint would be 127.0.0.1, which EndpointSlices refuse.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                *self.extra_apiserver_flags,
            ],
        )
        self._wait_ready()
        certificate, key = certificates.client(CONTROLLER_MANAGER)
        controller_config = self.workdir / "kube-controller-manager.kubeconfig"
        controller_config.write_text(json.dumps(kubeconfig(self.port, pki("ca.crt"), certificate, key)))
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={controller_config}",
                # It serves only health checks; off, so that it opens no port at all.
                "--secure-port=0",
                f"--service-account-private-key-file={pki('sa.key')}",
                f"--root-ca-file={pki('ca.crt')}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
            ],
        )
        self._wait_controllers()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        admin = self.api()
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                admin.request("GET", "/readyz")
                return
            except (ApiError, OSError) as error:
                last = str(error)
            time.sleep(0.5)
        raise ClusterError(f"conformance: kube-apiserver not ready after {START_TIMEOUT_S} s ({last[:200]}); see {self.workdir}")

    def _wait_controllers(self) -> None:
        """Ready once the service-account controller has made `default` in `default`."""
        deadline = time.monotonic() + START_TIMEOUT_S
        admin = self.api()
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                admin.get("/api/v1/namespaces/default/serviceaccounts/default")
                return
            except ApiError:
                time.sleep(0.5)
        raise ClusterError(
            f"conformance: kube-controller-manager made no service account in {START_TIMEOUT_S} s: "
            f"{self._log_tail('kube-controller-manager')}"
        )

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=STOP_TIMEOUT_S)
        self.processes.clear()

    # -- clients -------------------------------------------------------------------------------
    def api(self, identity: Identity = ADMIN) -> Api:
        assert self.certificates
        certificate, key = self.certificates.client(identity)
        return Api(self.port, self.certificates.path("ca.crt"), certificate, key)

    def kubeconfig_file(self, identity: Identity = ADMIN, *, token: str | None = None, name: str | None = None) -> Path:
        assert self.certificates
        path = self.workdir / f"{name or identity.name.replace(':', '-')}.kubeconfig"
        if token:
            path.write_text(json.dumps(kubeconfig(self.port, self.certificates.path("ca.crt"), None, None, token)))
        elif not path.is_file():
            certificate, key = self.certificates.client(identity)
            path.write_text(json.dumps(kubeconfig(self.port, self.certificates.path("ca.crt"), certificate, key)))
        return path

    def kubectl(
        self, *arguments: str, kubeconfig_path: Path | None = None, timeout: float = KUBECTL_TIMEOUT_S, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        config = kubeconfig_path or self.kubeconfig_file()
        command = [str(self.binaries["kubectl"]), f"--kubeconfig={config}", *arguments]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, input=stdin)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(command, 124, "", f"timed out after {timeout:.0f} s")
