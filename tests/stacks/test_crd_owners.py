"""The Helm releases that install CustomResourceDefinitions keep their logical ids, in every backend.

A changed logical id is a replacement: CloudFormation creates the "new" release (Helm finds the
same release name and upgrades it in place) and then deletes the old resource, which runs
`helm uninstall` on that very release. Whatever the release's templates created goes with it:
for cert-manager (crds.enabled, keep false) the CRDs, and with them every Certificate and Issuer;
for Istio's base chart its default validating webhook and, should a release ever drop the
`helm.sh/resource-policy: keep` its CRDs carry today, every Istio object. Charts that ship their
CRDs in crds/ (App Mesh controller, Lattice controller) install them once and never delete them,
but their release is replaced the same way. So these ids are literals here, not derived from the
code: a refactor that moves a construct must fail this test, not pass it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Synthesized

# Charts that install CRDs: base (templates/crds.yaml), cert-manager (crds.enabled: templates),
# appmesh-controller and aws-gateway-controller-chart (their crds/ folders).
CRD_CHARTS = frozenset({"base", "cert-manager", "appmesh-controller", "aws-gateway-controller-chart"})

# Never change these. A construct that moves must keep its id (override_logical_id on its CfnResource).
CRD_OWNING_RELEASES = {
    "appmesh": {
        ("AppMesh-MeshPlatform", "AppMeshControllerReleaseCF18025E", "appmesh-controller"),
        ("AppMesh-MeshPlatform", "CertManagerReleaseF3F7519D", "cert-manager"),
    },
    "istio": {("AppMesh-MeshPlatform", "IstioBaseRelease301C3DAE", "base")},
    "lattice": {("AppMesh-MeshPlatform", "LatticeControllerRelease82B860E1", "aws-gateway-controller-chart")},
}


@pytest.mark.parametrize("backend", sorted(CRD_OWNING_RELEASES))
def test_crd_owning_releases_keep_their_logical_ids(synths: Any, backend: str) -> None:
    synthesized: Synthesized = synths[backend]
    found = {
        (stack.stack_name, logical_id, resource["Properties"]["Chart"])
        for stack in synthesized.application.stacks
        for logical_id, resource in synthesized.template_json(stack)["Resources"].items()
        if resource["Type"] == "Custom::AWSCDK-EKS-HelmChart" and resource["Properties"]["Chart"] in CRD_CHARTS
    }
    assert found == CRD_OWNING_RELEASES[backend]
