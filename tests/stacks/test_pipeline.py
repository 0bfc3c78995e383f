"""CDK Pipelines: stages from config, prod behind approval, an in-VPC smoke test after each."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError
from tests.conftest import Synthesized, normalize_template, synthesize
from tests.stacks.support import nag_violations
from tests.unit.test_settings import config_with

CONNECTION = "arn:aws:codeconnections:us-west-1:123456789012:connection/12345678-1234-1234-1234-123456789012"
PIPELINE = {"pipeline_connection_arn": CONNECTION, "pipeline_repository": "my-org/appmesh-eks", "account": "123456789012"}


@pytest.fixture(scope="module")
def pipeline_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("pipeline"), PIPELINE, nag=True)


@pytest.fixture(scope="module")
def istio_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """An Istio pipeline that logs its image builds in to Docker Hub (one synth, two tests)."""
    return synthesize(
        tmp_path_factory.mktemp("istio-pipeline"),
        {**PIPELINE, "mesh_backend": "istio", "pipeline_docker_hub_secret": "dockerhub/appmesh-eks"},
    )


@pytest.fixture(scope="module")
def pipeline_template(pipeline_synth: Synthesized) -> dict[str, Any]:
    return pipeline_synth.template_json(pipeline_synth.application)


def _pipeline_stages(template: dict[str, Any]) -> list[dict[str, Any]]:
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return pipeline["Properties"]["Stages"]  # type: ignore[no-any-return]


def test_stages_run_in_order_source_build_self_mutation_dev_prod(pipeline_template: dict[str, Any]) -> None:
    assert [stage["Name"] for stage in _pipeline_stages(pipeline_template)] == [
        "Source",
        "Build",
        "UpdatePipeline",
        "Assets",
        "Dev",
        "Prod",
    ]


def test_source_is_the_codeconnections_repository(pipeline_template: dict[str, Any]) -> None:
    (action,) = _pipeline_stages(pipeline_template)[0]["Actions"]
    assert action["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert action["Configuration"]["ConnectionArn"] == CONNECTION
    assert action["Configuration"]["FullRepositoryId"] == "my-org/appmesh-eks"
    assert action["Configuration"]["BranchName"] == "main"


def test_synth_step_runs_the_tests_then_synthesizes_with_the_same_settings(pipeline_template: dict[str, Any]) -> None:
    projects = [r["Properties"] for r in pipeline_template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"]
    (synth,) = [p for p in projects if "make test" in json.dumps(p["Source"]["BuildSpec"])]
    spec = json.loads(synth["Source"]["BuildSpec"])
    commands = spec["phases"]["build"]["commands"]
    assert commands[0] == "make test"
    assert commands[1].startswith("make synth CDK_ARGS=")
    for key, value in PIPELINE.items():
        assert f"{key}={value}" in commands[1]
    assert synth["Environment"]["Image"] == "public.ecr.aws/docker/library/python:3.11.7-bookworm"


def _actions(template: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    (found,) = [s for s in _pipeline_stages(template) if s["Name"] == stage]
    return sorted(found["Actions"], key=lambda a: a["RunOrder"])  # type: ignore[no-any-return]


def test_prod_waits_for_a_manual_approval_and_dev_does_not(pipeline_template: dict[str, Any]) -> None:
    prod = _actions(pipeline_template, "Prod")
    assert prod[0]["ActionTypeId"]["Category"] == "Approval"
    assert all(a["RunOrder"] > prod[0]["RunOrder"] for a in prod[1:])
    assert all(a["ActionTypeId"]["Category"] != "Approval" for a in _actions(pipeline_template, "Dev"))


@pytest.mark.parametrize("stage", ["Dev", "Prod"])
def test_smoke_test_runs_after_every_deploy_of_the_stage(pipeline_template: dict[str, Any], stage: str) -> None:
    actions = _actions(pipeline_template, stage)
    deploys = [a for a in actions if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    (smoke,) = [a for a in actions if a["Name"].startswith("SmokeTest")]
    assert deploys and smoke["RunOrder"] > max(a["RunOrder"] for a in deploys)
    assert "SMOKE_TEST_PROJECT" in json.dumps(smoke["Configuration"]["EnvironmentVariables"])


def test_smoke_test_project_runs_in_the_private_subnets(pipeline_synth: Synthesized) -> None:
    stage = pipeline_synth.application.stages["dev"]
    template = pipeline_synth.template(stage.application.routing)
    (project,) = template.find_resources("AWS::CodeBuild::Project").values()
    vpc = project["Properties"]["VpcConfig"]
    assert [s["Fn::ImportValue"] for s in vpc["Subnets"]] == [
        "Dev-AppMesh-Network:ExportsOutputRefNetworkVpcprivateSubnet1Subnet9EC58498554293D5",
        "Dev-AppMesh-Network:ExportsOutputRefNetworkVpcprivateSubnet2Subnet6E5E880441579850",
    ]
    spec = project["Properties"]["Source"]["BuildSpec"]
    assert "$GATEWAY_URL/eks/" in spec and "$FRONTEND_URL/json" in spec


def test_prod_stacks_are_termination_protected(pipeline_synth: Synthesized) -> None:
    for name, expected in (("dev", False), ("prod", True)):
        for stack in pipeline_synth.application.stages[name].application.stacks:
            assert stack.termination_protection is expected, stack.stack_name


def test_a_protected_stage_turns_on_its_stacks_termination_protection(
    pipeline_synth: Synthesized, pipeline_template: dict[str, Any]
) -> None:
    """The pipeline's CloudFormation deploy actions ignore the stacks' terminationProtection
    (aws/aws-cdk#17871): a step after the prod deploy sets it, on each prod stack and no other."""
    prod = [stack.stack_name for stack in pipeline_synth.application.stages["prod"].application.stacks]
    resources = pipeline_template["Resources"]
    projects = {i: r["Properties"] for i, r in resources.items() if r["Type"] == "AWS::CodeBuild::Project"}
    (protect_id,) = [i for i, p in projects.items() if "update-termination-protection" in p["Source"]["BuildSpec"]]
    spec = json.loads(projects[protect_id]["Source"]["BuildSpec"])
    assert spec["phases"]["build"]["commands"] == [
        f"aws cloudformation update-termination-protection --enable-termination-protection --stack-name {name}" for name in prod
    ]
    # The standard CodeBuild image, which has the AWS CLI the commands call.
    assert projects[protect_id]["Environment"]["Image"].startswith("aws/codebuild/standard:")
    role = projects[protect_id]["ServiceRole"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in resources.values()
        if policy["Type"] == "AWS::IAM::Policy" and {"Ref": role} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if "cloudformation:UpdateTerminationProtection" in json.dumps(statement["Action"])
    ]
    (statement,) = statements
    assert statement["Action"] == "cloudformation:UpdateTerminationProtection"
    assert sorted(statement["Resource"]) == sorted(f"arn:aws:cloudformation:us-west-1:123456789012:stack/{name}/*" for name in prod)
    # The step runs in the prod stage, after its deploy; dev has none.
    (prod_stage,) = [stage for stage in _pipeline_stages(pipeline_template) if stage["Name"] == "Prod"]
    (dev_stage,) = [stage for stage in _pipeline_stages(pipeline_template) if stage["Name"] == "Dev"]
    assert "Protect-prod" in [action["Name"] for action in prod_stage["Actions"]]
    assert not any(action["Name"].startswith("Protect") for action in dev_stage["Actions"])


def test_stage_names_regional_resources_apart(pipeline_synth: Synthesized) -> None:
    """Stages share an account and region: the cluster, the mesh and the Cloud Map namespace (the
    App Mesh controller takes the first namespace with its name) carry the stage."""
    for name in ("dev", "prod"):
        application = pipeline_synth.application.stages[name].application
        pipeline_synth.template(application.cluster).has_resource_properties("AWS::EKS::Cluster", {"Name": f"app-mesh-{name}"})
        pipeline_synth.template(application.discovery).has_resource_properties(
            "AWS::ServiceDiscovery::PrivateDnsNamespace", {"Name": f"appmesh-{name}.pvt.local"}
        )
        assert f'"name":"app-mesh-{name}"' in json.dumps(pipeline_synth.template_json(application.platform)).replace(" ", "").replace(
            "\\", ""
        )


_PRUNE_LABEL = re.compile(r"aws\.cdk\.eks/prune-c8[0-9a-f]{40}")


def _normalized(template: dict[str, Any]) -> dict[str, Any]:
    """Drop what only the construct path decides: the stage's path in Name tags, its prefix in
    stack names, and the kubectl provider's prune labels (a hash of the construct address)."""
    text = json.dumps(template).replace("AppMesh-Pipeline/Dev/", "").replace("Dev-AppMesh-", "AppMesh-")
    return normalize_template(json.loads(_PRUNE_LABEL.sub("aws.cdk.eks/prune-<address>", text)))


def test_the_pipeline_stage_deploys_the_same_templates_as_cdk_deploy_all(pipeline_synth: Synthesized, tmp_path: Path) -> None:
    """One definition of the application: a stage's templates equal a direct synth's."""
    direct = synthesize(
        tmp_path,
        {
            "account": "123456789012",
            "cluster_name": "app-mesh-dev",
            "mesh_name": "app-mesh-dev",
            "cloud_map_namespace": "appmesh-dev.pvt.local",
        },
    )
    stage = pipeline_synth.application.stages["dev"].application
    assert [s.stack_name for s in stage.stacks] == [f"Dev-{s.stack_name}" for s in direct.application.stacks]
    for staged, plain in zip(stage.stacks, direct.application.stacks, strict=True):
        assert _normalized(pipeline_synth.template_json(staged)) == _normalized(direct.template_json(plain)), plain.stack_name


def test_without_pipeline_config_there_is_no_pipeline(default_synth: Synthesized) -> None:
    assert not list(default_synth.outdir.glob("*Pipeline*"))
    assert not list(default_synth.outdir.glob("assembly-*"))


def test_pipeline_has_no_unacknowledged_nag_findings(pipeline_synth: Synthesized) -> None:
    violations = nag_violations(pipeline_synth.outdir)
    assert violations == []
    assert pipeline_synth.error is None


def test_pipeline_templates_pass_cfn_lint(pipeline_synth: Synthesized) -> None:
    templates = [
        str(p) for p in [*pipeline_synth.outdir.glob("*.template.json"), *pipeline_synth.outdir.glob("assembly-*/*.template.json")]
    ]
    # E3703 (prefer Fn::Sub) is a style rule filed as an error; the Fn::Joins are CDK Pipelines' own.
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", "--ignore-checks", "W", "E3703", "--", *templates],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"pipeline_connection_arn": "arn:aws:s3:::bucket"},
            "config error: pipeline_connection_arn='arn:aws:s3:::bucket': must be a CodeConnections connection ARN",
        ),
        ({"pipeline_connection_arn": CONNECTION}, "config error: pipeline_repository=None: must be owner/name"),
        ({"pipeline_repository": "a/b"}, "config error: pipeline_repository='a/b': has no effect without pipeline_connection_arn"),
        ({**PIPELINE, "pipeline_stages": "dev,Prod"}, "config error: pipeline_stages='Prod': stage names are lower-case"),
        ({**PIPELINE, "pipeline_stages": "dev,dev"}, "config error: pipeline_stages=['dev', 'dev']: lists a stage twice"),
        (
            {**PIPELINE, "pipeline_docker_hub_secret": "arn:aws:secretsmanager:us-west-1:123456789012:secret:dh-AbCdEf"},
            "config error: pipeline_docker_hub_secret='arn:aws:secretsmanager:us-west-1:123456789012:secret:dh-AbCdEf': "
            "must be the name of a Secrets Manager secret",
        ),
        (
            {"pipeline_docker_hub_secret": "dh"},
            "config error: pipeline_docker_hub_secret='dh': has no effect without pipeline_connection_arn",
        ),
        (
            {**PIPELINE, "pipeline_approval_stages": "staging"},
            "config error: pipeline_approval_stages='staging': is not one of pipeline_stages (dev, prod)",
        ),
    ],
)
def test_pipeline_settings_are_validated(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(**settings)
    assert re.escape(message) and str(caught.value).startswith(message)


def test_pipeline_defaults_dev_then_prod_with_approval_and_protection() -> None:
    pipeline = config_with(**PIPELINE).pipeline
    assert pipeline is not None
    assert (pipeline.stages, pipeline.approval_stages, pipeline.protected_stages, pipeline.branch) == (
        ("dev", "prod"),
        ("prod",),
        ("prod",),
        "main",
    )


def test_the_same_stage_definition_deploys_istio(istio_pipeline: Synthesized, tmp_path: Path) -> None:
    """The backend is a setting the pipeline replays: an Istio pipeline's stage is the direct
    Istio synth, stack for stack."""
    staged = istio_pipeline
    direct = synthesize(
        tmp_path / "direct",
        {"account": "123456789012", "cluster_name": "app-mesh-dev", "mesh_name": "app-mesh-dev", "mesh_backend": "istio"},
    )
    stage = staged.application.stages["dev"].application
    assert stage.backend.name == "istio" and stage.preflight is None and stage.discovery is None
    assert [s.stack_name for s in stage.stacks] == [f"Dev-{s.stack_name}" for s in direct.application.stacks]
    for staged_stack, plain in zip(stage.stacks, direct.application.stacks, strict=True):
        assert _normalized(staged.template_json(staged_stack)) == _normalized(direct.template_json(plain)), plain.stack_name
    (synth,) = [
        p
        for p in staged.template_json(staged.application)["Resources"].values()
        if p["Type"] == "AWS::CodeBuild::Project" and "make test" in json.dumps(p)
    ]
    assert "mesh_backend=istio" in json.dumps(synth["Properties"]["Source"]["BuildSpec"])


def _lookups(outdir: Path) -> dict[str, list[str]]:
    """Each cloud assembly (the top one and each stage's) -> the context lookups it leaves to the
    CLI (`missing` in its manifest), which would need credentials and the bootstrap lookup role."""
    return {
        str(manifest.relative_to(outdir)): [entry["key"] for entry in json.loads(manifest.read_text()).get("missing", [])]
        for manifest in [outdir / "manifest.json", *sorted(outdir.glob("assembly-*/manifest.json"))]
    }


_GET_AZS = [{"Fn::Select": [index, {"Fn::GetAZs": ""}]} for index in (0, 1)]


def test_the_stages_and_the_direct_app_synthesize_with_an_account_and_no_lookup(pipeline_synth: Synthesized, tmp_path: Path) -> None:
    """In CodeBuild the app sees a real account; the pipeline's synth role may not assume the
    lookup role and cdk.context.json is not committed, so nothing may need a lookup. The zones
    are CloudFormation's (Fn::GetAZs), as in an environment-agnostic synth."""
    direct = synthesize(tmp_path, {"account": "123456789012"})
    assert _lookups(pipeline_synth.outdir) == {
        "manifest.json": [],
        "assembly-AppMesh-Pipeline-Dev/manifest.json": [],
        "assembly-AppMesh-Pipeline-Prod/manifest.json": [],
    }
    assert _lookups(direct.outdir) == {"manifest.json": []}
    for synth, network in (
        (direct, direct.application.network),
        (pipeline_synth, pipeline_synth.application.stages["dev"].application.network),
    ):
        subnets = synth.template(network).find_resources("AWS::EC2::Subnet")
        assert sorted((s["Properties"]["AvailabilityZone"] for s in subnets.values()), key=json.dumps) == sorted(
            _GET_AZS * 2, key=json.dumps
        )


def test_named_zones_need_no_lookup_either(tmp_path: Path) -> None:
    zones = "us-west-1a,us-west-1b,us-west-1c"
    direct = synthesize(tmp_path, {"account": "123456789012", "availability_zones": zones, "max_azs": 3})
    assert _lookups(direct.outdir) == {"manifest.json": []}
    subnets = direct.template(direct.application.network).find_resources("AWS::EC2::Subnet")
    assert sorted(s["Properties"]["AvailabilityZone"] for s in subnets.values()) == sorted(zones.split(",") * 2)


def _docker_credentials(project: dict[str, Any]) -> dict[str, Any] | None:
    """The Docker credentials file a CodeBuild project's pre_build writes for cdk-assets, parsed."""
    commands = json.loads(project["Source"]["BuildSpec"])["phases"].get("pre_build", {}).get("commands", [])
    written = [c for c in commands if c.endswith("> $HOME/.cdk/cdk-docker-creds.json")]
    return json.loads(shlex.split(written[0])[1]) if written else None


def test_a_docker_hub_secret_logs_the_asset_builds_in(istio_pipeline: Synthesized) -> None:
    """docker.io allows an anonymous address 10 pulls an hour and CodeBuild's addresses are shared:
    with `pipeline_docker_hub_secret`, every project that builds an image logs in with the secret."""
    template = istio_pipeline.template_json(istio_pipeline.application)
    resources = template["Resources"].values()
    builds = [
        r["Properties"] for r in resources if r["Type"] == "AWS::CodeBuild::Project" and r["Properties"]["Environment"]["PrivilegedMode"]
    ]
    secret = "arn:aws:secretsmanager:us-west-1:123456789012:secret:dockerhub/appmesh-eks"
    # The services' images (FROM ruby, node, crystallang) and Istio's mirrors (FROM docker.io/istio).
    assert sorted(p["Description"].rsplit("/", 1)[1] for p in builds) == [
        "Istio_install-cni_1.31.4_image",
        "Istio_pilot_1.31.4_image",
        "Istio_proxyv2_1.31.4_image",
        "crystal_image",
        "frontend_image",
        "nodejs_image",
        "nodejsv2_image",
    ]
    for project in builds:
        assert _docker_credentials(project) == {
            "version": "1.0",
            "domainCredentials": {"https://index.docker.io/v1/": {"secretsManagerSecretId": secret}},
        }
    (docker_policy,) = [
        r for r in resources if r["Type"] == "AWS::IAM::Policy" and "AssetsDockerRole" in json.dumps(r["Properties"]["Roles"])
    ]
    assert {
        "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
        "Effect": "Allow",
        "Resource": secret + "-??????",
    } in docker_policy["Properties"]["PolicyDocument"]["Statement"]


def test_without_a_docker_hub_secret_nothing_logs_in(pipeline_template: dict[str, Any]) -> None:
    projects = [r["Properties"] for r in pipeline_template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"]
    assert [_docker_credentials(p) for p in projects] == [None] * len(projects)
    assert "secretsmanager:GetSecretValue" not in json.dumps(pipeline_template)
