"""An IAM role that exactly one Kubernetes service account can assume (IRSA)."""

from __future__ import annotations

from aws_cdk import CfnJson
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct


class IrsaRole(Construct):
    """A role trusted by the cluster's OIDC provider for `system:serviceaccount:<ns>:<name>` only.

    The Kubernetes ServiceAccount object itself is rendered by whoever owns the namespace (a
    cdk8s chart or a manifest), annotated with `role.role_arn`; keeping the role apart from the
    object lets a chart own its ServiceAccount without a second manifest per service.
    """

    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, namespace: str, service_account: str) -> None:
        super().__init__(scope, id)
        self.namespace = namespace
        self.service_account = service_account
        provider = cluster.open_id_connect_provider
        issuer = provider.open_id_connect_provider_issuer
        # The issuer is a token, and a token cannot be a JSON key in the trust policy; CfnJson
        # resolves the condition at deploy time.
        conditions = CfnJson(
            self,
            "TrustConditions",
            value={
                f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                f"{issuer}:aud": "sts.amazonaws.com",
            },
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.OpenIdConnectPrincipal(provider).with_conditions({"StringEquals": conditions}),
            description=f"IRSA role of service account {namespace}/{service_account}",
        )

    def add_to_policy(self, statement: iam.PolicyStatement) -> None:
        self.role.add_to_principal_policy(statement)
