"""The App Mesh controller: its namespace, IRSA role, Helm release, and a gate on its webhook.

AWS shut App Mesh down on 2026-09-30 (App Mesh user guide: "After September 30, 2026, you will no
longer be able to access the AWS App Mesh console or AWS App Mesh resources."). The controller
still renders and installs from the pinned chart, but nothing it manages can exist in AWS any
more; the deploy stops at the preflight first (stacks/preflight.py).
"""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from constructs import Construct

from .helm_addon import HelmPin, owned_namespace, pinned_release
from .irsa import IrsaRole
from .manifests import kubernetes_manifest
from .nag import acknowledge, checkov_skip, wildcard_resource
from .webhook_gate import WebhookGate

CHART = "appmesh-controller"
CHART_REPOSITORY = "https://aws.github.io/eks-charts"
# The last release of the chart; its CRDs are the ones tests validate against.
CHART_VERSION = "1.13.3"
CONTROLLER_NAMESPACE = "appmesh-system"
PIN = HelmPin(CHART, CHART_REPOSITORY, CHART_VERSION, CONTROLLER_NAMESPACE)
CONTROLLER_SERVICE_ACCOUNT = "appmesh-controller"
# Pinned X-Ray daemon the controller injects next to Envoy when tracing is on (the chart's
# default tag is `latest`, which would change under a running cluster). 3.3.15 is the last 3.3.x;
# the daemon is in maintenance mode (README, "Versions").
XRAY_DAEMON_IMAGE = "public.ecr.aws/xray/aws-xray-daemon"
XRAY_DAEMON_TAG = "3.3.15"
# The Envoy image of every sidecar and of the gateway: the chart's own default tag, from the
# public registry rather than the chart's default private one, so that one pin covers both.
ENVOY_IMAGE = "public.ecr.aws/appmesh/aws-appmesh-envoy"
ENVOY_TAG = "v1.29.12.3-prod"

_APPMESH_TYPES = ("Mesh", "VirtualNode", "VirtualService", "VirtualRouter", "Route", "VirtualGateway", "GatewayRoute")


def _appmesh_actions() -> list[str]:
    actions = []
    for kind in _APPMESH_TYPES:
        actions += [f"appmesh:{verb}{kind}" for verb in ("Create", "Describe", "Update", "Delete")]
        actions.append(f"appmesh:List{kind}s" if kind != "Mesh" else "appmesh:ListMeshes")
    return [*sorted(set(actions) - {"appmesh:ListMeshes"}), "appmesh:TagResource", "appmesh:UntagResource", "appmesh:ListTagsForResource"]


class AppMeshController(Construct):
    """Installs the controller with a least-privilege role, X-Ray tracing on."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: eks.ICluster,
        region: str,
        tracing: bool,
        mesh_name: str,
        cloud_map_namespace_arn: str | None,
        cloud_map_zone_id: str | None,
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)

        self.namespace = owned_namespace(self, cluster, CONTROLLER_NAMESPACE)
        self.irsa = IrsaRole(self, "Identity", cluster=cluster, namespace=CONTROLLER_NAMESPACE, service_account=CONTROLLER_SERVICE_ACCOUNT)
        self._grant_controller_permissions(stack, mesh_name, cloud_map_namespace_arn, cloud_map_zone_id)
        self.service_account = kubernetes_manifest(
            self,
            "ServiceAccount",
            cluster=cluster,
            manifest=[
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {
                        "name": CONTROLLER_SERVICE_ACCOUNT,
                        "namespace": CONTROLLER_NAMESPACE,
                        "annotations": {"eks.amazonaws.com/role-arn": self.irsa.role.role_arn},
                    },
                }
            ],
        )
        self.service_account.node.add_dependency(self.namespace)

        # The chart runs as a service account it does not create (serviceAccount.create=false),
        # so that comes first, and so does the role's policy: on `cdk destroy` the release (and
        # with it the controller that empties the Mesh's finalizers with DescribeMesh/DeleteMesh)
        # must go before the policy, never after.
        default_policy = self.irsa.role.node.try_find_child("DefaultPolicy")
        assert default_policy is not None
        self.release = pinned_release(
            self, cluster, PIN, values=self.helm_values(region, tracing), after=[self.service_account, default_policy]
        )
        # The controller's webhooks fail closed and the chart has no readiness probe: `--wait`
        # returns before they serve. The gate dry-runs a Mesh until the webhook admits it.
        self.gate = WebhookGate(
            self,
            "WebhookGate",
            cluster=cluster,
            name="appmesh-webhook-gate",
            namespace=CONTROLLER_NAMESPACE,
            probe={
                "apiVersion": "appmesh.k8s.aws/v1beta2",
                "kind": "Mesh",
                "metadata": {"name": "webhook-gate-probe"},
                "spec": {"namespaceSelector": {"matchLabels": {"mesh": "webhook-gate-probe"}}},
            },
            rules=[{"apiGroups": ["appmesh.k8s.aws"], "resources": ["meshes"], "verbs": ["create"]}],
            after=[self.release],
        )

    @staticmethod
    def helm_values(region: str, tracing: bool = True) -> dict[str, object]:
        """sidecar.waitUntilProxyReady holds the application container until Envoy is ready, so
        its first outbound calls are not refused by a proxy that has no configuration yet."""
        return {
            "region": region,
            "accountId": Aws.ACCOUNT_ID,
            "serviceAccount": {"create": False, "name": CONTROLLER_SERVICE_ACCOUNT},
            "tracing": {"enabled": tracing, "provider": "x-ray"},
            "xray": {"image": {"repository": XRAY_DAEMON_IMAGE, "tag": XRAY_DAEMON_TAG}},
            "sidecar": {"image": {"repository": ENVOY_IMAGE, "tag": ENVOY_TAG}, "waitUntilProxyReady": True},
        }

    def _grant_controller_permissions(
        self, stack: Stack, mesh_name: str, cloud_map_namespace_arn: str | None, cloud_map_zone_id: str | None
    ) -> None:
        mesh_arn = stack.format_arn(service="appmesh", resource="mesh", resource_name=mesh_name)
        # The controller creates the Cloud Map services at run time; their ids are unknown here.
        cloud_map_services = stack.format_arn(service="servicediscovery", resource="service", resource_name="*")
        cloud_map = cloud_map_namespace_arn is not None and cloud_map_zone_id is not None
        policy = [
            iam.PolicyStatement(
                sid="ManageTheMeshAndItsResources",
                actions=_appmesh_actions(),
                resources=[mesh_arn, f"{mesh_arn}/*"],
            ),
            iam.PolicyStatement(sid="FindMeshes", actions=["appmesh:ListMeshes"], resources=["*"]),
            iam.PolicyStatement(
                sid="AppMeshServiceLinkedRole",
                actions=["iam:CreateServiceLinkedRole"],
                resources=[
                    f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/appmesh.amazonaws.com/AWSServiceRoleForAppMesh"
                ],
                conditions={"StringLike": {"iam:AWSServiceName": "appmesh.amazonaws.com"}},
            ),
        ]
        cloud_map_policy = [
            iam.PolicyStatement(
                sid="CloudMapServicesInTheMeshNamespace",
                actions=["servicediscovery:CreateService", "servicediscovery:GetNamespace"],
                resources=[str(cloud_map_namespace_arn)],
            ),
            iam.PolicyStatement(
                sid="CloudMapInstances",
                actions=[
                    "servicediscovery:GetService",
                    "servicediscovery:DeleteService",
                    "servicediscovery:RegisterInstance",
                    "servicediscovery:DeregisterInstance",
                    "servicediscovery:GetInstance",
                    "servicediscovery:ListInstances",
                    "servicediscovery:GetInstancesHealthStatus",
                    "servicediscovery:UpdateInstanceCustomHealthStatus",
                ],
                resources=[cloud_map_services],
            ),
            iam.PolicyStatement(
                sid="CloudMapLookups",
                actions=[
                    "servicediscovery:ListNamespaces",
                    "servicediscovery:ListServices",
                    "servicediscovery:GetOperation",
                    "servicediscovery:DiscoverInstances",
                ],
                resources=["*"],
            ),
            # Cloud Map writes the instances' DNS records with the caller's permissions.
            iam.PolicyStatement(
                sid="CloudMapRecords",
                actions=["route53:ChangeResourceRecordSets"],
                resources=[f"arn:{Aws.PARTITION}:route53:::hostedzone/{cloud_map_zone_id}"],
            ),
            iam.PolicyStatement(
                sid="CloudMapHealthChecks",
                actions=[
                    "route53:GetHealthCheck",
                    "route53:CreateHealthCheck",
                    "route53:UpdateHealthCheck",
                    "route53:DeleteHealthCheck",
                ],
                resources=["*"],
            ),
        ]
        policy += [
            iam.PolicyStatement(
                sid="ReadCertificatesForTls",
                actions=[
                    "acm:ListCertificates",
                    "acm:DescribeCertificate",
                    "acm-pca:DescribeCertificateAuthority",
                    "acm-pca:ListCertificateAuthorities",
                ],
                resources=["*"],
            ),
        ]
        # Only with Cloud Map discovery: in DNS mode the controller registers nothing.
        for statement in policy + (cloud_map_policy if cloud_map else []):
            self.irsa.add_to_policy(statement)
        default_policy = self.irsa.role.node.try_find_child("DefaultPolicy")
        assert default_policy is not None
        checkov_skip(
            default_policy,
            {
                "CKV_AWS_111": "write actions are scoped to this mesh and its children, this account's Cloud Map "
                "services and the Cloud Map namespace's zone; only Route53 health checks (no resource-level "
                "permissions) are unconstrained"
            },
        )
        acknowledge(
            self.irsa.role,
            "Scoped as far as the APIs allow: App Mesh actions to this mesh and its children "
            "(mesh/<name>/*, created by the controller from the cluster's objects); Cloud Map "
            "instance actions to this account's services (created at run time, ids unknown at "
            "synth); ListMeshes, "
            "Cloud Map List*/GetOperation/DiscoverInstances, Route53 health checks made on behalf "
            "of Cloud Map, and ACM/ACM-PCA reads support no resource-level permissions.",
            wildcard_resource(stack, f"{mesh_arn}/*"),
            *([wildcard_resource(stack, cloud_map_services)] if cloud_map else []),
            "IAM5[Resource::*]",
        )
