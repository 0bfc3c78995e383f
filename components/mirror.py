"""Upstream images the cluster must not pull where they are published (Docker Hub's anonymous pull
limit, tests/stacks/test_images.py), mirrored into the account's ECR as CDK image assets.

One Dockerfile (images/mirror/Dockerfile: `FROM ${UPSTREAM_IMAGE}`) for every mirrored image; each
asset differs only by its build argument, so each has its own hash and tag in the bootstrap
repository. Synth hashes the folder and the build argument and needs no Docker engine; `cdk deploy`
(cdk-assets) builds and pushes an asset only when its tag is not in the repository yet, so a mirror,
once pushed, is what the cluster runs until the pin changes.

Upstream images are pinned by tag, not digest: nothing here can reach a registry to read a digest
(synth and the tests are offline, without a container engine), and a digest nobody verified would be
a guess. The projects mirrored here do not move their release tags, and the pushed copy is frozen
under its asset hash, so a retagged upstream reaches the cluster only with a new pin.
"""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

MIRROR_DIRECTORY = Path(__file__).resolve().parent / "images" / "mirror"
BUILD_ARG = "UPSTREAM_IMAGE"
# One architecture, as the services' images: the managed node group runs AL2023 x86_64
# (components/cluster.py) and Auto Mode's general-purpose pool is amd64 only. An image asset has one
# platform, so a mirror is not a multi-architecture index as its upstream is: what runs it on a node
# of another architecture (a DaemonSet) must select amd64 nodes (kubernetes.io/arch).
MIRROR_PLATFORM = ecr_assets.Platform.LINUX_AMD64
MIRROR_ARCHITECTURE = "amd64"
# What an asset URI looks like once a deploy fills in the account and region (the bootstrap's
# default qualifier), for models and tests that cannot hold a CloudFormation token.
_EXAMPLE_REPOSITORY = "123456789012.dkr.ecr.us-west-1.amazonaws.com/cdk-hnb659fds-container-assets-123456789012-us-west-1"
# registry (a dot in its name, a port allowed) / repository path : tag, and a digest if one is known.
# The registry is spelt out so the pin says where the deployer's Docker pulls from (a bare
# `istio/pilot` is Docker Hub implicitly); a tag is required, and not `latest`, so that no mirror
# follows a moving name.
_PINNED = re.compile(
    r"^[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?(/[a-z0-9._-]+)+:(?!latest(@|$))[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[0-9a-f]{64})?$"
)


def mirrored_image(scope: Construct, id: str, *, upstream: str, display_name: str) -> ecr_assets.DockerImageAsset:
    """`upstream` (registry/repository:tag) as an image asset, built for MIRROR_PLATFORM."""
    if not _PINNED.match(upstream):
        raise ValueError(f"mirrored_image: {upstream!r} is not registry/repository:tag (a pinned tag, not latest, on a named registry)")
    return ecr_assets.DockerImageAsset(
        scope,
        id,
        directory=str(MIRROR_DIRECTORY),
        platform=MIRROR_PLATFORM,
        build_args={BUILD_ARG: upstream},
        display_name=display_name,
    )


def example_asset_uri(tag: str) -> str:
    """An image asset's URI in an example account, with `tag` where the asset hash goes."""
    return f"{_EXAMPLE_REPOSITORY}:{tag}"
