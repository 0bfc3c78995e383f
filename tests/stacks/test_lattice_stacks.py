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


def test_every_action_granted_is_one_the_documented_policy_grants() -> None:
    documented = [action for s in _documented() for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    for action in [*LATTICE_ACTIONS, *LOG_DELIVERY_ACTIONS, *EC2_READ_ACTIONS, "iam:CreateServiceLinkedRole"]:
        assert any(fnmatch.fnmatchcase(action, pattern) for pattern in documented), action


def test_what_the_role_drops_from_the_documented_policy() -> None:
    """Said in components/lattice.py: CloudFormation owns the service network and its VPC
    association, no auth policies, no tag lookup, no Tagging API, no ACM, S3 or Firehose."""
    (first, *_) = _documented()
    dropped = sorted(a for a in first["Action"] if a != "vpc-lattice:*" and a not in LOG_DELIVERY_ACTIONS and a not in EC2_READ_ACTIONS)
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
        assert action not in LATTICE_ACTIONS


def test_the_controller_role_has_exactly_those_actions(lattice: Synthesized) -> None:
    template = lattice.template(lattice.application.platform)
    assert sorted(statement(template, "LatticeServicesOfThisCluster")["Action"]) == LATTICE_ACTIONS
    assert sorted(statement(template, "AccessLogDelivery")["Action"]) == LOG_DELIVERY_ACTIONS
    assert sorted(statement(template, "Ec2ReadsOfTheDocumentedPolicy")["Action"]) == EC2_READ_ACTIONS
    linked = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s.get("Action") == "iam:CreateServiceLinkedRole"
    ]
    assert sorted(s["Condition"]["StringLike"]["iam:AWSServiceName"] for s in linked) == [
        "delivery.logs.amazonaws.com",
        "vpc-lattice.amazonaws.com",
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
    assert {o["kind"] for o in objects} == {"GatewayClass", "Gateway", "AccessLogPolicy"}
    network_ids = set(template.find_resources("AWS::VpcLattice::ServiceNetwork")) | set(
        template.find_resources("AWS::VpcLattice::ServiceNetworkVpcAssociation")
    )
    assert network_ids <= set(deps)


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
