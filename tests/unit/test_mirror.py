"""The mirror of an upstream image (components/mirror.py): one Dockerfile, one build argument, and
only pinned references on a named registry."""

from __future__ import annotations

import re

import aws_cdk as cdk
import pytest

from components.mirror import BUILD_ARG, MIRROR_DIRECTORY, mirrored_image


@pytest.mark.parametrize(
    "upstream",
    [
        "docker.io/istio/pilot:1.31.4",
        "docker.io/envoyproxy/envoy:distroless-v1.40.0",
        "registry.example.com:5000/team/tool:v1",
        "docker.io/istio/proxyv2:1.31.4@sha256:" + "0" * 64,
    ],
)
def test_a_pinned_reference_on_a_named_registry_is_mirrored(upstream: str) -> None:
    stack = cdk.Stack(cdk.App(), "Mirror")
    asset = mirrored_image(stack, "Image", upstream=upstream, display_name="an image")
    assert asset.image_uri  # a token the deploy fills in


@pytest.mark.parametrize(
    "upstream",
    [
        "istio/pilot:1.31.4",  # Docker Hub without saying so
        "pilot:1.31.4",
        "docker.io/istio/pilot",  # no tag: latest, whatever it is that day
        "docker.io/istio/pilot:latest",
        "docker.io/istio/pilot@sha256:" + "0" * 64,  # a digest alone says nothing a reader can check
        "docker.io/istio/pilot:1.31.4@sha256:abc",
    ],
)
def test_an_unpinned_or_implicit_reference_is_refused(upstream: str) -> None:
    stack = cdk.Stack(cdk.App(), "Mirror")
    with pytest.raises(ValueError, match=re.escape(f"mirrored_image: '{upstream}' is not registry/repository:tag")):
        mirrored_image(stack, "Image", upstream=upstream, display_name="an image")


def test_the_mirror_is_from_the_build_argument_and_nothing_else() -> None:
    lines = [line for line in (MIRROR_DIRECTORY / "Dockerfile").read_text().splitlines() if line and not line.startswith("#")]
    assert lines == [f"ARG {BUILD_ARG}", f"FROM ${{{BUILD_ARG}}}"]
    assert sorted(path.name for path in MIRROR_DIRECTORY.iterdir()) == ["Dockerfile"]
