"""The mesh-neutral Kubernetes objects: the services' Deployments, Services and disruption budgets,
the gateway's Envoy workload, and the canary weights the frontend shows. Each backend adds its own
objects next to these (backends/); nothing here names a mesh's kinds.

A chart becomes one KubernetesManifest (one custom resource, one `kubectl apply`):
- a service chart: one service's ServiceAccount, the backend's objects that must precede the
  Deployment (an injector configures a pod from them), the Deployment, its Service and budget;
- a routing chart: one virtual service's routing objects and its weights ConfigMap, so a canary
  step changes exactly one manifest;
- a gateway chart: what the backend renders for the ingress gateway.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import cdk8s
from constructs import Construct

from config.topology import Gateway, Service, Topology, VirtualService, backend_env_name
from mesh.canary import canary_status
from mesh.names import Manifest, MeshNames
from mesh.parts import ServiceParts

# Kubernetes' well-known zone label; the downward API reads it where the cluster copies node
# topology labels onto pods, and the services show "unknown" where it does not.
ZONE_LABEL = "topology.kubernetes.io/zone"
# The uid the services' images run as (services/*/Dockerfile USER).
APP_UID = 10001
# Where a service with backends finds the configured weights of each (`<virtual service>.json`,
# `{"<target service>": weight}`), from the routing manifests' ConfigMaps.
WEIGHTS_DIR = "/etc/mesh/weights"
WEIGHTS_KEY = "weights.json"
# The canary's live step and the verdict that put it there (mesh/canary.py), beside the weights.
CANARY_KEY = "canary.json"

# checkov findings that do not apply here, with the reason, as annotations on the object itself.
IMMUTABLE_ASSET_TAG = (
    "the image tag is the CDK asset's content hash, so a tag never changes meaning: IfNotPresent "
    "cannot run stale code and a digest would add nothing"
)
NO_NETWORK_POLICY = (
    "isolation between pods is the mesh's (backends' capability tables: mTLS, authorization, "
    "egress); NetworkPolicies need the VPC CNI's policy agent, which this cluster does not enable"
)
CHECKOV_APP = {"CKV_K8S_15": IMMUTABLE_ASSET_TAG, "CKV_K8S_43": IMMUTABLE_ASSET_TAG, "CKV2_K8S_6": NO_NETWORK_POLICY}


def new_chart(id: str, namespace: str | None) -> cdk8s.Chart:
    """A chart in an App of its own (cdk8s-examples: one App per chart). Stable names: objects are
    referenced by name (virtualNodeRef, serviceAccountName, ...)."""
    return cdk8s.Chart(cdk8s.App(), id, namespace=namespace, disable_resource_name_hashes=True)


def add_object(chart: Construct, id: str, manifest: Manifest) -> cdk8s.ApiObject:
    """A plain object (a custom resource written against its CRD schema; tests validate it)."""
    metadata = manifest["metadata"]
    api_object = cdk8s.ApiObject(
        chart,
        id,
        api_version=manifest["apiVersion"],
        kind=manifest["kind"],
        metadata=cdk8s.ApiObjectMetadata(
            name=metadata["name"],
            namespace=metadata.get("namespace"),
            labels=metadata.get("labels"),
            annotations=metadata.get("annotations"),
        ),
    )
    for key in ("spec", "data"):
        if key in manifest:
            api_object.add_json_patch(cdk8s.JsonPatch.add(f"/{key}", manifest[key]))
    return api_object


def add_objects(chart: Construct, prefix: str, manifests: Sequence[Manifest]) -> list[cdk8s.ApiObject]:
    return [add_object(chart, f"{prefix}-{m['kind'].lower()}-{m['metadata']['name']}", m) for m in manifests]


def checkov_skips(skips: Mapping[str, str]) -> dict[str, str]:
    return {f"checkov.io/skip{index}": f"{check}={reason}" for index, (check, reason) in enumerate(sorted(skips.items()), start=1)}


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


def service_account(name: str, labels: Mapping[str, str], namespace: str, role_arn: str | None) -> Manifest:
    """The pod's identity; annotated with its IRSA role only when the backend gives it one."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if role_arn is not None:
        metadata["annotations"] = {"eks.amazonaws.com/role-arn": role_arn}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}


def container_security(kplus: ModuleType, *, user: int | None) -> Any:
    """Non-root with a read-only root, no privilege escalation, every capability dropped, seccomp.

    Set on each container, never on the pod: a pod-level runAsNonRoot would also bind the
    containers a mesh's injector adds, and App Mesh's proxyinit must run as root (the kubelet
    refuses it otherwise; tests/charts/test_admission.py).
    """
    return kplus.ContainerSecurityContextProps(
        ensure_non_root=True,
        user=user,
        group=user,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        privileged=False,
        capabilities=kplus.ContainerSecutiryContextCapabilities(drop=[kplus.Capability.ALL]),
        seccomp_profile=kplus.SeccompProfile(type=kplus.SeccompProfileType.RUNTIME_DEFAULT),
    )


def pod_security(kplus: ModuleType) -> Any:
    # cdk8s-plus defaults the pod to runAsNonRoot; the containers say it themselves instead.
    return kplus.PodSecurityContextProps(ensure_non_root=False)


def zone_spread(labels: Mapping[str, str]) -> list[Manifest]:
    """Pods with these labels spread over the zones; preferred, not required: a full zone must
    not keep a replica from starting."""
    return [
        {"maxSkew": 1, "topologyKey": ZONE_LABEL, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": dict(labels)}}
    ]


def _harden(chart: Construct, deployment: Any, labels: dict[str, str], replicas: int, *, name: str) -> None:
    """What the container contexts do not cover: the pod's seccomp profile (it also covers the
    injected containers, which set none), zone spread, a disruption budget."""
    api = cdk8s.ApiObject.of(deployment)
    # cdk8s-plus writes the pod's runAsNonRoot even when told not to ensure it (as false, which
    # Pod Security `restricted` refuses): the containers say it themselves, so the pod says nothing.
    api.add_json_patch(cdk8s.JsonPatch.remove("/spec/template/spec/securityContext/runAsNonRoot"))
    api.add_json_patch(cdk8s.JsonPatch.add("/spec/template/spec/securityContext/seccompProfile", {"type": "RuntimeDefault"}))
    api.add_json_patch(cdk8s.JsonPatch.add("/spec/template/spec/topologySpreadConstraints", zone_spread(labels)))
    if replicas > 1:
        cdk8s.ApiObject(
            chart,
            "disruption-budget",
            api_version="policy/v1",
            kind="PodDisruptionBudget",
            metadata=cdk8s.ApiObjectMetadata(name=name, labels=labels),
        ).add_json_patch(cdk8s.JsonPatch.add("/spec", {"minAvailable": 1, "selector": {"matchLabels": labels}}))


def _tmp_volume(chart: Construct, kplus: ModuleType) -> Any:
    return kplus.Volume.from_empty_dir(chart, "tmp-volume", "tmp", size_limit=cdk8s.Size.mebibytes(64))


def backend_url(backend: str, topology: Topology, names: MeshNames) -> str:
    """The workshop name of a backend, on its virtual service's port."""
    return f"http://{names.mesh_host(backend)}:{topology.virtual_service_port(backend)}"


def weights_config_map_name(virtual_service: str) -> str:
    return f"weights-{virtual_service}"


def service_chart(
    service: Service,
    topology: Topology,
    names: MeshNames,
    *,
    image: str,
    role_arn: str | None,
    kplus: ModuleType,
    parts: ServiceParts,
) -> cdk8s.Chart:
    chart = new_chart(f"service-{service.name}", names.namespace)
    labels = {**service.pod_labels}
    account = add_object(chart, "service-account", service_account(service.name, labels, names.namespace, role_arn))
    env = {
        "PORT": kplus.EnvValue.from_value(str(service.port)),
        "HEALTH_PORT": kplus.EnvValue.from_value(str(service.health_port)),
        "SERVICE_NAME": kplus.EnvValue.from_value(service.name),
        "POD_NAME": kplus.EnvValue.from_field_ref(kplus.EnvFieldPaths.POD_NAME),
        "AVAILABILITY_ZONE": kplus.EnvValue.from_field_ref(kplus.EnvFieldPaths.POD_LABEL, key=ZONE_LABEL),
    }
    for backend in service.backends:
        # Workshop names, not Kubernetes Service names: the mesh routes by this host name.
        env[backend_env_name(backend)] = kplus.EnvValue.from_value(backend_url(backend, topology, names))
    if service.backends:
        env["MESH_WEIGHTS_DIR"] = kplus.EnvValue.from_value(WEIGHTS_DIR)
    # The backend's objects come first in the manifest: an injector configures a pod from them.
    ahead = [account, *add_objects(chart, "mesh", parts.before)]
    tmp = _tmp_volume(chart, kplus)
    deployment = kplus.Deployment(
        chart,
        "deployment",
        metadata=cdk8s.ApiObjectMetadata(name=service.virtual_node, labels=labels, annotations=checkov_skips(CHECKOV_APP)),
        replicas=service.replicas,
        select=False,
        pod_metadata=cdk8s.ApiObjectMetadata(labels={**labels, **parts.pod_labels}, annotations=dict(parts.pod_annotations) or None),
        service_account=kplus.ServiceAccount.from_service_account_name(chart, "service-account-ref", service.name),
        # IRSA's webhook projects its own token; the Kubernetes API token is not needed.
        automount_service_account_token=False,
        security_context=pod_security(kplus),
        volumes=[tmp],
        containers=[
            kplus.ContainerProps(
                name="app",
                image=image,
                port_number=service.port,
                env_variables=env,
                volume_mounts=[kplus.VolumeMount(path="/tmp", volume=tmp)],
                # The kubelet takes the topology's health check too: it decides which pods the
                # Kubernetes Service (and so every mesh's endpoints) include.
                readiness=kplus.Probe.from_http_get(
                    service.health_path,
                    port=service.health_port,
                    period_seconds=cdk8s.Duration.millis(service.health_check.interval_ms),
                    timeout_seconds=cdk8s.Duration.millis(service.health_check.timeout_ms),
                    success_threshold=service.health_check.healthy_threshold,
                    failure_threshold=service.health_check.unhealthy_threshold,
                ),
                liveness=kplus.Probe.from_http_get(service.health_path, port=service.health_port),
                startup=kplus.Probe.from_http_get(service.health_path, port=service.health_port),
                resources=kplus.ContainerResources(
                    cpu=kplus.CpuResources(request=kplus.Cpu.millis(100), limit=kplus.Cpu.millis(500)),
                    memory=kplus.MemoryResources(request=cdk8s.Size.mebibytes(128), limit=cdk8s.Size.mebibytes(256)),
                ),
                image_pull_policy=kplus.ImagePullPolicy.IF_NOT_PRESENT,
                security_context=container_security(kplus, user=APP_UID),
            )
        ],
    )
    deployment.select(kplus.LabelSelector.of(labels=labels))
    deployment.node.add_dependency(*ahead)
    if service.backends:
        _mount_weights(deployment, service.backends, canaries={vs.name for vs in topology.virtual_services if vs.canary})
    _drain(deployment, parts)
    _harden(chart, deployment, labels, service.replicas, name=service.virtual_node)
    service_type = {
        "none": kplus.ServiceType.CLUSTER_IP,
        "internal": kplus.ServiceType.LOAD_BALANCER,
        "external": kplus.ServiceType.LOAD_BALANCER,
    }
    annotations = nlb_annotations("internet-facing" if service.exposure == "external" else "internal") if service.exposure != "none" else {}
    kubernetes_service = kplus.Service(
        chart,
        "service",
        metadata=cdk8s.ApiObjectMetadata(name=service.name, labels=labels, annotations=annotations or None),
        type=service_type[service.exposure],
        selector=deployment,
        ports=[kplus.ServicePort(port=service.port if service.exposure == "none" else 80, target_port=service.port, name="http")],
        # Only the allowlist reaches an exposed service (the seed opens the frontend in a browser).
        load_balancer_source_ranges=list(service.source_cidrs) or None,
    )
    for index, manifest in enumerate(parts.after):
        add_object(chart, f"mesh-after-{index}", manifest).node.add_dependency(kubernetes_service)
    return chart


def _drain(deployment: Any, parts: ServiceParts) -> None:
    """A preStop sleep (the kubelet's own action: the images need no shell) and a grace period
    long enough for it; the sleep counts against the grace period."""
    api = cdk8s.ApiObject.of(deployment)
    if parts.drain_seconds:
        api.add_json_patch(
            cdk8s.JsonPatch.add("/spec/template/spec/containers/0/lifecycle", {"preStop": {"sleep": {"seconds": parts.drain_seconds}}})
        )
    if parts.termination_grace_seconds is not None:
        if parts.termination_grace_seconds <= parts.drain_seconds:
            raise ValueError(f"termination grace {parts.termination_grace_seconds}s must exceed the drain {parts.drain_seconds}s")
        api.add_json_patch(cdk8s.JsonPatch.add("/spec/template/spec/terminationGracePeriodSeconds", parts.termination_grace_seconds))


def _mount_weights(deployment: Any, backends: Sequence[str], canaries: set[str]) -> None:
    """The configured weights of each backend, one file per virtual service, and a canary's status
    in canary/<virtual service>.json; each ConfigMap is optional, because the routing stack that
    holds it is deployed after the services."""
    sources = [
        {
            "configMap": {
                "name": weights_config_map_name(backend),
                "optional": True,
                "items": [
                    {"key": WEIGHTS_KEY, "path": f"{backend}.json"},
                    *([{"key": CANARY_KEY, "path": f"canary/{backend}.json"}] if backend in canaries else []),
                ],
            }
        }
        for backend in backends
    ]
    api = cdk8s.ApiObject.of(deployment)
    api.add_json_patch(cdk8s.JsonPatch.add("/spec/template/spec/volumes/-", {"name": "mesh-weights", "projected": {"sources": sources}}))
    api.add_json_patch(
        cdk8s.JsonPatch.add(
            "/spec/template/spec/containers/0/volumeMounts/-", {"name": "mesh-weights", "mountPath": WEIGHTS_DIR, "readOnly": True}
        )
    )


def weights_config_map(virtual_service: VirtualService, namespace: str, canary_verdict: tuple[str, str]) -> Manifest:
    """What the frontend shows next to the split it observes: the configured weights, and with a
    canary its step and the verdict that put it there."""
    data = {WEIGHTS_KEY: json.dumps({target: weight for route in virtual_service.routes for target, weight in route.targets})}
    if virtual_service.canary:
        verdict, reason = canary_verdict
        data[CANARY_KEY] = json.dumps(canary_status(virtual_service, verdict=verdict, reason=reason), sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": weights_config_map_name(virtual_service.name), "namespace": namespace},
        "data": data,
    }


def routing_chart(
    virtual_service: VirtualService, names: MeshNames, objects: Sequence[Manifest], canary_verdict: tuple[str, str]
) -> cdk8s.Chart:
    """One virtual service's routing objects (the backend's) and its weights ConfigMap."""
    chart = new_chart(f"routing-{virtual_service.name}", names.namespace)
    add_objects(chart, "route", [*objects, weights_config_map(virtual_service, names.namespace, canary_verdict)])
    return chart


def gateway_workload(
    chart: Construct,
    gateway: Gateway,
    kplus: ModuleType,
    *,
    image: str,
    container: str,
    user: int,
    pod_annotations: Mapping[str, str],
    checkov: Mapping[str, str],
    args: Sequence[str] = (),
    volumes: Sequence[tuple[Any, str]] = (),
    after: Sequence[Construct] = (),
) -> Any:
    """An Envoy Deployment for the gateway and its NLB Service (port 80 to the gateway's port).

    volumes: (volume, mount path) pairs, mounted read-only. `after`: objects the manifest
    applies first (an injector's configuration for the gateway pods).
    """
    labels = gateway.pod_labels
    tmp = _tmp_volume(chart, kplus)
    mounts = [kplus.VolumeMount(path="/tmp", volume=tmp)] + [kplus.VolumeMount(path=path, volume=v, read_only=True) for v, path in volumes]
    deployment = kplus.Deployment(
        chart,
        "deployment",
        metadata=cdk8s.ApiObjectMetadata(name=gateway.name, labels=labels, annotations=checkov_skips(checkov)),
        replicas=gateway.replicas,
        select=False,
        pod_metadata=cdk8s.ApiObjectMetadata(labels=labels, annotations=dict(pod_annotations) or None),
        service_account=kplus.ServiceAccount.from_service_account_name(chart, "service-account-ref", gateway.name),
        automount_service_account_token=False,
        security_context=pod_security(kplus),
        volumes=[tmp, *(v for v, _ in volumes)],
        containers=[
            kplus.ContainerProps(
                name=container,
                image=image,
                args=list(args) or None,
                port_number=gateway.port,
                volume_mounts=mounts,
                # Envoy opens the listener only once it is configured.
                readiness=kplus.Probe.from_tcp_socket(port=gateway.port),
                liveness=kplus.Probe.from_tcp_socket(port=gateway.port),
                resources=kplus.ContainerResources(
                    cpu=kplus.CpuResources(request=kplus.Cpu.millis(100), limit=kplus.Cpu.millis(1000)),
                    memory=kplus.MemoryResources(request=cdk8s.Size.mebibytes(128), limit=cdk8s.Size.mebibytes(512)),
                ),
                image_pull_policy=kplus.ImagePullPolicy.IF_NOT_PRESENT,
                security_context=container_security(kplus, user=user),
            )
        ],
    )
    deployment.select(kplus.LabelSelector.of(labels=labels))
    if after:
        deployment.node.add_dependency(*after)
    _harden(chart, deployment, labels, gateway.replicas, name=gateway.name)
    kplus.Service(
        chart,
        "service",
        metadata=cdk8s.ApiObjectMetadata(name=gateway.name, labels=labels, annotations=nlb_annotations(gateway.scheme)),
        type=kplus.ServiceType.LOAD_BALANCER,
        selector=deployment,
        ports=[kplus.ServicePort(port=80, target_port=gateway.port, name="http")],
    )
    return deployment
