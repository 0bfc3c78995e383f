"""What an Istio operator expects of the install: a revision and the `default` tag (so istiod can
be upgraded as a canary), autoscaling with what it reads, istiod spread over zones, nodes that
wait for the CNI agent, and the gateway's status port kept off an internet-facing load balancer."""

from __future__ import annotations

from typing import Any

import pytest

from backends import backend_named
from components.istio import gateway_values
from components.metrics_server import ADDON as METRICS_SERVER
from tests.conftest import Synthesized
from tests.stacks.support import helm_values, manifest_with, object_value, releases
from tests.unit.test_settings import config_with, error_for


@pytest.fixture(scope="module")
def istio(synths: Any) -> Synthesized:
    return synths["istio"]


@pytest.fixture(scope="module")
def platform_values(istio: Synthesized) -> dict[str, dict[str, Any]]:
    return {chart: helm_values(release) for chart, (_, release) in releases(istio.template(istio.application.platform)).items()}


def test_istiod_is_revision_1_31_behind_the_default_tag(platform_values: dict[str, dict[str, Any]], istio: Synthesized) -> None:
    """The revision names the minor line (a patch rolls istiod in place behind the same Service
    istiod-1-31); the base chart's default validating webhook calls that revision's istiod; and
    the application namespace keeps istio-injection=enabled, which the `default` tag's webhook
    selects (istio-discovery templates/revision-tags-mwc.yaml)."""
    istiod = platform_values["istiod"]
    assert (istiod["revision"], istiod["revisionTags"]) == ("1-31", ["default"])
    assert platform_values["base"] == {"defaultRevision": "1-31"}
    _, (namespace,), _ = manifest_with(istio.template(istio.application.platform), "Namespace", "lab-appmesh")
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    assert "istio.io/rev" not in namespace["metadata"]["labels"]


def test_istiod_autoscales_from_two_to_five_spread_over_zones(platform_values: dict[str, dict[str, Any]]) -> None:
    istiod = platform_values["istiod"]
    assert (istiod["autoscaleEnabled"], istiod["autoscaleMin"], istiod["autoscaleMax"]) == (True, 2, 5)
    assert "replicaCount" not in istiod  # the autoscaler owns the replicas
    assert istiod["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            # This revision's pods only (templates/deployment.yaml labels them app and istio.io/rev).
            "labelSelector": {"matchLabels": {"app": "istiod", "istio.io/rev": "1-31"}},
        }
    ]


def test_the_gateway_autoscales_from_its_replicas(istio: Synthesized) -> None:
    ((_, release),) = releases(istio.template(istio.application.routing)).values()
    values = helm_values(release)
    assert values["autoscaling"] == {"enabled": True, "minReplicas": 2, "maxReplicas": 5}
    assert gateway_values(name="g", port=8088, replicas=7, scheme="internal")["autoscaling"]["maxReplicas"] == 7


def test_the_autoscalers_have_a_metrics_server_once_nodes_are_schedulable(istio: Synthesized) -> None:
    template = istio.template(istio.application.platform)
    gate_id, _, _ = manifest_with(template, "ServiceAccount", "istio-webhook-gate")
    gate_ready = object_value(template, gate_id)
    addons = {r["Properties"]["AddonName"]: r for r in template.find_resources("AWS::EKS::Addon").values()}
    assert sorted(addons) == ["amazon-cloudwatch-observability", METRICS_SERVER]
    # Both add-ons' pods need a node without the CNI taint: after the gate, which runs only then.
    for name, addon in addons.items():
        assert gate_ready in addon.get("DependsOn", []), name


def test_new_nodes_wait_for_the_cni_agent(istio: Synthesized, synths: Any, platform_values: dict[str, dict[str, Any]]) -> None:
    """Every node starts tainted; istiod's untaint controller lifts the taint once istio-cni is
    ready there, and istiod tolerates it (it is what removes it). Other backends taint nothing."""
    istiod = platform_values["istiod"]
    assert istiod["taint"] == {"enabled": True}
    assert istiod["tolerations"] == [{"key": "cni.istio.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]
    (nodegroup,) = istio.template(istio.application.cluster).find_resources("AWS::EKS::Nodegroup").values()
    assert nodegroup["Properties"]["Taints"] == [{"Key": "cni.istio.io/not-ready", "Effect": "NO_SCHEDULE"}]
    appmesh: Synthesized = synths["appmesh"]
    (plain,) = appmesh.template(appmesh.application.cluster).find_resources("AWS::EKS::Nodegroup").values()
    assert "Taints" not in plain["Properties"]


def test_the_status_port_is_on_an_internal_load_balancer_only() -> None:
    internal = gateway_values(name="ingress-gw", port=8088, replicas=2, scheme="internal")["service"]["ports"]
    public = gateway_values(name="ingress-gw", port=8088, replicas=2, scheme="internet-facing")["service"]["ports"]
    assert [p["port"] for p in internal] == [15021, 80]
    assert public == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8088}]


def test_the_capacity_check_counts_istiod_and_the_gateway_at_their_maximum() -> None:
    """8 service pods, 3 platform pods, 2 gateway pods and Istio's own 10 (istiod up to 5, the
    metrics server's 2, the gateway's autoscaler up to 3 more) over 3 nodes is 8 per node, plus
    6 DaemonSet pods: 14. A node of 14 pods holds it, one of 13 does not."""
    topology = config_with(mesh_backend="istio").mesh.topology
    assert backend_named("istio").platform_pods(topology) == 10
    assert config_with(mesh_backend="istio", node_instance_type="z9.huge", node_max_pods=14).cluster.max_pods_per_node == 14
    assert error_for(mesh_backend="istio", node_instance_type="z9.huge", node_max_pods=13).startswith(
        "config error: node_instance_type='z9.huge': holds 13 pods per node but 14 are needed with 3 nodes"
    )
