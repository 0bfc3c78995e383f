"""cdk8s charts for the mesh: one chart per unit that CloudFormation creates and deletes together.

A chart becomes one KubernetesManifest (one custom resource, one kubectl apply). Units:
- MeshChart: the Mesh (must exist before any member: the controller's webhook looks it up).
- ServiceChart: one service's ServiceAccount, Deployment, Service and VirtualNode.
- RoutingChart: VirtualRouters and VirtualServices for a slice of the virtual services.
- GatewayChart: the VirtualGateway, its Envoy Deployment and NLB Service, the GatewayRoutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import cdk8s
from constructs import Construct

from config.topology import Gateway, Service, Topology, VirtualService, backend_env_name

from . import appmesh, certificates

# Pinned Envoy image for the gateway pods (the controller pins the sidecars' image itself).
GATEWAY_ENVOY_IMAGE = "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29.12.1-prod"
# Kubernetes' well-known zone label; the downward API reads it where the cluster copies node
# topology labels onto pods, and the services show "unknown" where it does not.
ZONE_LABEL = "topology.kubernetes.io/zone"
# The uid the services' images run as (services/*/Dockerfile USER).
APP_UID = 10001


@dataclass(frozen=True)
class MeshNames:
    """Names shared by every chart."""

    mesh: str
    namespace: str
    hosted_zone: str
    cloud_map_namespace: str


def _chart(app: cdk8s.App, id: str, namespace: str | None) -> cdk8s.Chart:
    # Stable names: objects are referenced by name (virtualNodeRef, serviceAccountName, ...).
    return cdk8s.Chart(app, id, namespace=namespace, disable_resource_name_hashes=True)


def _raw(chart: Construct, id: str, manifest: dict[str, Any]) -> cdk8s.ApiObject:
    metadata = manifest["metadata"]
    api_object = cdk8s.ApiObject(
        chart,
        id,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=cdk8s.ApiObjectMetadata(name=metadata["name"], namespace=metadata.get("namespace")),
    )
    if "spec" in manifest:
        api_object.add_json_patch(cdk8s.JsonPatch.add("/spec", manifest["spec"]))
    return api_object


def mesh_chart(names: MeshNames, topology: Topology) -> cdk8s.Chart:
    chart = _chart(cdk8s.App(), "mesh", None)
    _raw(chart, "mesh", appmesh.mesh(names.mesh, topology.egress_filter))
    return chart


def mesh_ca_chart(names: MeshNames) -> cdk8s.Chart:
    chart = _chart(cdk8s.App(), "mesh-ca", names.namespace)
    for index, manifest in enumerate(certificates.mesh_ca(names.mesh, names.namespace)):
        _raw(chart, f"ca-{index}", manifest)
    return chart


def _harden(chart: Construct, deployment: Any, labels: dict[str, str], replicas: int, *, name: str, run_as_user: int | None) -> None:
    """What cdk8s-plus does not set: seccomp, dropped capabilities, zone spread, a disruption budget.

    Pods run non-root with a read-only root filesystem (cdk8s-plus defaults, kept) and get a
    writable /tmp. The App Mesh injector adds Envoy (uid 1337, no extra capabilities) and an init
    container that needs NET_ADMIN and root to install the iptables redirect; that is why the
    namespace cannot enforce the baseline Pod Security level (see the namespace labels).
    """
    api = cdk8s.ApiObject.of(deployment)
    api.add_json_patch(cdk8s.JsonPatch.add("/spec/template/spec/securityContext/seccompProfile", {"type": "RuntimeDefault"}))
    api.add_json_patch(cdk8s.JsonPatch.add("/spec/template/spec/containers/0/securityContext/capabilities", {"drop": ["ALL"]}))
    if run_as_user is not None:
        # On the container, not the pod: a pod-level uid would also apply to the injected Envoy,
        # which must run as 1337 for the iptables redirect to exempt its own traffic.
        api.add_json_patch(cdk8s.JsonPatch.add("/spec/template/spec/containers/0/securityContext/runAsUser", run_as_user))
        api.add_json_patch(cdk8s.JsonPatch.add("/spec/template/spec/containers/0/securityContext/runAsGroup", run_as_user))
    api.add_json_patch(
        cdk8s.JsonPatch.add(
            "/spec/template/spec/topologySpreadConstraints",
            [
                {
                    "maxSkew": 1,
                    "topologyKey": ZONE_LABEL,
                    # Prefer spreading over refusing to schedule when a zone is full.
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": labels},
                }
            ],
        )
    )
    if replicas > 1:
        cdk8s.ApiObject(
            chart,
            "disruption-budget",
            api_version="policy/v1",
            kind="PodDisruptionBudget",
            metadata=cdk8s.ApiObjectMetadata(name=name, labels=labels),
        ).add_json_patch(cdk8s.JsonPatch.add("/spec", {"minAvailable": 1, "selector": {"matchLabels": labels}}))


# checkov findings that do not apply here, with the reason, as annotations on the object itself.
IMMUTABLE_ASSET_TAG = (
    "the image tag is the CDK asset's content hash, so a tag never changes meaning: IfNotPresent "
    "cannot run stale code and a digest would add nothing"
)
NO_NETWORK_POLICY = (
    "isolation between pods is enforced by the mesh (mTLS STRICT listeners that refuse callers "
    "without a mesh certificate, DROP_ALL egress); NetworkPolicies need the VPC CNI's policy "
    "agent, which this cluster does not enable"
)
CHECKOV_APP = {"CKV_K8S_15": IMMUTABLE_ASSET_TAG, "CKV_K8S_43": IMMUTABLE_ASSET_TAG, "CKV2_K8S_6": NO_NETWORK_POLICY}
CHECKOV_GATEWAY = {
    "CKV_K8S_15": "a pinned release tag of AWS's App Mesh Envoy image, which AWS does not re-tag",
    "CKV_K8S_43": "a pinned release tag of AWS's App Mesh Envoy image; its digest cannot be resolved offline at synth",
    "CKV_K8S_40": "Envoy runs as uid 1337, the uid App Mesh's images and iptables rules are built around",
    "CKV2_K8S_6": NO_NETWORK_POLICY,
}


def nlb_annotations(scheme: str) -> dict[str, str]:
    """An NLB with the given scheme, understood by both provisioners: the AWS Load Balancer
    Controller reads `...-scheme`, EKS's built-in service controller reads `...-internal` (and
    without it would make an internal gateway internet-facing)."""
    annotations = {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": scheme,
    }
    if scheme == "internal":
        annotations["service.beta.kubernetes.io/aws-load-balancer-internal"] = "true"
    return annotations


def checkov_skips(skips: dict[str, str]) -> dict[str, str]:
    return {f"checkov.io/skip{index}": f"{check}={reason}" for index, (check, reason) in enumerate(sorted(skips.items()), start=1)}


def _irsa_service_account(chart: Construct, name: str, labels: dict[str, str], role_arn: str) -> cdk8s.ApiObject:
    """IRSA: the pod's Envoy (StreamAggregatedResources) and X-Ray daemon sidecar use this role."""
    return cdk8s.ApiObject(
        chart,
        "service-account",
        api_version="v1",
        kind="ServiceAccount",
        metadata=cdk8s.ApiObjectMetadata(name=name, labels=labels, annotations={"eks.amazonaws.com/role-arn": role_arn}),
    )


def _tmp_volume(chart: Construct, kplus: ModuleType) -> Any:
    return kplus.Volume.from_empty_dir(chart, "tmp-volume", "tmp", size_limit=cdk8s.Size.mebibytes(64))


def service_chart(
    service: Service,
    topology: Topology,
    names: MeshNames,
    *,
    image: str,
    role_arn: str,
    kplus: ModuleType,
) -> cdk8s.Chart:
    chart = _chart(cdk8s.App(), f"service-{service.name}", names.namespace)
    labels = service.pod_labels
    account = _irsa_service_account(chart, service.name, labels, role_arn)
    env = {
        "PORT": kplus.EnvValue.from_value(str(service.port)),
        "HEALTH_PORT": kplus.EnvValue.from_value(str(service.health_port)),
        "SERVICE_NAME": kplus.EnvValue.from_value(service.name),
        "POD_NAME": kplus.EnvValue.from_field_ref(kplus.EnvFieldPaths.POD_NAME),
        "AVAILABILITY_ZONE": kplus.EnvValue.from_field_ref(kplus.EnvFieldPaths.POD_LABEL, key=ZONE_LABEL),
    }
    for backend in service.backends:
        port = topology.service(topology.virtual_service(backend).routes[0].targets[0][0]).port
        # Mesh names, not Kubernetes Service names: Envoy routes by this host name.
        env[backend_env_name(backend)] = kplus.EnvValue.from_value(f"http://{backend}.{names.hosted_zone}:{port}")
    # Envoy intercepts only the app port; the health port stays reachable for the kubelet.
    pod_annotations = {"appmesh.k8s.aws/ports": str(service.port)}
    # The VirtualNode (and the certificate) come before the Deployment in the manifest: the
    # injector configures a pod from its VirtualNode and leaves a pod it finds none for unmeshed.
    ahead: list[Construct] = [account]
    if topology.mtls == "strict":
        served = [f"{vs}.{names.hosted_zone}" for vs in topology.served_by(service.name)]
        # App Mesh expects the Cloud Map name among the SANs when discovery is Cloud Map.
        own = [f"{service.name}.{names.hosted_zone}", f"{service.name}.{names.cloud_map_namespace}"]
        ahead.append(
            _raw(
                chart,
                "certificate",
                certificates.workload_certificate(service.name, [*served, *own], mesh=names.mesh, namespace=names.namespace),
            )
        )
        # The controller mounts this secret into the Envoy sidecar it injects.
        pod_annotations["appmesh.k8s.aws/secretMounts"] = f"{certificates.secret_name(service.name)}:{appmesh.CERT_DIR}/"
    ahead.append(
        _raw(
            chart,
            "virtual-node",
            appmesh.virtual_node(
                service, topology, namespace=names.namespace, cloud_map_namespace=names.cloud_map_namespace, hosted_zone=names.hosted_zone
            ),
        )
    )
    tmp = _tmp_volume(chart, kplus)
    deployment = kplus.Deployment(
        chart,
        "deployment",
        metadata=cdk8s.ApiObjectMetadata(name=service.virtual_node, labels=labels, annotations=checkov_skips(CHECKOV_APP)),
        replicas=service.replicas,
        select=False,
        pod_metadata=cdk8s.ApiObjectMetadata(labels=labels, annotations=pod_annotations),
        service_account=kplus.ServiceAccount.from_service_account_name(chart, "service-account-ref", service.name),
        # IRSA's webhook projects its own token; the Kubernetes API token is not needed.
        automount_service_account_token=False,
        volumes=[tmp],
        containers=[
            kplus.ContainerProps(
                name="app",
                image=image,
                port_number=service.port,
                env_variables=env,
                volume_mounts=[kplus.VolumeMount(path="/tmp", volume=tmp)],
                readiness=kplus.Probe.from_http_get(service.health_path, port=service.health_port),
                liveness=kplus.Probe.from_http_get(service.health_path, port=service.health_port),
                startup=kplus.Probe.from_http_get(service.health_path, port=service.health_port),
                resources=kplus.ContainerResources(
                    cpu=kplus.CpuResources(request=kplus.Cpu.millis(100), limit=kplus.Cpu.millis(500)),
                    memory=kplus.MemoryResources(request=cdk8s.Size.mebibytes(128), limit=cdk8s.Size.mebibytes(256)),
                ),
                image_pull_policy=kplus.ImagePullPolicy.IF_NOT_PRESENT,
            )
        ],
    )
    deployment.select(kplus.LabelSelector.of(labels=labels))
    deployment.node.add_dependency(*ahead)
    _harden(chart, deployment, labels, service.replicas, name=service.virtual_node, run_as_user=APP_UID)
    service_type = {
        "none": kplus.ServiceType.CLUSTER_IP,
        "internal": kplus.ServiceType.LOAD_BALANCER,
        "external": kplus.ServiceType.LOAD_BALANCER,
    }
    annotations = nlb_annotations("internet-facing" if service.exposure == "external" else "internal") if service.exposure != "none" else {}
    kplus.Service(
        chart,
        "service",
        metadata=cdk8s.ApiObjectMetadata(name=service.name, labels=labels, annotations=annotations or None),
        type=service_type[service.exposure],
        selector=deployment,
        ports=[kplus.ServicePort(port=service.port if service.exposure == "none" else 80, target_port=service.port, name="http")],
        # Only the allowlist reaches an exposed service (the seed opens the frontend in a browser).
        load_balancer_source_ranges=list(service.source_cidrs) or None,
    )
    return chart


def routing_chart(id: str, virtual_services: list[VirtualService], topology: Topology, names: MeshNames) -> cdk8s.Chart:
    chart = _chart(cdk8s.App(), id, names.namespace)
    for virtual_service in virtual_services:
        _raw(chart, f"{virtual_service.name}-router", appmesh.virtual_router(virtual_service, topology, namespace=names.namespace))
        _raw(
            chart,
            f"{virtual_service.name}-service",
            appmesh.virtual_service_object(virtual_service, namespace=names.namespace, hosted_zone=names.hosted_zone),
        )
    return chart


def gateway_chart(gateway: Gateway, topology: Topology, names: MeshNames, *, role_arn: str, kplus: ModuleType) -> cdk8s.Chart:
    chart = _chart(cdk8s.App(), "gateway", names.namespace)
    labels = gateway.pod_labels
    volumes = [_tmp_volume(chart, kplus)]
    mounts = [kplus.VolumeMount(path="/tmp", volume=volumes[0])]
    if topology.mtls == "strict":
        _raw(
            chart,
            "certificate",
            certificates.workload_certificate(
                gateway.name, [f"{gateway.name}.{names.hosted_zone}"], mesh=names.mesh, namespace=names.namespace
            ),
        )
        # The injector does not mount secrets into a gateway's own Envoy container: mount it here.
        secret = kplus.Secret.from_secret_name(chart, "tls-secret", certificates.secret_name(gateway.name))
        volumes.append(kplus.Volume.from_secret(chart, "tls-volume", secret, name="tls"))
        mounts.append(kplus.VolumeMount(path=appmesh.CERT_DIR, volume=volumes[1], read_only=True))
    account = _irsa_service_account(chart, gateway.name, labels, role_arn)
    deployment = kplus.Deployment(
        chart,
        "deployment",
        metadata=cdk8s.ApiObjectMetadata(name=gateway.name, labels=labels, annotations=checkov_skips(CHECKOV_GATEWAY)),
        replicas=gateway.replicas,
        select=False,
        pod_metadata=cdk8s.ApiObjectMetadata(labels=labels),
        service_account=kplus.ServiceAccount.from_service_account_name(chart, "service-account-ref", gateway.name),
        automount_service_account_token=False,
        volumes=volumes,
        containers=[
            kplus.ContainerProps(
                # The controller configures the gateway's Envoy by this container name.
                name="envoy",
                image=GATEWAY_ENVOY_IMAGE,
                port_number=gateway.port,
                volume_mounts=mounts,
                # Envoy opens the listener only once the controller has configured it.
                readiness=kplus.Probe.from_tcp_socket(port=gateway.port),
                liveness=kplus.Probe.from_tcp_socket(port=gateway.port),
                resources=kplus.ContainerResources(
                    cpu=kplus.CpuResources(request=kplus.Cpu.millis(100), limit=kplus.Cpu.millis(1000)),
                    memory=kplus.MemoryResources(request=cdk8s.Size.mebibytes(128), limit=cdk8s.Size.mebibytes(512)),
                ),
                image_pull_policy=kplus.ImagePullPolicy.IF_NOT_PRESENT,
                # Envoy's image runs as its own non-root user (1337) and writes nothing to disk.
                security_context=kplus.ContainerSecurityContextProps(ensure_non_root=True, read_only_root_filesystem=True, user=1337),
            )
        ],
    )
    deployment.select(kplus.LabelSelector.of(labels=labels))
    deployment.node.add_dependency(account)
    _harden(chart, deployment, labels, gateway.replicas, name=gateway.name, run_as_user=None)
    kplus.Service(
        chart,
        "service",
        metadata=cdk8s.ApiObjectMetadata(
            name=gateway.name,
            labels=labels,
            annotations=nlb_annotations(gateway.scheme),
        ),
        type=kplus.ServiceType.LOAD_BALANCER,
        selector=deployment,
        ports=[kplus.ServicePort(port=80, target_port=gateway.port, name="http")],
    )
    _raw(chart, "virtual-gateway", appmesh.virtual_gateway(gateway, topology, namespace=names.namespace, hosted_zone=names.hosted_zone))
    for route in gateway.routes:
        _raw(chart, f"route-{route.name}", appmesh.gateway_route(route, namespace=names.namespace))
    return chart
