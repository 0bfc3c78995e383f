"""The canary's steps in the pipeline: after a stage's deploy, its analysis; then one pipeline stage
per further step, which deploys the step and judges it. A verdict other than promote deploys the
previous step's weights and stops the pipeline, with the figures in the step's output.

A step is deployed the way a person shifts the canary by hand (`make deploy -c weights...`): the
project is synthesized with the pipeline's own settings plus the step's weights (and the verdict the
frontend shows), and `cdk deploy --exclusively` updates the stage's routing stack alone. The weights
change nothing else (tests/stacks: a canary step changes exactly one manifest), so the change set
holds one resource: the virtual service's routing manifest. `cdk deploy` goes through the CDK
bootstrap's roles, as the pipeline's own deploy actions do.

A step is judged by the stage's in-VPC analysis project (components/canary_analysis.py), started
with STEP=n; the pipeline's step waits for it, prints its log (the figures) and reads its exported
VERDICT: promote, wait (never enough requests, after the waits allowed), roll back, or error.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from aws_cdk import ArnFormat, CfnOutput, Stack, pipelines
from aws_cdk import aws_iam as iam

from config.topology import VirtualService

# The CDK bootstrap's default qualifier: the roles `cdk deploy` assumes are named with it.
QUALIFIER = "hnb659fds"
BOOTSTRAP_ROLES = ("deploy", "file-publishing", "lookup")
POLL_SECONDS = 20


def bootstrap_role(stack: Stack, purpose: str) -> str:
    return stack.format_arn(
        service="iam", region="", resource="role", resource_name=f"cdk-{QUALIFIER}-{purpose}-role-{stack.account}-{stack.region}"
    )


def deploy_commands(
    synth_args: str, virtual_service: str, targets: tuple[tuple[str, int], ...], verdict: str, stack_path: str
) -> list[str]:
    """Synthesize with the pipeline's settings at these weights, then deploy the routing stack alone."""
    weights = ",".join(f"{target}:{weight}" for target, weight in targets)
    args = f"{synth_args} -c {shlex.quote(f'weights.{virtual_service}={weights}')} -c {shlex.quote(f'canary_verdict={verdict}')}"
    return [
        f"make synth CDK_ARGS={shlex.quote(args.strip())}",
        f"node_modules/.bin/cdk deploy --app cdk.out {shlex.quote(stack_path)} --exclusively --require-approval never --progress events",
    ]


def analysis_commands(rollback: list[str]) -> list[str]:
    """Judge step $STEP with the stage's analysis project; exit 0 on a promotion, else run
    `rollback` and exit 1. POSIX sh, one shell for every line (buildspec 0.2)."""
    return [
        "set -eu",
        'BUILD_ID=$(aws codebuild start-build --project-name "$ANALYSIS_PROJECT" '
        '--environment-variables-override "name=STEP,value=$STEP,type=PLAINTEXT" --query build.id --output text)',
        'echo "canary: analysis of step $STEP ($STEP_WEIGHTS): build $BUILD_ID"',
        'while true; do STATUS=$(aws codebuild batch-get-builds --ids "$BUILD_ID" --query "builds[0].buildStatus" --output text); '
        f'if [ "$STATUS" != IN_PROGRESS ]; then break; fi; sleep {POLL_SECONDS}; done',
        'VERDICT=$(aws codebuild batch-get-builds --ids "$BUILD_ID" '
        "--query \"builds[0].exportedEnvironmentVariables[?name=='VERDICT'].value | [0]\" --output text)",
        'STREAM=$(aws codebuild batch-get-builds --ids "$BUILD_ID" --query "builds[0].logs.streamName" --output text)',
        # The figures behind the verdict, from the analysis build's log.
        'aws logs get-log-events --log-group-name "$ANALYSIS_LOG_GROUP" --log-stream-name "$STREAM" --start-from-head '
        '--query "events[].message" --output text || echo "canary: the analysis log could not be read"',
        'if [ "$STATUS" = SUCCEEDED ] && [ "$VERDICT" = promote ]; then echo "canary: step $STEP ($STEP_WEIGHTS) promoted"; exit 0; fi',
        'echo "canary: step $STEP ($STEP_WEIGHTS) not promoted (analysis $STATUS, verdict $VERDICT): rolling back to $ROLLBACK_WEIGHTS"',
        *rollback,
        'echo "canary: back at $ROLLBACK_WEIGHTS; the pipeline stops here"',
        "exit 1",
    ]


def _weights(step: tuple[int, int]) -> str:
    return f"{step[0]}:{step[1]}"


@dataclass(frozen=True)
class CanaryPlan:
    """One pipeline stage's canary: where its routing stack is, and how to judge and shift it."""

    routing_stack: Stack
    virtual_service: VirtualService
    synth_args: str  # the `-c` settings the pipeline was synthesized with
    analysis_project: CfnOutput
    analysis_log_group: str

    @property
    def stack_path(self) -> str:
        """How `cdk deploy --app cdk.out` names the stage's routing stack: its construct path
        (AppMesh-Pipeline/Prod/AppMesh-MeshRouting)."""
        return self.routing_stack.node.path

    def _deploy(self, targets: tuple[tuple[str, int], ...], verdict: str) -> list[str]:
        return deploy_commands(self.synth_args, self.virtual_service.name, targets, verdict, self.stack_path)

    def _role_statements(self, stack: Stack) -> list[iam.PolicyStatement]:
        return [
            # `cdk deploy` as the pipeline deploys: through the bootstrap's roles, and no others.
            iam.PolicyStatement(actions=["sts:AssumeRole"], resources=[bootstrap_role(stack, purpose) for purpose in BOOTSTRAP_ROLES])
        ]

    def analysis(
        self, stack: Stack, id: str, *, source: pipelines.IFileSetProducer, step: int, defaults: pipelines.CodeBuildOptions
    ) -> pipelines.CodeBuildStep:
        """Judge step `step` (0-based); not promoted: deploy the step before (or, from the first,
        every request to the baseline)."""
        canary = self.virtual_service.canary
        assert canary is not None
        if step > 0:
            back, back_weights = canary.targets(step - 1), _weights(canary.steps[step - 1])
        else:
            back, back_weights = canary.rolled_back, f"every request to {canary.baseline}"
        reason = f"roll back: rolled back from step {step + 1} ({_weights(canary.steps[step])}); its analysis did not promote it"
        project_arn = stack.format_arn(
            service="codebuild", resource="project", resource_name=f"{self.routing_stack.stack_name}-canary-analysis"
        )
        log_group_arn = stack.format_arn(
            service="logs", resource="log-group", resource_name=f"{self.analysis_log_group}:*", arn_format=ArnFormat.COLON_RESOURCE_NAME
        )
        return pipelines.CodeBuildStep(
            id,
            input=source,
            commands=analysis_commands(self._deploy(back, reason)),
            build_environment=defaults.build_environment,
            env={
                "STEP": str(step + 1),
                "STEP_WEIGHTS": _weights(canary.steps[step]),
                "ROLLBACK_WEIGHTS": back_weights,
                "ANALYSIS_LOG_GROUP": self.analysis_log_group,
            },
            env_from_cfn_outputs={"ANALYSIS_PROJECT": self.analysis_project},
            role_policy_statements=[
                # Exactly the stage's analysis project, by its fixed name (a token from the stage
                # cannot cross into the pipeline stack), and its log group.
                iam.PolicyStatement(actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds"], resources=[project_arn]),
                iam.PolicyStatement(actions=["logs:GetLogEvents"], resources=[log_group_arn]),
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
            commands=["set -eu", *self._deploy(canary.targets(step), promoted)],
            build_environment=defaults.build_environment,
            role_policy_statements=self._role_statements(stack),
        )
        analysis = self.analysis(stack, id, source=source, step=step, defaults=defaults)
        analysis.add_step_dependency(deploy)
        return [deploy, analysis]
