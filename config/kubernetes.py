"""The Kubernetes minor version: one setting for the EKS cluster, the kubectl layer and cdk8s-plus.

The names of the three live here; components/cluster.py turns them into the CDK's objects, so that
nothing in config/ imports aws_cdk.

Each supported minor maps to the three things that must agree. Only versions in EKS standard
support are accepted; the packages for all of them are pinned in requirements.txt, so changing
`kubernetes_version` needs no other edit.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import date
from types import ModuleType

from .errors import ConfigError


@dataclass(frozen=True)
class KubernetesRelease:
    minor: str  # "1.35"
    # The day EKS standard support ends (EKS release calendar, "Kubernetes versions" in the EKS
    # user guide); after it the cluster is billed at the extended-support rate ($0.60 per hour
    # instead of $0.10), so synth warns when it is close.
    standard_support_until: date

    @property
    def suffix(self) -> str:
        return self.minor.replace("1.", "", 1)

    @property
    def cdk8s_plus_module(self) -> str:
        return f"cdk8s_plus_{self.suffix}"

    @property
    def kubectl_layer_module(self) -> str:
        return f"aws_cdk.lambda_layer_kubectl_v{self.suffix}"

    def cdk8s_plus(self) -> ModuleType:
        return importlib.import_module(self.cdk8s_plus_module)


SUPPORTED = {
    release.minor: release
    for release in (
        KubernetesRelease("1.35", date(2027, 3, 27)),
        KubernetesRelease("1.36", date(2027, 8, 2)),
    )
}
DEFAULT_VERSION = "1.35"
# Versions EKS still runs, but only in paid extended support: refused with a specific reason.
# 1.34's standard support ended on 2026-12-02.
EXTENDED_SUPPORT_ONLY = {"1.32", "1.33", "1.34"}
# Synth warns this many days before a version leaves standard support.
WARN_DAYS = 90


def _order(minor: str) -> tuple[int, ...]:
    return tuple(int(part) for part in minor.split("."))


def support_warning(release: KubernetesRelease, today: date | None) -> str | None:
    """A warning when the chosen version leaves EKS standard support within WARN_DAYS of `today`
    (None: no date given, no warning; the templates never depend on the date)."""
    if today is None:
        return None
    days = (release.standard_support_until - today).days
    if days > WARN_DAYS:
        return None
    newer = [minor for minor in SUPPORTED if _order(minor) > _order(release.minor)]
    move = f"move to {' or '.join(newer)}" if newer else "move to a newer version once this project supports one"
    when = "ended" if days <= 0 else f"ends in {days} days"
    return (
        f"Kubernetes {release.minor}: EKS standard support {when} ({release.standard_support_until.isoformat()}); "
        f"after it the cluster is billed at the extended-support rate. Set kubernetes_version to {move}"
    )


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
