"""Certificates for the local mesh's mTLS, made with the `openssl` command line at mesh start.

The cluster gets them from cert-manager (charts/certificates.py): a private CA per mesh and one
ECDSA P-256 certificate per workload, valid for server and client auth, whose DNS names are the
virtual services it serves plus its own name; the `appmesh.k8s.aws/secretMounts` annotation puts
`tls.crt`, `tls.key` and `ca.crt` in the Envoy container. Locally the same files go under the
mesh's temporary directory (layout: `envoyconfig.render.mesh_tls_files`) and live for one run: the
certificates are valid for two days and the CA key never leaves that directory.

OpenSSL >= 3.0 is needed (`openssl req -x509 -CA` signs a new certificate in one step).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from config.topology import Topology
from envoyconfig.render import MeshTls, certificate_names, mesh_tls_files
from localmesh.processes import ServiceError

VALID_DAYS = 2
_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl_binary() -> str:
    found = shutil.which("openssl")
    if not found:
        raise ServiceError("openssl not found on PATH: it makes the local mesh's mTLS certificates (or set topology.mtls to off)")
    return found


def _run(arguments: list[str]) -> None:
    result = subprocess.run([openssl_binary(), *arguments], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise ServiceError(f"openssl {arguments[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")


def make_ca(certificate: Path, key: Path, common_name: str = "localmesh CA") -> None:
    """A self-signed CA certificate and its private key (readable by the owner only)."""
    certificate.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "req", "-x509", "-new", *_EC_KEY, "-keyout", str(key), "-out", str(certificate), "-days", str(VALID_DAYS),
            "-subj", f"/CN={common_name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )  # fmt: skip
    os.chmod(key, 0o600)


def issue(certificate: Path, key: Path, dns_names: list[str], ca_certificate: Path, ca_key: Path) -> None:
    """A leaf certificate signed by the CA: server and client auth, `dns_names` as its SANs."""
    if not dns_names:
        raise ValueError("a certificate needs at least one DNS name")
    certificate.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "req", "-x509", "-new", *_EC_KEY, "-keyout", str(key), "-out", str(certificate), "-days", str(VALID_DAYS),
            "-subj", f"/CN={dns_names[0]}",
            "-CA", str(ca_certificate), "-CAkey", str(ca_key),
            "-addext", "subjectAltName=" + ",".join(f"DNS:{name}" for name in dns_names),
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
            "-addext", "extendedKeyUsage=serverAuth,clientAuth",
        ]
    )  # fmt: skip
    os.chmod(key, 0o600)


def generate_mesh_certificates(directory: Path, topology: Topology, hosted_zone: str) -> MeshTls:
    """The mesh CA and one certificate per service and gateway, written under `directory`."""
    files = mesh_tls_files(directory, topology)
    ca_key = directory / "ca.key"
    make_ca(Path(files.ca), ca_key, common_name="localmesh mesh CA")
    names: Mapping[str, list[str]] = certificate_names(topology, hosted_zone)
    for identity, dns_names in names.items():
        cert = files.files(identity)
        issue(Path(cert.certificate), Path(cert.private_key), dns_names, Path(files.ca), ca_key)
    return files
