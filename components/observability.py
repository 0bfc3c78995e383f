"""Container logs and metrics to CloudWatch: the amazon-cloudwatch-observability EKS add-on."""

from __future__ import annotations

from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from .irsa import IrsaRole
from .log_groups import ServiceLogGroup
from .nag import acknowledge, managed_policy

ADDON = "amazon-cloudwatch-observability"
AGENT_NAMESPACE = "amazon-cloudwatch"
AGENT_SERVICE_ACCOUNT = "cloudwatch-agent"
# Log groups the add-on's Fluent Bit and agent write to; they exist, with our retention, before
# the add-on does (it would create them with no expiry). The add-on recreates them after a
# destroy, so they are not CloudFormation's (components/log_groups.py, ServiceLogGroup).
LOG_GROUPS = ("application", "dataplane", "host", "performance")
MANAGED_POLICIES = ("CloudWatchAgentServerPolicy", "AWSXrayWriteOnlyAccess")


class ContainerLogs(Construct):
    def __init__(
        self, scope: Construct, id: str, *, cluster: eks.ICluster, cluster_name: str, retention_days: int, retain_legacy: bool = False
    ) -> None:
        super().__init__(scope, id)
        prefix = f"/aws/containerinsights/{cluster_name}"
        self.log_groups = [
            ServiceLogGroup(self, f"Logs-{name}", name=f"{prefix}/{name}", days=retention_days, retain_legacy=retain_legacy)
            for name in LOG_GROUPS
        ]
        self.irsa = IrsaRole(self, "Identity", cluster=cluster, namespace=AGENT_NAMESPACE, service_account=AGENT_SERVICE_ACCOUNT)
        # The policies AWS documents for this add-on's IRSA role: the CloudWatch agent and
        # Fluent Bit (Container Insights, and Application Signals, which the add-on enables by
        # default and which creates its own log groups) and the X-Ray writes Application Signals
        # makes. A narrower hand-written policy breaks whenever the add-on adds a feature.
        for name in MANAGED_POLICIES:
            self.irsa.role.add_managed_policy(iam.ManagedPolicy.from_aws_managed_policy_name(name))
        acknowledge(
            self.irsa.role,
            "The AWS managed policies documented for the amazon-cloudwatch-observability add-on "
            "(agent server, X-Ray write-only); neither is a FullAccess policy, and the role is "
            "trusted only by the add-on's service account.",
            *(managed_policy(name) for name in MANAGED_POLICIES),
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
