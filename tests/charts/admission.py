"""The admission model: what the cluster does to a pod template we render, before it runs.

1. The mesh's injector adds its containers (the backend's `injected()`; App Mesh's checked against
   ../shared/reference by test_admission.py, Istio's against istiod's own injection in the
   conformance layer).
2. Pod Security Admission judges the mutated pod at the namespace's enforced level (it is a
   validating plugin, so it sees the injected containers): the checks of the baseline and
   restricted profiles that a pod spec can fail, as k8s.io/pod-security-admission v0.35.4
   (policy/check_*.go) makes them for Kubernetes 1.35. Not modelled: SELinux options, AppArmor
   profiles and Windows host processes (nothing we render sets them). Where restricted replaces a
   baseline check (capabilities, hostPath, seccomp), both refusals are listed: the same verdict.
3. The kubelet refuses to start a container whose effective runAsNonRoot is true while it would
   run as root (container setting over pod setting over the image's USER).

`refusals()` returns one line per refusal, naming the container and the rule; empty means the
pod starts.

Since the conformance layer (tests/conformance, README "Conformance"), the real kube-apiserver's
Pod Security admission judges every pod the controller manager makes from our Deployments, Jobs and
DaemonSets (charts' included), at the namespace's real level; and for Istio, istiod runs there with
its webhooks, so Istio's pods reach Pod Security as Istio's own injector changed them. What stays
here is what cannot run there:
- App Mesh's injector (step 1), which runs in its controller, which needs AWS; so step 2 stays for
  App Mesh's pods, which the API server sees without their sidecars;
- the kubelet's rule (step 3): there is no kubelet, and Pod Security cannot see an image's USER.
  The conformance layer applies this same rule to Istio's pods as istiod injected them.
A pod whose Pod Security the real API server judges (Lattice's, the platform's Jobs and gates, and
Istio's: INJECTORS_RUN_FOR_REAL) gets step 3 only (`kubelet_refusals`). Istio's picture of its
injector (`IstioBackend.injected`) is no longer the model's: the conformance layer checks it
against the pods istiod injects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mesh.parts import Injection

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Backends whose injector the conformance layer runs for real (istiod, with its webhooks), so that
# Pod Security judges their pods as really injected there (tests/conformance/test_istio.py).
INJECTORS_RUN_FOR_REAL = frozenset({"istio"})
LEVELS = ("privileged", "baseline", "restricted")
# Pod Security Standards, baseline: capabilities a container may add.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}
# Baseline "safe sysctls" (check_sysctls.go: the 1.32 set, which 1.35 still uses).
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected", "secret"}


def dockerfile_users() -> dict[str, int | None]:
    """services/<name> -> the uid its image's last USER names (None: root or not numeric)."""
    users: dict[str, int | None] = {}
    for dockerfile in (PROJECT_ROOT / "services").glob("*/Dockerfile"):
        found = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
        uid = found[-1].split(":")[0] if found else "0"
        users[dockerfile.parent.name] = int(uid) if uid.isdigit() and int(uid) != 0 else None
    return users


def _merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) else value
    return merged


def mutate(pod: Mapping[str, Any], injection: Injection) -> dict[str, Any]:
    """The pod template's spec once the injector has added (or merged, by name) its containers."""
    spec = dict(pod["spec"])
    spec["securityContext"] = _merge(spec.get("securityContext", {}), injection.pod_security_context)
    spec["initContainers"] = [*spec.get("initContainers", []), *injection.init_containers]
    containers = {c["name"]: c for c in spec.get("containers", [])}
    for container in injection.containers:
        containers[container["name"]] = _merge(containers.get(container["name"], {}), container)
    spec["containers"] = list(containers.values())
    return spec


def _containers(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _user_namespace(spec: Mapping[str, Any]) -> bool:
    """`hostUsers: false`: since 1.35 Pod Security relaxes runAsNonRoot, runAsUser and baseline's
    procMount for such a pod (helpers.go relaxPolicyForUserNamespacePod)."""
    return spec.get("hostUsers") is False


def _kubelet(spec: Mapping[str, Any], image_users: Mapping[str, int | None]) -> list[str]:
    """The kubelet's verifyRunAsNonRoot: under an effective runAsNonRoot, an explicit runAsUser of 0
    is refused, else the image's user must be a non-zero uid (unknown here: refused too)."""
    pod_context = spec.get("securityContext", {})
    refused = []
    for container in _containers(spec):
        context = container.get("securityContext", {})
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            continue
        explicit = context.get("runAsUser", pod_context.get("runAsUser"))
        if explicit == 0:
            refused.append(f"{container['name']}: kubelet: container's runAsUser breaks non-root policy")
        elif explicit is None and not image_users.get(container["image"]):
            refused.append(f"{container['name']}: kubelet: container has runAsNonRoot and image will run as root")
    return refused


def _host(handler: Mapping[str, Any] | None) -> list[str]:
    return [handler[kind]["host"] for kind in ("httpGet", "tcpSocket") if handler and handler.get(kind, {}).get("host")]


def _baseline(spec: Mapping[str, Any]) -> list[str]:
    refused = [f"pod: baseline: {key} must not be true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    pod_context = spec.get("securityContext", {})
    if pod_context.get("seccompProfile", {}).get("type") == "Unconfined":
        refused.append("pod: baseline: seccompProfile must not be Unconfined")
    for sysctl in pod_context.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            refused.append(f"pod: baseline: sysctl {sysctl['name']} is not a safe sysctl")
    refused += [f"volume {v['name']}: baseline: hostPath volumes are forbidden" for v in spec.get("volumes", []) if "hostPath" in v]
    for container in _containers(spec):
        name, context = container["name"], container.get("securityContext", {})
        if context.get("privileged"):
            refused.append(f"{name}: baseline: privileged must be false")
        extra = set(context.get("capabilities", {}).get("add", [])) - BASELINE_CAPABILITIES
        if extra:
            refused.append(f"{name}: baseline: capabilities.add {sorted(extra)} are not allowed")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            refused.append(f"{name}: baseline: hostPort is forbidden")
        if context.get("seccompProfile", {}).get("type") == "Unconfined":
            refused.append(f"{name}: baseline: seccompProfile must not be Unconfined")
        if context.get("procMount", "Default") != "Default" and not _user_namespace(spec):
            refused.append(f"{name}: baseline: procMount must be Default")
        lifecycle = container.get("lifecycle", {})
        handlers = [container.get(probe) for probe in ("livenessProbe", "readinessProbe", "startupProbe")]
        hosts = [host for handler in [*handlers, lifecycle.get("postStart"), lifecycle.get("preStop")] for host in _host(handler)]
        if hosts:  # since 1.34 (check_hostProbesAndhostLifecycle.go)
            refused.append(f"{name}: baseline: probes and lifecycle handlers must not set a host ({', '.join(hosts)})")
    return refused


def _restricted(spec: Mapping[str, Any]) -> list[str]:
    refused = []
    pod_context = spec.get("securityContext", {})
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            refused.append(f"volume {volume['name']}: restricted: {sorted(kinds - RESTRICTED_VOLUMES)} volumes are not allowed")
    pod_seccomp = pod_context.get("seccompProfile", {}).get("type")
    user_namespace = _user_namespace(spec)
    if pod_context.get("runAsNonRoot") is False and not user_namespace:
        refused.append("pod: restricted: runAsNonRoot must not be false")
    # The pod's own runAsUser: 0 is refused even when every container sets another (check_runAsUser.go).
    if pod_context.get("runAsUser") == 0 and not user_namespace:
        refused.append("pod: restricted: runAsUser must not be 0")
    for container in _containers(spec):
        name, context = container["name"], container.get("securityContext", {})
        if context.get("allowPrivilegeEscalation") is not False:
            refused.append(f"{name}: restricted: allowPrivilegeEscalation must be false")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True and not user_namespace:
            refused.append(f"{name}: restricted: runAsNonRoot must be true (pod or container)")
        if context.get("runAsUser") == 0 and not user_namespace:
            refused.append(f"{name}: restricted: runAsUser must not be 0")
        if context.get("procMount", "Default") != "Default" and user_namespace:  # baseline's check covers the rest
            refused.append(f"{name}: restricted: procMount must be Default")
        if context.get("seccompProfile", {}).get("type", pod_seccomp) not in ("RuntimeDefault", "Localhost"):
            refused.append(f"{name}: restricted: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            refused.append(f"{name}: restricted: capabilities must drop ALL")
        extra = set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}
        if extra:
            refused.append(f"{name}: restricted: capabilities.add {sorted(extra)} are not allowed")
    return refused


def refusals(pod: Mapping[str, Any], injection: Injection, level: str, image_users: Mapping[str, int | None]) -> list[str]:
    """Why the cluster would refuse to run this pod template (empty: it runs)."""
    assert level in LEVELS, level
    spec = mutate(pod, injection)
    found = []
    if level in ("baseline", "restricted"):
        found += _baseline(spec)
    if level == "restricted":
        found += _restricted(spec)
    return found + _kubelet(spec, {**image_users, **injection.image_users})


def injects(injection: Injection) -> bool:
    """Does the injector change the pod (containers or pod-level settings)?"""
    return bool(injection.init_containers or injection.containers or injection.pod_security_context)


def kubelet_refusals(pod: Mapping[str, Any], injection: Injection, image_users: Mapping[str, int | None]) -> list[str]:
    """Step 3 alone: for a pod whose Pod Security the real API server judges (tests/conformance)."""
    return _kubelet(mutate(pod, injection), {**image_users, **injection.image_users})


def pod_templates(objects: list[dict[str, Any]], chart_pods: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every pod template we render, and those a pinned chart renders for us: name -> template."""
    rendered = {
        f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"] for o in objects if o["kind"] in ("Deployment", "Job", "DaemonSet")
    }
    return {**rendered, **(chart_pods or {})}
