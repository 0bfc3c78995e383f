"""What every mesh backend answers, so that the stacks ask rather than branch on a mesh's name.

A backend renders the backend-neutral topology (config/topology.py) for one service mesh:

* platform: the Helm releases, namespaces and IAM it needs, and the application namespace with
  its labels and Pod Security level (`install_platform`);
* per service, per virtual service and for the gateway: its own Kubernetes objects, next to the
  mesh-neutral workloads that charts/workloads.py renders (`service_parts`, `routing_objects`,
  `install_gateway`);
* AWS resources it needs and no others (`discovery_needs`, `workload_identity`, `name_records`);
* what its admission webhook adds to a pod (`injected`), for the admission model in the tests;
* its objects read back into the neutral form (`read_back`), for the round-trip parity test;
* a capability table (mesh/capabilities.py).

The pure parts (objects as dicts) are testable without AWS; the CDK parts take the stack to build in.
The types these answers are made of live below, in the neutral mesh model (`mesh/`), so that the
renderers can use them without importing this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from config.topology import Gateway, Service, Topology, VirtualService
from mesh.capabilities import CapabilityTable, Feature
from mesh.names import Manifest, MeshNames, PodSecurityLevel
from mesh.parts import Injection, ServiceParts

if TYPE_CHECKING:
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_eks_v2 as eks
    from constructs import Construct, IConstruct

    from components.discovery import ServiceDiscovery
    from components.mesh_workload import WorkloadIdentity
    from config.settings import AppConfig


@dataclass(frozen=True)
class DiscoveryNeeds:
    """The AWS name services a backend uses: the Route 53 private zone of the workshop names, and
    the Cloud Map namespace pods register in. A backend that needs neither gets neither."""

    hosted_zone: bool
    cloud_map: bool

    @property
    def any(self) -> bool:
        return self.hosted_zone or self.cloud_map


@dataclass(frozen=True)
class Preflight:
    """A call made first in `cdk deploy --all`: if AWS refuses it, the deploy stops there."""

    service: str  # AWS SDK v3 client name, e.g. "appmesh"
    action: str  # e.g. "listMeshes"
    iam_action: str  # e.g. "appmesh:ListMeshes"
    message: str  # what the failure says, and the way forward


@dataclass(frozen=True)
class PlatformContext:
    config: AppConfig
    cluster: eks.ICluster
    vpc: ec2.IVpc
    discovery: ServiceDiscovery | None


@dataclass
class Platform:
    """What a backend installed; `ready` is what every workload manifest waits for (and is
    deleted before): the application namespace and anything its pods need at admission.
    `schedulable`: what must be in place before a pod without the backend's tolerations can be
    scheduled at all (its node agent ready, the startup taints gone); the platform's EKS add-ons
    wait for it."""

    ready: list[IConstruct]
    schedulable: list[IConstruct] = field(default_factory=list)
    # Where the mesh's request metrics can be queried (None: nowhere the app deploys).
    metrics: MetricsWorkspace | None = None


@dataclass(frozen=True)
class MetricsWorkspace:
    """A Prometheus-compatible workspace the mesh's metrics land in: its ARN (for IAM) and its
    Prometheus endpoint (for PromQL)."""

    arn: str
    prometheus_url: str


@dataclass
class GatewayInstall:
    """The ingress gateway as installed: the manifests and releases to wait for before reading
    its load balancer's address, and the Kubernetes Service that carries the NLB."""

    service_name: str
    installed: list[IConstruct]


class MeshBackend(ABC):
    """A service mesh the topology can be rendered to. Subclasses are stateless."""

    name: ClassVar[str]
    title: ClassVar[str]
    capabilities: ClassVar[CapabilityTable]
    # The Pod Security Admission level the application namespace enforces: the strictest that
    # admits the backend's meshed pods (the admission-model tests prove it).
    pod_security: ClassVar[PodSecurityLevel]
    # When the backend is the one a user should deploy today, None; else why not (synth warns).
    warning: ClassVar[str | None] = None
    # The features its objects carry, which `read_back` returns (the parity test's scope).
    round_trip: ClassVar[frozenset[Feature]]
    # Pods its control plane runs on every node (for the node-capacity check).
    daemonset_pods: ClassVar[int] = 0
    # Taints (key, effect) a node starts with, which the backend's own controller removes once its
    # node agent is ready there; the managed node group applies them to every new node.
    node_startup_taints: ClassVar[tuple[tuple[str, str], ...]] = ()

    @abstractmethod
    def platform_pods(self, topology: Topology) -> int:
        """Pods its control plane runs once per cluster (for the node-capacity check)."""

    # -- AWS ---------------------------------------------------------------------------------

    @abstractmethod
    def discovery_needs(self, topology: Topology) -> DiscoveryNeeds: ...

    def preflight(self) -> Preflight | None:
        return None

    def check_config(self, config: AppConfig) -> None:
        """Raises ConfigError for a setting the backend's AWS resources cannot work with (a cluster
        setting, a service's quota), beyond what its capability table refuses."""
        return None  # every setting works, unless the backend says otherwise

    @abstractmethod
    def install_platform(self, scope: Construct, context: PlatformContext) -> Platform: ...

    @abstractmethod
    def workload_identity(self, names: MeshNames, workload: Service | Gateway, topology: Topology) -> WorkloadIdentity:
        """Who the pod is; any ARN in its statements is written with pseudo parameters, so it
        resolves in whichever stack creates the role."""

    @abstractmethod
    def name_records(self, scope: Construct, context: PlatformContext, after: Sequence[IConstruct]) -> None:
        """Make each virtual service's workshop name resolve where the backend needs it to."""

    @abstractmethod
    def install_gateway(
        self, scope: Construct, context: PlatformContext, gateway: Gateway, *, role_arn: str | None, after: Sequence[IConstruct]
    ) -> GatewayInstall: ...

    # -- Kubernetes objects (pure) -----------------------------------------------------------

    @abstractmethod
    def platform_objects(self, names: MeshNames, topology: Topology) -> list[Manifest]:
        """The mesh-wide objects the platform applies (pure; install_platform applies them)."""

    @abstractmethod
    def namespace_labels(self, names: MeshNames, topology: Topology) -> dict[str, str]:
        """The mesh's labels on the application namespace (Pod Security labels are added for it)."""

    @abstractmethod
    def service_parts(self, service: Service, topology: Topology, names: MeshNames) -> ServiceParts: ...

    @abstractmethod
    def routing_objects(self, virtual_service: VirtualService, topology: Topology, names: MeshNames) -> list[Manifest]:
        """One virtual service's routing: its manifest holds these and nothing of another, so a
        canary step changes exactly one manifest."""

    @abstractmethod
    def gateway_objects(
        self, gateway: Gateway, topology: Topology, names: MeshNames, *, role_arn: str | None, kplus: Any
    ) -> list[Manifest]:
        """Every Kubernetes object of the gateway that the app renders itself (pure)."""

    def canary_prometheus(self, names: MeshNames, topology: Topology, virtual_service: VirtualService) -> dict[str, Any] | None:
        """How the backend's Prometheus metrics tell a canary's two versions apart (the `prometheus`
        section of the canary spec: label, values per version, further matchers), or None when its
        metrics are not in Prometheus (the capability table then says `cannot`)."""
        return None

    def chart_pods(self, topology: Topology, names: MeshNames) -> dict[str, Manifest]:
        """Pod templates a pinned Helm chart renders in the application namespace (modelled from
        the chart's template), for the admission model: `<Kind>/<name> (...)` -> template."""
        return {}

    @abstractmethod
    def injected(self, pod: Manifest, topology: Topology) -> Injection:
        """What the backend's injector adds to this pod template (empty when it injects nothing)."""

    @abstractmethod
    def read_back(self, objects: list[Manifest], names: MeshNames) -> dict[str, Any]:
        """The backend's objects read back into the neutral form of `neutral_form` (parity)."""
