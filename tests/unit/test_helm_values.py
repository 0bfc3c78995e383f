"""Every Helm value the app sets is a key the pinned chart reads: Helm silently ignores one it does
not, and the feature the value was meant for is then simply off. Checked against each chart's own
values.yaml (../shared/reference, or the verified cache); Istio's `meshConfig` against the fields
of Istio's MeshConfig API."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

import upstream
from components.appmesh_controller import AppMeshController
from components.istio import EXAMPLE_IMAGES, VERSION, base_values, cni_values, gateway_values, istiod_values
from components.lattice import controller_values
from components.mirror import MIRROR_ARCHITECTURE

# Maps whose keys are the user's (labels, annotations, environment) or a Kubernetes type's
# (securityContext, resources), not the chart's.
FREE_FORM = {
    "labels",
    "annotations",
    "podAnnotations",
    "podLabels",
    "env",
    "securityContext",
    "containerSecurityContext",
    "resources",
    "service.annotations",
    "serviceAccount.annotations",
    "global.proxy.resources",
}
# The MeshConfig fields the app sets (istio/api mesh/v1alpha1/config.proto and proxy.proto on
# release-1.31, commit b8f8791d9653b2edc77a071d48887e582cfe84bf: blobs 656eb15b... and b61f78f2...),
# in the JSON names Helm passes through.
MESH_CONFIG_FIELDS = {
    "accessLogFile": None,
    "accessLogEncoding": None,
    "outboundTrafficPolicy": {"mode": None},
    "defaultConfig": {"proxyMetadata": "map"},
    "extensionProviders": [{"name": None, "opentelemetry": {"service": None, "port": None, "http": {"path": None, "timeout": None}}}],
}


def unknown_keys(values: Any, defaults: Any, path: str = "") -> list[str]:
    """Keys of `values` that `defaults` (the chart's values.yaml) does not have."""
    missing: list[str] = []
    for key, value in values.items():
        where = f"{path}{key}"
        if not isinstance(defaults, dict) or key not in defaults:
            missing.append(where)
            continue
        default = defaults[key]
        if where in FREE_FORM or default is None or default == {}:
            continue
        if isinstance(value, dict) and isinstance(default, dict):
            missing += unknown_keys(value, default, f"{where}.")
        elif isinstance(value, list) and isinstance(default, list) and default and all(isinstance(item, dict) for item in default):
            allowed = {key: None for item in default for key in item}
            for index, item in enumerate(value):
                missing += unknown_keys(item, allowed, f"{where}[{index}].")
    return missing


def mesh_config_unknown(values: Any, fields: Any = MESH_CONFIG_FIELDS, path: str = "meshConfig.") -> list[str]:
    missing: list[str] = []
    for key, value in values.items():
        if key not in fields:
            missing.append(f"{path}{key}")
        elif isinstance(fields[key], dict) and isinstance(value, dict):
            missing += mesh_config_unknown(value, fields[key], f"{path}{key}.")
        elif isinstance(fields[key], list) and isinstance(value, list):
            for index, item in enumerate(value):
                missing += mesh_config_unknown(item, fields[key][0], f"{path}{key}[{index}].")
    return missing


def _chart_defaults(artifact: str) -> dict[str, Any]:
    values = yaml.safe_load(upstream.text(artifact))
    # Istio's charts wrap their defaults; users set the keys beneath the wrapper directly.
    return values.get("_internal_defaults_do_not_set", values)  # type: ignore[no-any-return]


CHARTS = {
    "appmesh-controller": ("appmesh-controller-1.13.3-values.yaml", lambda: AppMeshController.helm_values("us-west-1", tracing=True)),
    "base": ("istio-1.31-base-values.yaml", base_values),
    "istiod": (
        "istio-1.31-istio-discovery-values.yaml",
        lambda: istiod_values(egress_registry_only=True, tracing=True, images=EXAMPLE_IMAGES),
    ),
    "cni": ("istio-1.31-istio-cni-values.yaml", lambda: cni_values(images=EXAMPLE_IMAGES)),
    "gateway": ("istio-1.31-gateway-values.yaml", lambda: gateway_values(name="ingress-gw", port=8088, replicas=2, scheme="internal")),
    "aws-gateway-controller-chart": (
        "lattice-gateway-controller-v2.1.3-values.yaml",
        lambda: controller_values(region="us-west-1", vpc_id="vpc-0", cluster_name="app-mesh", role_arn="arn:aws:iam::123456789012:role/x"),
    ),
}


@pytest.mark.parametrize("chart", sorted(CHARTS))
def test_every_value_is_a_key_of_the_pinned_chart(chart: str) -> None:
    artifact, values = CHARTS[chart]
    given = values()
    mesh_config = given.pop("meshConfig", None) if chart == "istiod" else None
    assert unknown_keys(given, _chart_defaults(artifact)) == []
    if mesh_config is not None:
        assert mesh_config_unknown(mesh_config) == []


def test_a_misspelt_key_is_reported() -> None:
    """The check is live: a key the chart does not read, at any depth, is named."""
    defaults = _chart_defaults("appmesh-controller-1.13.3-values.yaml")
    assert unknown_keys({"tracing": {"enabld": True}, "sidecar": {"image": {"tag": "x"}}, "regon": "us-west-1"}, defaults) == [
        "tracing.enabld",
        "regon",
    ]
    assert mesh_config_unknown({"accessLogFile": "/dev/stdout", "outboundTrafficPolicy": {"mod": "REGISTRY_ONLY"}}) == [
        "meshConfig.outboundTrafficPolicy.mod"
    ]
    # istiod's own image is the 1.31 chart's top-level `image`; `pilot.image` was the old chart's.
    istiod = _chart_defaults("istio-1.31-istio-discovery-values.yaml")
    assert unknown_keys({"pilot": {"image": "x"}, "image": "x", "global": {"proxy_init": {"image": "x"}}}, istiod) == ["pilot"]
    gateway = _chart_defaults("istio-1.31-gateway-values.yaml")
    assert unknown_keys({"service": {"ports": [{"name": "http", "targetPrt": 8088}]}}, gateway) == ["service.ports[0].targetPrt"]


def test_istio_gateway_values_are_ones_its_schema_accepts() -> None:
    """The gateway chart's schema wants integer target ports; with autoscaling on, the chart
    ignores replicaCount, so the configured replicas are the autoscaler's minimum."""
    values = gateway_values(name="ingress-gw", port=8088, replicas=2, scheme="internal")
    assert all(isinstance(port["targetPort"], int) for port in values["service"]["ports"])
    assert values["autoscaling"] == {"enabled": True, "minReplicas": 2, "maxReplicas": 5}
    assert "replicaCount" not in values


def test_istio_cni_stays_chained_after_the_vpc_cni() -> None:
    """The plugin must run as a link in the VPC CNI's chain (`chained: true`, the chart's default):
    standalone it would replace the pods' network setup. Our values leave the default alone."""
    defaults = _chart_defaults("istio-1.31-istio-cni-values.yaml")
    assert defaults["chained"] is True
    assert {**defaults, **cni_values(images=EXAMPLE_IMAGES)}["chained"] is True
    assert "chained" not in cni_values(images=EXAMPLE_IMAGES)


def _image_values(chart: str) -> dict[str, str]:
    """Every value named `image`, by its dotted path."""
    found: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{path}{key}.")
            elif key == "image":
                found[f"{path}{key}"] = value

    walk(CHARTS[chart][1](), "")
    return found


def test_istio_images_are_full_references_to_the_mirrors() -> None:
    """The charts use an image value with a "/" as it is, adding neither hub nor tag (components/
    istio.py IstioImages cites each template line): each value is a whole reference with its one
    tag, and every image key the charts read for a container we run is set. The chart's own
    defaults are bare names (`pilot`, `proxyv2`, `install-cni`) that would be put under a hub."""
    assert _image_values("istiod") == {
        "image": EXAMPLE_IMAGES.pilot,
        "global.proxy.image": EXAMPLE_IMAGES.proxy,
        "global.proxy_init.image": EXAMPLE_IMAGES.proxy,
    }
    assert _image_values("cni") == {"image": EXAMPLE_IMAGES.install_cni}
    for image in (EXAMPLE_IMAGES.pilot, EXAMPLE_IMAGES.proxy, EXAMPLE_IMAGES.install_cni):
        assert "/" in image and image.rsplit("/", 1)[1].count(":") == 1, image
    istiod = _chart_defaults("istio-1.31-istio-discovery-values.yaml")
    cni = _chart_defaults("istio-1.31-istio-cni-values.yaml")
    defaults = (istiod["image"], istiod["global"]["proxy"]["image"], istiod["global"]["proxy_init"]["image"], cni["image"])
    assert defaults == ("pilot", "proxyv2", "proxyv2", "install-cni")
    # No hub: nothing is composed from one (a value the charts would use is a full reference).
    assert "hub" not in CHARTS["istiod"][1]()["global"] and "hub" not in CHARTS["cni"][1]()["global"]


def test_the_istio_cni_agent_runs_where_its_mirror_can() -> None:
    """The mirror is one architecture (components/mirror.py); the DaemonSet tolerates every taint,
    so without the affinity it would land on Auto Mode's arm64 system nodes and crash there. Its
    reported version stays the pinned one (the chart reads `global.tag` for it)."""
    values = cni_values(images=EXAMPLE_IMAGES)
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": [MIRROR_ARCHITECTURE]}]}
    assert MIRROR_ARCHITECTURE == "amd64"
    assert values["global"] == {"tag": VERSION}


def test_the_istio_gateway_keeps_a_replica_through_node_rolls_and_spreads_over_zones() -> None:
    """The chart renders its PodDisruptionBudget only when asked, and the spread must select the
    labels the chart gives the gateway's pods (app, and istio without the `istio-` prefix)."""
    values = gateway_values(name="istio-edge", port=8088, replicas=2, scheme="internal")
    assert values["podDisruptionBudget"] == {"minAvailable": 1}
    (spread,) = values["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"] == {"matchLabels": {"app": "istio-edge", "istio": "edge"}}
