"""Stand-ins for the scheduler and the kubelet of one Node, so that the pods the controller manager
creates get a node, a Running phase and an address (and EndpointSlices fill), and so that the
app's one-shot Jobs actually run.

They talk to the API server as the real components do: the scheduler stand-in binds pods as
`system:kube-scheduler`; the kubelet stand-in registers its Node, renews its Lease, reports pod
status, asks for service-account tokens and reads ConfigMaps as `system:node:<name>`, so the Node
authorizer and NodeRestriction judge it.

Pod addresses are data: 10.244.0.0/16, never routed, never connected to. Nothing here starts a
container. A Job's containers run only when their image is one whose program exists here
(RUNNABLE below): the official kubectl image (our kubectl, with the pod's own service-account
token) and the official Python image (this Python, with the pod's emptyDir and ConfigMap volumes as
folders, and URLs of the pinned upstream files answered from the verified copies: there is no
network). Any other pod is reported Running and Ready and never finishes.
"""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import pins
from .cluster import KUBELET, NODE_NAME, SCHEDULER, ApiError, ControlPlane

HEARTBEAT_S = 10
POLL_S = 0.3
CONTAINER_TIMEOUT_S = 300
NODE_ADDRESS = "10.0.0.10"  # data only
ZONE = "us-west-1a"
NODE_ALLOCATABLE = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "500Gi"}
_QUANTITY_SUFFIXES = {
    "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRun:
    pod: str  # namespace/name
    container: str
    argv: list[str]
    exit_code: int
    output: str


@dataclass
class JobRecord:
    """What one pod of a Job did: each container run, and the objects its kubectl reported."""

    runs: list[ContainerRun] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)  # "<resource>.<group>/<name>" as kubectl prints them


# image pattern -> how to run it; see the module docstring.
RUNNABLE = {
    "kubectl": re.compile(r"^registry\.k8s\.io/kubectl:v1\.\d+\.\d+$"),
    "python": re.compile(r"^public\.ecr\.aws/docker/library/python:3\.11(\.\d+)?(-[a-z-]+)?$"),
}

# Replaces urllib.request.urlopen in a Python container: pinned upstream URLs are answered from
# the verified copies written beside it, any other URL fails as it would without a route.
_SITECUSTOMIZE = """
import io, json, os, urllib.error, urllib.request
_FILES = json.loads(os.environ["CONFORMANCE_URL_FILES"])
def _urlopen(url, *args, **kwargs):
    url = getattr(url, "full_url", url)
    if url not in _FILES:
        raise urllib.error.URLError(f"no network in the conformance layer ({url})")
    with open(_FILES[url], "rb") as pinned:
        return io.BytesIO(pinned.read())
urllib.request.urlopen = _urlopen
"""


class Node(threading.Thread):
    """The scheduler and kubelet stand-ins, polling the API server until `stop()`."""

    def __init__(self, plane: ControlPlane, workdir: Path) -> None:
        super().__init__(name="conformance-node", daemon=True)
        self.plane = plane
        self.workdir = workdir
        self.kubelet = plane.api(KUBELET)
        self.scheduler = plane.api(SCHEDULER)
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.jobs: dict[str, JobRecord] = {}  # pod uid -> record
        self.job_pods: dict[str, str] = {}  # pod uid -> owning Job's namespace/name
        self._begun: set[str] = set()
        self._next_address = 2
        self._last_heartbeat = 0.0
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.url_files = self._pinned_files()
        self.version = str(self.kubelet.get("/version")["gitVersion"])  # a kubelet of the control plane's release

    # -- the Node ------------------------------------------------------------------------------
    def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/region": "us-west-1",
            "topology.kubernetes.io/zone": ZONE,
            "node.kubernetes.io/instance-type": "m5.large",
        }
        self.kubelet.request(
            "POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE_NAME, "labels": labels}}
        )
        self.heartbeat(force=True)

    def heartbeat(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_heartbeat < HEARTBEAT_S:
            return
        self._last_heartbeat = time.monotonic()
        stamp = now()
        status = {
            "capacity": NODE_ALLOCATABLE,
            "allocatable": NODE_ALLOCATABLE,
            "addresses": [{"type": "InternalIP", "address": NODE_ADDRESS}, {"type": "Hostname", "address": NODE_NAME}],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "conformance stand-in",
                 "lastHeartbeatTime": stamp, "lastTransitionTime": stamp},
                *({"type": kind, "status": "False", "reason": "KubeletHasSufficient",
                   "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
                  for kind in ("MemoryPressure", "DiskPressure", "PIDPressure")),
            ],
            "nodeInfo": {
                "kubeletVersion": self.version, "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                "containerRuntimeVersion": "conformance://0", "kernelVersion": "", "osImage": "conformance stand-in",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        }  # fmt: skip
        self.kubelet.request("PATCH", f"/api/v1/nodes/{NODE_NAME}/status", {"status": status}, "application/merge-patch+json")
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE_NAME}"
        micro = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease = {"holderIdentity": NODE_NAME, "leaseDurationSeconds": 40, "renewTime": micro}
        try:
            self.kubelet.request("PATCH", lease_path, {"spec": lease}, "application/merge-patch+json")
        except ApiError as error:
            if error.status != 404:
                raise
            self.kubelet.request(
                "POST",
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": NODE_NAME}, "spec": lease},
            )

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.heartbeat()
                self._schedule()
                self._sync()
            except (ApiError, OSError) as error:
                with self._lock:
                    self.errors.append(f"{type(error).__name__}: {error}")
            self.stopping.wait(POLL_S)

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=30)
        for worker in self._workers:
            worker.join(timeout=CONTAINER_TIMEOUT_S)

    def _schedule(self) -> None:
        unbound = self.scheduler.get("/api/v1/pods", fieldSelector="spec.nodeName=,status.phase=Pending")
        for pod in unbound["items"]:
            metadata = pod["metadata"]
            if metadata.get("deletionTimestamp") or pod["spec"].get("schedulingGates"):
                continue
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": metadata["name"]},
                "target": {"kind": "Node", "name": NODE_NAME},
            }
            try:
                self.scheduler.request("POST", f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}/binding", binding)
            except ApiError as error:
                if error.status not in (404, 409):  # gone, or bound meanwhile
                    raise

    def _sync(self) -> None:
        pods = self.kubelet.get("/api/v1/pods", fieldSelector=f"spec.nodeName={NODE_NAME}")["items"]
        for pod in pods:
            metadata = pod["metadata"]
            if metadata.get("deletionTimestamp"):
                self._finish_deletion(pod)
            elif metadata["uid"] not in self._begun and pod.get("status", {}).get("phase", "Pending") == "Pending":
                self._start(pod)

    def _finish_deletion(self, pod: dict[str, Any]) -> None:
        """What the kubelet does once a pod's containers have stopped: delete it for good."""
        metadata = pod["metadata"]
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": metadata["uid"]}}
        try:
            self.kubelet.request("DELETE", f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}", body)
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    def _address(self) -> str:
        with self._lock:
            number = self._next_address
            self._next_address += 1
        return f"10.244.{number // 250}.{number % 250 + 2}"

    def _start(self, pod: dict[str, Any]) -> None:
        self._begun.add(pod["metadata"]["uid"])
        owner = next((ref for ref in pod["metadata"].get("ownerReferences", []) if ref.get("kind") == "Job"), None)
        address = self._address()
        images = [c["image"] for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]]
        if owner and all(any(pattern.match(image) for pattern in RUNNABLE.values()) for image in images):
            self.job_pods[pod["metadata"]["uid"]] = f"{pod['metadata']['namespace']}/{owner['name']}"
            worker = threading.Thread(target=self._run_job_pod, args=(pod, address), daemon=True)
            self._workers.append(worker)
            worker.start()
        else:
            self._report(pod, address)

    def _report(self, pod: dict[str, Any], address: str, *, exit_codes: dict[str, int] | None = None) -> None:
        """The pod's status as a kubelet reports it: Running and Ready (no exit codes), or finished
        with the exit code of each container that ran."""
        spec, stamp = pod["spec"], now()
        finished = exit_codes is not None

        def status_of(container: dict[str, Any], init: bool) -> dict[str, Any]:
            sidecar = init and container.get("restartPolicy") == "Always"
            name = container["name"]
            if finished and name in exit_codes:  # type: ignore[operator]
                code = exit_codes[name]  # type: ignore[index]
                state = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": stamp,
                        "finishedAt": stamp,
                    }
                }
            elif finished:
                state = {"waiting": {"reason": "PodInitializing"}}
            elif init and not sidecar:
                state = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": stamp, "finishedAt": stamp}}
            else:
                state = {"running": {"startedAt": stamp}}
            live = "running" in state
            return {
                "name": name, "image": container["image"], "imageID": "", "containerID": f"conformance://{name}",
                "ready": live, "started": live, "restartCount": 0, "state": state,
            }  # fmt: skip

        if finished:
            phase = "Failed" if any(exit_codes.values()) else "Succeeded"  # type: ignore[union-attr]
        else:
            phase = "Running"
        ready = "False" if finished else "True"
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": NODE_ADDRESS,
            "hostIPs": [{"ip": NODE_ADDRESS}],
            "podIP": address,
            "podIPs": [{"ip": address}],
            "startTime": pod.get("status", {}).get("startTime", stamp),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": stamp},
                {"type": "Ready", "status": ready, "lastTransitionTime": stamp},
            ],
            "initContainerStatuses": [status_of(c, True) for c in spec.get("initContainers", [])],
            "containerStatuses": [status_of(c, False) for c in spec["containers"]],
        }
        metadata = pod["metadata"]
        try:
            self.kubelet.request(
                "PATCH",
                f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}/status",
                {"status": status},
                "application/merge-patch+json",
            )
        except ApiError as error:
            if error.status != 404:
                raise

    # -- running a Job's pod -------------------------------------------------------------------
    def _pinned_files(self) -> dict[str, str]:
        folder = self.workdir / "pinned"
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for url, (artifact, blob) in pins.files_by_url().items():
            try:
                data = pins.part_bytes(artifact, blob)
            except pins.Missing:
                continue  # a Job that needs it fails, with the fetch script's own message
            path = folder / blob
            path.write_bytes(data)
            files[url] = str(path)
        return files

    def token(self, pod: dict[str, Any], *, audience: str | None = None, expiration_s: int = 3600) -> str:
        """A service-account token bound to the pod, as the kubelet requests one for a projected
        volume (the API server's own audience unless the volume names one)."""
        metadata = pod["metadata"]
        account = pod["spec"].get("serviceAccountName", "default")
        spec: dict[str, Any] = {
            "expirationSeconds": expiration_s,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": metadata["name"], "uid": metadata["uid"]},
        }
        if audience:
            spec["audiences"] = [audience]
        request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        answer = self.kubelet.request("POST", f"/api/v1/namespaces/{metadata['namespace']}/serviceaccounts/{account}/token", request)
        return str(answer["status"]["token"])

    def volumes(self, pod: dict[str, Any], root: Path) -> dict[str, Path]:
        """Every volume of the pod as a folder under `root`, filled as the kubelet fills it:
        emptyDir (empty), configMap and secret (one file per key, or the items asked for),
        downwardAPI, and projected (service-account tokens with their audience, configMaps,
        downwardAPI). Other kinds (hostPath, persistent volumes) stay empty folders."""
        folders = {}
        for volume in pod["spec"].get("volumes", []):
            folder = root / volume["name"]
            folder.mkdir(parents=True)
            sources = volume["projected"].get("sources", []) if "projected" in volume else [volume]
            for source in sources:
                for relative, content in self._volume_files(pod, source):
                    (folder / relative).parent.mkdir(parents=True, exist_ok=True)
                    (folder / relative).write_text(content)
            folders[volume["name"]] = folder
        return folders

    def _volume_files(self, pod: dict[str, Any], source: dict[str, Any]) -> list[tuple[str, str]]:
        namespace = pod["metadata"]["namespace"]
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            audience, expiration = token.get("audience"), token.get("expirationSeconds", 3600)
            return [(token["path"], self.token(pod, audience=audience, expiration_s=expiration))]
        if "configMap" in source or "secret" in source:
            kind = "configMap" if "configMap" in source else "secret"
            reference = source[kind]
            name = reference["name"] if kind == "configMap" else reference.get("secretName", reference.get("name"))
            collection = "configmaps" if kind == "configMap" else "secrets"
            try:
                found = self.kubelet.get(f"/api/v1/namespaces/{namespace}/{collection}/{name}")
            except ApiError as error:
                if error.status == 404 and reference.get("optional"):
                    return []
                raise
            data = found.get("data") or {}
            if kind == "secret":
                data = {key: base64.b64decode(value).decode() for key, value in data.items()}
            items = reference.get("items") or [{"key": key, "path": key} for key in data]
            return [(item["path"], data[item["key"]]) for item in items if item["key"] in data]
        if "downwardAPI" in source:
            return [(item["path"], self._downward(pod, item)) for item in source["downwardAPI"].get("items", [])]
        return []

    def _downward(self, pod: dict[str, Any], item: dict[str, Any]) -> str:
        if "fieldRef" in item:
            return field_value(pod, item["fieldRef"]["fieldPath"])
        container = next(c for c in pod["spec"]["containers"] if c["name"] == item["resourceFieldRef"].get("containerName"))
        return resource_value(container, item["resourceFieldRef"])

    def environment(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        """The container's environment as the kubelet makes it: values with `$(NAME)` of earlier
        variables expanded, the downward API's fields and resources, ConfigMap and Secret keys."""
        namespace = pod["metadata"]["namespace"]
        environment: dict[str, str] = {}
        for variable in container.get("env", []):
            name, source = variable["name"], variable.get("valueFrom")
            if source is None:
                environment[name] = expand(variable.get("value", ""), environment)
            elif "fieldRef" in source:
                environment[name] = field_value(pod, source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                environment[name] = resource_value(container, source["resourceFieldRef"])
            elif "configMapKeyRef" in source or "secretKeyRef" in source:
                kind = "configMapKeyRef" if "configMapKeyRef" in source else "secretKeyRef"
                reference = source[kind]
                collection = "configmaps" if kind == "configMapKeyRef" else "secrets"
                data = self.kubelet.get(f"/api/v1/namespaces/{namespace}/{collection}/{reference['name']}").get("data") or {}
                value = data.get(reference["key"], "")
                environment[name] = base64.b64decode(value).decode() if kind == "secretKeyRef" else value
        return environment

    def _run_job_pod(self, pod: dict[str, Any], address: str) -> None:
        record = self.jobs.setdefault(pod["metadata"]["uid"], JobRecord())
        exit_codes: dict[str, int] = {}
        try:
            with tempfile.TemporaryDirectory(dir=self.workdir) as scratch:
                root = Path(scratch)
                volumes = self.volumes(pod, root / "volumes")
                kubeconfig = self.plane.kubeconfig_file(token=self.token(pod), name=f"pod-{pod['metadata']['uid']}")
                for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
                    run = self._run_container(pod, container, volumes, kubeconfig, root)
                    record.runs.append(run)
                    record.touched += re.findall(
                        r"^(\S+/\S+) (?:serverside-applied|created|configured|unchanged)", run.output, re.MULTILINE
                    )
                    exit_codes[container["name"]] = run.exit_code
                    if run.exit_code != 0:
                        break
        except (ApiError, OSError) as error:
            with self._lock:
                self.errors.append(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}: {error}")
            exit_codes = {"pod": 1}
        self._report(pod, address, exit_codes=exit_codes)

    def _run_container(
        self, pod: dict[str, Any], container: dict[str, Any], volumes: dict[str, Path], kubeconfig: Path, root: Path
    ) -> ContainerRun:
        mounts = {mount["mountPath"].rstrip("/"): volumes[mount["name"]] for mount in container.get("volumeMounts", [])}
        # One pass, longest path first, and only where a path starts: the folders standing in for
        # volumes are themselves paths that a second pass would rewrite again.
        pattern = re.compile(
            r"(?<![\w./-])(" + "|".join(re.escape(path) for path in sorted(mounts, key=len, reverse=True)) + r")(?=/|$|[^\w.-])"
        )

        def local(text: str) -> str:
            """Paths inside the container, as the folders that stand for its volumes."""
            return pattern.sub(lambda match: str(mounts[match.group(1)]), text) if mounts else text

        image = container["image"]
        environment = {"PATH": "/usr/bin:/bin", "HOME": str(root), "KUBECONFIG": str(kubeconfig)}
        environment.update({item["name"]: local(item.get("value", "")) for item in container.get("env", []) if "value" in item})
        if RUNNABLE["kubectl"].match(image):
            argv = [str(self.plane.binaries["kubectl"]), *map(local, container.get("command", [])[1:] + container.get("args", []))]
        else:
            site = root / "site"
            site.mkdir(exist_ok=True)
            (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
            environment.update({"PYTHONPATH": str(site), "CONFORMANCE_URL_FILES": json.dumps(self.url_files)})
            command = container.get("command", ["python"])
            argv = [sys.executable, *map(local, command[1:] + container.get("args", []))]
        name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=CONTAINER_TIMEOUT_S, env=environment, cwd=root, check=False
            )
            return ContainerRun(name, container["name"], argv, result.returncode, result.stdout + result.stderr)
        except subprocess.TimeoutExpired:
            return ContainerRun(name, container["name"], argv, 124, f"timed out after {CONTAINER_TIMEOUT_S} s")


def parse_quantity(quantity: str) -> float:
    """A Kubernetes quantity ("500m", "256Mi", "2") as a number of its base unit."""
    number = quantity.rstrip("".join(sorted({character for suffix in _QUANTITY_SUFFIXES for character in suffix})))
    return float(number) * _QUANTITY_SUFFIXES.get(quantity[len(number) :], 1)


def field_value(pod: dict[str, Any], path: str) -> str:
    """A downward-API field of the pod. Labels and annotations as a whole are the kubelet's
    file format: one `key="value"` line per key, sorted (values quoted as Go quotes them: JSON
    quoting is the same for the ASCII our objects use)."""
    metadata, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    selected = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if selected:
        return str(metadata.get(selected.group(1), {}).get(selected.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        mapping = metadata.get(path.split(".")[1], {})
        return "\n".join(f"{key}={json.dumps(mapping[key])}" for key in sorted(mapping))
    values = {
        "metadata.name": metadata["name"],
        "metadata.namespace": metadata["namespace"],
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(address["ip"] for address in status.get("hostIPs", [])),
        "status.podIPs": ",".join(address["ip"] for address in status.get("podIPs", [])),
    }
    return values[path]


def expand(text: str, environment: dict[str, str]) -> str:
    """Kubernetes' `$(NAME)` expansion: a defined name is replaced, `$$` is a literal `$`, an
    undefined reference stays as written (k8s.io/kubernetes third_party/forked/golang/expansion)."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", lambda m: "$" if m.group(0) == "$$" else environment.get(m.group(1), m.group(0)), text
    )


def resource_value(container: dict[str, Any], reference: dict[str, Any]) -> str:
    """limits.cpu, requests.memory and the like, rounded up in units of the divisor; a limit
    the container does not set is the node's allocatable amount, as the kubelet reports it."""
    kind, resource = reference["resource"].split(".", 1)
    resources = container.get("resources", {})
    quantity = resources.get(kind, {}).get(resource)
    if quantity is None and kind == "requests":
        quantity = resources.get("limits", {}).get(resource, "0")
    if quantity is None:
        quantity = NODE_ALLOCATABLE.get(resource, "0")
    divisor = reference.get("divisor", "1")
    return str(math.ceil(parse_quantity(str(quantity)) / parse_quantity(str(divisor))))


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()
