"""The Kubernetes minor version: one setting for the EKS cluster, the kubectl layer and cdk8s-plus.

Each supported minor maps to the three things that must agree. Only versions in EKS standard
support are accepted; the packages for all of them are pinned in requirements.txt, so changing
`kubernetes_version` needs no other edit.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class KubernetesRelease:
    minor: str  # "1.35"
    # Month in which EKS standard support ends (EKS release calendar); after it the cluster is
    # billed at the extended-support rate, so synth warns when it is close.
    standard_support_until: str

    @property
    def suffix(self) -> str:
        return self.minor.replace("1.", "", 1)

    @property
    def cdk8s_plus_module(self) -> str:
        return f"cdk8s_plus_{self.suffix}"

    @property
    def kubectl_layer_module(self) -> str:
        return f"aws_cdk.lambda_layer_kubectl_v{self.suffix}"

    def eks_version(self) -> Any:
        from aws_cdk import aws_eks_v2 as eks

        return getattr(eks.KubernetesVersion, f"V1_{self.suffix}")

    def cdk8s_plus(self) -> ModuleType:
        return importlib.import_module(self.cdk8s_plus_module)

    def kubectl_layer_class(self) -> Any:
        module = importlib.import_module(self.kubectl_layer_module)
        return getattr(module, f"KubectlV{self.suffix}Layer")


SUPPORTED = {
    release.minor: release
    for release in (
        KubernetesRelease("1.34", "2026-12"),
        KubernetesRelease("1.35", "2027-03"),
        KubernetesRelease("1.36", "2027-07"),
    )
}
DEFAULT_VERSION = "1.35"
# Versions EKS still runs, but only in paid extended support: refused with a specific reason.
EXTENDED_SUPPORT_ONLY = {"1.32", "1.33"}


def release_for(version: str) -> KubernetesRelease:
    key = "kubernetes_version"
    supported = ", ".join(SUPPORTED)
    if not isinstance(version, str) or not version.count(".") == 1:
        raise ConfigError(key, version, f"expected a minor version such as {DEFAULT_VERSION}; supported: {supported}")
    if version in SUPPORTED:
        return SUPPORTED[version]
    try:
        major, minor = (int(part) for part in version.split("."))
    except ValueError:
        raise ConfigError(key, version, f"expected a minor version such as {DEFAULT_VERSION}; supported: {supported}") from None
    if version in EXTENDED_SUPPORT_ONLY:
        reason = "is only in EKS extended support (billed at the extended rate)"
    elif (major, minor) < (1, 32):
        reason = "is past the end of EKS support (standard and extended)"
    else:
        reason = "is newer than this project's pinned cdk8s-plus and kubectl layer packages"
    raise ConfigError(key, version, f"Kubernetes {version} {reason}; supported: {supported} (default {DEFAULT_VERSION})")
