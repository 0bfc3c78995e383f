"""The application: every stack, wired. One definition used by `cdk deploy --all` and by the
pipeline's stages, so what is reviewed locally is what gets promoted."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Annotations, Aspects, Environment, Stack
from constructs import Construct

from components.nag import CdkProviderCheckovSkips
from config.settings import AppConfig

from .cluster import ClusterStack
from .discovery import DiscoveryStack
from .mesh_workload import MeshRoutingStack, MeshServicesStack
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
    services: tuple[MeshServicesStack, ...]
    routing: MeshRoutingStack

    @property
    def stacks(self) -> list[Stack]:
        return [self.network, self.cluster, self.discovery, self.platform, *self.services, self.routing]


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
        scope,
        name("Discovery"),
        config=config.discovery,
        vpc=network.vpc,
        env=env,
        description="App Mesh on EKS: Route53 zone, Cloud Map namespace",
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

    services = list(config.mesh.topology.services)
    per_stack = config.mesh.services_per_stack
    slices = [services[i : i + per_stack] for i in range(0, len(services), per_stack)]
    service_stacks = tuple(
        MeshServicesStack(
            scope,
            name("MeshServices" if len(slices) == 1 else f"MeshServices{index + 1}"),
            config=config,
            services=slice_,
            cluster=cluster.cluster,
            after=platform.ready,
            env=env,
            description=f"App Mesh on EKS: services {slice_[0].name} .. {slice_[-1].name}",
        )
        for index, slice_ in enumerate(slices)
    )
    routing = MeshRoutingStack(
        scope,
        name("MeshRouting"),
        config=config,
        cluster=cluster.cluster,
        discovery=discovery.discovery,
        vpc=network.vpc,
        after=platform.ready,
        service_manifests=[manifest for stack in service_stacks for manifest in stack.manifests.values()],
        env=env,
        description="App Mesh on EKS: virtual routers and services, DNS names, ingress gateway",
    )
    for stack in service_stacks:
        # Routes reference virtual nodes: create after, delete before (see MeshRoutingStack).
        routing.add_stack_dependency(stack, "routes target the virtual nodes of these services")
    application = Application(network, cluster, discovery, platform, service_stacks, routing)
    for deployable in application.stacks:
        deployable.termination_protection = config.termination_protection
        Aspects.of(deployable).add(CdkProviderCheckovSkips())
    return application
