"""The canary's steps in the pipeline: after a stage's deploy, its analysis; then one pipeline stage
per further step, which deploys the step and judges it. A verdict other than promote deploys the
previous step's weights and stops the pipeline, with the figures in the step's output.

Each step is one command, `python3 scripts/canary_step.py judge|deploy ...`: CodeBuild runs each
buildspec command in a shell of its own (an `exit 0` or a `set -e` reaches no further than its
command), so the decision is one process whose exit status is the step's. The step's image (the
synth step's: python3, pip and make) gets botocore installed first, from canary/requirements.txt;
nothing calls an AWS CLI or a Node.js the image does not have.

A step is deployed the way a person shifts the canary by hand (`make deploy -c weights...`): the
project is synthesized with the pipeline's own settings plus the step's weights (and the verdict the
frontend shows), and `cdk deploy --exclusively` (scripts/cdk_run.py deploy-stack, with the venv's
Node.js) updates the stage's routing stack alone. The weights change nothing else (tests/stacks: a
canary step changes exactly one manifest), so the change set holds one resource: the virtual
service's routing manifest. `cdk deploy` goes through the CDK bootstrap's roles, as the pipeline's
own deploy actions do.

A step is judged by the stage's in-VPC analysis project (components/canary_analysis.py), started
with STEP=n; the pipeline's step waits for it, prints its log (the figures) and reads its exported
VERDICT: promote, wait (never enough requests, after the waits allowed), roll back, or error. Any
error on the way (an AWS call refused, the analysis build failed or timed out) is no promotion.

After its verdict, a step stores the stage's canary state in an SSM parameter (the weights it left,
the verdict, the candidate's fingerprint); the pipeline's synth reads it back at the next run
(stacks/pipeline.py), so that a new commit resumes the canary of the same candidate rather than
starting it again.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import ArnFormat, CfnOutput, Duration, FileSystem, IgnoreMode, Stack, pipelines
from aws_cdk import aws_iam as iam

from config.topology import Service, VirtualService

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The CDK bootstrap's default qualifier: the roles `cdk deploy` assumes are named with it.
QUALIFIER = "hnb659fds"
BOOTSTRAP_ROLES = ("deploy", "file-publishing", "lookup")
STEP_SCRIPT = "scripts/canary_step.py"
# botocore, as the analysis tool pins it: the script's AWS calls.
INSTALL_BOTOCORE = "python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r canary/requirements.txt"


def bootstrap_role(stack: Stack, purpose: str) -> str:
    return stack.format_arn(
        service="iam", region="", resource="role", resource_name=f"cdk-{QUALIFIER}-{purpose}-role-{stack.account}-{stack.region}"
    )


def state_parameter(pipeline: str, stage: str, virtual_service: str) -> str:
    """The SSM parameter that keeps a stage's canary state: one per pipeline, stage and virtual
    service. Not a CloudFormation resource: a deploy must never reset it."""
    return f"/appmesh-eks/{pipeline}/{stage}/canary/{virtual_service}"


def parameter_arn(stack: Stack, name: str) -> str:
    return stack.format_arn(service="ssm", resource="parameter", resource_name=name.lstrip("/"))


def source_fingerprint(directory: Path, build_args: tuple[tuple[str, str], ...] = ()) -> str:
    """What a service's image is built from: its folder as Docker sends it (its .dockerignore
    applied, the Dockerfile always in, as DockerImageAsset has it) and its build arguments, hashed
    by the CDK's own fingerprint: offline, and the same on every machine (contents, not times)."""
    ignore = directory / ".dockerignore"
    patterns = [line.strip() for line in ignore.read_text().splitlines()] if ignore.exists() else []
    exclude = [pattern for pattern in patterns if pattern and not pattern.startswith("#")]
    return FileSystem.fingerprint(
        str(directory),
        exclude=[*exclude, "!Dockerfile", "!.dockerignore"],
        ignore_mode=IgnoreMode.DOCKER,
        extra_hash=json.dumps(dict(build_args), sort_keys=True),
    )


def candidate_fingerprint(candidate: Service) -> str:
    return source_fingerprint(PROJECT_ROOT / candidate.source, candidate.build_args)


def _weights(step: tuple[int, int]) -> str:
    return f"{step[0]}:{step[1]}"


def _targets(targets: tuple[tuple[str, int], ...]) -> str:
    return ",".join(f"{target}:{weight}" for target, weight in targets)


@dataclass(frozen=True)
class CanaryPlan:
    """One pipeline stage's canary: where its routing stack is, how to judge and shift it, and
    where its state is kept."""

    routing_stack: Stack
    virtual_service: VirtualService
    synth_args: str  # the `-c` settings the pipeline was synthesized with
    analysis_project: CfnOutput
    analysis_log_group: str
    parameter_name: str
    fingerprint: str  # the candidate's (candidate_fingerprint), stored with each verdict

    @property
    def stack_path(self) -> str:
        """How `cdk deploy --app cdk.out` names the stage's routing stack: its construct path
        (AppMesh-Pipeline/Prod/AppMesh-MeshRouting)."""
        return self.routing_stack.node.path

    def _where(self) -> list[str]:
        return [f"--synth-args={self.synth_args}", "--virtual-service", self.virtual_service.name, "--stack", self.stack_path]

    def deploy_command(self, targets: tuple[tuple[str, int], ...], verdict: str) -> str:
        return shlex.join(["python3", STEP_SCRIPT, "deploy", *self._where(), "--targets", _targets(targets), "--verdict", verdict])

    def judge_command(self, step: int) -> str:
        """Judge step `step` (0-based); not promoted: deploy where the canary's `roll_back_to`
        says (the step before, or every request to the baseline), and fail."""
        canary = self.virtual_service.canary
        assert canary is not None
        label = f"step {step + 1} ({_weights(canary.steps[step])})"
        back, back_label = canary.roll_back(step)
        words = [
            "python3",
            STEP_SCRIPT,
            "judge",
            *self._where(),
            "--step",
            str(step + 1),
            "--step-weights",
            _weights(canary.steps[step]),
            "--step-targets",
            _targets(canary.targets(step)),
            "--promote-reason",
            f"{label} was promoted by its analysis",
            "--rollback-label",
            back_label,
            "--rollback-targets",
            _targets(back),
            "--rollback-reason",
            f"rolled back from {label}; its analysis did not promote it",
            "--log-group",
            self.analysis_log_group,
            "--analysis-minutes",
            str(canary.analysis_timeout_minutes),
            "--parameter",
            self.parameter_name,
            "--fingerprint",
            self.fingerprint,
        ]
        # The project's name comes from the stage's output, in the step's environment.
        return f'{shlex.join(words)} --project "$ANALYSIS_PROJECT"'

    def _role_statements(self, stack: Stack) -> list[iam.PolicyStatement]:
        return [
            # `cdk deploy` as the pipeline deploys: through the bootstrap's roles, and no others.
            iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[bootstrap_role(stack, purpose) for purpose in BOOTSTRAP_ROLES])
        ]

    def analysis(
        self, stack: Stack, id: str, *, source: pipelines.IFileSetProducer, step: int, defaults: pipelines.CodeBuildOptions
    ) -> pipelines.CodeBuildStep:
        """Judge step `step` (0-based), and act on the verdict."""
        canary = self.virtual_service.canary
        assert canary is not None
        project_arn = stack.format_arn(
            service="codebuild", resource="project", resource_name=f"{self.routing_stack.stack_name}-canary-analysis"
        )
        log_group_arn = stack.format_arn(
            service="logs", resource="log-group", resource_name=f"{self.analysis_log_group}:*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        return pipelines.CodeBuildStep(
            id,
            input=source,
            install_commands=[INSTALL_BOTOCORE],
            commands=[self.judge_command(step)],
            build_environment=defaults.build_environment,
            # The analysis (its settle, its waits, its setup), then a roll back: config.canary says how long each takes.
            timeout=Duration.minutes(canary.analysis_step_timeout_minutes),
            env_from_cfn_outputs={"ANALYSIS_PROJECT": self.analysis_project},
            role_policy_statements=[
                # Exactly the stage's analysis project, by its fixed name (a token from the stage
                # cannot cross into the pipeline stack), and its log group.
                iam.PolicyStatement(
                    actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild"], resources=[project_arn]
                ),
                iam.PolicyStatement(actions=["logs:GetLogEvents"], resources=[log_group_arn]),
                # The stage's canary state, written after the verdict; nothing else of SSM.
                iam.PolicyStatement(actions=["ssm:PutParameter"], resources=[parameter_arn(stack, self.parameter_name)]),
                *self._role_statements(stack),
            ],
        )

    def deploy_and_analysis(
        self, stack: Stack, id: str, *, source: pipelines.IFileSetProducer, step: int, defaults: pipelines.CodeBuildOptions
    ) -> list[pipelines.Step]:
        """Deploy step `step` (0-based), then judge it."""
        canary = self.virtual_service.canary
        assert canary is not None
        promoted = (
            f"promote: step {step} ({_weights(canary.steps[step - 1])}) was promoted by its analysis"
            if step > 0
            else "deployed: the canary's first step"
        )
        deploy = pipelines.CodeBuildStep(
            f"{id}-deploy",
            input=source,
            commands=[self.deploy_command(canary.targets(step), promoted)],
            build_environment=defaults.build_environment,
            timeout=Duration.minutes(canary.deploy_step_timeout_minutes),
            role_policy_statements=self._role_statements(stack),
        )
        analysis = self.analysis(stack, id, source=source, step=step, defaults=defaults)
        analysis.add_step_dependency(deploy)
        return [deploy, analysis]
