"""The metric-gated canary as deployed: the in-VPC analysis project, what the frontend is shown, a
step that changes one manifest, the pipeline's step stages, and the shell the pipeline and the
analysis project run, executed here (the pipeline's against a fake AWS CLI, the analysis against a
loopback Prometheus that answers as Amazon Managed Prometheus does)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.canary_analysis import QUERY_ACTIONS, analysis_commands
from stacks.canary_steps import analysis_commands as pipeline_analysis_commands
from stacks.canary_steps import deploy_commands
from tests.canary.test_sources import FAULTY, HEALTHY, SPEC, FakePrometheus, prometheus  # noqa: F401
from tests.conftest import PROJECT_ROOT, Synthesized, synthesize
from tests.stacks.support import changes, manifest_with, nag_violations

CANARY = {"config": "config/examples/canary.yaml"}
CONNECTION = "arn:aws:codeconnections:us-west-1:123456789012:connection/12345678-1234-1234-1234-123456789012"
PIPELINE = {**CANARY, "pipeline_connection_arn": CONNECTION, "pipeline_repository": "my-org/appmesh-eks", "account": "123456789012"}


@pytest.fixture(scope="module")
def canary_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("canary"), CANARY, nag=True)


@pytest.fixture(scope="module")
def pipeline_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("canary-pipeline"), PIPELINE, nag=True)


def _projects(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::CodeBuild::Project"}


# -- the analysis project, in the routing stack -----------------------------------------------------


def test_the_analysis_project_runs_the_tool_alone_in_the_private_subnets(canary_synth: Synthesized) -> None:
    routing = canary_synth.template_json(canary_synth.application.routing)
    (project,) = [r for k, r in _projects(routing).items() if k.startswith("CanaryAnalysis")]
    properties = project["Properties"]
    assert properties["Name"] == "AppMesh-MeshRouting-canary-analysis"
    assert len(properties["VpcConfig"]["Subnets"]) == 2
    assert properties["Source"]["Type"] == "S3"
    spec = json.loads(properties["Source"]["BuildSpec"])
    assert spec["env"] == {"exported-variables": ["VERDICT"]}
    assert spec["phases"]["build"]["commands"] == analysis_commands()
    variables = {v["Name"]: v["Value"] for v in properties["Environment"]["EnvironmentVariables"]}
    assert set(variables) == {"CANARY_SPEC", "PROMETHEUS_URL", "STEP", "MAX_WAITS"}
    assert json.loads(variables["CANARY_SPEC"])["prometheus"]["label"] == "destination_workload"
    assert variables["PROMETHEUS_URL"] == {"Fn::ImportValue": variables["PROMETHEUS_URL"]["Fn::ImportValue"]}
    assert "PrometheusEndpoint" in variables["PROMETHEUS_URL"]["Fn::ImportValue"]
    assert (variables["STEP"], variables["MAX_WAITS"]) == ("1", "6")
    # 6 waits of 5-minute windows, each judgement a window: 10 + 7 * 5 + 1 minutes at most.
    assert properties["TimeoutInMinutes"] == 46
    assert routing["Outputs"]["CanaryAnalysisProject"]["Value"] == {
        "Ref": next(k for k in _projects(routing) if k.startswith("CanaryAnalysis"))
    }


def test_the_analysis_project_may_only_query_the_one_workspace(canary_synth: Synthesized) -> None:
    routing = canary_synth.template_json(canary_synth.application.routing)
    statements = [
        s
        for r in routing["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and "CanaryAnalysis" in json.dumps(r["Properties"]["Roles"])
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    (query,) = [
        s for s in statements if any(str(a).startswith("aps:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    ]
    # AMP's read actions for the Prometheus query API, written out here rather than read from the code.
    assert sorted(query["Action"]) == ["aps:GetLabels", "aps:GetMetricMetadata", "aps:GetSeries", "aps:QueryMetrics"]
    # The platform stack's workspace, by its ARN attribute: no other workspace, no wildcard.
    assert re.fullmatch(
        r"AppMesh-MeshPlatform:ExportsOutputFnGetAttMetricsWorkspace[0-9A-F]{8}Arn[0-9A-F]{8}", query["Resource"]["Fn::ImportValue"]
    )
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {a for a in actions if a.startswith("aps:")} == set(QUERY_ACTIONS)


def test_the_frontend_is_shown_the_step_and_the_verdict(canary_synth: Synthesized) -> None:
    routing = canary_synth.template(canary_synth.application.routing)
    _, objects, _ = manifest_with(routing, "ConfigMap", "weights-nodejs")
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert json.loads(config_map["data"]["canary.json"]) == {
        "reason": "deployed with these weights",
        "step": "1 of 3 (2:1)",
        "verdict": "deployed",
        "virtual_service": "nodejs",
    }
    (services,) = canary_synth.application.services
    _, objects, _ = manifest_with(canary_synth.template(services), "Deployment", "frontend-app")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "mesh-weights"]
    (nodejs,) = [s["configMap"] for s in volume["projected"]["sources"] if s["configMap"]["name"] == "weights-nodejs"]
    assert nodejs["items"] == [{"key": "weights.json", "path": "nodejs.json"}, {"key": "canary.json", "path": "canary/nodejs.json"}]
    assert nodejs["optional"] is True


def test_synth_writes_the_spec_a_person_judges_with(tmp_path: Path) -> None:
    """app.py, as `cdk synth` runs it, writes cdk.out/canary-nodejs.json."""
    outdir = tmp_path / "out"
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps(CANARY)}
    result = subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/python"), "app.py"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    spec = json.loads((outdir / "canary-nodejs.json").read_text())
    assert spec["steps"] == [[2, 1], [1, 1], [0, 1]] and spec["prometheus"]["values"] == {
        "nodejs": "nodejs-app",
        "nodejsv2": "nodejsv2-app",
    }


# -- a step changes one manifest ----------------------------------------------------------------------


def test_a_canary_step_as_the_pipeline_deploys_it_changes_one_manifest(canary_synth: Synthesized, tmp_path: Path) -> None:
    step = synthesize(
        tmp_path,
        {**CANARY, "weights.nodejs": "nodejs:1,nodejsv2:1", "canary_verdict": "promote: step 1 (2:1) was promoted by its analysis"},
    )
    routing = canary_synth.template_json(canary_synth.application.routing)["Resources"]
    assert changes(canary_synth, step) == {
        "AppMesh-MeshRouting": [next(name for name in routing if name.startswith("ClusterRoutingnodejs"))]
    }


# -- the pipeline ----------------------------------------------------------------------------------


def _stages(template: dict[str, Any]) -> list[dict[str, Any]]:
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return pipeline["Properties"]["Stages"]  # type: ignore[no-any-return]


def test_the_pipeline_has_a_stage_per_further_step_after_prod(pipeline_synth: Synthesized) -> None:
    stages = _stages(pipeline_synth.template_json(pipeline_synth.application))
    assert [s["Name"] for s in stages][-4:] == ["Dev", "Prod", "Prod-canary-step2", "Prod-canary-step3"]
    by_name = {s["Name"]: sorted(s["Actions"], key=lambda a: a["RunOrder"]) for s in stages}
    prod = by_name["Prod"]
    assert prod[0]["ActionTypeId"]["Category"] == "Approval"  # the manual approval before production stays
    assert [a["Name"] for a in prod[-2:]] == ["SmokeTest-prod", "Canary-prod-step1"]
    assert prod[-1]["RunOrder"] > prod[-2]["RunOrder"]
    for step in (2, 3):
        assert [(a["Name"], a["RunOrder"]) for a in by_name[f"Prod-canary-step{step}"]] == [
            (f"Canary-prod-step{step}-deploy", 1),
            (f"Canary-prod-step{step}", 2),
        ]
    assert not any(a["Name"].startswith("Canary") for a in by_name["Dev"])


def _buildspec(pipeline_synth: Synthesized, marker: str) -> tuple[list[str], dict[str, Any]]:
    template = pipeline_synth.template_json(pipeline_synth.application)
    found = [
        (
            json.loads(p["Properties"]["Source"]["BuildSpec"]),
            {v["Name"]: v["Value"] for v in p["Properties"]["Environment"].get("EnvironmentVariables", [])},
        )
        for p in _projects(template).values()
        if marker in p["Properties"]["Source"]["BuildSpec"]
    ]
    assert len(found) == 1, marker
    spec, env = found[0]
    return spec["phases"]["build"]["commands"], env


def test_a_step_deploys_the_routing_stack_alone_with_the_step_weights(pipeline_synth: Synthesized) -> None:
    commands, _ = _buildspec(pipeline_synth, "promote: step 2 (1:1) was promoted")
    assert (
        commands[-1]
        == "node_modules/.bin/cdk deploy --app cdk.out AppMesh-Pipeline/Prod/AppMesh-MeshRouting --exclusively --require-approval never --progress events"
    )
    synth = commands[-2]
    assert synth.startswith("make synth CDK_ARGS=")
    assert "weights.nodejs=nodejs:0,nodejsv2:1" in synth and "canary_verdict=promote: step 2 (1:1) was promoted by its analysis" in synth
    assert "pipeline_connection_arn=" + CONNECTION in synth  # the pipeline's own settings, replayed


def test_each_analysis_rolls_back_to_the_step_before(pipeline_synth: Synthesized) -> None:
    for step, back, weights in (
        (1, "every request to nodejs", "nodejs:1,nodejsv2:0"),
        (2, "2:1", "nodejs:2,nodejsv2:1"),
        (3, "1:1", "nodejs:1,nodejsv2:1"),
    ):
        commands, env = _buildspec(pipeline_synth, f"rolled back from step {step} (")
        assert (env["STEP"], env["ROLLBACK_WEIGHTS"]) == (str(step), back)
        assert env["ANALYSIS_LOG_GROUP"] == "/appmesh-eks/Prod-AppMesh-MeshRouting/canary-analysis"
        assert f"weights.nodejs={weights}" in next(c for c in commands if c.startswith("make synth"))


def test_the_canary_steps_may_assume_only_the_bootstrap_roles(pipeline_synth: Synthesized) -> None:
    template = pipeline_synth.template_json(pipeline_synth.application)
    assumed = {
        json.dumps(s["Resource"], sort_keys=True)
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "sts:AssumeRole" and "Canary" in json.dumps(r["Properties"]["Roles"])
    }
    roles = set().union(
        *(
            {r.split(":role/")[1] for r in json.loads(resource)} if isinstance(json.loads(resource), list) else {json.loads(resource)}
            for resource in assumed
        )
    )
    assert roles == {f"cdk-hnb659fds-{purpose}-role-123456789012-us-west-1" for purpose in ("deploy", "file-publishing", "lookup")}


def test_the_canary_pipeline_has_no_unacknowledged_nag_findings(pipeline_synth: Synthesized) -> None:
    violations = nag_violations(pipeline_synth.outdir)
    assert violations == [] and pipeline_synth.error is None


# -- the pipeline's shell, run against a fake AWS CLI --------------------------------------------------

_FAKE_AWS = r"""#!/bin/sh
echo "aws $*" >> "$CALLS"
case "$*" in
  "codebuild start-build"*) echo build-1 ;;
  *buildStatus*) echo "$FAKE_STATUS" ;;
  *exportedEnvironmentVariables*) echo "$FAKE_VERDICT" ;;
  *streamName*) echo stream-1 ;;
  "logs get-log-events"*) printf 'canary nodejsv2 vs nodejs at step 2 of 3 (1:1): ROLL BACK (failed: success rate)\n  FAIL  success rate: nodejsv2 80.00%%\n' ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac
"""
# Each argument in brackets: what the shell's quoting made of the command line.
_FAKE_TOOL = '#!/bin/sh\n{ printf "%s" "$(basename "$0")"; for a in "$@"; do printf " [%s]" "$a"; done; echo; } >> "$CALLS"\n'


def run_pipeline_step(tmp_path: Path, status: str, verdict: str) -> tuple[int, str, list[str]]:
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    (work / "node_modules" / ".bin").mkdir(parents=True)
    bin_dir.mkdir()
    for path, text in ((bin_dir / "aws", _FAKE_AWS), (bin_dir / "make", _FAKE_TOOL), (work / "node_modules" / ".bin" / "cdk", _FAKE_TOOL)):
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    rollback = deploy_commands(
        "-c mesh_backend=istio",
        "nodejs",
        (("nodejs", 2), ("nodejsv2", 1)),
        "roll back: rolled back from step 2 (1:1)",
        "AppMesh-Pipeline/Prod/AppMesh-MeshRouting",
    )
    script = "\n".join(pipeline_analysis_commands(rollback))
    calls = tmp_path / "calls"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(calls),
        "FAKE_STATUS": status,
        "FAKE_VERDICT": verdict,
        "ANALYSIS_PROJECT": "Prod-AppMesh-MeshRouting-canary-analysis",
        "ANALYSIS_LOG_GROUP": "/appmesh-eks/Prod-AppMesh-MeshRouting/canary-analysis",
        "STEP": "2",
        "STEP_WEIGHTS": "1:1",
        "ROLLBACK_WEIGHTS": "2:1",
    }
    result = subprocess.run(["sh", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=30, check=False)
    return result.returncode, result.stdout + result.stderr, calls.read_text().splitlines()


def test_a_promoted_step_lets_the_pipeline_go_on_and_deploys_nothing(tmp_path: Path) -> None:
    code, out, calls = run_pipeline_step(tmp_path, "SUCCEEDED", "promote")
    assert code == 0, out
    assert out.splitlines()[-1] == "canary: step 2 (1:1) promoted"
    assert (
        calls[0]
        == "aws codebuild start-build --project-name Prod-AppMesh-MeshRouting-canary-analysis --environment-variables-override name=STEP,value=2,type=PLAINTEXT --query build.id --output text"
    )
    assert not any(call.startswith(("make", "cdk")) for call in calls)


@pytest.mark.parametrize(
    ("status", "verdict"), [("SUCCEEDED", "roll back"), ("SUCCEEDED", "wait"), ("SUCCEEDED", "error"), ("FAILED", "None")]
)
def test_anything_but_a_promotion_rolls_back_and_stops_the_pipeline_with_the_figures(tmp_path: Path, status: str, verdict: str) -> None:
    code, out, calls = run_pipeline_step(tmp_path, status, verdict)
    assert code == 1
    assert "ROLL BACK (failed: success rate)" in out and "FAIL  success rate: nodejsv2 80.00%" in out  # the figures
    assert f"canary: step 2 (1:1) not promoted (analysis {status}, verdict {verdict}): rolling back to 2:1" in out
    assert calls[-2] == (
        "make [synth] [CDK_ARGS=-c mesh_backend=istio -c weights.nodejs=nodejs:2,nodejsv2:1 "
        "-c 'canary_verdict=roll back: rolled back from step 2 (1:1)']"
    )
    assert calls[-1] == (
        "cdk [deploy] [--app] [cdk.out] [AppMesh-Pipeline/Prod/AppMesh-MeshRouting] [--exclusively] [--require-approval] [never] "
        "[--progress] [events]"
    )
    assert out.splitlines()[-1] == "canary: back at 2:1; the pipeline stops here"


# -- the analysis project's shell, run for real ------------------------------------------------------


@pytest.mark.parametrize(("answers", "verdict"), [(HEALTHY, "promote"), (FAULTY, "roll back")], ids=["promote", "roll-back"])
def test_the_analysis_build_judges_and_exports_its_verdict(
    prometheus: tuple[str, FakePrometheus],  # noqa: F811
    tmp_path: Path,
    answers: dict[str, Any],
    verdict: str,
) -> None:
    """The buildspec's commands, in one sh as CodeBuild runs them: the tool copied from the asset
    folder, its requirements installed (already present here: no network), the spec from the
    environment, and the verdict exported."""
    url, fake = prometheus
    fake.answers = answers
    source, home, bin_dir = tmp_path / "src", tmp_path / "home", tmp_path / "bin"
    shutil.copytree(PROJECT_ROOT / "canary", source, ignore=shutil.ignore_patterns("__pycache__"))
    home.mkdir()
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(PROJECT_ROOT / ".venv" / "bin" / "python")
    script = "\n".join([*analysis_commands(), 'echo "VERDICT=$VERDICT"'])
    env = {
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(home),
        "CODEBUILD_SRC_DIR": str(source),
        "CANARY_SPEC": json.dumps(SPEC),
        "PROMETHEUS_URL": url,
        "AWS_REGION": "us-west-1",
        "STEP": "2",
        "MAX_WAITS": "0",
        "PIP_NO_INDEX": "1",
    }
    result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == f"VERDICT={verdict}"
    assert lines[-2] == f"canary verdict for step 2: {verdict}"
    assert any(line.startswith("canary nodejsv2 vs nodejs at step 2 of 3 (1:1): ") for line in lines)
    assert all(header is not None and header.startswith("AWS4-HMAC-SHA256 ") for header in fake.authorizations)
