"""Precise assertions on what matters in each platform stack."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.conftest import Synthesized

# -- network ---------------------------------------------------------------------------------


def test_vpc_spans_two_zones_with_public_and_private_subnets(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.network)
    template.has_resource_properties("AWS::EC2::VPC", {"CidrBlock": "10.0.0.0/16"})
    template.resource_properties_count_is("AWS::EC2::Subnet", {"MapPublicIpOnLaunch": True}, 2)
    template.resource_properties_count_is("AWS::EC2::Subnet", {"MapPublicIpOnLaunch": False}, 2)


def test_subnets_are_tagged_for_eks_load_balancers(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.network)
    template.resource_properties_count_is(
        "AWS::EC2::Subnet",
        {"MapPublicIpOnLaunch": True, "Tags": Match.array_with([{"Key": "kubernetes.io/role/elb", "Value": "1"}])},
        2,
    )
    template.resource_properties_count_is(
        "AWS::EC2::Subnet",
        {"MapPublicIpOnLaunch": False, "Tags": Match.array_with([{"Key": "kubernetes.io/role/internal-elb", "Value": "1"}])},
        2,
    )


def test_one_nat_gateway_by_default(default_synth: Synthesized, application: Any) -> None:
    default_synth.template(application.network).resource_count_is("AWS::EC2::NatGateway", 1)


def test_flow_logs_go_to_cloudwatch_with_retention(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.network)
    template.has_resource_properties("AWS::EC2::FlowLog", {"LogDestinationType": "cloud-watch-logs", "TrafficType": "ALL"})
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})


# -- log groups a service names ------------------------------------------------------------------


def _service_log_group(template: Any, name: str) -> str:
    """The one custom resource that gives the service-named group `name` its retention and the
    stack's logs key; its logical id."""
    (found,) = [
        lid
        for lid, r in template.find_resources("Custom::ServiceLogGroup").items()
        if r["Properties"]["LogGroupName"] == name and r["Properties"]["RetentionInDays"] == 30
    ]
    resource = template.to_json()["Resources"][found]
    assert resource["Properties"]["KmsKeyArn"] == {"Fn::GetAtt": [_logs_key(template), "Arn"]}
    assert resource.get("DeletionPolicy", "Delete") == "Delete"
    return found


def _logs_key(template: Any) -> str:
    (key,) = [lid for lid in template.find_resources("AWS::KMS::Key") if lid.startswith("LogsKey")]
    return key


def test_no_stack_owns_a_log_group_an_aws_service_names(synths: Any) -> None:
    """EKS (/aws/eks/<cluster>/cluster) and the CloudWatch add-on (/aws/containerinsights/<cluster>/*)
    create these themselves, and again after a destroy: a CloudFormation-owned group of that name
    makes the next deploy fail with "already exists"."""
    for backend in ("appmesh", "istio", "lattice"):
        synth = synths[backend]
        for stack in synth.application.stacks:
            for lid, group in synth.template(stack).find_resources("AWS::Logs::LogGroup").items():
                name = json.dumps(group["Properties"].get("LogGroupName", ""))
                assert "/aws/eks/" not in name and "/aws/containerinsights/" not in name, f"{backend} {stack.stack_name}/{lid}: {name}"


def test_the_cluster_is_created_after_its_control_plane_log_group_has_its_retention(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.cluster)
    group = _service_log_group(template, "/aws/eks/app-mesh/cluster")
    (cluster,) = template.find_resources("AWS::EKS::Cluster").values()
    assert group in cluster["DependsOn"]


def test_the_log_group_handler_may_touch_exactly_its_groups(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    statements = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "logs:PutRetentionPolicy" in json.dumps(s)
    ]
    groups = sorted(
        r.replace("arn:aws:logs:us-west-1:<account>:log-group:", "")
        for s in statements
        for r in ([s["Resource"]] if isinstance(s["Resource"], (str, dict)) else s["Resource"])
        for r in [_arn(r)]
    )
    assert groups == sorted(
        f"/aws/containerinsights/app-mesh/{group}{suffix}"
        for group in ("application", "dataplane", "host", "performance")
        for suffix in ("", ":*")
    )
    assert {tuple(sorted(s["Action"])) for s in statements} == {
        ("logs:AssociateKmsKey", "logs:CreateLogGroup", "logs:DisassociateKmsKey", "logs:PutRetentionPolicy")
    }
    # One handler for the stack's four groups.
    assert [r["Properties"]["Handler"] for r in template.find_resources("AWS::Lambda::Function").values()].count("index.on_event") == 1


def _arn(value: Any) -> str:
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(
        p if isinstance(p, str) else {"AWS::Partition": "<partition>", "AWS::AccountId": "<account>", "AWS::Region": "us-west-1"}[p["Ref"]]
        for p in parts
    )


# -- cluster ---------------------------------------------------------------------------------


def test_cluster_runs_the_configured_version_with_all_control_plane_logs(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.cluster)
    template.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "Name": "app-mesh",
            "Version": "1.35",
            "Logging": {
                "ClusterLogging": {
                    "EnabledTypes": [{"Type": t} for t in ("api", "audit", "authenticator", "controllerManager", "scheduler")]
                }
            },
            "ResourcesVpcConfig": Match.object_like({"EndpointPrivateAccess": True, "EndpointPublicAccess": True}),
        },
    )
    _service_log_group(template, "/aws/eks/app-mesh/cluster")


def test_kubectl_layer_matches_the_cluster_version(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.cluster)
    template.has_resource_properties(
        "AWS::Lambda::LayerVersion", {"Description": Match.string_like_regexp(r"^/opt/kubectl/kubectl 1\.35\.")}
    )


def test_secrets_are_envelope_encrypted_with_a_rotating_key(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.cluster)
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    template.has_resource_properties(
        "AWS::EKS::Cluster",
        {"EncryptionConfig": [{"Provider": {"KeyArn": Match.any_value()}, "Resources": ["secrets"]}]},
    )


def test_node_group_has_the_seed_scaling_on_a_type_that_holds_the_pods(default_synth: Synthesized, application: Any) -> None:
    default_synth.template(application.cluster).has_resource_properties(
        "AWS::EKS::Nodegroup",
        {
            "InstanceTypes": ["m5.large"],
            "ScalingConfig": {"DesiredSize": 3, "MinSize": 1, "MaxSize": 4},
            "AmiType": "AL2023_x86_64_STANDARD",
        },
    )


def test_node_role_carries_no_mesh_or_xray_permissions(default_synth: Synthesized, application: Any) -> None:
    node_roles = {
        name: role
        for name, role in default_synth.template(application.cluster).find_resources("AWS::IAM::Role").items()
        if "NodeGroupRole" in name
    }
    assert len(node_roles) == 1
    (node_role,) = node_roles.values()
    attached = json.dumps(node_role["Properties"].get("ManagedPolicyArns"))
    for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"):
        assert policy in attached
    assert "AppMesh" not in attached and "XRay" not in attached
    assert "Policies" not in node_role["Properties"]


# -- discovery -------------------------------------------------------------------------------


def test_private_zone_and_cloud_map_namespace_are_on_the_vpc(default_synth: Synthesized, application: Any) -> None:
    """App Mesh uses both; Istio neither (its DNS proxy answers the workshop names); Lattice the zone."""
    template = default_synth.template(application.discovery)
    template.has_resource_properties(
        "AWS::Route53::HostedZone",
        {
            "Name": "appmeshworkshop.hosted.local.",
            "VPCs": [{"VPCId": {"Fn::ImportValue": Match.string_like_regexp("AppMesh-Network:.*Vpc")}, "VPCRegion": "us-west-1"}],
        },
    )
    template.has_resource_properties(
        "AWS::ServiceDiscovery::PrivateDnsNamespace",
        {"Name": "appmesh.pvt.local", "Vpc": {"Fn::ImportValue": Match.string_like_regexp("AppMesh-Network:.*Vpc")}},
    )


# -- for every backend --------------------------------------------------------------------------


def test_no_full_access_managed_policy_anywhere(synths: Any) -> None:
    for backend in ("appmesh", "istio", "lattice"):
        synth = synths[backend]
        for stack in synth.application.stacks:
            for name, role in synth.template(stack).find_resources("AWS::IAM::Role").items():
                attached = json.dumps(role["Properties"].get("ManagedPolicyArns", []))
                assert "FullAccess" not in attached, f"{backend} {stack.stack_name}/{name} attaches {attached}"
            assert "FullAccess" not in json.dumps(synth.template_json(stack).get("Resources", {})), stack.stack_name


def test_container_logs_add_on_has_its_own_irsa_and_log_retention(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    template.has_resource_properties(
        "AWS::EKS::Addon",
        {
            "AddonName": "amazon-cloudwatch-observability",
            "ServiceAccountRoleArn": {"Fn::GetAtt": [Match.string_like_regexp("ContainerLogsIdentityRole"), "Arn"]},
        },
    )
    (addon,) = template.find_resources("AWS::EKS::Addon").values()
    for group in ("application", "dataplane", "host", "performance"):
        # Retention set before the add-on writes its first event.
        assert _service_log_group(template, f"/aws/containerinsights/app-mesh/{group}") in addon["DependsOn"]
    (role,) = [r for name, r in template.find_resources("AWS::IAM::Role").items() if name.startswith("ContainerLogsIdentityRole")]
    attached = json.dumps(role["Properties"]["ManagedPolicyArns"])
    assert "policy/CloudWatchAgentServerPolicy" in attached and "policy/AWSXrayWriteOnlyAccess" in attached


def test_cluster_options_auto_mode_public_endpoint_allowlist_and_admin(tmp_path: Any) -> None:
    from tests.conftest import synthesize

    result = synthesize(
        tmp_path,
        {
            "auto_mode": "true",
            "endpoint_public_cidrs": "203.0.113.0/24",
            "admin_principal_arn": "arn:aws:iam::123456789012:role/Admin",
        },
    )
    template = result.template(result.application.cluster)
    template.has_resource_properties(
        "AWS::EKS::Cluster",
        {
            "ComputeConfig": {"Enabled": True, "NodePools": ["system", "general-purpose"], "NodeRoleArn": Match.any_value()},
            "ResourcesVpcConfig": Match.object_like({"PublicAccessCidrs": ["203.0.113.0/24"]}),
        },
    )
    template.resource_count_is("AWS::EKS::Nodegroup", 0)
    # Auto Mode's nodes pull the image assets (the services', the mirrors of Istio and Envoy) with
    # their own role, as the node group's do (test_node_role_carries_no_mesh_or_xray_permissions).
    (node_role,) = [r for name, r in template.find_resources("AWS::IAM::Role").items() if "nodePoolRole" in name]
    attached = json.dumps(node_role["Properties"]["ManagedPolicyArns"])
    assert "AmazonEC2ContainerRegistryReadOnly" in attached and "AmazonEKSWorkerNodePolicy" in attached
    (admin,) = template.find_resources(
        "AWS::EKS::AccessEntry", {"Properties": {"PrincipalArn": "arn:aws:iam::123456789012:role/Admin"}}
    ).values()
    (policy,) = admin["Properties"]["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "cluster"}
    assert "policy/AmazonEKSClusterAdminPolicy" in json.dumps(policy["PolicyArn"])


def test_each_backend_creates_the_name_services_it_uses_and_no_others(synths: Any) -> None:
    expected = {
        "appmesh": {"AWS::Route53::HostedZone", "AWS::ServiceDiscovery::PrivateDnsNamespace"},
        "lattice": {"AWS::Route53::HostedZone"},
    }
    for backend in ("appmesh", "istio", "lattice"):
        application = synths[backend].application
        if backend not in expected:
            assert application.discovery is None
            continue
        types = {r["Type"] for r in synths[backend].template_json(application.discovery)["Resources"].values()}
        assert types == expected[backend], backend


# -- the service log group handler (components/service_log_group/index.py) -------------------------


class _AwsError(Exception):
    """What botocore raises: a ClientError with the error code in `response`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class _Logs:
    """CloudWatch Logs as the handler sees it: `existing` groups, every call recorded."""

    def __init__(self, existing: set[str], fail: dict[str, str] | None = None) -> None:
        self.existing = existing
        self.fail = fail or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, action: str) -> Any:
        def call(**kwargs: Any) -> dict[str, Any]:
            self.calls.append((action, kwargs))
            if action in self.fail:
                raise _AwsError(self.fail[action])
            if action == "create_log_group":
                if kwargs["logGroupName"] in self.existing:
                    raise _AwsError("ResourceAlreadyExistsException")
                self.existing.add(kwargs["logGroupName"])
            return {}

        return call


_GROUP = "/aws/eks/app-mesh/cluster"
_KEY = "arn:aws:kms:us-west-1:123456789012:key/1234"
_PROPERTIES = {"LogGroupName": _GROUP, "RetentionInDays": "30", "KmsKeyArn": _KEY, "ServiceToken": "arn:aws:lambda:..."}


def test_the_handler_creates_an_absent_group_with_the_key_and_the_retention() -> None:
    from components.service_log_group.index import on_event

    logs = _Logs(existing=set())
    assert on_event({"RequestType": "Create", "ResourceProperties": _PROPERTIES}, None, client=logs) == {"PhysicalResourceId": _GROUP}
    assert logs.calls == [
        ("create_log_group", {"logGroupName": _GROUP, "kmsKeyId": _KEY}),
        ("put_retention_policy", {"logGroupName": _GROUP, "retentionInDays": 30}),
    ]


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_the_handler_adopts_a_group_the_service_created(request_type: str) -> None:
    """After a destroy, EKS (or the add-on) has recreated the group: not an error; key and retention are set on it."""
    from components.service_log_group.index import on_event

    logs = _Logs(existing={_GROUP})
    event = {"RequestType": request_type, "ResourceProperties": _PROPERTIES, "PhysicalResourceId": _GROUP}
    assert on_event(event, None, client=logs) == {"PhysicalResourceId": _GROUP}
    assert logs.calls == [
        ("create_log_group", {"logGroupName": _GROUP, "kmsKeyId": _KEY}),
        ("associate_kms_key", {"logGroupName": _GROUP, "kmsKeyId": _KEY}),
        ("put_retention_policy", {"logGroupName": _GROUP, "retentionInDays": 30}),
    ]


def test_the_handler_leaves_the_group_on_delete_and_releases_the_stacks_key() -> None:
    from components.service_log_group.index import on_event

    for fail in ({}, {"disassociate_kms_key": "ResourceNotFoundException"}):
        logs = _Logs(existing={_GROUP}, fail=fail)
        event = {"RequestType": "Delete", "ResourceProperties": _PROPERTIES, "PhysicalResourceId": _GROUP}
        assert on_event(event, None, client=logs) == {"PhysicalResourceId": _GROUP}
        assert logs.calls == [("disassociate_kms_key", {"logGroupName": _GROUP})]
        assert logs.existing == {_GROUP}


@pytest.mark.parametrize(
    ("request_type", "fail"),
    [("Create", {"create_log_group": "AccessDeniedException"}), ("Delete", {"disassociate_kms_key": "AccessDeniedException"})],
)
def test_the_handler_fails_on_any_other_error(request_type: str, fail: dict[str, str]) -> None:
    from components.service_log_group.index import on_event

    event = {"RequestType": request_type, "ResourceProperties": _PROPERTIES, "PhysicalResourceId": _GROUP}
    with pytest.raises(_AwsError, match="AccessDeniedException"):
        on_event(event, None, client=_Logs(existing=set(), fail=fail))
