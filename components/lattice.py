"""Amazon VPC Lattice for the cluster: the AWS Gateway API Controller (pinned chart, IRSA role), the
Gateway API CRDs it is built on, the service network and its VPC association, and the rule that
lets Lattice reach the pods.

The controller's documented policy (files/controller-installation/recommended-inline-policy.json
at v2.1.3) grants `vpc-lattice:*` and more on `*`. This role is narrower, and says why:
* vpc-lattice: only the calls the controller makes for what this app renders (services,
  listeners, rules, target groups and targets, service-network service associations, tags,
  access-log subscriptions; reads of service networks). Not service-network or VPC-association
  writes: CloudFormation owns the network and its association here. Not auth policies: no
  IAMAuthPolicy is rendered (the workshop's callers cannot sign requests with SigV4).
* of ec2, the documented DescribeVpcs, DescribeSubnets and DescribeSecurityGroups, kept as a
  precaution: the controller never calls them, but AWS's CloudFormation handlers for Lattice
  target groups declare EC2 reads they never make, which suggests Lattice checks them on whoever
  creates target groups and registers targets (no AWS document says so for these calls). Not
  DescribeTags, which the controller calls only to find a cluster name it is given here.
* no tag:* (disableTaggingServiceApi), no acm (no HTTPS listeners), no s3/firehose (access logs
  go to CloudWatch Logs).
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_vpclattice as vpclattice
from aws_cdk import custom_resources as cr
from constructs import Construct, IConstruct

from upstream import ARTIFACTS

from .crd_installer import CrdInstaller
from .helm_addon import HelmPin, owned_namespace, pinned_release
from .irsa import IrsaRole
from .log_groups import log_group
from .nag import AWS_CUSTOM_RESOURCE_FUNCTION_ID, acknowledge, checkov_skip, managed_policy

VERSION = "v2.1.3"
NAMESPACE = "aws-application-networking-system"
PIN = HelmPin(
    "aws-gateway-controller-chart", "oci://public.ecr.aws/aws-application-networking-k8s/aws-gateway-controller-chart", VERSION, NAMESPACE
)
SERVICE_ACCOUNT = "gateway-api-controller"
# The lookups of the service network (by name, then through the VPC's associations) and of the
# services; the controller never calls GetServiceNetwork, GetService or
# GetServiceNetworkServiceAssociation (v2.1.3), so the role does not grant them.
_READ = ["ListServiceNetworks", "ListServiceNetworkVpcAssociations", "ListServices"]
_WRITE = [
    *(f"{verb}Service" for verb in ("Create", "Update", "Delete")),
    *(f"{verb}ServiceNetworkServiceAssociation" for verb in ("Create", "Delete")),
    "ListServiceNetworkServiceAssociations",
    *(f"{verb}Listener" for verb in ("Create", "Get", "Update", "Delete")),
    "ListListeners",
    # UpdateRule is also what IAM checks for BatchUpdateRule, the call that puts the rules back in
    # priority order (rule_manager.go UpdatePriorities): the AWS Service Authorization Reference
    # (list_vpc-lattice.html) maps that operation to vpc-lattice:UpdateRule, and the API reference
    # (API_BatchUpdateRule.html) names it as the required permission.
    *(f"{verb}Rule" for verb in ("Create", "Get", "Update", "Delete")),
    "ListRules",
    *(f"{verb}TargetGroup" for verb in ("Create", "Get", "Update", "Delete")),
    "ListTargetGroups",
    "ListTargets",
    "RegisterTargets",
    "DeregisterTargets",
    "ListTagsForResource",
    "TagResource",
    "UntagResource",
    *(f"{verb}AccessLogSubscription" for verb in ("Create", "Get", "Update", "Delete")),
    "ListAccessLogSubscriptions",
]
LATTICE_ACTIONS = sorted(f"vpc-lattice:{action}" for action in {*_READ, *_WRITE})
# The documented policy's EC2 reads but DescribeTags: see the module's docstring.
EC2_READ_ACTIONS = sorted(f"ec2:{action}" for action in ("DescribeVpcs", "DescribeSubnets", "DescribeSecurityGroups"))
# CloudWatch Logs delivery, which an access-log subscription to a log group sets up.
LOG_DELIVERY_ACTIONS = sorted(
    f"logs:{action}"
    for action in (
        "CreateLogDelivery",
        "GetLogDelivery",
        "UpdateLogDelivery",
        "DeleteLogDelivery",
        "ListLogDeliveries",
        "DescribeLogGroups",
        "PutResourcePolicy",
        "DescribeResourcePolicies",
    )
)
# Log groups for logs that AWS services deliver (CloudWatch Logs, "Logs sent to CloudWatch Logs").
VENDED_LOGS_PREFIX = "/aws/vendedlogs/"
SERVICE_LINKED_ROLES = {
    "vpc-lattice.amazonaws.com": "AWSServiceRoleForVpcLattice",
    "delivery.logs.amazonaws.com": "AWSServiceRoleForLogDelivery",
}


def controller_values(*, region: str, vpc_id: str, cluster_name: str, role_arn: str) -> dict[str, object]:
    """Region, VPC, account and cluster given explicitly: otherwise the controller asks the
    instance metadata service, which a pod on a managed node group (IMDSv2, hop limit 1) cannot
    reach."""
    return {
        "awsRegion": region,
        "awsAccountId": Aws.ACCOUNT_ID,
        "clusterVpcId": vpc_id,
        "clusterName": cluster_name,
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT, "annotations": {"eks.amazonaws.com/role-arn": role_arn}},
        # The service network is CloudFormation's (ServiceNetwork below), found by the Gateway's name.
        "defaultServiceNetwork": "",
        # Ownership tags through vpc-lattice:TagResource, not the Resource Groups Tagging API.
        "disableTaggingServiceApi": True,
        # The FAQ's advice (docs/faq.md, v2.1.3): deregisters stopping pods sooner, with the
        # preStop sleep backends/lattice.py gives every Lattice target.
        "routeMaxConcurrentReconciles": 10,
        "log": {"level": "info"},
    }


class LatticeController(Construct):
    """The Gateway API CRDs, then the controller (waited for) with its least-privilege role."""

    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, region: str, vpc: ec2.IVpc, cluster_name: str) -> None:
        super().__init__(scope, id)
        self.namespace = owned_namespace(self, cluster, NAMESPACE)
        # The controller exits at start unless the Gateway API CRDs are served.
        self.crds = CrdInstaller(
            self,
            "GatewayApiCrds",
            cluster=cluster,
            name="gateway-api-crds",
            namespace=NAMESPACE,
            parts=ARTIFACTS["gateway-api-standard-crds.yaml"].parts,
            after=[self.namespace],
        )
        self.irsa = IrsaRole(self, "Identity", cluster=cluster, namespace=NAMESPACE, service_account=SERVICE_ACCOUNT)
        self.irsa.add_to_policy(iam.PolicyStatement(sid="LatticeServicesOfThisCluster", actions=LATTICE_ACTIONS, resources=["*"]))
        self.irsa.add_to_policy(iam.PolicyStatement(sid="AccessLogDelivery", actions=LOG_DELIVERY_ACTIONS, resources=["*"]))
        self.irsa.add_to_policy(iam.PolicyStatement(sid="Ec2ReadsOfTheDocumentedPolicy", actions=EC2_READ_ACTIONS, resources=["*"]))
        for service, role in SERVICE_LINKED_ROLES.items():
            self.irsa.add_to_policy(
                iam.PolicyStatement(
                    actions=["iam:CreateServiceLinkedRole"],
                    resources=[f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/{service}/{role}"],
                    conditions={"StringLike": {"iam:AWSServiceName": service}},
                )
            )
        default_policy = self.irsa.role.node.try_find_child("DefaultPolicy")
        assert default_policy is not None
        checkov_skip(
            default_policy,
            {
                "CKV_AWS_111": "VPC Lattice ids are assigned at run time and its List calls take no resource; CloudWatch Logs "
                "delivery APIs and EC2 Describe calls support no resource-level permissions"
            },
        )
        acknowledge(
            self.irsa.role,
            "VPC Lattice resources (services, listeners, rules, target groups) are created by the controller with ids "
            "assigned at run time, and Lattice's List calls, CloudWatch Logs' delivery APIs and EC2's Describe calls take "
            "no resource: the "
            "actions are listed one by one instead (components/lattice.py says which the documented policy has that "
            "this one drops).",
            "IAM5[Resource::*]",
        )
        values = controller_values(region=region, vpc_id=vpc.vpc_id, cluster_name=cluster_name, role_arn=self.irsa.role.role_arn)
        # After its CRDs, and after its policy: on destroy the controller (which removes the Lattice
        # services behind the routes' finalizers) goes before the permissions it needs.
        self.release = pinned_release(
            self, cluster, PIN, values=values, after=[self.crds.ready, default_policy], release_name="gateway-api-controller"
        )


class ServiceNetwork(Construct):
    """The Lattice service network the Gateway names, associated with the cluster's VPC: clients
    in the VPC (the pods, the gateway's Envoy, the smoke test) reach its services; and the rule
    that lets Lattice reach the pods (its traffic and health checks come from the AWS-managed
    prefix list com.amazonaws.<region>.vpc-lattice)."""

    def __init__(
        self, scope: Construct, id: str, *, name: str, vpc: ec2.IVpc, cluster: eks.ICluster, ports: Sequence[int], log_retention_days: int
    ) -> None:
        super().__init__(scope, id)
        self.network = vpclattice.CfnServiceNetwork(self, "Network", name=name, auth_type="NONE")
        clients = ec2.SecurityGroup(
            self, "Clients", vpc=vpc, description="VPC Lattice service network: clients in the VPC", allow_all_outbound=False
        )
        for port in sorted(set(ports)):
            clients.add_ingress_rule(ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(port), f"workshop names on port {port}")
        acknowledge(
            clients,
            "Admits only the VPC's own CIDR on the workshop's ports; the CIDR is imported from the network stack, a "
            "token cdk-nag cannot evaluate.",
            "EC23",
        )
        self.association = vpclattice.CfnServiceNetworkVpcAssociation(
            self,
            "VpcAssociation",
            service_network_identifier=self.network.attr_id,
            vpc_identifier=vpc.vpc_id,
            security_group_ids=[clients.security_group_id],
        )
        region = Stack.of(self).region
        # CloudFormation cannot name an AWS-managed prefix list: look its id up at deploy time.
        prefix_list = cr.AwsCustomResource(
            self,
            "LatticePrefixList",
            on_update=cr.AwsSdkCall(
                service="EC2",
                action="describeManagedPrefixLists",
                parameters={"Filters": [{"Name": "prefix-list-name", "Values": [f"com.amazonaws.{region}.vpc-lattice"]}]},
                physical_resource_id=cr.PhysicalResourceId.of(f"vpc-lattice-prefix-list-{region}"),
                output_paths=["PrefixLists.0.PrefixListId"],
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [iam.PolicyStatement(actions=["ec2:DescribeManagedPrefixLists"], resources=["*"])]
            ),
            install_latest_aws_sdk=False,
        )
        self.prefix_list_id = prefix_list.get_response_field("PrefixLists.0.PrefixListId")
        for port in sorted(set(ports)):
            ec2.CfnSecurityGroupIngress(
                self,
                f"FromLattice{port}",
                group_id=cluster.cluster_security_group_id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                source_prefix_list_id=self.prefix_list_id,
                description=f"VPC Lattice to the pods on {port} (traffic and health checks)",
            )
        # Under /aws/vendedlogs/: a delivery to a log group outside it may add the group to the
        # account's CloudWatch Logs resource policy, which every service's deliveries share and which
        # holds 5,120 characters; near that limit CloudWatch Logs admits /aws/vendedlogs/ groups
        # with one wildcard (docs.aws.amazon.com/AmazonCloudWatch/latest/logs/
        # AWS-logs-infrastructure-CWL.html; step-functions/latest/dg/bp-cwl.html). The stack's
        # name keeps two deployments in one account and region apart.
        self.access_logs = log_group(
            self, "AccessLogs", days=log_retention_days, name=f"{VENDED_LOGS_PREFIX}vpclattice/{Stack.of(self).stack_name}/{name}"
        )
        acknowledge(
            prefix_list,
            "ec2:DescribeManagedPrefixLists takes no resource.",
            "IAM5[Resource::*]",
        )
        # AwsCustomResource's function is a singleton at the stack's root, not below this construct.
        singleton = Stack.of(self).node.try_find_child(AWS_CUSTOM_RESOURCE_FUNCTION_ID)
        assert singleton is not None
        acknowledge(
            singleton,
            "CDK's AwsCustomResource function: AWS's basic execution policy for its logs, and the runtime aws-cdk-lib chooses.",
            managed_policy("service-role/AWSLambdaBasicExecutionRole"),
            "L1",
        )

    def ready(self) -> list[IConstruct]:
        return [self.network, self.association]
