"""Precise assertions on what matters in each platform stack."""

from __future__ import annotations

import json
from typing import Any

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
    template.has_resource_properties("AWS::Logs::LogGroup", {"LogGroupName": "/aws/eks/app-mesh/cluster", "RetentionInDays": 30})


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
    for group in ("application", "dataplane", "host", "performance"):
        template.has_resource_properties(
            "AWS::Logs::LogGroup", {"LogGroupName": f"/aws/containerinsights/app-mesh/{group}", "RetentionInDays": 30}
        )
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
