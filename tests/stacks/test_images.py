"""No image the cluster pulls comes from Docker Hub, for any backend.

Docker Hub limits anonymous pulls per source address, and every node pulls through the one NAT
gateway address: istiod, the CNI agent and a sidecar per pod on three nodes come near the limit,
and a redeploy or a node roll passes it (ImagePullBackOff, Helm's wait times out, the stack rolls
back). Every synthesized template of each backend is read: each image in the Kubernetes manifests,
and each image a Helm release deploys, from our values over the pinned chart's defaults (a default
we do not override is pulled just the same). The services' Dockerfiles are not here: their FROM
lines are pulled by the deployer's Docker at `cdk deploy`, not by the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

import upstream
from components.edge_envoy import UPSTREAM_IMAGE
from components.istio import IMAGE_NAMES, VERSION
from tests.conftest import Synthesized
from tests.stacks.support import DOCKER_HUB, registry

# What an ECR image asset's URI is in a template (an Fn::Sub the deploy fills in).
ASSET_REGISTRY = "${AWS::AccountId}.dkr.ecr.us-west-1.${AWS::URLSuffix}"
# cert-manager's chart defaults (deploy/charts/cert-manager/values.yaml, cert-manager/cert-manager):
# its values file is not among the pinned upstream files, so its image repositories are listed.
CERT_MANAGER_IMAGES = [
    f"quay.io/jetstack/cert-manager-{part}" for part in ("controller", "webhook", "cainjector", "acmesolver", "startupapicheck")
]
PINNED_VALUES = {
    "base": "istio-1.31-base-values.yaml",
    "istiod": "istio-1.31-istio-discovery-values.yaml",
    "cni": "istio-1.31-istio-cni-values.yaml",
    "gateway": "istio-1.31-gateway-values.yaml",
    "appmesh-controller": "appmesh-controller-1.13.3-values.yaml",
    "aws-gateway-controller-chart": "lattice-gateway-controller-v2.1.3-values.yaml",
}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("docker.io/istio/proxyv2:1.31.4", "docker.io"),
        ("istio/proxyv2:1.31.4", "docker.io"),
        ("envoy:v1", "docker.io"),
        ("library/python:3.11", "docker.io"),
        ("gcr.io/istio-release/proxyv2:1.31.4", "gcr.io"),
        ("localhost:5000/envoy:v1", "localhost:5000"),
        ("localhost/envoy", "localhost"),
        (f"{ASSET_REGISTRY}/cdk-hnb659fds-container-assets:abc", ASSET_REGISTRY),
    ],
)
def test_the_registry_of_an_image_reference(reference: str, expected: str) -> None:
    assert registry(reference) == expected


def _text(value: Any) -> str:
    """A template string: literal parts kept, an Fn::Sub as its text (an ECR asset URI is one),
    any other token as <token>."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return "".join(_text(part) for part in value["Fn::Join"][1])
    if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        return str(value["Fn::Sub"])
    return "<token>"


def _images_in(node: Any) -> Iterator[str]:
    """Every `image` anywhere in Kubernetes objects, JSON kept in a ConfigMap included (the
    webhook gates' probe pods)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from _images_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _images_in(item)
    elif isinstance(node, str) and node[:1] in "{[":
        try:
            yield from _images_in(json.loads(node))
        except json.JSONDecodeError:
            pass


def _merge(defaults: Any, values: Any) -> Any:
    if isinstance(defaults, dict) and isinstance(values, dict):
        return {**defaults, **{key: _merge(defaults.get(key), value) for key, value in values.items()}}
    return values


def _chart_values(chart: str, values: dict[str, Any]) -> dict[str, Any]:
    if chart not in PINNED_VALUES:
        return values
    defaults = yaml.safe_load(upstream.text(PINNED_VALUES[chart]))
    return _merge(defaults.get("_internal_defaults_do_not_set", defaults), values)  # type: ignore[no-any-return]


def _istio_image(values: dict[str, Any], name: str) -> str:
    """How Istio's charts spell an image: a name under the hub (the chart's own `hub`, else
    `global.hub`) with the tag, unless the name is already a full reference."""
    if "/" in name:
        return name
    hub = values.get("hub") or values["global"]["hub"]
    tag = values.get("tag") or values["global"]["tag"]
    return f"{hub}/{name}:{tag}"


def chart_images(chart: str, values: dict[str, Any], istiod: dict[str, Any] | None) -> list[str]:
    """The images a release of `chart` deploys, or makes an injector add, with these values."""
    merged = _chart_values(chart, values)
    if chart == "base":
        return []  # CRDs, webhooks and RBAC only
    if chart == "istiod":
        # istiod itself, and the proxy the injector adds to every pod (the gateway's too).
        global_ = merged["global"]
        return [
            _istio_image(merged, merged["image"]),
            _istio_image(merged, global_["proxy"]["image"]),
            # the sidecars' istio-validation init container (istio-cni on)
            _istio_image(merged, global_["proxy_init"]["image"]),
        ]
    if chart == "cni":
        return [_istio_image(merged, merged["image"])]
    if chart == "gateway":
        # The chart's container says `image: auto`: the injector fills in istiod's proxy image.
        assert istiod is not None, "a gateway release without istiod"
        return [chart_images("istiod", istiod, None)[1]]
    if chart == "appmesh-controller":
        parts = (merged["image"], merged["sidecar"]["image"], merged["init"]["image"], merged["xray"]["image"])
        return [f"{image['repository']}:{image['tag']}" for image in parts]
    if chart == "aws-gateway-controller-chart":
        return [f"{merged['image']['repository']}:{merged['image']['tag']}"]
    if chart == "cert-manager":
        return list(CERT_MANAGER_IMAGES)
    raise AssertionError(f"chart {chart}: say which images it deploys (chart_images)")


def cluster_images(synthesized: Synthesized) -> dict[str, set[str]]:
    """image -> where it comes from, over every template of the app."""
    found: dict[str, set[str]] = {}
    templates = {stack.stack_name: synthesized.template_json(stack) for stack in synthesized.application.stacks}
    releases = {
        (name, lid): resource
        for name, template in templates.items()
        for lid, resource in template["Resources"].items()
        if resource["Type"] == "Custom::AWSCDK-EKS-HelmChart"
    }

    def values(resource: dict[str, Any]) -> dict[str, Any]:
        raw = resource["Properties"].get("Values")
        return {} if raw is None else json.loads(_text(raw))  # type: ignore[no-any-return]

    istiod = [values(r) for r in releases.values() if r["Properties"]["Chart"] == "istiod"]
    for (stack, lid), resource in releases.items():
        chart = resource["Properties"]["Chart"]
        for image in chart_images(chart, values(resource), istiod[0] if istiod else None):
            found.setdefault(image, set()).add(f"{stack}/{lid} (chart {chart})")
    for stack, template in templates.items():
        for lid, resource in template["Resources"].items():
            if resource["Type"] == "Custom::AWSCDK-EKS-KubernetesResource":
                for image in _images_in(json.loads(_text(resource["Properties"]["Manifest"]))):
                    found.setdefault(image, set()).add(f"{stack}/{lid}")
    return found


# Where each backend's cluster pulls from. EKS add-ons (the CloudWatch agent) come from EKS's own
# ECR registries and appear in no template.
EXPECTED_REGISTRIES = {
    "appmesh": {"840364872350.dkr.ecr.us-west-2.amazonaws.com", "public.ecr.aws", "quay.io", "registry.k8s.io", ASSET_REGISTRY},
    "istio": {"registry.k8s.io", ASSET_REGISTRY},
    "lattice": {"public.ecr.aws", "registry.k8s.io", ASSET_REGISTRY},
}


@pytest.mark.parametrize("backend", sorted(EXPECTED_REGISTRIES))
def test_no_image_the_cluster_pulls_comes_from_docker_hub(synths: Any, backend: str) -> None:
    images = cluster_images(synths[backend])
    from_docker_hub = {image: sorted(where) for image, where in images.items() if registry(image) in DOCKER_HUB}
    assert from_docker_hub == {}
    assert {registry(image) for image in images} == EXPECTED_REGISTRIES[backend]


def _docker_image_assets(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """image URI as the templates spell it -> the asset's source (folder, build args, platform),
    over every stack of the app."""
    found = {}
    for stack in synthesized.application.stacks:
        name = f"{stack.artifact_id}.assets.json"
        for manifest in [synthesized.outdir / name, *synthesized.outdir.glob(f"assembly-*/{name}")]:
            if not manifest.exists():
                continue
            for asset in json.loads(manifest.read_text()).get("dockerImages", {}).values():
                for destination in asset["destinations"].values():
                    found[f"{ASSET_REGISTRY}/{destination['repositoryName']}:{destination['imageTag']}"] = asset["source"]
    return found


def test_istio_pulls_its_images_from_its_mirrors_in_ecr(synths: Any) -> None:
    """istiod, the CNI agent and the proxy of every sidecar (its istio-validation init container
    too) and of the gateway: ECR image assets, each built FROM Istio's own image at the pinned
    version on docker.io/istio (the only place Istio 1.31 publishes them), by the deployer's Docker
    at `cdk deploy`, for the nodes' platform."""
    istio: Synthesized = synths["istio"]
    images = cluster_images(istio)
    # What Istio's charts deploy or make the injector add (base, istiod, cni, gateway).
    mirrored = {image for image, where in images.items() if any("(chart " in place for place in where)}
    assert {registry(image) for image in mirrored} == {ASSET_REGISTRY}
    assets = _docker_image_assets(istio)
    assert sorted(assets[image]["dockerBuildArgs"]["UPSTREAM_IMAGE"] for image in mirrored) == [
        f"docker.io/istio/{name}:{VERSION}" for name in ("install-cni", "pilot", "proxyv2")
    ]
    assert sorted(IMAGE_NAMES.values()) == ["install-cni", "pilot", "proxyv2"]
    for image in mirrored:
        assert assets[image]["platform"] == "linux/amd64", image
        assert assets[image]["dockerBuildArgs"].keys() == {"UPSTREAM_IMAGE"}, image
    # One folder for every mirror: the Dockerfile is FROM the build argument and nothing else.
    dockerfile = (istio.outdir / assets[next(iter(mirrored))]["directory"] / "Dockerfile").read_text()
    assert [line for line in dockerfile.splitlines() if line and not line.startswith("#")] == [
        "ARG UPSTREAM_IMAGE",
        "FROM ${UPSTREAM_IMAGE}",
    ]
    # Nothing of Istio from anywhere else (gcr.io/istio-release has no 1.31 image).
    assert not [image for image in images if "istio" in image and image not in mirrored]


def test_the_lattice_gateway_runs_envoy_from_an_image_asset(synths: Any) -> None:
    """The edge Envoy is the project's ECR image asset, mirrored FROM the pinned Envoy release (the
    deployer's Docker pulls that once, at deploy time)."""
    lattice: Synthesized = synths["lattice"]
    routing = lattice.template_json(lattice.application.routing)
    objects = [
        obj
        for resource in routing["Resources"].values()
        if resource["Type"] == "Custom::AWSCDK-EKS-KubernetesResource"
        for obj in json.loads(_text(resource["Properties"]["Manifest"]))
    ]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "ingress-gw"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    image = container["image"]
    assert registry(image) == ASSET_REGISTRY
    asset = _docker_image_assets(lattice)[image]
    assert asset["dockerBuildArgs"] == {"UPSTREAM_IMAGE": UPSTREAM_IMAGE}
    assert asset["platform"] == "linux/amd64"
    assert UPSTREAM_IMAGE == "docker.io/envoyproxy/envoy:distroless-v1.40.0"
