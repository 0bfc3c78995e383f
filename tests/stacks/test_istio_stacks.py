"""The Istio backend's AWS side: four pinned charts in order, the injector gated, restricted Pod
Security, metrics in Amazon Managed Service for Prometheus, and no App Mesh IAM anywhere."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
import yaml

from components.istio import VERSION
from tests.conftest import Synthesized
from tests.stacks.support import helm_values, manifest_with, object_value, releases


@pytest.fixture(scope="module")
def istio(synths: Any) -> Synthesized:
    return synths["istio"]


def test_the_charts_are_pinned_and_installed_in_order(istio: Synthesized) -> None:
    template = istio.template(istio.application.platform)
    found = releases(template)
    assert sorted(found) == ["base", "cni", "istiod"]
    for chart, (_, release) in found.items():
        properties = release["Properties"]
        assert (properties["Repository"], properties["Version"], properties["Namespace"], properties["Wait"]) == (
            "https://blob.istio.io/istio-release/charts",
            VERSION,
            "istio-system",
            True,
        ), chart
    assert found["base"][0] in found["istiod"][1]["DependsOn"]
    assert found["istiod"][0] in found["cni"][1]["DependsOn"]
    # The CNI agent's namespace says the level it needs, and comes before every release.
    namespace_id, (namespace,), _ = manifest_with(template, "Namespace", "istio-system")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespace_id in found["base"][1]["DependsOn"]


def test_istiod_runs_with_cni_json_access_logs_registry_only_dns_capture_and_tracing(istio: Synthesized) -> None:
    _, release = releases(istio.template(istio.application.platform))["istiod"]
    values = helm_values(release)
    assert values["cni"] == {"enabled": True}
    # Each image a full reference to its mirror, an asset URI only the deploy completes
    # (tests/stacks/test_images.py reads which): no hub for the chart to compose one from.
    assert (values["image"], values["global"]["proxy"]["image"], values["global"]["proxy_init"]["image"]) == ("TOKEN",) * 3
    assert "hub" not in values["global"]
    assert values["meshConfig"] == {
        "accessLogFile": "/dev/stdout",
        "accessLogEncoding": "JSON",
        "defaultConfig": {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"}},
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "extensionProviders": [
            {
                "name": "otel",
                "opentelemetry": {
                    "service": "cloudwatch-agent.amazon-cloudwatch.svc.cluster.local",
                    "port": 4318,
                    # Envoy refuses a tracer without a timeout (tests/conformance/test_istio.py, z1).
                    "http": {"path": "/v1/traces", "timeout": "3s"},
                },
            }
        ],
    }


def test_the_injector_is_gated_before_the_namespace(istio: Synthesized) -> None:
    template = istio.template(istio.application.platform)
    cni_id, _ = releases(template)["cni"]
    gate_id, objects, deps = manifest_with(template, "ServiceAccount", "istio-webhook-gate")
    assert cni_id in deps
    namespace = next(o for o in objects if o["kind"] == "Namespace")
    assert namespace["metadata"]["name"] == "istio-webhook-gate"
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    (probe,) = [json.loads(o["data"]["probe.json"]) for o in objects if o["kind"] == "ConfigMap"]
    assert (probe["kind"], probe["metadata"]["namespace"]) == ("Pod", "istio-webhook-gate")
    _, app_namespace, app_deps = manifest_with(template, "Namespace", "lab-appmesh")
    assert object_value(template, gate_id) in app_deps
    labels = {k: v for k, v in app_namespace[0]["metadata"]["labels"].items() if not k.startswith("aws.cdk.eks/prune")}
    assert labels == {
        "istio-injection": "enabled",
        # istio-cni: no injected container needs NET_ADMIN (tests/charts/test_admission.py).
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }


def test_the_gateway_chart_is_released_into_the_namespace_after_the_routes(istio: Synthesized) -> None:
    template = istio.template(istio.application.routing)
    ((release_id, release),) = releases(template).values()
    assert release["Properties"]["Chart"] == "gateway" and release["Properties"]["Release"] == "ingress-gw"
    assert release["Properties"]["Namespace"] == "lab-appmesh"
    values = helm_values(release)
    assert values["service"]["ports"] == [
        {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8088},
    ]
    assert values["service"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    # The configured 2 replicas are the autoscaler's minimum (tests/stacks/test_istio_operations.py).
    assert values["autoscaling"] == {"enabled": True, "minReplicas": 2, "maxReplicas": 5}
    routing = [lid for lid in json.loads(json.dumps(release.get("DependsOn", []))) if lid.startswith("ClusterRouting")]
    assert len(routing) == 2, release_id


def test_no_pod_has_an_irsa_role_and_there_is_no_app_mesh_iam(istio: Synthesized) -> None:
    application = istio.application
    assert application.preflight is None and application.discovery is None
    for stack in application.stacks:
        text = json.dumps(istio.template_json(stack))
        assert "appmesh:" not in text and "StreamAggregatedResources" not in text, stack.stack_name
    for stack in (*application.services, application.routing):
        roles = istio.template(stack).find_resources("AWS::IAM::Role")
        assert all("smoke" in json.dumps(r).lower() or "SmokeTest" in name for name, r in roles.items()), list(roles)


def test_request_metrics_go_to_managed_prometheus(istio: Synthesized) -> None:
    template = istio.template(istio.application.platform)
    template.resource_count_is("AWS::APS::Workspace", 1)
    (scraper,) = template.find_resources("AWS::APS::Scraper").values()
    properties = scraper["Properties"]
    assert properties["Destination"] == {
        "AmpConfiguration": {"WorkspaceArn": {"Fn::GetAtt": [next(iter(template.find_resources("AWS::APS::Workspace"))), "Arn"]}}
    }
    assert len(properties["Source"]["EksConfiguration"]["SubnetIds"]) == 2
    config = yaml.safe_load(base64.b64decode(properties["ScrapeConfiguration"]["ConfigurationBlob"]))
    assert config["global"] == {"scrape_interval": "30s"}
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["lab-appmesh"]}}]
    assert job["relabel_configs"][0] == {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
        "action": "keep",
        "regex": "true",
    }
    # Its own security group, which the cluster security group (the API server's private
    # endpoint, the pods) admits on exactly the two ports it needs.
    ((group_id, _),) = template.find_resources("AWS::EC2::SecurityGroup").items()
    assert properties["Source"]["EksConfiguration"]["SecurityGroupIds"] == [{"Fn::GetAtt": [group_id, "GroupId"]}]
    rules = template.find_resources("AWS::EC2::SecurityGroupIngress").values()
    assert sorted((r["Properties"]["IpProtocol"], r["Properties"]["FromPort"], r["Properties"]["ToPort"]) for r in rules) == [
        ("tcp", 443, 443),
        ("tcp", 15020, 15020),
    ]
    for rule in rules:
        assert rule["Properties"]["SourceSecurityGroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}
        target = rule["Properties"]["GroupId"]["Fn::ImportValue"]
        assert re.fullmatch(r"AppMesh-Cluster:ExportsOutputFnGetAttEksCluster\w+ClusterSecurityGroupId\w+", target), target
