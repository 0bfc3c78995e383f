"""cert-manager: issues the mesh's mTLS certificates from a private CA inside the cluster."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

CHART = "cert-manager"
CHART_REPOSITORY = "https://charts.jetstack.io"
CHART_VERSION = "v1.18.2"
NAMESPACE = "cert-manager"


class CertManager(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster) -> None:
        super().__init__(scope, id)
        # Owned here rather than created by Helm, so `cdk destroy` removes it too.
        self.namespace = eks.KubernetesManifest(
            self, "Namespace", cluster=cluster, manifest=[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
        )
        self.release = eks.HelmChart(
            self,
            "Release",
            cluster=cluster,
            chart=CHART,
            repository=CHART_REPOSITORY,
            version=CHART_VERSION,
            release=CHART,
            namespace=NAMESPACE,
            create_namespace=False,
            # Its webhook must answer before any Certificate or Issuer can be created.
            wait=True,
            timeout=Duration.minutes(10),
            values={"crds": {"enabled": True, "keep": False}},
        )
        self.release.node.add_dependency(self.namespace)
