"""cert-manager objects for the mesh's mTLS: a private CA per mesh, a certificate per workload.

The CA is self-signed inside the cluster (Issuer `<mesh>-selfsigned` signs the CA certificate,
Issuer `<mesh>-ca` signs the workloads'); each workload's secret holds tls.crt, tls.key and the
CA's ca.crt, which Envoy reads from files (App Mesh's file-based TLS).
"""

from __future__ import annotations

from typing import Any

API_VERSION = "cert-manager.io/v1"
# App Mesh's Envoy reads file-based certificates at start and does not watch the files, so a
# renewed certificate takes effect only when the pod restarts: leaves last a year and are renewed
# a month early, giving a month for the next rollout (README: "Certificate rotation").
LEAF_DURATION = "8760h"
LEAF_RENEW_BEFORE = "720h"


def ca_issuer_name(mesh: str) -> str:
    return f"{mesh}-ca"


def mesh_ca(mesh: str, namespace: str) -> list[dict[str, Any]]:
    selfsigned = f"{mesh}-selfsigned"
    return [
        {"apiVersion": API_VERSION, "kind": "Issuer", "metadata": {"name": selfsigned, "namespace": namespace}, "spec": {"selfSigned": {}}},
        {
            "apiVersion": API_VERSION,
            "kind": "Certificate",
            "metadata": {"name": ca_issuer_name(mesh), "namespace": namespace},
            "spec": {
                "isCA": True,
                "commonName": f"{mesh} mesh CA",
                "secretName": ca_issuer_name(mesh),
                "duration": "87600h",
                "privateKey": {"algorithm": "ECDSA", "size": 256},
                "issuerRef": {"name": selfsigned, "kind": "Issuer", "group": "cert-manager.io"},
            },
        },
        {
            "apiVersion": API_VERSION,
            "kind": "Issuer",
            "metadata": {"name": ca_issuer_name(mesh), "namespace": namespace},
            "spec": {"ca": {"secretName": ca_issuer_name(mesh)}},
        },
    ]


def secret_name(workload: str) -> str:
    return f"{workload}-tls"


def workload_certificate(workload: str, dns_names: list[str], *, mesh: str, namespace: str) -> dict[str, Any]:
    """Server and client certificate of one workload; `dns_names` are what its clients match
    (the virtual service names it serves) plus its own name."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Certificate",
        "metadata": {"name": secret_name(workload), "namespace": namespace},
        "spec": {
            "secretName": secret_name(workload),
            "commonName": dns_names[0],
            "dnsNames": dns_names,
            "duration": LEAF_DURATION,
            "renewBefore": LEAF_RENEW_BEFORE,
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
            "issuerRef": {"name": ca_issuer_name(mesh), "kind": "Issuer", "group": "cert-manager.io"},
        },
    }
