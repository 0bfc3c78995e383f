"""Layer 8 for Istio: the real istiod against the local API server, and a real Envoy for each proxy
of the mesh (README, Conformance: "Istio: real istiod and Envoy").

    layer = IstioLayer(workdir, programs)
    with session(workdir, programs, webhooks=layer.webhooks, after_step=layer.after_step,
                 after_delete=layer.after_delete) as running, layer.running(running):
        report = running.harness.deploy(layer.steps(steps))   # istiod starts once its release is in
        proxies = layer.start_proxies(running, "lab-appmesh")  # one Envoy per workload and gateway
        ...
        running.harness.destroy()                              # istiod stops with its release

What runs, and what is test-only (each said in the README with its reason):
- istiod (pilot-discovery) is a process with the identity of one of its Deployment's pods: that
  pod's environment as the kubelet resolves it, and a token of its service account, bound to it.
  Every port on 127.0.0.1 (ports chosen free, so that runs side by side do not collide). It runs
  from an empty folder, so that it reads the mesh config and the injection template from the
  chart's ConfigMaps (its file paths are relative and absent), as a pod reads them from the same
  ConfigMaps mounted. Test-only: `ISTIOD_CUSTOM_HOST=127.0.0.1`, so that its serving certificate
  names the address the API server and the proxies reach it at.
- Istio's webhook configurations are kept, with each webhook's `service` replaced by the URL of
  the local istiod (the API server cannot reach a Service's ClusterIP here). istiod fills their
  CA bundle and turns validation fail-closed, as in a cluster.
- The istiod release's values get TEST_ONLY_VALUES: the Istio-only Envoy extensions, which the
  upstream Envoy the proxies run does not have, are turned off.
- The CloudWatch agent's Service, which the EKS add-on makes outside any manifest: istiod builds a
  tracer only for a provider whose host is a known service (COLLECTOR_STAND_IN).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from charts.istio import COLLECTOR_HOST
from components.istio import NAMESPACE as ISTIO_NAMESPACE

from . import binaries as toolchain
from . import charts
from .cloudformation import HelmRelease, Step
from .cluster import ApiError, die_with_parent, free_port
from .harness import Harness, leave_out_webhooks
from .kubelet import wait_for
from .proxies import Proxy, ProxyError, start_proxy
from .session import Session

ISTIOD_CHART = "istiod"
START_TIMEOUT_S = 90
WEBHOOKS_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15
HTTP_TIMEOUT_S = 10
# What upstream Envoy cannot load, turned off in istiod for this layer only (README lists what
# each leaves untested). Each was found by turning it back on alone: Envoy 1.40 refuses the
# listener or cluster with "Didn't find a registered implementation for ..." and the type URL.
TEST_ONLY_VALUES: dict[str, Any] = {
    "env": {
        # istio.metadata_exchange: the TCP filter on every outbound cluster and inbound TCP chain
        # (envoy.tcp.metadataexchange.config.MetadataExchange) and the HTTP peer-metadata filter
        # in every HTTP connection manager (io.istio.http.peer_metadata.Config).
        "PILOT_ENABLE_METADATA_EXCHANGE": "false",
        # istio.alpn (istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig), outbound and on
        # the gateway.
        "PILOT_ENABLE_ALPN_FILTER": "false",
    },
    # istio.stats (stats.PluginConfig): the standard metrics (istio_requests_total and the rest)
    # in every HTTP connection manager and TCP chain; off drops `prometheus` from the mesh's
    # default metrics providers.
    "telemetry": {"v2": {"prometheus": {"enabled": False}}},
}
# The Service of the amazon-cloudwatch-observability add-on's agent, with the ports its operator
# gives it (aws/amazon-cloudwatch-agent-operator, pkg/collector/common.go: otlp-grpc 4317,
# otlp-http 4318). The add-on is an EKS add-on (CloudFormation, not a manifest): nothing else in
# the cdk.out makes it.
COLLECTOR_NAMESPACE = COLLECTOR_HOST.split(".")[1]
COLLECTOR_STAND_IN = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": COLLECTOR_NAMESPACE}},
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": COLLECTOR_HOST.split(".")[0], "namespace": COLLECTOR_NAMESPACE},
        "spec": {
            "selector": {"app.kubernetes.io/name": "cloudwatch-agent"},
            "ports": [
                {"name": "otlp-grpc", "port": 4317, "protocol": "TCP"},
                {"name": "otlp-http", "port": 4318, "protocol": "TCP"},
            ],
        },
    },
]
_WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
# The xDS types every proxy gets (istiod's /debug/syncz keys its per-type state by type URL).
CLUSTERS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENERS = "type.googleapis.com/envoy.config.listener.v3.Listener"


class IstioError(Exception):
    """istiod or a proxy did not start or answer: one line, and where its log is."""


def merged(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(base))
    for key, value in patch.items():
        result[key] = merged(result[key], value) if isinstance(value, Mapping) and isinstance(result.get(key), Mapping) else value
    return result


def is_istiod(step: Step) -> bool:
    return isinstance(step.action, HelmRelease) and step.action.chart == ISTIOD_CHART


@dataclass(frozen=True)
class Ports:
    http: int  # /ready, /debug/*
    grpc: int  # plain-text xDS (the chart's 15010)
    secure_grpc: int  # xDS and the CA over TLS (15012), what the proxies use
    webhooks: int  # injection and validation (15017)
    monitoring: int  # metrics (15014)
    ctrlz: int  # introspection (9876)

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(6)))


class Istiod:
    """pilot-discovery as one of its Deployment's pods would run it (see the module docstring)."""

    def __init__(self, binary: Path, workdir: Path, ports: Ports) -> None:
        self.binary = binary
        self.workdir = workdir
        self.ports = ports
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "istiod.log"

    def start(self, session: Session, deployment: dict[str, Any]) -> None:
        pod = self._pod(session, deployment)
        (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "discovery"]
        environment = session.node.environment(pod, container)
        # Its service account's token, bound to the pod, as the kubelet would mount it; the API
        # server it reaches at 127.0.0.1 (in a pod: the in-cluster config).
        kubeconfig = session.plane.kubeconfig_file(token=session.node.token(pod), name="istiod")
        environment.update(
            {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self.workdir),
                "KUBECONFIG": str(kubeconfig),
                # Test-only: 127.0.0.1 in istiod's serving certificate, where the API server (its
                # webhooks) and the proxies (xDS, the CA) reach it.
                "ISTIOD_CUSTOM_HOST": "127.0.0.1",
            }
        )
        ours = {
            "--httpAddr": f"127.0.0.1:{self.ports.http}",
            "--grpcAddr": f"127.0.0.1:{self.ports.grpc}",
            "--secureGRPCAddr": f"127.0.0.1:{self.ports.secure_grpc}",
            "--httpsAddr": f"127.0.0.1:{self.ports.webhooks}",
            "--monitoringAddr": f"127.0.0.1:{self.ports.monitoring}",
            "--ctrlz_address": "127.0.0.1",
            "--ctrlz_port": str(self.ports.ctrlz),
            "--kubeconfig": str(kubeconfig),
        }
        arguments = [argument for argument in container.get("args", []) if argument.split("=")[0] not in ours]
        arguments += [f"{flag}={value}" for flag, value in ours.items()]
        # An empty working directory: the mesh config, injection template and CA files istiod
        # looks for at relative paths are absent, so it reads the chart's ConfigMaps instead.
        cwd = self.workdir / "istiod"
        cwd.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary), *arguments],
                cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=die_with_parent,
            )  # fmt: skip
        (self.workdir / "istiod.command.json").write_text(json.dumps({"arguments": arguments, "environment": environment}, indent=1))

    @staticmethod
    def _pod(session: Session, deployment: dict[str, Any]) -> dict[str, Any]:
        metadata = deployment["metadata"]
        selector = ",".join(f"{key}={value}" for key, value in deployment["spec"]["selector"]["matchLabels"].items())
        pods = session.plane.api().get(f"/api/v1/namespaces/{metadata['namespace']}/pods", labelSelector=selector)["items"]
        running = sorted((p for p in pods if p.get("status", {}).get("phase") == "Running"), key=lambda p: p["metadata"]["name"])
        if not running:
            raise IstioError(f"conformance: no Running pod of Deployment {metadata['name']} to run istiod as")
        return running[0]  # type: ignore[no-any-return]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _log_tail(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()] if self.log.is_file() else []
        return lines[-1][:300] if lines else "(empty log)"

    def get(self, path: str) -> Any:
        """An answer of istiod's HTTP port (/ready, /debug/...), JSON when it is JSON."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports.http}{path}", timeout=HTTP_TIMEOUT_S) as answer:
            body = answer.read().decode()
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            return body

    def wait_ready(self) -> None:
        def ready() -> bool:
            if not self.alive():
                raise IstioError(
                    f"conformance: istiod exited ({self.process and self.process.returncode}): {self._log_tail()} ({self.log})"
                )
            try:
                self.get("/ready")
                return True
            except (urllib.error.URLError, OSError):
                return False

        if not wait_for(ready, START_TIMEOUT_S):
            raise IstioError(f"conformance: istiod not ready after {START_TIMEOUT_S} s: {self._log_tail()} ({self.log})")

    def syncz(self) -> list[dict[str, Any]]:
        """Each connected proxy: what istiod sent and what the proxy acknowledged, per type."""
        found = self.get("/debug/syncz")
        return found if isinstance(found, list) else []

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self.process = None


class IstioLayer:
    """See the module docstring."""

    def __init__(self, workdir: Path, programs: Mapping[str, Path]) -> None:
        self.workdir = workdir
        self.programs = dict(programs)
        self.ports = Ports.free()
        self.istiod = Istiod(self.programs["pilot-discovery"], workdir, self.ports)
        self.proxies: dict[str, Proxy] = {}
        self.kept_webhooks: list[str] = []  # "<Kind>/<name>", rewritten to the local istiod
        self._sockets = Path(tempfile.gettempdir())  # a folder of its own while running (Unix socket paths must be short)
        self._bridge: subprocess.Popen[bytes] | None = None
        self.session: Session | None = None

    # -- what the layer changes in the deploy ----------------------------------------------------
    def steps(self, steps: list[Step]) -> list[Step]:
        """The steps with TEST_ONLY_VALUES merged into the istiod release's values."""
        return [
            replace(step, action=replace(step.action, values=merged(step.action.values, TEST_ONLY_VALUES)))
            if is_istiod(step) and isinstance(step.action, HelmRelease)
            else step
            for step in steps
        ]

    def webhooks(self, step: Step, obj: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """istiod's webhook configurations, kept and pointed at the local istiod; every other
        webhook as the API-server layer treats it (left out)."""
        if obj.get("kind") not in _WEBHOOK_KINDS:
            return leave_out_webhooks(step, obj)
        services = [webhook.get("clientConfig", {}).get("service") for webhook in obj.get("webhooks", [])]
        if not services or not all(s and s["namespace"] == ISTIO_NAMESPACE and s["name"].startswith("istiod") for s in services):
            return leave_out_webhooks(step, obj)
        kept = copy.deepcopy(obj)
        for webhook in kept["webhooks"]:
            service = webhook["clientConfig"].pop("service")
            webhook["clientConfig"]["url"] = f"https://127.0.0.1:{self.ports.webhooks}{service.get('path', '/')}"
        self.kept_webhooks.append(f"{obj['kind']}/{obj['metadata']['name']}")
        return kept, ""

    @contextmanager
    def running(self, session: Session) -> Iterator[IstioLayer]:
        """While the session runs: the collector's stand-in first; istiod and the proxies stopped
        on the way out, whatever happened."""
        self.session = session
        self._sockets = Path(tempfile.mkdtemp(prefix="conformance-istio-"))
        try:
            path = self.workdir / "collector-stand-in.json"
            path.write_text("".join(json.dumps(obj) for obj in COLLECTOR_STAND_IN))
            result = session.plane.kubectl("create", "-f", str(path))
            if result.returncode:
                raise IstioError(f"conformance: the CloudWatch agent's stand-in Service was refused: {result.stderr.strip()[:300]}")
            yield self
        finally:
            self.stop()

    def after_step(self, step: Step, harness: Harness) -> None:
        if not is_istiod(step) or self.session is None or harness.report.refusals:
            return
        (deployment,) = [
            obj
            for applied in harness.report.applied
            if applied.step.key == step.key
            for obj in applied.objects
            if obj["kind"] == "Deployment"
        ]
        self.istiod.start(self.session, deployment)
        self.istiod.wait_ready()
        self._wait_webhooks(harness)
        self._bridge = self._start_bridge()

    def after_delete(self, step: Step, harness: Harness) -> None:
        """istiod's pods go with its release; so does the process standing in for them."""
        if is_istiod(step):
            self.stop()

    def _wait_webhooks(self, harness: Harness) -> None:
        """Until istiod has given every kept webhook its CA bundle, and validation fails closed
        (istiod turns it from Ignore to Fail once it has checked that it answers)."""
        pending: list[str] = []

        def patched() -> bool:
            pending.clear()
            for kind in _WEBHOOK_KINDS:
                collection = "mutatingwebhookconfigurations" if kind.startswith("Mutating") else "validatingwebhookconfigurations"
                for name in (kept.split("/", 1)[1] for kept in self.kept_webhooks if kept.startswith(kind)):
                    try:
                        live = harness.api.get(f"/apis/admissionregistration.k8s.io/v1/{collection}/{name}")
                    except ApiError:
                        pending.append(f"{kind}/{name}: not found")
                        continue
                    for webhook in live.get("webhooks", []):
                        if not webhook["clientConfig"].get("caBundle"):
                            pending.append(f"{kind}/{name} {webhook['name']}: no CA bundle")
                        elif kind.startswith("Validating") and webhook.get("failurePolicy") != "Fail":
                            pending.append(f"{kind}/{name} {webhook['name']}: failurePolicy {webhook.get('failurePolicy')}")
            return not pending

        if not wait_for(patched, WEBHOOKS_TIMEOUT_S, interval_s=1.0):
            raise IstioError(f"conformance: istiod has not taken its webhooks in {WEBHOOKS_TIMEOUT_S} s: {'; '.join(pending)[:400]}")

    def _start_bridge(self) -> subprocess.Popen[bytes]:
        """istiod's xDS and CA port as a Unix socket, which each proxy's namespace reaches."""
        socket = self._sockets / "istiod.sock"
        log = (self.workdir / "istiod-bridge.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("pod_network.py")),
             "--forward", f"unix:{socket}=tcp:127.0.0.1:{self.ports.secure_grpc}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
        if not wait_for(socket.exists, 10):
            raise IstioError(f"conformance: the bridge to istiod did not start ({self.workdir / 'istiod-bridge.log'})")
        return process

    # -- the proxies -------------------------------------------------------------------------
    def start_proxies(self, session: Session, namespace: str) -> dict[str, Proxy]:
        """One Envoy per workload of `namespace` whose pods have an `istio-proxy` container (each
        service's sidecar and the gateway), run by pilot-agent as that pod (README)."""
        if not self.istiod.alive():
            raise IstioError("conformance: istiod is not running; the proxies have no control plane")
        pods = session.plane.api().get(f"/api/v1/namespaces/{namespace}/pods")["items"]
        chosen: dict[str, dict[str, Any]] = {}
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            owner = next((ref["name"] for ref in pod["metadata"].get("ownerReferences", [])), pod["metadata"]["name"])
            containers = [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
            if pod.get("status", {}).get("phase") == "Running" and any(c["name"] == "istio-proxy" for c in containers):
                chosen.setdefault(owner, pod)
        module = toolchain.module_directory(toolchain.TOOLCHAIN / "istio", "istio.io/istio", toolchain.programs()["pilot-agent"].version)
        for pod in chosen.values():
            name = pod["metadata"]["name"]
            try:
                self.proxies[name] = start_proxy(
                    session.node,
                    pod,
                    agent=self.programs["pilot-agent"],
                    bootstrap_template=module / "tools" / "packaging" / "common" / "envoy_bootstrap.json",
                    istiod_socket=self._sockets / "istiod.sock",
                    sockets=self._sockets,
                    workdir=self.workdir / "proxies" / name,
                )
            except ProxyError as error:
                raise IstioError(str(error)) from None
        return self.proxies

    def wait_proxies_synced(self, timeout_s: float = 90) -> list[str]:
        """Until istiod has sent every proxy its config and each has answered the last push of
        every type (acknowledged it, or refused it: then istiod records the error); returns what
        is still pending when time is up."""
        pending: list[str] = []

        def synced() -> bool:
            pending.clear()
            status = {entry.get("proxy", "").split(".")[0]: entry for entry in self.istiod.syncz()}
            for name, proxy in self.proxies.items():
                if not proxy.alive():
                    raise IstioError(f"conformance: the proxy of {name} exited: {proxy.log_tail()} ({proxy.log})")
                resources = status.get(name, {}).get("resources", {})
                missing = [kind for kind in (CLUSTERS, LISTENERS) if kind not in resources]
                if missing:
                    pending.append(f"{name}: nothing of {', '.join(kind.rsplit('.', 1)[-1] for kind in missing)} sent yet")
                for kind, state in resources.items():
                    if state.get("acked") != state.get("sent") and not state.get("lastError"):
                        pending.append(f"{name}: {kind.rsplit('.', 1)[-1]} sent, not answered")
            return not pending

        wait_for(synced, timeout_s, interval_s=1.0)
        return pending

    def rejections(self) -> list[str]:
        """What istiod heard refused (its last error per proxy and type) and what each Envoy
        counts as rejected (every `*.update_rejected` stat that is not 0): one line each."""
        found = [
            f"{entry['proxy']} {kind.rsplit('.', 1)[-1]}: {state['lastError'][:300]}"
            for entry in self.istiod.syncz()
            for kind, state in entry.get("resources", {}).items()
            if state.get("lastError")
        ]
        for name, proxy in self.proxies.items():
            found += [f"{name}: {stat} = {value}" for stat, value in proxy.stats().items() if stat.endswith("update_rejected") and value]
        return found

    # -- re-rendering istiod for a probe -------------------------------------------------------
    def render_istiod(self, harness: Harness, change: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
        """The istiod release's objects, rendered again from its values (test-only values
        included) after `change` has edited a copy of them."""
        (step,) = [applied.step for applied in harness.report.applied if is_istiod(applied.step)]
        assert isinstance(step.action, HelmRelease)
        values = copy.deepcopy(step.action.values)
        change(values)
        source = charts.source_for(step.action.repository, step.action.chart, step.action.version)
        assert isinstance(source, charts.ChartSource)
        rendered = harness.render(source, replace(step.action, values=values))
        return harness._in_namespace([document.obj for document in rendered], step.action.namespace)

    @contextmanager
    def istiod_changed(self, harness: Harness, change: Callable[[dict[str, Any]], None]) -> Iterator[list[str]]:
        """istiod's ConfigMaps (mesh config, injector) as the chart renders them after `change`
        has edited its values, applied as `helm upgrade` would; the ones deployed are applied
        again on the way out. istiod watches both and takes a change within seconds (the caller
        waits for its effect). Yields the names of the ConfigMaps that changed."""
        (applied,) = [item for item in harness.report.applied if is_istiod(item.step)]
        deployed = {obj["metadata"]["name"]: obj for obj in applied.objects if obj["kind"] == "ConfigMap"}
        changed = [
            obj
            for obj in self.render_istiod(harness, change)
            if obj["kind"] == "ConfigMap"
            and obj["metadata"]["name"] in deployed
            and obj.get("data") != deployed[obj["metadata"]["name"]].get("data")
        ]
        names = [obj["metadata"]["name"] for obj in changed]
        try:
            self._apply(harness, changed, "changed")
            yield names
        finally:
            self._apply(harness, [deployed[name] for name in names], "restored")

    def _apply(self, harness: Harness, objects: list[dict[str, Any]], label: str) -> None:
        if not objects:
            return
        path = self.workdir / f"istiod-configmaps-{label}.json"
        path.write_text("".join(json.dumps(obj) for obj in objects))
        result = harness.plane.kubectl("apply", "--server-side", "--field-manager=helm", "--force-conflicts", "-f", str(path))
        if result.returncode:
            raise IstioError(f"conformance: istiod's ConfigMaps ({label}) were refused: {result.stderr.strip()[:300]}")

    # -- the end -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Proxies first (they would only retry istiod), then istiod and its bridge."""
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()
        self.istiod.stop()
        if self._bridge is not None and self._bridge.poll() is None:
            os.killpg(self._bridge.pid, signal.SIGTERM)
            self._bridge.wait(timeout=STOP_TIMEOUT_S)
        self._bridge = None
        if self._sockets.name.startswith("conformance-istio-"):
            shutil.rmtree(self._sockets, ignore_errors=True)
