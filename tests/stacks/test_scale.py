"""A generated 200-service topology synthesizes within CloudFormation's and the provider's limits."""

from __future__ import annotations

import json
from pathlib import Path

from components.mesh_workload import MAX_MANIFEST_BYTES
from scripts.scale import scale_context
from tests.conftest import synthesize


def test_two_hundred_services_synthesize_within_limits(tmp_path: Path) -> None:
    result = synthesize(tmp_path, scale_context(200))
    assert result.error is None
    assert len(result.application.services) == 5  # 200 services, 40 per stack
    routers = 0
    for path in tmp_path.glob("*.template.json"):
        template = json.loads(path.read_text())
        assert path.stat().st_size < 1_000_000, path.name
        assert len(template["Resources"]) < 500, path.name
        for resource in template["Resources"].values():
            if resource["Type"] == "Custom::AWSCDK-EKS-KubernetesResource":
                manifest = json.dumps(resource["Properties"]["Manifest"], separators=(",", ":"))
                assert len(manifest) <= MAX_MANIFEST_BYTES
                routers += manifest.count('\\"kind\\":\\"VirtualRouter\\"')
    assert routers == 199
    # One manifest per virtual service: a new one never moves another between custom resources.
    routing = json.loads((tmp_path / "AppMesh-MeshRouting.template.json").read_text())["Resources"]
    assert sum(1 for name in routing if name.startswith("ClusterRouting")) == 199
