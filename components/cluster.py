"""The EKS cluster: version, control-plane logging, secrets encryption, nodes, admin access."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_kms as kms
from constructs import Construct

from config.kubernetes import KubernetesRelease
from config.settings import ClusterConfig

from .log_groups import ServiceLogGroup
from .nag import acknowledge, managed_policy

EKS_USE_NATIVE_OIDC_PROVIDER = "@aws-cdk/aws-eks:useNativeOidcProvider"
_ENDPOINT_ACCESS = {
    "public": eks.EndpointAccess.PUBLIC,
    "private": eks.EndpointAccess.PRIVATE,
    "public_and_private": eks.EndpointAccess.PUBLIC_AND_PRIVATE,
}


def eks_version(release: KubernetesRelease) -> eks.KubernetesVersion:
    return getattr(eks.KubernetesVersion, f"V1_{release.suffix}")  # type: ignore[no-any-return]


def kubectl_layer_class(release: KubernetesRelease) -> Any:
    """The kubectl layer of the release's minor (aws-cdk.lambda-layer-kubectl-v<minor>, pinned)."""
    module = importlib.import_module(release.kubectl_layer_module)
    return getattr(module, f"KubectlV{release.suffix}Layer")


_TAINT_EFFECTS = {
    "NoSchedule": eks.TaintEffect.NO_SCHEDULE,
    "PreferNoSchedule": eks.TaintEffect.PREFER_NO_SCHEDULE,
    "NoExecute": eks.TaintEffect.NO_EXECUTE,
}


class MeshCluster(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: ClusterConfig,
        vpc: ec2.IVpc,
        startup_taints: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(scope, id)
        # IRSA (components/irsa.py) reads `cluster.open_id_connect_provider`, which creates the
        # native AWS::IAM::OIDCProvider (OidcProviderNative, the API that remains) only under this
        # feature flag, and otherwise the deprecated custom-resource OpenIdConnectProvider, with a
        # deprecation warning on every synth. cdk.json sets the flag, but an app built without
        # cdk.json's context (`python app.py`, a test's App) would not: the cluster sets it for itself.
        self.node.set_context(EKS_USE_NATIVE_OIDC_PROVIDER, True)
        release = config.kubernetes

        # EKS writes control-plane logs to this fixed name and would create it with no expiry; the
        # group exists, with the retention, before the cluster does. EKS recreates it after a
        # destroy, so it is not CloudFormation's (components/log_groups.py, ServiceLogGroup).
        self.control_plane_logs = ServiceLogGroup(
            self,
            "ControlPlaneLogs",
            name=f"/aws/eks/{config.name}/cluster",
            days=config.log_retention_days,
            retain_legacy=config.retain_legacy_log_groups,
        )
        self.secrets_key = kms.Key(
            self,
            "SecretsKey",
            description=f"Envelope encryption of Kubernetes secrets in EKS cluster {config.name}",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        endpoint = _ENDPOINT_ACCESS[config.endpoint_access]
        if config.endpoint_public_cidrs:
            endpoint = endpoint.only_from(*config.endpoint_public_cidrs)

        self.cluster = eks.Cluster(
            self,
            "Cluster",
            cluster_name=config.name,
            # One setting drives all three: the control plane, the kubectl in the provider's
            # layer, and (in charts/) the cdk8s-plus package the manifests are written with.
            version=eks_version(release),
            kubectl_provider_options=eks.KubectlProviderOptions(
                kubectl_layer=kubectl_layer_class(release)(self, "KubectlLayer"),
            ),
            vpc=vpc,
            vpc_subnets=[ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)],
            endpoint_access=endpoint,
            secrets_encryption_key=self.secrets_key,
            cluster_logging=[
                eks.ClusterLoggingTypes.API,
                eks.ClusterLoggingTypes.AUDIT,
                eks.ClusterLoggingTypes.AUTHENTICATOR,
                eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
                eks.ClusterLoggingTypes.SCHEDULER,
            ],
            default_capacity_type=eks.DefaultCapacityType.AUTOMODE if config.auto_mode else eks.DefaultCapacityType.NODEGROUP,
            # Nodes are added below with the configured scaling, not by the default capacity.
            default_capacity=None if config.auto_mode else 0,
            compute=eks.ComputeConfig(node_pools=["system", "general-purpose"]) if config.auto_mode else None,
        )
        self.cluster.node.add_dependency(self.control_plane_logs)
        self._acknowledge_cluster_internals()

        self.nodegroup: eks.Nodegroup | None = None
        if not config.auto_mode:
            self.nodegroup = self.cluster.add_nodegroup_capacity(
                "Nodes",
                instance_types=[ec2.InstanceType(config.instance_type)],
                desired_size=config.desired_nodes,
                min_size=config.min_nodes,
                max_size=config.max_nodes,
                ami_type=eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                # The mesh backend's startup taints (its node agent removes them when ready there);
                # Auto Mode's node pools take none, so there a pod may start before the agent.
                taints=[eks.TaintSpec(key=key, effect=_TAINT_EFFECTS[effect]) for key, effect in startup_taints] or None,
            )
            acknowledge(
                self.nodegroup,
                "EKS requires these AWS managed policies on the node role (worker node, CNI, ECR "
                "read-only); they carry no App Mesh or X-Ray permissions, which live on the "
                "workloads' IRSA roles.",
                managed_policy("AmazonEKSWorkerNodePolicy"),
                managed_policy("AmazonEKS_CNI_Policy"),
                managed_policy("AmazonEC2ContainerRegistryReadOnly"),
            )

        if config.admin_principal_arn:
            self.cluster.grant_access(
                "Admin",
                config.admin_principal_arn,
                [eks.AccessPolicy.from_access_policy_name("AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER)],
            )

    def _acknowledge_cluster_internals(self) -> None:
        """Findings on resources aws_eks_v2 creates and does not let us shape."""
        acknowledge(
            self.cluster.role,
            "The EKS service role must carry AmazonEKSClusterPolicy; EKS documents no narrower policy.",
            managed_policy("AmazonEKSClusterPolicy"),
        )
        acknowledge(
            self.cluster.kubectl_provider,  # type: ignore[arg-type]
            "The kubectl provider is aws_eks_v2's own Lambda: it needs basic and VPC execution "
            "(it runs in the private subnets to reach a private endpoint) and ECR read for its "
            "layer image, the provider framework may invoke any version of the handler "
            "(<arn>:*), and its runtime is chosen by aws-cdk-lib, which we pin.",
            managed_policy("service-role/AWSLambdaBasicExecutionRole"),
            managed_policy("service-role/AWSLambdaVPCAccessExecutionRole"),
            managed_policy("AmazonEC2ContainerRegistryReadOnly"),
            # The public-ECR read policy is attached under a condition of the provider's own.
            "IAM4[Policy::"
            '{"Fn::If":["EksClusterKubectlProviderHandlerHasEcrPublicC426D1A5",{"Fn::Join":["",["arn:",'
            '{"Ref":"AWS::Partition"},":iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly"]]},'
            '{"Ref":"AWS::NoValue"}]}]',
            "IAM5[Resource::<EksClusterKubectlProviderHandlerDA75FB7A.Arn>:*]",
            "L1",
        )
