"""Container logs and metrics to CloudWatch: the amazon-cloudwatch-observability EKS add-on."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from .irsa import IrsaRole
from .log_groups import log_group
from .nag import acknowledge, wildcard_resource

ADDON = "amazon-cloudwatch-observability"
AGENT_NAMESPACE = "amazon-cloudwatch"
AGENT_SERVICE_ACCOUNT = "cloudwatch-agent"
# Log groups the add-on's Fluent Bit and agent write to; created here first so that retention
# is ours (the add-on would create them with no expiry).
LOG_GROUPS = ("application", "dataplane", "host", "performance")


class ContainerLogs(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, cluster_name: str, retention_days: int) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        prefix = f"/aws/containerinsights/{cluster_name}"
        self.log_groups = [log_group(self, f"Logs-{name}", name=f"{prefix}/{name}", days=retention_days) for name in LOG_GROUPS]
        self.irsa = IrsaRole(self, "Identity", cluster=cluster, namespace=AGENT_NAMESPACE, service_account=AGENT_SERVICE_ACCOUNT)
        log_group_arn = stack.format_arn(
            service="logs", resource="log-group", resource_name=f"{prefix}/*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        for statement in (
            iam.PolicyStatement(
                sid="WriteContainerLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[log_group_arn, f"{log_group_arn}:log-stream:*"],
            ),
            iam.PolicyStatement(
                sid="AgentDiscovery",
                actions=[
                    "logs:DescribeLogGroups",
                    "cloudwatch:PutMetricData",
                    "ec2:DescribeTags",
                    "ec2:DescribeVolumes",
                    "ec2:DescribeInstances",
                ],
                resources=["*"],
            ),
        ):
            self.irsa.add_to_policy(statement)
        acknowledge(
            self.irsa.role,
            "Log writes are limited to this cluster's Container Insights log groups and their "
            "streams (named per node and pod at run time); "
            "DescribeLogGroups, PutMetricData and the EC2 Describe calls the agent uses to label "
            "metrics support no resource-level permissions.",
            wildcard_resource(stack, log_group_arn),
            wildcard_resource(stack, f"{log_group_arn}:log-stream:*"),
            "IAM5[Resource::*]",
        )
        self.addon = eks.CfnAddon(
            self,
            "Addon",
            addon_name=ADDON,
            # The token (not the configured name) makes the add-on wait for the cluster.
            cluster_name=cluster.cluster_name,
            service_account_role_arn=self.irsa.role.role_arn,
            # The add-on version is left to EKS, which picks the default for the cluster's
            # Kubernetes version; a pin must be re-checked with describe-addon-versions on
            # every cluster upgrade, which synth cannot do offline.
            resolve_conflicts="OVERWRITE",
        )
        for group in self.log_groups:
            self.addon.node.add_dependency(group)
