"""The App Mesh backend's AWS side: the preflight first, the controller with a least-privilege role
(ordered so `cdk destroy` cannot strand the Mesh's finalizers), its webhook gated, the names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.conftest import Synthesized, synthesize
from tests.stacks.support import helm_values, manifest_with, manifests, object_value, releases, statement

# -- the preflight ------------------------------------------------------------------------------


def test_every_other_stack_waits_for_the_preflight(application: Any) -> None:
    preflight = application.preflight
    assert preflight is not None and preflight.stack_name == "AppMesh-Preflight"
    assert application.stacks[0] is preflight
    for stack in application.stacks[1:]:
        assert preflight in stack.dependencies, stack.stack_name
    assert preflight.dependencies == []


def test_the_preflight_calls_the_app_mesh_api_and_names_the_way_forward(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.preflight)
    (function,) = [
        r for r in template.find_resources("AWS::Lambda::Function").values() if r["Properties"].get("Handler") == "index.on_event"
    ]
    environment = function["Properties"]["Environment"]["Variables"]
    assert (environment["SERVICE"], environment["ACTION"]) == ("appmesh", "list_meshes")
    assert environment["MESSAGE"] == (
        'AWS shut App Mesh down on 2026-09-30 (AWS App Mesh user guide: "After September 30, 2026, you will no longer be able '
        "to access the AWS App Mesh console or AWS App Mesh resources.\"), and this region's App Mesh API did not answer "
        "appmesh:ListMeshes. Nothing else has been created. Deploy the same topology with -c mesh_backend=istio "
        "(README: 'A mesh that runs today')"
    )
    assert function["Properties"]["Timeout"] == 60
    template.resource_count_is("Custom::MeshPreflight", 1)
    # The one call it may make, and nothing billable beyond a function and its logs.
    allowed = [s for p in template.find_resources("AWS::IAM::Policy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert {"Action": "appmesh:ListMeshes", "Effect": "Allow", "Resource": "*"} in allowed
    types = {r["Type"] for r in default_synth.template_json(application.preflight)["Resources"].values()}
    assert types <= {
        "AWS::Lambda::Function",
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
        "AWS::Logs::LogGroup",
        "AWS::KMS::Key",
        "Custom::MeshPreflight",
    }


class _Refusing:
    def list_meshes(self, **_: Any) -> Any:
        raise ConnectionError("Could not connect to the endpoint URL: https://appmesh.us-west-1.amazonaws.com/v20190125/meshes")


class _Answering:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def list_meshes(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return {"meshes": []}


def test_the_preflight_handler_fails_with_the_message_when_aws_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.preflight.index import on_event

    monkeypatch.setenv("SERVICE", "appmesh")
    monkeypatch.setenv("ACTION", "list_meshes")
    monkeypatch.setenv("MESSAGE", "App Mesh is gone; use istio")
    with pytest.raises(RuntimeError) as caught:
        on_event({"RequestType": "Create"}, None, client=_Refusing())
    assert str(caught.value) == (
        "App Mesh is gone; use istio (AWS answered: ConnectionError: Could not connect to the endpoint URL: "
        "https://appmesh.us-west-1.amazonaws.com/v20190125/meshes)"
    )
    answering = _Answering()
    assert on_event({"RequestType": "Update"}, None, client=answering)["Data"] == {"Answered": "true"}
    assert answering.calls == [{"limit": 1}]
    # Deleting the stack never calls AWS.
    assert on_event({"RequestType": "Delete", "PhysicalResourceId": "preflight-appmesh"}, None, client=_Refusing()) == {
        "PhysicalResourceId": "preflight-appmesh"
    }


def test_the_preflight_client_gives_up_well_within_the_minute_it_promises(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check promises to stop within about a minute (its Lambda's timeout is 60 s): a dead
    endpoint must fail the call first, with the message, not time the Lambda out without one.
    Pinned here: 5 s to connect, 10 s to read, and `max_attempts` 2, which botocore counts as
    retries after the first request (botocore/config.py: "setting this value to 2 will result in
    the request being retried at most two times after the initial request"): 3 requests of at most
    15 s, 45 s, plus a few seconds of back-off, inside the Lambda's 60 s."""
    import sys
    import types

    from components.preflight import index

    made: dict[str, Any] = {}

    class Config:
        def __init__(self, **kwargs: Any) -> None:
            made["config"] = kwargs

    botocore_config = types.ModuleType("botocore.config")
    botocore_config.Config = Config  # type: ignore[attr-defined]
    boto3 = types.ModuleType("boto3")
    boto3.client = lambda service, config: made.update(service=service) or object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boto3", boto3)
    monkeypatch.setitem(sys.modules, "botocore", types.ModuleType("botocore"))
    monkeypatch.setitem(sys.modules, "botocore.config", botocore_config)
    index._client("appmesh")
    assert made == {"service": "appmesh", "config": {"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 2}}}
    config = made["config"]
    assert (config["connect_timeout"] + config["read_timeout"]) * (1 + config["retries"]["max_attempts"]) <= 45


def test_app_mesh_status_is_announced_at_synth_as_aws_states_it(application: Any) -> None:
    from aws_cdk.assertions import Annotations

    warnings = Annotations.from_stack(application.platform).find_warning(
        "*", Match.string_like_regexp("AWS shut App Mesh down on 2026-09-30")
    )
    (warning,) = warnings
    text = str(warning.entry.data)
    assert "you will no longer be able to access the AWS App Mesh console or AWS App Mesh resources" in text
    assert "cannot produce a working mesh" in text


# -- the controller -----------------------------------------------------------------------------


def test_controller_helm_release_is_pinned_with_tracing_and_one_envoy_image(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    _, release = releases(template)["appmesh-controller"]
    assert {k: release["Properties"][k] for k in ("Release", "Version", "Repository", "Namespace", "Wait")} == {
        "Release": "appmesh-controller",
        "Version": "1.13.3",
        "Repository": "https://aws.github.io/eks-charts",
        "Namespace": "appmesh-system",
        "Wait": True,
    }
    assert helm_values(release) == {
        "region": "us-west-1",
        "accountId": "TOKEN",
        "serviceAccount": {"create": False, "name": "appmesh-controller"},
        "tracing": {"enabled": True, "provider": "x-ray"},
        "xray": {"image": {"repository": "public.ecr.aws/xray/aws-xray-daemon", "tag": "3.3.15"}},
        "sidecar": {
            "image": {"repository": "public.ecr.aws/appmesh/aws-appmesh-envoy", "tag": "v1.29.12.3-prod"},
            "waitUntilProxyReady": True,
        },
    }


def test_the_release_waits_for_its_service_account_and_its_policy(default_synth: Synthesized, application: Any) -> None:
    """On destroy the release goes first: the controller, which empties the Mesh's finalizers with
    DescribeMesh and DeleteMesh, must never outlive the policy that allows them."""
    template = default_synth.template(application.platform)
    release_id, release = releases(template)["appmesh-controller"]
    (policy_id,) = template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": Match.string_like_regexp("AppMeshControllerIdentityRole")}]}}
    )
    account_id, objects, _ = manifest_with(template, "ServiceAccount", "appmesh-controller")
    metadata = {k: v for k, v in objects[0]["metadata"].items() if k != "labels"}  # aws_eks_v2's prune label
    assert metadata == {"name": "appmesh-controller", "namespace": "appmesh-system", "annotations": {"eks.amazonaws.com/role-arn": "TOKEN"}}
    assert {policy_id, account_id} <= set(release["DependsOn"]), release_id


def test_the_webhook_is_gated_before_the_namespace_and_the_mesh(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    release_id, _ = releases(template)["appmesh-controller"]
    gate_id, gate_objects, gate_deps = manifest_with(template, "ServiceAccount", "appmesh-webhook-gate")
    assert release_id in gate_deps
    (job,) = [o for o in gate_objects if o["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["create", "--dry-run=server", "--cache-dir=/tmp/kube", "-f", "/probe/probe.json"]
    (probe,) = [json.loads(o["data"]["probe.json"]) for o in gate_objects if o["kind"] == "ConfigMap"]
    assert (probe["apiVersion"], probe["kind"]) == ("appmesh.k8s.aws/v1beta2", "Mesh")
    assert job["spec"]["activeDeadlineSeconds"] == 300 and job["spec"]["backoffLimit"] == 8
    ready = object_value(template, gate_id)
    assert template.find_resources("Custom::AWSCDK-EKS-KubernetesObjectValue")[ready]["Properties"]["JsonPath"] == ".status.succeeded"
    for kind, name in (("Namespace", "lab-appmesh"), ("Mesh", "app-mesh")):
        assert ready in manifest_with(template, kind, name)[2], f"{kind}/{name} is not ordered after the gate"


def test_mesh_namespace_has_the_seed_labels_and_enforces_privileged(default_synth: Synthesized, application: Any) -> None:
    _, objects, _ = manifest_with(default_synth.template(application.platform), "Namespace", "lab-appmesh")
    assert {k: v for k, v in objects[0]["metadata"]["labels"].items() if not k.startswith("aws.cdk.eks/prune")} == {
        "mesh": "app-mesh",
        "appmesh.k8s.aws/sidecarInjectorWebhook": "enabled",
        "gateway": "ingress-gw",
        # proxyinit needs NET_ADMIN and root (tests/charts/test_admission.py).
        "pod-security.kubernetes.io/enforce": "privileged",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }


def test_controller_role_is_trusted_only_by_its_service_account(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    conditions = {
        name: json.dumps(resource["Properties"]["Value"])
        for name, resource in template.find_resources("Custom::AWSCDKCfnJson").items()
        if "appmesh-controller" in json.dumps(resource["Properties"]["Value"])
    }
    ((condition_id, condition),) = conditions.items()
    assert ':sub\\":\\"system:serviceaccount:appmesh-system:appmesh-controller' in condition
    assert ':aud\\":\\"sts.amazonaws.com' in condition
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {"StringEquals": {"Fn::GetAtt": [condition_id, "Value"]}},
                        "Effect": "Allow",
                        "Principal": {"Federated": Match.any_value()},
                    }
                ],
                "Version": "2012-10-17",
            }
        },
    )


def _arn(value: Any) -> str:
    """An ARN as the template writes it, pseudo parameters and imports spelled out."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return "".join(_arn(part) for part in value["Fn::Join"][1])
    if "Ref" in value:
        return "${" + value["Ref"] + "}"
    if "Fn::ImportValue" in value:
        return "${Import}"
    raise AssertionError(value)


def test_controller_manages_exactly_its_mesh(default_synth: Synthesized, application: Any) -> None:
    """The full action list, and the ARNs exactly: a dropped action or a wrong ARN fails here,
    not only in a snapshot a routine update would accept."""
    template = default_synth.template(application.platform)
    manage = statement(template, "ManageTheMeshAndItsResources")
    kinds = ("Mesh", "VirtualNode", "VirtualService", "VirtualRouter", "Route", "VirtualGateway", "GatewayRoute")
    expected = {f"appmesh:{verb}{kind}" for kind in kinds for verb in ("Create", "Describe", "Update", "Delete")}
    expected |= {f"appmesh:List{kind}s" for kind in kinds if kind != "Mesh"}
    expected |= {"appmesh:TagResource", "appmesh:UntagResource", "appmesh:ListTagsForResource"}
    assert set(manage["Action"]) == expected and len(manage["Action"]) == len(expected)
    assert [_arn(r) for r in manage["Resource"]] == [
        "arn:aws:appmesh:us-west-1:${AWS::AccountId}:mesh/app-mesh",
        "arn:aws:appmesh:us-west-1:${AWS::AccountId}:mesh/app-mesh/*",
    ]
    assert statement(template, "FindMeshes") == {"Action": "appmesh:ListMeshes", "Effect": "Allow", "Resource": "*", "Sid": "FindMeshes"}


def test_controller_may_create_only_the_app_mesh_service_linked_role(default_synth: Synthesized, application: Any) -> None:
    linked = statement(default_synth.template(application.platform), "AppMeshServiceLinkedRole")
    assert linked["Action"] == "iam:CreateServiceLinkedRole"
    assert linked["Condition"] == {"StringLike": {"iam:AWSServiceName": "appmesh.amazonaws.com"}}
    assert (
        _arn(linked["Resource"])
        == "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/appmesh.amazonaws.com/AWSServiceRoleForAppMesh"
    )


def test_controller_cloud_map_permissions(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    create = statement(template, "CloudMapServicesInTheMeshNamespace")
    assert set(create["Action"]) == {"servicediscovery:CreateService", "servicediscovery:GetNamespace"}
    assert "Fn::ImportValue" in json.dumps(create["Resource"])  # the namespace's ARN, not *
    instances = statement(template, "CloudMapInstances")
    assert set(instances["Action"]) == {
        "servicediscovery:GetService",
        "servicediscovery:DeleteService",
        "servicediscovery:RegisterInstance",
        "servicediscovery:DeregisterInstance",
        "servicediscovery:GetInstance",
        "servicediscovery:ListInstances",
        "servicediscovery:GetInstancesHealthStatus",
        "servicediscovery:UpdateInstanceCustomHealthStatus",
    }
    assert _arn(instances["Resource"]) == "arn:aws:servicediscovery:us-west-1:${AWS::AccountId}:service/*"
    records = statement(template, "CloudMapRecords")
    assert records["Action"] == "route53:ChangeResourceRecordSets"
    # Route 53 hosted zone ARNs have no region and no account.
    assert _arn(records["Resource"]) == "arn:${AWS::Partition}:route53:::hostedzone/${Import}"
    assert set(statement(template, "ReadCertificatesForTls")["Action"]) == {
        "acm:ListCertificates",
        "acm:DescribeCertificate",
        "acm-pca:DescribeCertificateAuthority",
        "acm-pca:ListCertificateAuthorities",
    }


def test_dns_discovery_grants_no_cloud_map_and_makes_no_namespace(tmp_path: Any) -> None:
    import copy

    from tests.conftest import cdk_json_context

    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["discovery"] = "dns"
    result = synthesize(tmp_path, {"topology": topology})
    platform = json.dumps(result.template_json(result.application.platform))
    assert "servicediscovery:" not in platform
    discovery = result.template(result.application.discovery)
    discovery.resource_count_is("AWS::ServiceDiscovery::PrivateDnsNamespace", 0)
    # The workshop names resolve to the first target's ClusterIP, read back from Kubernetes.
    routing = result.template(result.application.routing)
    records = routing.find_resources("AWS::Route53::RecordSet")
    assert sorted((r["Properties"]["Name"], r["Properties"]["Type"]) for r in records.values()) == [
        ("crystal.appmeshworkshop.hosted.local.", "A"),
        ("nodejs.appmeshworkshop.hosted.local.", "A"),
    ]
    values = routing.find_resources("Custom::AWSCDK-EKS-KubernetesObjectValue", {"Properties": {"JsonPath": ".spec.clusterIP"}})
    assert sorted(v["Properties"]["ObjectName"] for v in values.values()) == ["crystal", "nodejs"]


def test_cert_manager_is_pinned_and_gated_before_the_mesh_ca(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    release_id, release = releases(template)["cert-manager"]
    assert (release["Properties"]["Version"], release["Properties"]["Repository"]) == ("v1.21.2", "https://charts.jetstack.io")
    assert helm_values(release) == {"crds": {"enabled": True, "keep": False}}
    gate_id, _, gate_deps = manifest_with(template, "ServiceAccount", "cert-manager-webhook-gate")
    assert release_id in gate_deps
    _, _, ca_deps = manifest_with(template, "Issuer", "app-mesh-ca")
    assert object_value(template, gate_id) in ca_deps


def test_workloads_wait_for_the_namespace_the_mesh_and_the_mesh_ca(application: Any) -> None:
    assert [c.node.path for c in application.platform.ready] == [
        "AppMesh-MeshPlatform/ApplicationNamespace",
        "AppMesh-MeshPlatform/Cluster/Mesh",
        "AppMesh-MeshPlatform/Cluster/MeshCa",
    ]


# -- the workloads ----------------------------------------------------------------------------


def test_workload_roles_stream_only_their_own_virtual_node_and_write_xray(default_synth: Synthesized, application: Any) -> None:
    (services,) = application.services
    template = default_synth.template(services)
    statements = [s for p in template.find_resources("AWS::IAM::Policy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    envoy = sorted(_arn(s["Resource"]) for s in statements if s.get("Sid") == "EnvoyConfiguration")
    assert envoy == [
        f"arn:${{AWS::Partition}}:appmesh:${{AWS::Region}}:${{AWS::AccountId}}:mesh/app-mesh/virtualNode/{name}-app_lab-appmesh"
        for name in ("crystal", "frontend", "nodejs", "nodejsv2")
    ]
    assert all(s["Action"] == "appmesh:StreamAggregatedResources" for s in statements if s.get("Sid") == "EnvoyConfiguration")
    xray = [s for s in statements if s.get("Sid") == "XRayWrite"]
    assert len(xray) == 4
    assert set(xray[0]["Action"]) == {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "xray:GetSamplingStatisticSummaries",
    }


def test_gateway_role_streams_its_virtual_gateway_and_nothing_else(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.routing)
    assert _arn(statement(template, "EnvoyConfiguration")["Resource"]) == (
        "arn:${AWS::Partition}:appmesh:${AWS::Region}:${AWS::AccountId}:mesh/app-mesh/virtualGateway/ingress-gw_lab-appmesh"
    )
    # No X-Ray daemon is injected into a gateway pod: no X-Ray permission either.
    assert "xray:" not in json.dumps(template.find_resources("AWS::IAM::Policy"))


def test_every_virtual_service_name_resolves_to_its_cloud_map_name(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.routing)
    records = template.find_resources("AWS::Route53::RecordSet")
    assert sorted(
        (r["Properties"]["Name"], r["Properties"]["ResourceRecords"][0], r["Properties"]["Type"], r["Properties"]["TTL"])
        for r in records.values()
    ) == [
        ("crystal.appmeshworkshop.hosted.local.", "crystal.appmesh.pvt.local", "CNAME", "60"),
        ("nodejs.appmeshworkshop.hosted.local.", "nodejs.appmesh.pvt.local", "CNAME", "60"),
    ]


def test_one_manifest_per_service_with_its_objects(default_synth: Synthesized, application: Any) -> None:
    (services,) = application.services
    found = manifests(default_synth.template(services))
    assert len(found) == 4
    _, objects, _ = manifest_with(default_synth.template(services), "VirtualNode", "nodejs-app")
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("Certificate", "nodejs-tls"),
        ("Deployment", "nodejs-app"),
        ("PodDisruptionBudget", "nodejs-app"),
        ("Service", "nodejs"),
        ("ServiceAccount", "nodejs"),
        ("VirtualNode", "nodejs-app"),
    ]
