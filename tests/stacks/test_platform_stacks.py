"""Precise assertions on what matters in each platform stack."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from tests.conftest import Synthesized


def _statement(template: Any, sid: str) -> dict[str, Any]:
    for policy in template.find_resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Sid") == sid:
                return statement  # type: ignore[no-any-return]
    raise AssertionError(f"no statement {sid}")


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


# -- mesh platform ---------------------------------------------------------------------------


def test_controller_helm_release_is_pinned_with_tracing(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    template.has_resource_properties(
        "Custom::AWSCDK-EKS-HelmChart",
        {
            "Chart": "appmesh-controller",
            "Release": "appmesh-controller",
            "Version": "1.13.3",
            "Repository": "https://aws.github.io/eks-charts",
            "Namespace": "appmesh-system",
            "Wait": True,
        },
    )
    release = next(iter(template.find_resources("Custom::AWSCDK-EKS-HelmChart").values()))
    parts = release["Properties"]["Values"]["Fn::Join"][1]
    values = json.loads("".join(p if isinstance(p, str) else "ACCOUNT" for p in parts))
    assert values == {
        "region": "us-west-1",
        "accountId": "ACCOUNT",
        "serviceAccount": {"create": False, "name": "appmesh-controller"},
        "tracing": {"enabled": True, "provider": "x-ray"},
        "xray": {"image": {"repository": "public.ecr.aws/xray/aws-xray-daemon", "tag": "3.3.13"}},
        "sidecar": {"waitUntilProxyReady": True},
    }


def _manifest_of(resource: dict[str, Any]) -> list[dict[str, Any]]:
    manifest = resource["Properties"]["Manifest"]
    if isinstance(manifest, dict):
        manifest = "".join(p if isinstance(p, str) else "TOKEN" for p in manifest["Fn::Join"][1])
    return json.loads(manifest)  # type: ignore[no-any-return]


def _manifests(template: Any) -> dict[str, tuple[list[dict[str, Any]], Any]]:
    return {
        name: (_manifest_of(resource), resource.get("DependsOn", []))
        for name, resource in template.find_resources("Custom::AWSCDK-EKS-KubernetesResource").items()
    }


def test_mesh_namespace_has_the_seed_labels_and_waits_for_the_controller(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    release_id = next(iter(template.find_resources("Custom::AWSCDK-EKS-HelmChart")))
    (namespace_id,) = [
        name
        for name, (objects, _) in _manifests(template).items()
        if objects[0]["kind"] == "Namespace" and objects[0]["metadata"]["name"] == "lab-appmesh"
    ]
    objects, depends_on = _manifests(template)[namespace_id]
    labels = objects[0]["metadata"]["labels"]
    assert {k: v for k, v in labels.items() if not k.startswith(("aws.cdk.eks/prune", "pod-security."))} == {
        "mesh": "app-mesh",
        "appmesh.k8s.aws/sidecarInjectorWebhook": "enabled",
        "gateway": "ingress-gw",
    }
    assert release_id in depends_on


def test_controller_runs_as_its_irsa_service_account_created_before_the_release(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    release = next(iter(template.find_resources("Custom::AWSCDK-EKS-HelmChart").values()))
    (account_id,) = [name for name, (objects, _) in _manifests(template).items() if objects[0]["kind"] == "ServiceAccount"]
    objects, _ = _manifests(template)[account_id]
    assert objects[0]["metadata"]["name"] == "appmesh-controller"
    assert objects[0]["metadata"]["namespace"] == "appmesh-system"
    assert objects[0]["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "TOKEN"}
    assert account_id in release["DependsOn"]


def test_controller_role_is_trusted_only_by_its_service_account(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    conditions = {
        name: json.dumps(resource["Properties"]["Value"])
        for name, resource in template.find_resources("Custom::AWSCDKCfnJson").items()
        if "appmesh-controller" in json.dumps(resource["Properties"]["Value"])
    }
    assert len(conditions) == 1
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


def test_controller_policy_is_scoped_to_the_mesh(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    manage = _statement(template, "ManageTheMeshAndItsResources")
    assert manage["Effect"] == "Allow"
    assert set(manage["Action"]) >= {
        "appmesh:CreateVirtualNode",
        "appmesh:DeleteMesh",
        "appmesh:DescribeGatewayRoute",
        "appmesh:ListVirtualRouters",
    }
    assert all(action.startswith("appmesh:") and "*" not in action for action in manage["Action"])
    resources = json.dumps(manage["Resource"])
    assert ":mesh/app-mesh" in resources and ":mesh/app-mesh/*" in resources
    assert _statement(template, "FindMeshes")["Action"] == "appmesh:ListMeshes"


def test_controller_may_create_only_the_app_mesh_service_linked_role(default_synth: Synthesized, application: Any) -> None:
    statement = _statement(default_synth.template(application.platform), "AppMeshServiceLinkedRole")
    assert statement["Action"] == "iam:CreateServiceLinkedRole"
    assert statement["Condition"] == {"StringLike": {"iam:AWSServiceName": "appmesh.amazonaws.com"}}
    assert "role/aws-service-role/appmesh.amazonaws.com/AWSServiceRoleForAppMesh" in json.dumps(statement["Resource"])


def test_controller_cloud_map_permissions(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    create = _statement(template, "CloudMapServicesInTheMeshNamespace")
    assert set(create["Action"]) == {"servicediscovery:CreateService", "servicediscovery:GetNamespace"}
    assert "Fn::ImportValue" in json.dumps(create["Resource"])  # the namespace's ARN, not *
    instances = _statement(template, "CloudMapInstances")
    assert "servicediscovery:RegisterInstance" in instances["Action"]
    assert ":service/*" in json.dumps(instances["Resource"])
    records = _statement(template, "CloudMapRecords")
    assert records["Action"] == "route53:ChangeResourceRecordSets"
    assert ":hostedzone/" in json.dumps(records["Resource"])
    acm = _statement(template, "ReadCertificatesForTls")
    assert set(acm["Action"]) == {
        "acm:ListCertificates",
        "acm:DescribeCertificate",
        "acm-pca:DescribeCertificateAuthority",
        "acm-pca:ListCertificateAuthorities",
    }


def test_no_full_access_managed_policy_anywhere(default_synth: Synthesized, application: Any) -> None:
    for stack in application.stacks:
        for name, role in default_synth.template(stack).find_resources("AWS::IAM::Role").items():
            attached = json.dumps(role["Properties"].get("ManagedPolicyArns", []))
            assert "FullAccess" not in attached, f"{stack.stack_name}/{name} attaches {attached}"
        assert "FullAccess" not in json.dumps(default_synth.template_json(stack).get("Resources", {})), stack.stack_name


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


def test_app_mesh_end_of_support_is_announced_at_synth(application: Any) -> None:
    from aws_cdk.assertions import Annotations

    warnings = Annotations.from_stack(application.platform).find_warning(
        "*", Match.string_like_regexp("discontinued App Mesh on 2026-09-30")
    )
    assert len(warnings) == 1


def test_namespace_pod_security_is_the_strictest_that_admits_meshed_pods(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    (objects,) = [objects for objects, _ in _manifests(template).values() if objects[0]["metadata"]["name"] == "lab-appmesh"]
    labels = objects[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"


def test_cert_manager_is_pinned_and_the_mesh_ca_waits_for_it(default_synth: Synthesized, application: Any) -> None:
    template = default_synth.template(application.platform)
    releases = template.find_resources("Custom::AWSCDK-EKS-HelmChart", {"Properties": {"Chart": "cert-manager"}})
    ((release_id, release),) = releases.items()
    assert release["Properties"]["Version"] == "v1.18.2"
    assert release["Properties"]["Repository"] == "https://charts.jetstack.io"
    assert json.loads(release["Properties"]["Values"]) == {"crds": {"enabled": True, "keep": False}}
    (ca_id,) = [name for name, (objects, _) in _manifests(template).items() if objects[0]["kind"] == "Issuer"]
    assert release_id in _manifests(template)[ca_id][1]


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
