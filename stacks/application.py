"""The application: every stack, wired. One definition used by `cdk deploy --all` and by the
pipeline's stages, so what is reviewed locally is what gets promoted."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from aws_cdk import Annotations, Aspects, Environment, Stack
from constructs import Construct

from backends import backend_for
from backends.base import MeshBackend
from components.nag import CdkProviderCheckovSkips
from config.kubernetes import support_warning
from config.settings import AppConfig

from .cluster import ClusterStack
from .discovery import DiscoveryStack
from .mesh_workload import MeshRoutingStack, MeshServicesStack
from .network import NetworkStack
from .platform import MeshPlatformStack
from .preflight import PreflightStack


@dataclass(frozen=True)
class Application:
    backend: MeshBackend
    preflight: PreflightStack | None
    network: NetworkStack
    cluster: ClusterStack
    discovery: DiscoveryStack | None
    platform: MeshPlatformStack
    services: tuple[MeshServicesStack, ...]
    routing: MeshRoutingStack

    @property
    def stacks(self) -> list[Stack]:
        first = [self.preflight] if self.preflight else []
        discovery = [self.discovery] if self.discovery else []
        return [*first, self.network, self.cluster, *discovery, self.platform, *self.services, self.routing]


def build_application(scope: Construct, config: AppConfig) -> Application:
    # build_config has already refused (ConfigError) what the backend cannot express.
    backend = backend_for(config)
    env = Environment(account=config.account, region=config.region)
    prefix = config.stack_prefix
    title = f"{backend.title} on EKS"

    def name(unit: str) -> str:
        return f"{prefix}-{unit}"

    check = backend.preflight()
    preflight = (
        PreflightStack(
            scope,
            name("Preflight"),
            preflight=check,
            log_retention_days=config.cluster.log_retention_days,
            env=env,
            description=f"{title}: preflight, {check.iam_action} must answer before anything else is deployed",
        )
        if check
        else None
    )
    network = NetworkStack(scope, name("Network"), config=config.network, env=env, description=f"{title}: VPC")
    cluster = ClusterStack(
        scope,
        name("Cluster"),
        config=config.cluster,
        vpc=network.vpc,
        startup_taints=backend.node_startup_taints,
        env=env,
        description=f"{title}: EKS cluster and nodes",
    )
    needs = backend.discovery_needs(config.mesh.topology)
    discovery = (
        DiscoveryStack(
            scope,
            name("Discovery"),
            config=config.discovery,
            vpc=network.vpc,
            needs=needs,
            env=env,
            description=f"{title}: "
            + ", ".join(what for what, used in (("Route 53 zone", needs.hosted_zone), ("Cloud Map namespace", needs.cloud_map)) if used),
        )
        if needs.any
        else None
    )
    platform = MeshPlatformStack(
        scope,
        name("MeshPlatform"),
        config=config,
        backend=backend,
        cluster=cluster.cluster,
        vpc=network.vpc,
        discovery=discovery.discovery if discovery else None,
        env=env,
        description=f"{title}: mesh control plane, application namespace, container logs",
    )
    if backend.warning:
        Annotations.of(platform).add_warning_v2(f"appmesh-eks:{backend.name}-not-deployable", backend.warning)
    version_warning = support_warning(config.cluster.kubernetes, config.today)
    if version_warning:
        Annotations.of(cluster).add_warning_v2("appmesh-eks:kubernetes-support-ending", version_warning)

    services = list(config.mesh.topology.services)
    per_stack = config.mesh.services_per_stack
    slices = [services[i : i + per_stack] for i in range(0, len(services), per_stack)]
    service_stacks = tuple(
        MeshServicesStack(
            scope,
            # The first slice's name never depends on how many there are: renamed at the 41st
            # service, it would be a new stack re-creating every object of the old one, and the
            # old one an orphan that `cdk destroy --all` no longer lists.
            name("MeshServices" if index == 0 else f"MeshServices{index + 1}"),
            config=config,
            backend=backend,
            services=slice_,
            cluster=cluster.cluster,
            after=platform.ready,
            env=env,
            description=f"{title}: services {slice_[0].name} .. {slice_[-1].name}",
        )
        for index, slice_ in enumerate(slices)
    )
    for earlier, later in pairwise(service_stacks):
        # Services are cut in topology order, so removing one moves each later service of its
        # stack's successors back one stack. Every manifest is applied with overwrite, and a
        # manifest's Delete is `kubectl delete` of its objects by name: were the stack a service
        # joins deployed first, the stack it leaves would then delete what the first had just
        # taken over, and report success. Deployed later-first, the objects are deleted, then
        # created again (their pods restart) by the stack they join.
        earlier.add_stack_dependency(later, "a service that moves back one stack is deleted there before it is created here")
    routing = MeshRoutingStack(
        scope,
        name("MeshRouting"),
        context=platform.context,
        backend=backend,
        after=platform.ready,
        service_manifests={name: manifest for stack in service_stacks for name, manifest in stack.manifests.items()},
        metrics=platform.metrics,
        env=env,
        description=f"{title}: routes, workshop names, ingress gateway",
    )
    for stack in service_stacks:
        # Routes target the services' workloads: create after, delete before (see MeshRoutingStack).
        routing.add_stack_dependency(stack, "routes target the workloads of these services")
    application = Application(backend, preflight, network, cluster, discovery, platform, service_stacks, routing)
    for deployable in application.stacks:
        deployable.termination_protection = config.termination_protection
        Aspects.of(deployable).add(CdkProviderCheckovSkips())
        if preflight and deployable is not preflight:
            # The preflight goes first: if the mesh's API does not answer, nothing else is created.
            deployable.add_stack_dependency(preflight, "the mesh's API must answer before anything is created")
    return application
