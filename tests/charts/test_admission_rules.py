"""The admission model's own rules (tests/charts/admission.py), one at a time: a minimal pod that
the level admits, and the same pod with one violation, refused with exactly that rule's reason.
The rules follow k8s.io/pod-security-admission v0.35.4 (policy/check_*.go) and the kubelet's
runAsNonRoot check (pkg/kubelet/kuberuntime/security_context_others.go, verifyRunAsNonRoot)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from mesh.parts import Injection
from tests.charts.admission import refusals

UID = 10001
IMAGE = "example.test/app:1"


def _pod() -> dict[str, Any]:
    """What restricted asks of every container, and nothing more."""
    container = {
        "name": "app",
        "image": IMAGE,
        "ports": [{"containerPort": 3000}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "readinessProbe": {"httpGet": {"path": "/health", "port": 3001}},
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }
    return {"spec": {"containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}]}}


def _judge(pod: dict[str, Any], level: str, injection: Injection | None = None) -> list[str]:
    return refusals(pod, injection or Injection(), level, {IMAGE: UID})


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    pod = _pod()
    change(pod["spec"])
    return pod


def _app(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["containers"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("level", ["privileged", "baseline", "restricted"])
def test_the_minimal_pod_is_admitted_at_every_level(level: str) -> None:
    assert _judge(_pod(), level) == []


# (rule, the level it belongs to, the one change, the one reason)
BASELINE = [
    ("hostNetwork", lambda s: s.update(hostNetwork=True), "pod: baseline: hostNetwork must not be true"),
    ("hostPID", lambda s: s.update(hostPID=True), "pod: baseline: hostPID must not be true"),
    ("hostIPC", lambda s: s.update(hostIPC=True), "pod: baseline: hostIPC must not be true"),
    (
        "hostPath volume",
        lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/var/run"}}),
        "volume host: baseline: hostPath volumes are forbidden",
    ),
    (
        "unsafe sysctl",
        lambda s: s.update(securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]}),
        "pod: baseline: sysctl kernel.msgmax is not a safe sysctl",
    ),
    ("hostPort", lambda s: _app(s)["ports"][0].update(hostPort=3000), "app: baseline: hostPort is forbidden"),
    ("privileged", lambda s: _app(s)["securityContext"].update(privileged=True), "app: baseline: privileged must be false"),
    (
        "capabilities outside baseline's list",
        lambda s: _app(s)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        "app: baseline: capabilities.add ['NET_ADMIN'] are not allowed",
    ),
    (
        "seccomp Unconfined on the pod",
        lambda s: s.update(securityContext={"seccompProfile": {"type": "Unconfined"}}),
        "pod: baseline: seccompProfile must not be Unconfined",
    ),
    ("procMount", lambda s: _app(s)["securityContext"].update(procMount="Unmasked"), "app: baseline: procMount must be Default"),
    (
        "a probe's host",
        lambda s: _app(s)["readinessProbe"]["httpGet"].update(host="10.0.0.1"),
        "app: baseline: probes and lifecycle handlers must not set a host (10.0.0.1)",
    ),
    (
        "a lifecycle handler's host",
        lambda s: _app(s)["lifecycle"].update(preStop={"httpGet": {"path": "/drain", "port": 3000, "host": "metadata.internal"}}),
        "app: baseline: probes and lifecycle handlers must not set a host (metadata.internal)",
    ),
]
RESTRICTED = [
    (
        "volume type",
        lambda s: s["volumes"].append({"name": "data", "nfs": {"server": "nfs.example.test", "path": "/"}}),
        "volume data: restricted: ['nfs'] volumes are not allowed",
    ),
    (
        "the pod's runAsUser: 0",
        lambda s: s.update(securityContext={"runAsUser": 0}),
        "pod: restricted: runAsUser must not be 0",
    ),
    (
        "a pod-level runAsNonRoot: false",
        lambda s: s.update(securityContext={"runAsNonRoot": False}),
        "pod: restricted: runAsNonRoot must not be false",
    ),
    (
        "runAsNonRoot neither on the pod nor on the container",
        lambda s: _app(s)["securityContext"].pop("runAsNonRoot"),
        "app: restricted: runAsNonRoot must be true (pod or container)",
    ),
    (
        "allowPrivilegeEscalation unset",
        lambda s: _app(s)["securityContext"].pop("allowPrivilegeEscalation"),
        "app: restricted: allowPrivilegeEscalation must be false",
    ),
    (
        "seccomp unset",
        lambda s: _app(s)["securityContext"].pop("seccompProfile"),
        "app: restricted: seccompProfile must be RuntimeDefault or Localhost (pod or container)",
    ),
    (
        "capabilities not dropped",
        lambda s: _app(s)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
        "app: restricted: capabilities must drop ALL",
    ),
    (
        "a capability baseline allows but restricted does not",
        lambda s: _app(s)["securityContext"]["capabilities"].update(add=["CHOWN"]),
        "app: restricted: capabilities.add ['CHOWN'] are not allowed",
    ),
]


@pytest.mark.parametrize(("rule", "change", "reason"), BASELINE, ids=[rule for rule, _, _ in BASELINE])
def test_each_baseline_rule_refuses_only_its_violation(rule: str, change: Callable[[dict[str, Any]], None], reason: str) -> None:
    pod = _broken(change)
    assert _judge(pod, "privileged") == []  # Pod Security's rules, not the kubelet's
    assert _judge(pod, "baseline") == [reason]


@pytest.mark.parametrize(("rule", "change", "reason"), RESTRICTED, ids=[rule for rule, _, _ in RESTRICTED])
def test_each_restricted_rule_refuses_only_its_violation(rule: str, change: Callable[[dict[str, Any]], None], reason: str) -> None:
    pod = _broken(change)
    assert _judge(pod, "baseline") == []
    assert _judge(pod, "restricted") == [reason]


def test_a_containers_runasuser_0_under_runasnonroot_is_refused_by_the_kubelet_at_any_level() -> None:
    """Pod Security `privileged` checks nothing; the kubelet still refuses to start a container
    told to run as non-root with an explicit uid 0 (its own message for it). Restricted refuses it
    at admission too."""
    pod = _broken(lambda s: _app(s)["securityContext"].update(runAsUser=0))
    assert _judge(pod, "privileged") == ["app: kubelet: container's runAsUser breaks non-root policy"]
    assert _judge(pod, "restricted") == [
        "app: restricted: runAsUser must not be 0",
        "app: kubelet: container's runAsUser breaks non-root policy",
    ]


def test_the_kubelet_refuses_an_image_that_runs_as_root_under_runasnonroot() -> None:
    pod = _broken(lambda s: _app(s)["securityContext"].pop("runAsUser"))
    assert _judge(pod, "restricted") == []  # the image's user: UID
    assert refusals(pod, Injection(), "privileged", {IMAGE: None}) == [
        "app: kubelet: container has runAsNonRoot and image will run as root"
    ]


def test_what_the_injector_adds_to_the_pods_security_context_is_judged() -> None:
    """An injector's pod-level additions are merged into the pod before admission."""
    sysctl = Injection(pod_security_context={"sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]})
    assert _judge(_pod(), "baseline", sysctl) == ["pod: baseline: sysctl net.ipv4.ip_forward is not a safe sysctl"]
    root = Injection(pod_security_context={"runAsUser": 0})
    assert _judge(_pod(), "restricted", root) == ["pod: restricted: runAsUser must not be 0"]


# -- where the model was wrong against pod-security-admission v0.35.4 ----------------------------


def test_the_sysctls_added_to_the_safe_set_in_1_32_are_admitted() -> None:
    pod = _broken(lambda s: s.update(securityContext={"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]}))
    assert _judge(pod, "baseline") == []
    pod["spec"]["securityContext"]["sysctls"].append({"name": "net.ipv4.tcp_wmem", "value": "4096 16384 4194304"})
    assert _judge(pod, "restricted") == []


def test_an_image_volume_is_allowed_by_restricted() -> None:
    pod = _broken(lambda s: s["volumes"].append({"name": "model", "image": {"reference": "example.test/data:1"}}))
    assert _judge(pod, "restricted") == []


def test_the_pods_runasuser_0_is_refused_even_when_every_container_sets_another() -> None:
    pod = _broken(lambda s: s.update(securityContext={"runAsUser": 0}))
    assert _app(pod["spec"])["securityContext"]["runAsUser"] == UID
    assert _judge(pod, "restricted") == ["pod: restricted: runAsUser must not be 0"]


def test_a_user_namespace_pod_is_relaxed_as_1_35_relaxes_it() -> None:
    """`hostUsers: false`: runAsNonRoot, runAsUser and baseline's procMount are not checked, but
    restricted still wants the default procMount."""
    pod = _broken(lambda s: s.update(hostUsers=False, securityContext={"runAsUser": 0, "runAsNonRoot": False}))
    container = _app(pod["spec"])["securityContext"]
    del container["runAsNonRoot"], container["runAsUser"]
    assert _judge(pod, "restricted") == []
    unmasked = copy.deepcopy(pod)
    _app(unmasked["spec"])["securityContext"]["procMount"] = "Unmasked"
    assert _judge(unmasked, "baseline") == []
    assert _judge(unmasked, "restricted") == ["app: restricted: procMount must be Default"]
