"""Every object every backend renders is valid for the cluster: custom resources against the pinned
controllers' CRDs (../shared/schemas, or the verified cache), core objects against the Kubernetes
schema of each supported version."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from backends import backend_named
from backends.render import all_objects, render
from config.kubernetes import SUPPORTED
from tests.charts.conftest import find
from tests.unit.test_settings import backend_config

CORE = ("v1", "apps/v1", "policy/v1", "batch/v1", "rbac.authorization.k8s.io/v1")
EXPECTED_CUSTOM = {
    "appmesh": {
        "appmesh.k8s.aws/v1beta2": {"Mesh", "VirtualNode", "VirtualRouter", "VirtualService", "VirtualGateway", "GatewayRoute"},
        "cert-manager.io/v1": {"Issuer", "Certificate"},
    },
    "istio": {
        "networking.istio.io/v1": {"ServiceEntry", "VirtualService", "DestinationRule", "Sidecar", "Gateway"},
        "security.istio.io/v1": {"PeerAuthentication", "AuthorizationPolicy"},
        "telemetry.istio.io/v1": {"Telemetry"},
    },
    "lattice": {
        "gateway.networking.k8s.io/v1": {"GatewayClass", "Gateway", "HTTPRoute"},
        "application-networking.k8s.aws/v1alpha1": {"TargetGroupPolicy", "AccessLogPolicy"},
    },
}


@pytest.fixture(scope="module", params=sorted(EXPECTED_CUSTOM))
def backend_objects(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    backend = request.param
    return backend, all_objects(render(backend_config(backend), backend_named(backend)))


def test_every_custom_object_validates_against_its_crd(
    backend_objects: tuple[str, list[dict[str, Any]]], crd_schemas: dict[Any, Any]
) -> None:
    backend, objects = backend_objects
    custom = [o for o in objects if o["apiVersion"] not in CORE]
    kinds: dict[str, set[str]] = {}
    for obj in custom:
        kinds.setdefault(obj["apiVersion"], set()).add(obj["kind"])
        schema = crd_schemas[(obj["apiVersion"], obj["kind"])]
        jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator)
    assert kinds == EXPECTED_CUSTOM[backend]


@pytest.mark.parametrize("version", sorted(SUPPORTED))
def test_every_core_object_validates_against_the_cluster_version_schema(
    backend_objects: tuple[str, list[dict[str, Any]]], version: str
) -> None:
    backend, _ = backend_objects
    objects = all_objects(render(backend_config(backend, kubernetes_version=version), backend_named(backend)))
    core = [o for o in objects if o["apiVersion"] in CORE]
    assert {"ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "ConfigMap"} <= {o["kind"] for o in core}
    for obj in core:
        kubernetes_validate.validate(obj, f"{version}.0", strict=True)


@pytest.mark.parametrize(
    ("backend", "kind", "name", "break_it"),
    [
        ("appmesh", "VirtualRouter", "nodejs-router", lambda o: o["spec"]["listeners"][0]["portMapping"].update(protocol="carrier-pigeon")),
        ("istio", "VirtualService", "nodejs", lambda o: o["spec"]["http"][0]["retries"].update(attempts="twice")),
        ("istio", "PeerAuthentication", "default", lambda o: o["spec"]["mtls"].update(mode="STRICTEST")),
        ("lattice", "TargetGroupPolicy", "nodejs", lambda o: o["spec"]["healthCheck"].update(intervalSeconds=1)),
        ("lattice", "HTTPRoute", "nodejs", lambda o: o["spec"]["rules"][0]["backendRefs"][0].update(weight=-1)),
    ],
)
def test_schema_validation_rejects_a_broken_object(crd_schemas: dict[Any, Any], backend: str, kind: str, name: str, break_it: Any) -> None:
    """The schemas are live: one wrong field fails."""
    import copy

    objects = all_objects(render(backend_config(backend), backend_named(backend)))
    broken = copy.deepcopy(find(objects, kind, name))
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schemas[(broken["apiVersion"], kind)], cls=jsonschema.Draft7Validator)
