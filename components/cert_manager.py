"""cert-manager: issues the mesh's mTLS certificates from a private CA inside the cluster."""

from __future__ import annotations

from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

from .helm_addon import HelmPin, owned_namespace, pinned_release
from .webhook_gate import WebhookGate

CHART = "cert-manager"
CHART_REPOSITORY = "https://charts.jetstack.io"
# v1.21 supports Kubernetes 1.33-1.36 (cert-manager.io/docs/releases); v1.18 reached its end of
# life on 2026-03-10 and never supported 1.34+. The tests validate the Certificates and Issuers
# against the v1.21.1 CRDs (a patch release does not change them).
CHART_VERSION = "v1.21.2"
NAMESPACE = "cert-manager"


PIN = HelmPin(CHART, CHART_REPOSITORY, CHART_VERSION, NAMESPACE)


class CertManager(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster) -> None:
        super().__init__(scope, id)
        self.namespace = owned_namespace(self, cluster, NAMESPACE)
        self.release = pinned_release(self, cluster, PIN, values={"crds": {"enabled": True, "keep": False}}, after=[self.namespace])
        # Its webhook must answer before any Certificate or Issuer can be created, and it answers
        # only once the CA injector has given the API server its certificate, which `--wait`
        # does not cover: the gate dry-runs an Issuer until the webhook admits it.
        self.gate = WebhookGate(
            self,
            "WebhookGate",
            cluster=cluster,
            name="cert-manager-webhook-gate",
            namespace=NAMESPACE,
            probe={
                "apiVersion": "cert-manager.io/v1",
                "kind": "Issuer",
                "metadata": {"name": "webhook-gate-probe", "namespace": NAMESPACE},
                "spec": {"selfSigned": {}},
            },
            rules=[{"apiGroups": ["cert-manager.io"], "resources": ["issuers"], "verbs": ["create"]}],
            after=[self.release],
        )
