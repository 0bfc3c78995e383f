"""A deployed stack set must be able to take the next template.

CloudFormation refuses a change set that gives a logical id another resource type ("Update of
resource type is not permitted"), and a snapshot cannot notice: it is updated together with the
change that breaks the update. `resource_ledger.json` records every (stack, logical id) a release
of this app has had, with its type, and only grows: an id that disappears stays recorded, so that
no later change reuses it for something else.

`UPDATE_RESOURCE_LEDGER=1 pytest tests/stacks/test_update_safety.py` records new ids; it never
rewrites a recorded type.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import synthesize

LEDGER = Path(__file__).with_name("resource_ledger.json")
BACKENDS = ["appmesh", "istio", "lattice"]


def _types(outdir: Path) -> dict[str, dict[str, str]]:
    return {
        path.name.removesuffix(".template.json"): {
            logical_id: resource["Type"] for logical_id, resource in json.loads(path.read_text())["Resources"].items()
        }
        for path in sorted(outdir.glob("*.template.json"))
    }


def _ledger() -> dict[str, dict[str, dict[str, str]]]:
    return json.loads(LEDGER.read_text())  # type: ignore[no-any-return]


def _type_changes(recorded: dict[str, dict[str, str]], current: dict[str, dict[str, str]]) -> list[str]:
    return [
        f"{stack} {logical_id}: {recorded[stack][logical_id]} -> {kind}"
        for stack, resources in current.items()
        for logical_id, kind in resources.items()
        if logical_id in recorded.get(stack, {}) and recorded[stack][logical_id] != kind
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_logical_id_changes_its_resource_type(synths: Any, backend: str) -> None:
    changes = _type_changes(_ledger()[backend], _types(synths[backend].outdir))
    assert changes == [], "CloudFormation refuses these updates; give the new resource its own construct id"


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_ledger_records_every_resource(synths: Any, backend: str) -> None:
    ledger = _ledger()
    recorded = ledger.setdefault(backend, {})
    missing = {
        stack: {logical_id: kind for logical_id, kind in resources.items() if logical_id not in recorded.get(stack, {})}
        for stack, resources in _types(synths[backend].outdir).items()
    }
    missing = {stack: resources for stack, resources in missing.items() if resources}
    if missing and os.environ.get("UPDATE_RESOURCE_LEDGER") == "1":
        for stack, resources in missing.items():
            recorded.setdefault(stack, {}).update(resources)
            recorded[stack] = dict(sorted(recorded[stack].items()))
        ledger[backend] = dict(sorted(recorded.items()))
        LEDGER.write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n")
        return
    assert missing == {}, "new resources: record them with UPDATE_RESOURCE_LEDGER=1 pytest tests/stacks/test_update_safety.py"


def test_the_check_catches_a_type_change() -> None:
    recorded = {"AppMesh-Cluster": {"EksControlPlaneLogsDB7AEF19": "AWS::Logs::LogGroup"}}
    current = {"AppMesh-Cluster": {"EksControlPlaneLogsDB7AEF19": "Custom::ServiceLogGroup", "New": "AWS::SNS::Topic"}}
    assert _type_changes(recorded, current) == [
        "AppMesh-Cluster EksControlPlaneLogsDB7AEF19: AWS::Logs::LogGroup -> Custom::ServiceLogGroup"
    ]


# The service-named log groups, as the release before the custom resources had them.
_LEGACY_LOG_GROUPS = {
    "AppMesh-Cluster": {"EksControlPlaneLogsDB7AEF19": "/aws/eks/app-mesh/cluster"},
    "AppMesh-MeshPlatform": {
        "ContainerLogsLogsapplication9410283F": "/aws/containerinsights/app-mesh/application",
        "ContainerLogsLogsdataplane5EE937D0": "/aws/containerinsights/app-mesh/dataplane",
        "ContainerLogsLogshostD4E22CDE": "/aws/containerinsights/app-mesh/host",
        "ContainerLogsLogsperformance380324BC": "/aws/containerinsights/app-mesh/performance",
    },
}


def test_the_legacy_log_groups_are_gone_by_default(synths: Any) -> None:
    templates = _types(synths["istio"].outdir)
    for stack, groups in _LEGACY_LOG_GROUPS.items():
        assert set(groups).isdisjoint(templates[stack])
        assert "Custom::ServiceLogGroup" in templates[stack].values()


def test_retain_legacy_log_groups_keeps_the_old_resources_with_only_their_policy_changed(tmp_path: Path) -> None:
    synthesized = synthesize(tmp_path, {"mesh_backend": "istio", "retain_legacy_log_groups": True})
    assert synthesized.error is None
    for stack, groups in _LEGACY_LOG_GROUPS.items():
        resources = json.loads((tmp_path / f"{stack}.template.json").read_text())["Resources"]
        adopted = {r["Properties"]["LogGroupName"]: (i, r) for i, r in resources.items() if r["Type"] == "Custom::ServiceLogGroup"}
        for logical_id, name in groups.items():
            resources[logical_id].pop("Metadata", None)
            assert resources[logical_id] == {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"KmsKeyId": {"Fn::GetAtt": ["LogsKeyA6AB43B2", "Arn"]}, "LogGroupName": name, "RetentionInDays": 30},
                "UpdateReplacePolicy": "Retain",
                "DeletionPolicy": "Retain",
            }
            # The custom resource adopts the group after the old resource's update, never before.
            assert logical_id in adopted[name][1]["DependsOn"]
