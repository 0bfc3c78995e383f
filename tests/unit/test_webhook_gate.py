"""The one-shot Jobs the deploy waits for (webhook gates, the CRD installer): bounded, least
privilege, hardened, and renamed when they change (a Job's pod template is immutable)."""

from __future__ import annotations

from typing import Any

from components.crd_installer import installer_objects
from components.webhook_gate import gate_objects
from mesh.parts import Injection
from tests.charts.admission import pod_templates, refusals
from upstream import ARTIFACTS

PROBE = {"apiVersion": "appmesh.k8s.aws/v1beta2", "kind": "Mesh", "metadata": {"name": "webhook-gate-probe"}, "spec": {}}
RULES = [{"apiGroups": ["appmesh.k8s.aws"], "resources": ["meshes"], "verbs": ["create"]}]


def _job(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = [o for o in objects if o["kind"] == "Job"]
    return job


def test_a_changed_probe_is_a_new_job() -> None:
    first = _job(gate_objects("gate", "appmesh-system", PROBE, RULES))["metadata"]["name"]
    again = _job(gate_objects("gate", "appmesh-system", PROBE, RULES))["metadata"]["name"]
    changed = _job(gate_objects("gate", "appmesh-system", {**PROBE, "spec": {"x": 1}}, RULES))["metadata"]["name"]
    assert first == again != changed and first.startswith("gate-")


def test_the_gate_may_only_create_the_probe_and_is_bounded() -> None:
    objects = gate_objects("gate", "appmesh-system", PROBE, RULES)
    (role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert role["rules"] == RULES
    spec = _job(objects)["spec"]
    assert (spec["activeDeadlineSeconds"], spec["backoffLimit"]) == (300, 8)
    namespaced = gate_objects(
        "gate", "istio-system", {**PROBE, "kind": "Pod", "metadata": {"name": "p", "namespace": "probe-ns"}}, RULES, {"a": "b"}
    )
    assert [(o["kind"], o["metadata"].get("namespace")) for o in namespaced[:4]] == [
        ("Namespace", None),
        ("ServiceAccount", "istio-system"),
        ("Role", "probe-ns"),
        ("RoleBinding", "probe-ns"),
    ]


def test_the_jobs_run_under_pod_security_restricted() -> None:
    gate = pod_templates(gate_objects("gate", "appmesh-system", PROBE, RULES))
    installer = pod_templates(installer_objects("crds", "ns", ARTIFACTS["gateway-api-standard-crds.yaml"].parts))
    for name, template in {**gate, **installer}.items():
        assert refusals(template, Injection(), "restricted", {}) == [], name
