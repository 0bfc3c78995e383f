"""The VPC Lattice backend's AWS side: the controller with a role narrower than its documented one,
the Gateway API CRDs verified and applied first, the service network and the rules that let the
VPC's clients in and Lattice reach the pods, and the workshop names from the assigned domains."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

import upstream
from components.lattice import EC2_READ_ACTIONS, LATTICE_ACTIONS, LOG_DELIVERY_ACTIONS
from tests.conftest import Synthesized
from tests.stacks.support import helm_values, manifest_with, object_value, releases, statement
from upstream import ARTIFACTS


@pytest.fixture(scope="module")
def lattice(synths: Any) -> Synthesized:
    return synths["lattice"]


def _documented() -> list[dict[str, Any]]:
    return json.loads(upstream.text("lattice-gateway-controller-v2.1.3-recommended-inline-policy.json"))["Statement"]  # type: ignore[no-any-return]


# Written out here, not read from components/lattice.py: each IAM action the controller's role must
# have, with the call that needs it (aws/aws-application-networking-k8s@v2.1.3; pkg/deploy/lattice/
# unless the path says otherwise). A lost action fails here, whatever the constants in the code say.
LATTICE_ACTIONS_NEEDED = [
    "vpc-lattice:CreateAccessLogSubscription",  # access_log_subscription_manager.go Create
    "vpc-lattice:CreateListener",  # listener_manager.go Upsert
    "vpc-lattice:CreateRule",  # rule_manager.go Upsert
    "vpc-lattice:CreateService",  # service_manager.go create
    "vpc-lattice:CreateServiceNetworkServiceAssociation",  # service_manager.go associateServiceNetwork
    "vpc-lattice:CreateTargetGroup",  # target_group_manager.go create
    "vpc-lattice:DeleteAccessLogSubscription",  # access_log_subscription_manager.go Delete
    "vpc-lattice:DeleteListener",  # listener_manager.go Delete; service_manager.go deleteAllListeners
    "vpc-lattice:DeleteRule",  # rule_manager.go Delete
    "vpc-lattice:DeleteService",  # service_manager.go Delete
    "vpc-lattice:DeleteServiceNetworkServiceAssociation",  # service_manager.go disassociation
    "vpc-lattice:DeleteTargetGroup",  # target_group_manager.go Delete
    "vpc-lattice:DeregisterTargets",  # targets_manager.go; target_group_manager.go Delete
    "vpc-lattice:GetAccessLogSubscription",  # access_log_subscription_manager.go Update
    "vpc-lattice:GetListener",  # listener_manager.go
    "vpc-lattice:GetRule",  # rule_manager.go Get; pkg/aws/services/vpclattice.go GetRulesAsList
    "vpc-lattice:GetTargetGroup",  # target_group_manager.go; pkg/gateway/model_build_rule.go
    "vpc-lattice:ListAccessLogSubscriptions",  # access_log_subscription_manager.go List
    "vpc-lattice:ListListeners",  # listener_manager.go, service_manager.go (ListListenersAsList)
    "vpc-lattice:ListRules",  # rule_manager.go (ListRulesAsList, GetRulesAsList)
    "vpc-lattice:ListServiceNetworkServiceAssociations",  # service_manager.go
    "vpc-lattice:ListServiceNetworkVpcAssociations",  # pkg/aws/services/vpclattice.go findServiceNetworkViaVPCAssociation
    "vpc-lattice:ListServiceNetworks",  # pkg/aws/services/vpclattice.go FindServiceNetwork
    "vpc-lattice:ListServices",  # pkg/aws/services/vpclattice.go FindService
    "vpc-lattice:ListTagsForResource",  # pkg/aws/cloud.go getTags; service_manager.go; pkg/aws/services/tagging.go
    "vpc-lattice:ListTargetGroups",  # target_group_manager.go List; pkg/aws/services/tagging.go FindResourcesByTags
    "vpc-lattice:ListTargets",  # targets_manager.go; target_group_manager.go (ListTargetsAsList)
    "vpc-lattice:RegisterTargets",  # targets_manager.go Update: without it no pod ever receives traffic
    "vpc-lattice:TagResource",  # pkg/aws/cloud.go ownResource; pkg/aws/services/tagging.go; tags on every Create
    "vpc-lattice:UntagResource",  # pkg/aws/services/tagging.go latticeTagging.UpdateTags
    "vpc-lattice:UpdateAccessLogSubscription",  # access_log_subscription_manager.go Update
    "vpc-lattice:UpdateListener",  # listener_manager.go Upsert
    # rule_manager.go Upsert (UpdateRule) and UpdatePriorities (BatchUpdateRule): IAM checks
    # vpc-lattice:UpdateRule for both (AWS Service Authorization Reference, list_vpc-lattice.html).
    "vpc-lattice:UpdateRule",
    "vpc-lattice:UpdateService",  # service_manager.go update
    "vpc-lattice:UpdateTargetGroup",  # target_group_manager.go update
]
# CreateAccessLogSubscription to a log group: the CloudWatch Logs user guide's "Logs sent to
# CloudWatch Logs" (AWS-logs-infrastructure-CWL.html) lists what the caller needs.
LOG_DELIVERY_ACTIONS_NEEDED = [
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
]
# No call needs them; kept from the documented policy as a precaution (components/lattice.py).
EC2_READS_KEPT = ["ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return sorted([action] if isinstance(action, str) else action)


def _role_statements(template: Any) -> list[dict[str, Any]]:
    (policy,) = [
        p for lid, p in template.find_resources("AWS::IAM::Policy").items() if lid.startswith("LatticeControllerIdentityRoleDefaultPolicy")
    ]
    return policy["Properties"]["PolicyDocument"]["Statement"]  # type: ignore[no-any-return]


def test_every_action_granted_is_one_the_documented_policy_grants(lattice: Synthesized) -> None:
    """Read from the synthesized role, not from the code's constants."""
    documented = [action for s in _documented() for action in _actions(s)]
    granted = [action for s in _role_statements(lattice.template(lattice.application.platform)) for action in _actions(s)]
    assert "vpc-lattice:RegisterTargets" in granted
    for action in granted:
        assert any(fnmatch.fnmatchcase(action, pattern) for pattern in documented), action


def test_what_the_role_drops_from_the_documented_policy() -> None:
    """Said in components/lattice.py: CloudFormation owns the service network and its VPC
    association, no auth policies, no tag lookup, no Tagging API, no ACM, S3 or Firehose."""
    (first, *_) = _documented()
    dropped = sorted(
        a for a in first["Action"] if a != "vpc-lattice:*" and a not in LOG_DELIVERY_ACTIONS_NEEDED and a not in EC2_READS_KEPT
    )
    assert dropped == [
        "acm:ListCertificates",
        "ec2:DescribeTags",
        "firehose:TagDeliveryStream",
        "s3:GetBucketPolicy",
        "s3:PutBucketPolicy",
        "tag:GetResources",
        "tag:TagResources",
        "tag:UntagResources",
    ]
    for action in ("vpc-lattice:CreateServiceNetwork", "vpc-lattice:CreateServiceNetworkVpcAssociation", "vpc-lattice:PutAuthPolicy"):
        assert action not in LATTICE_ACTIONS_NEEDED


def test_the_controller_role_has_exactly_those_actions(lattice: Synthesized) -> None:
    """The synthesized role against the lists written out above (and the code's constants against
    the same lists, so neither can drift alone)."""
    template = lattice.template(lattice.application.platform)
    assert _actions(statement(template, "LatticeServicesOfThisCluster")) == LATTICE_ACTIONS_NEEDED
    assert _actions(statement(template, "AccessLogDelivery")) == LOG_DELIVERY_ACTIONS_NEEDED
    assert _actions(statement(template, "Ec2ReadsOfTheDocumentedPolicy")) == EC2_READS_KEPT
    assert (LATTICE_ACTIONS, LOG_DELIVERY_ACTIONS, EC2_READ_ACTIONS) == (
        LATTICE_ACTIONS_NEEDED,
        LOG_DELIVERY_ACTIONS_NEEDED,
        EC2_READS_KEPT,
    )
    linked = [s for s in _role_statements(template) if s.get("Action") == "iam:CreateServiceLinkedRole"]
    assert sorted(s["Condition"]["StringLike"]["iam:AWSServiceName"] for s in linked) == [
        "delivery.logs.amazonaws.com",
        "vpc-lattice.amazonaws.com",
    ]
    sids = sorted(s.get("Sid", s["Action"]) for s in _role_statements(template))
    assert sids == [
        "AccessLogDelivery",
        "Ec2ReadsOfTheDocumentedPolicy",
        "LatticeServicesOfThisCluster",
        "iam:CreateServiceLinkedRole",
        "iam:CreateServiceLinkedRole",
    ]


def test_the_crds_are_verified_and_applied_before_the_controller(lattice: Synthesized) -> None:
    template = lattice.template(lattice.application.platform)
    installer_id, objects, _ = manifest_with(template, "ServiceAccount", "gateway-api-crds")
    (job,) = [o for o in objects if o["kind"] == "Job"]
    (fetch,) = job["spec"]["template"]["spec"]["initContainers"]
    pinned = json.loads(next(e["value"] for e in fetch["env"] if e["name"] == "PARTS"))
    assert pinned == [
        [part.url("https://raw.githubusercontent.com"), part.blob] for part in ARTIFACTS["gateway-api-standard-crds.yaml"].parts
    ]
    (apply,) = job["spec"]["template"]["spec"]["containers"]
    assert apply["args"][:2] == ["apply", "--server-side"]
    release_id, release = releases(template)["aws-gateway-controller-chart"]
    assert object_value(template, installer_id) in release["DependsOn"]
    (policy_id,) = [
        lid for lid in template.find_resources("AWS::IAM::Policy") if lid.startswith("LatticeControllerIdentityRoleDefaultPolicy")
    ]
    assert policy_id in release["DependsOn"], release_id


def test_the_controller_is_pinned_and_told_everything_it_would_otherwise_ask_imds(lattice: Synthesized) -> None:
    _, release = releases(lattice.template(lattice.application.platform))["aws-gateway-controller-chart"]
    properties = release["Properties"]
    assert properties["Repository"] == "oci://public.ecr.aws/aws-application-networking-k8s/aws-gateway-controller-chart"
    assert (properties["Version"], properties["Namespace"], properties["Release"]) == (
        "v2.1.3",
        "aws-application-networking-system",
        "gateway-api-controller",
    )
    values = helm_values(release)
    assert values["awsRegion"] == "us-west-1"
    assert {values[k] for k in ("awsAccountId", "clusterVpcId")} == {"TOKEN"}
    assert values["clusterName"] == "app-mesh"
    assert values["serviceAccount"] == {
        "create": True,
        "name": "gateway-api-controller",
        "annotations": {"eks.amazonaws.com/role-arn": "TOKEN"},
    }
    assert (values["defaultServiceNetwork"], values["disableTaggingServiceApi"]) == ("", True)
    assert values["routeMaxConcurrentReconciles"] == 10  # the FAQ's advice against 503s in rollouts


def test_the_service_network_is_cloudformations_and_lattice_reaches_the_pods(lattice: Synthesized) -> None:
    template = lattice.template(lattice.application.platform)
    template.has_resource_properties("AWS::VpcLattice::ServiceNetwork", {"Name": "app-mesh", "AuthType": "NONE"})
    (association,) = template.find_resources("AWS::VpcLattice::ServiceNetworkVpcAssociation").values()
    assert len(association["Properties"]["SecurityGroupIds"]) == 1
    (lookup,) = template.find_resources("Custom::AWS").values()
    call = json.loads(json.dumps(lookup["Properties"]["Update"]))
    assert "describeManagedPrefixLists" in json.dumps(call) and "com.amazonaws.us-west-1.vpc-lattice" in json.dumps(call)
    (rule,) = template.find_resources("AWS::EC2::SecurityGroupIngress").values()
    assert (rule["Properties"]["FromPort"], rule["Properties"]["ToPort"]) == (3000, 3000)
    assert "SourcePrefixListId" in rule["Properties"]
    _, objects, deps = manifest_with(template, "Gateway", "app-mesh")
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("Gateway", "app-mesh"), ("AccessLogPolicy", "app-mesh-access-logs")]
    network_ids = set(template.find_resources("AWS::VpcLattice::ServiceNetwork")) | set(
        template.find_resources("AWS::VpcLattice::ServiceNetworkVpcAssociation")
    )
    assert network_ids <= set(deps)


def test_the_gateway_class_is_created_before_the_gateway_and_deleted_after_it(lattice: Synthesized) -> None:
    """The controller lets go of a Gateway (removes its finalizer) only while its GatewayClass
    exists: the class is its own manifest, which the Gateway's manifest depends on, so
    CloudFormation deletes the Gateway first and the class only once it is gone."""
    template = lattice.template(lattice.application.platform)
    class_id, class_objects, class_deps = manifest_with(template, "GatewayClass", "amazon-vpc-lattice")
    assert [(o["kind"], o["metadata"]["name"]) for o in class_objects] == [("GatewayClass", "amazon-vpc-lattice")]
    gateway_id, _, gateway_deps = manifest_with(template, "Gateway", "app-mesh")
    assert class_id in gateway_deps
    # The class needs the Gateway API CRDs, which the controller's release waits for.
    release_id, _ = releases(template)["aws-gateway-controller-chart"]
    assert release_id in class_deps and gateway_id not in class_deps


def test_the_workshop_names_are_cnames_to_the_lattice_services(lattice: Synthesized) -> None:
    template = lattice.template(lattice.application.routing)
    values = template.find_resources("Custom::AWSCDK-EKS-KubernetesObjectValue", {"Properties": {"ObjectType": "httproute"}})
    assert sorted(v["Properties"]["ObjectName"] for v in values.values()) == ["crystal", "nodejs"]
    assert {v["Properties"]["JsonPath"] for v in values.values()} == {
        ".metadata.annotations.application-networking\\.k8s\\.aws/lattice-assigned-domain-name"
    }
    records = template.find_resources("AWS::Route53::RecordSet")
    assert sorted((r["Properties"]["Name"], r["Properties"]["Type"]) for r in records.values()) == [
        ("crystal.appmeshworkshop.hosted.local.", "CNAME"),
        ("nodejs.appmeshworkshop.hosted.local.", "CNAME"),
    ]
    for record in records.values():
        (target,) = record["Properties"]["ResourceRecords"]
        assert target["Fn::GetAtt"][1] == "Value" and target["Fn::GetAtt"][0] in values


def test_no_pod_has_an_irsa_role(lattice: Synthesized) -> None:
    for stack in lattice.application.services:
        assert not lattice.template(stack).find_resources("AWS::IAM::Role")


def test_access_logs_go_to_a_vended_logs_group(lattice: Synthesized) -> None:
    """The AccessLogPolicy delivers to a log group under /aws/vendedlogs/ (the one prefix for which
    CloudWatch Logs does not grow the account's shared resource policy per log group)."""
    template = lattice.template(lattice.application.platform)
    manifest_id, _, _ = manifest_with(template, "AccessLogPolicy", "app-mesh-access-logs")
    parts = template.to_json()["Resources"][manifest_id]["Properties"]["Manifest"]["Fn::Join"][1]
    (destination,) = [p["Fn::GetAtt"] for p in parts if isinstance(p, dict)]
    assert destination[1] == "Arn"
    log_group = template.to_json()["Resources"][destination[0]]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["LogGroupName"] == "/aws/vendedlogs/vpclattice/AppMesh-MeshPlatform/app-mesh"


def test_the_deploy_waits_for_the_access_log_subscription_the_policy_asks_for(lattice: Synthesized) -> None:
    """A policy the controller refuses shows it only in its status: the deploy reads the annotation
    the controller writes once VPC Lattice has made the subscription, so a refusal fails it."""
    template = lattice.template(lattice.application.platform)
    manifest_id, _, _ = manifest_with(template, "AccessLogPolicy", "app-mesh-access-logs")
    wait = template.to_json()["Resources"][object_value(template, manifest_id)]["Properties"]
    assert (wait["ObjectType"], wait["ObjectName"], wait["ObjectNamespace"]) == ("accesslogpolicy", "app-mesh-access-logs", "lab-appmesh")
    assert wait["JsonPath"] == ".metadata.annotations.application-networking\\.k8s\\.aws/accessLogSubscription"
