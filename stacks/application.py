"""The application: every stack, wired. One definition used by `cdk deploy --all` and by the
pipeline's stages, so what is reviewed locally is what gets promoted."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Annotations, Environment, Stack
from constructs import Construct

from config.settings import AppConfig

from .cluster import ClusterStack
from .discovery import DiscoveryStack
from .network import NetworkStack
from .platform import MeshPlatformStack

APP_MESH_END_OF_SUPPORT = (
    "AWS discontinued App Mesh on 2026-09-30: existing meshes keep running, but AWS ships no "
    "fixes and the service may stop accepting changes. This app still deploys App Mesh as the "
    "workshop does; the topology model (config/topology.py) is independent of App Mesh so that "
    "another backend can render it. See README, 'App Mesh end of support'."
)


@dataclass(frozen=True)
class Application:
    network: NetworkStack
    cluster: ClusterStack
    discovery: DiscoveryStack
    platform: MeshPlatformStack

    @property
    def stacks(self) -> list[Stack]:
        return [self.network, self.cluster, self.discovery, self.platform]


def build_application(scope: Construct, config: AppConfig) -> Application:
    env = Environment(account=config.account, region=config.region)
    prefix = config.stack_prefix

    def name(unit: str) -> str:
        return f"{prefix}-{unit}"

    network = NetworkStack(scope, name("Network"), config=config.network, env=env, description="App Mesh on EKS: VPC")
    cluster = ClusterStack(
        scope, name("Cluster"), config=config.cluster, vpc=network.vpc, env=env, description="App Mesh on EKS: EKS cluster and nodes"
    )
    discovery = DiscoveryStack(
        scope, name("Discovery"), config=config.discovery, vpc=network.vpc, env=env, description="App Mesh on EKS: Route53 zone, Cloud Map namespace"
    )
    platform = MeshPlatformStack(
        scope,
        name("MeshPlatform"),
        config=config,
        cluster=cluster.cluster,
        discovery=discovery.discovery,
        env=env,
        description="App Mesh on EKS: App Mesh controller, mesh namespace, container logs",
    )
    Annotations.of(platform).add_warning_v2("appmesh-eks:app-mesh-discontinued", APP_MESH_END_OF_SUPPORT)
    return Application(network, cluster, discovery, platform)
