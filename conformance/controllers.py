"""Stand-ins for the finalizers of the mesh controllers that cannot run here (they call AWS).

A controller that adds a finalizer removes it only while it runs, and only once its own condition
holds; an object whose controller is gone, or whose condition can never hold again, waits for ever,
and so do its namespace and the `cdk destroy` that deletes it. This module does only that part of
each controller, for the finalizers whose removal depends on something the app's delete order
decides, each read from the controller's source:

- VPC Lattice controller (aws/aws-application-networking-k8s, pkg/controllers/gateway_controller.go
  and route_controller.go): a Gateway whose GatewayClass names the controller gets
  `gateway.k8s.aws/resources`; it is removed only while that GatewayClass exists and no route's
  first parentRef names the Gateway. An HTTPRoute attached to such a Gateway gets
  `httproute.k8s.aws/resources`; it is removed only while a parent Gateway of the controller exists.
- App Mesh controller (aws/aws-app-mesh-controller-for-k8s, pkg/mesh/members_finalizer.go,
  pkg/k8s/finalizer.go): a Mesh gets `finalizers.appmesh.k8s.aws/mesh-members`, removed only once no
  VirtualNode, VirtualService, VirtualRouter, VirtualGateway or GatewayRoute of the mesh is left
  (members are found by spec.meshRef, which the controller's webhook sets from the mesh whose
  namespaceSelector selects the object's namespace: that is what stands in for it here); every App
  Mesh object gets `finalizers.appmesh.k8s.aws/aws-appmesh-resources`, removed while the controller
  runs (it deletes the AWS resource first: assumed to succeed).

A controller runs from the moment its Helm release is installed until it is uninstalled: that is
the window `cdk deploy` and `cdk destroy` give it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cluster import Api, ApiError

POLL_S = 0.3
LATTICE_CONTROLLER_NAME = "application-networking.k8s.aws/gateway-api-controller"
APPMESH_KINDS = ("virtualnodes", "virtualservices", "virtualrouters", "virtualgateways", "gatewayroutes")


@dataclass(frozen=True)
class Finalizer:
    controller: str  # the chart whose release runs the controller
    path: str  # the objects' collection across namespaces, e.g. /apis/gateway.networking.k8s.io/v1/gateways
    name: str
    applies: Callable[[Api, dict[str, Any]], bool]  # does the controller reconcile this object?
    releasable: Callable[[Api, dict[str, Any]], bool]  # may it remove the finalizer now?


def _items(api: Api, path: str) -> list[dict[str, Any]]:
    try:
        return list(api.get(path)["items"])
    except ApiError as error:
        if error.status == 404:  # the CRD is not (or no longer) installed
            return []
        raise


def _lattice_class(api: Api, gateway: dict[str, Any]) -> bool:
    try:
        gateway_class = api.get(f"/apis/gateway.networking.k8s.io/v1/gatewayclasses/{gateway['spec']['gatewayClassName']}")
    except ApiError:
        return False
    return bool(gateway_class["spec"].get("controllerName") == LATTICE_CONTROLLER_NAME)


def _parents(api: Api, route: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for reference in route["spec"].get("parentRefs", []):
        namespace = reference.get("namespace", route["metadata"]["namespace"])
        try:
            found.append(api.get(f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/gateways/{reference['name']}"))
        except ApiError:
            continue
    return found


def _lattice_route(api: Api, route: dict[str, Any]) -> bool:
    return any(_lattice_class(api, gateway) for gateway in _parents(api, route))


def _gateway_unreferenced(api: Api, gateway: dict[str, Any]) -> bool:
    if not _lattice_class(api, gateway):
        return False
    for route in _items(api, "/apis/gateway.networking.k8s.io/v1/httproutes"):
        references = route["spec"].get("parentRefs", [])
        if references:
            first = references[0]
            namespace = first.get("namespace", route["metadata"]["namespace"])
            if first["name"] == gateway["metadata"]["name"] and namespace == gateway["metadata"]["namespace"]:
                return False
    return True


def _mesh_selects(api: Api, mesh: dict[str, Any], namespace: str) -> bool:
    selector = mesh["spec"].get("namespaceSelector") or {}
    try:
        labels = api.get(f"/api/v1/namespaces/{namespace}")["metadata"].get("labels", {})
    except ApiError:
        return False
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def _mesh_of(api: Api, member: dict[str, Any], meshes: list[dict[str, Any]]) -> str | None:
    reference = member["spec"].get("meshRef")
    if reference:
        return str(reference["name"])
    matching = [mesh["metadata"]["name"] for mesh in meshes if _mesh_selects(api, mesh, member["metadata"]["namespace"])]
    return matching[0] if len(matching) == 1 else None


def _no_mesh_members(api: Api, mesh: dict[str, Any]) -> bool:
    meshes = _items(api, "/apis/appmesh.k8s.aws/v1beta2/meshes")
    for plural in APPMESH_KINDS:
        for member in _items(api, f"/apis/appmesh.k8s.aws/v1beta2/{plural}"):
            if _mesh_of(api, member, meshes) == mesh["metadata"]["name"]:
                return False
    return True


def _always(_: Api, __: dict[str, Any]) -> bool:
    return True


FINALIZERS = (
    Finalizer(
        "aws-gateway-controller-chart",
        "/apis/gateway.networking.k8s.io/v1/gateways",
        "gateway.k8s.aws/resources",
        _lattice_class,
        _gateway_unreferenced,
    ),
    Finalizer(
        "aws-gateway-controller-chart",
        "/apis/gateway.networking.k8s.io/v1/httproutes",
        "httproute.k8s.aws/resources",
        _lattice_route,
        _lattice_route,
    ),
    Finalizer(
        "appmesh-controller", "/apis/appmesh.k8s.aws/v1beta2/meshes", "finalizers.appmesh.k8s.aws/mesh-members", _always, _no_mesh_members
    ),
    *(
        Finalizer(
            "appmesh-controller",
            f"/apis/appmesh.k8s.aws/v1beta2/{plural}",
            "finalizers.appmesh.k8s.aws/aws-appmesh-resources",
            _always,
            _always,
        )
        for plural in ("meshes", *APPMESH_KINDS)
    ),
)


class Controllers(threading.Thread):
    """Adds and removes the finalizers above for the controllers whose release is installed."""

    def __init__(self, api: Api) -> None:
        super().__init__(name="conformance-controllers", daemon=True)
        self.api = api
        self.running: set[str] = set()
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.removed: list[str] = []  # "<finalizer> from <kind>/<namespace>/<name>", in order

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.reconcile()
            except (ApiError, OSError) as error:
                self.errors.append(f"{type(error).__name__}: {error}")
            self.stopping.wait(POLL_S)

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=30)

    def reconcile(self) -> None:
        for finalizer in FINALIZERS:
            if finalizer.controller not in self.running:
                continue
            for obj in _items(self.api, finalizer.path):
                metadata = obj["metadata"]
                present = finalizer.name in metadata.get("finalizers", [])
                if metadata.get("deletionTimestamp"):
                    if present and finalizer.releasable(self.api, obj):
                        self._set(finalizer, obj, [name for name in metadata["finalizers"] if name != finalizer.name])
                        self.removed.append(f"{finalizer.name} from {obj['kind']}/{metadata.get('namespace', '')}/{metadata['name']}")
                elif not present and finalizer.applies(self.api, obj):
                    self._set(finalizer, obj, [*metadata.get("finalizers", []), finalizer.name])

    def _set(self, finalizer: Finalizer, obj: dict[str, Any], finalizers: list[str]) -> None:
        metadata = obj["metadata"]
        prefix, plural = finalizer.path.rsplit("/", 1)
        scope = f"/namespaces/{metadata['namespace']}" if metadata.get("namespace") else ""
        # The resourceVersion makes it a compare-and-swap: a concurrent change is retried next round.
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": metadata["resourceVersion"]}}
        try:
            self.api.request("PATCH", f"{prefix}{scope}/{plural}/{metadata['name']}", patch, "application/merge-patch+json")
        except ApiError as error:
            if error.status not in (404, 409):
                raise
