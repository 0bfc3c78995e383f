"""cert-manager: issues the mesh's mTLS certificates from a private CA inside the cluster."""

from __future__ import annotations

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from .helm_addon import HelmPin, owned_namespace, pinned_release

CHART = "cert-manager"
CHART_REPOSITORY = "https://charts.jetstack.io"
CHART_VERSION = "v1.18.2"
NAMESPACE = "cert-manager"


PIN = HelmPin(CHART, CHART_REPOSITORY, CHART_VERSION, NAMESPACE)


class CertManager(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster) -> None:
        super().__init__(scope, id)
        self.namespace = owned_namespace(self, cluster, NAMESPACE)
        # Waited for: its webhook must answer before any Certificate or Issuer can be created.
        self.release = pinned_release(self, cluster, PIN, values={"crds": {"enabled": True, "keep": False}}, after=[self.namespace])
