"""CDK Pipelines: the same application, promoted through stages (dev, then prod behind approval).

`cdk deploy --all` deploys only top-level stacks, so the direct path (app.py without pipeline
config) calls `build_application` at the top level, and each pipeline stage calls it inside an
`AppMeshStage`: one definition of the application either way, which a test checks by comparing
the templates.

A canary stage starts where its canary stands: the synth step reads what the stage's last canary
step stored (an SSM parameter per stage, stacks/canary_steps.py) and passes it as
`-c canary_state.<stage>=JSON`. When the stored fingerprint is the candidate's as this commit has
it, the stage deploys the stored weights and goes on from there (a promoted step: the next one; a
roll back: nothing more, until the candidate changes); otherwise a new canary starts at the
configured weights.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from aws_cdk import ArnFormat, Environment, Stack, Stage, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from components.nag import acknowledge, codebuild_project_findings, rendered, wildcard_resource
from config.canary import CanaryState, resumed_state
from config.settings import AppConfig, PipelineConfig
from config.topology import VirtualService
from mesh.canary import canary_virtual_service, with_state

from .application import Application, build_application
from .canary_steps import INSTALL_BOTOCORE, STEP_SCRIPT, CanaryPlan, candidate_fingerprint, parameter_arn, state_parameter

SYNTH_IMAGE = "public.ecr.aws/docker/library/python:3.11.7-bookworm"
# Start the in-VPC smoke-test project of the stage just deployed and fail unless it succeeds.
_RUN_SMOKE_TEST = [
    'BUILD_ID=$(aws codebuild start-build --project-name "$SMOKE_TEST_PROJECT" --query build.id --output text)',
    'echo "smoke test build $BUILD_ID"',
    "while true; do "
    'STATUS=$(aws codebuild batch-get-builds --ids "$BUILD_ID" --query "builds[0].buildStatus" --output text); '
    'case "$STATUS" in SUCCEEDED) exit 0;; IN_PROGRESS) sleep 15;; *) echo "smoke test: $STATUS"; exit 1;; esac; '
    "done",
]


def synth_environment() -> codebuild.BuildEnvironment:
    """The Debian release and Python the project is developed and tested on: `make test` installs
    Ruby and Crystal from Debian's packages, and a canary step synthesizes as the synth step does."""
    return codebuild.BuildEnvironment(
        build_image=codebuild.LinuxBuildImage.from_docker_registry(SYNTH_IMAGE), compute_type=codebuild.ComputeType.LARGE
    )


def stage_config(config: AppConfig, stage: str, protected: bool) -> AppConfig:
    """The application's config for one stage. Stages share an account and region, so the names
    that are unique per account and region carry the stage: the EKS cluster, the mesh, and the
    Cloud Map namespace (the App Mesh controller takes the first namespace with its name, so two
    stages with one name would register in each other's)."""
    first, _, rest = config.discovery.cloud_map_namespace.partition(".")
    return dataclasses.replace(
        config,
        pipeline=None,
        termination_protection=protected,
        cluster=dataclasses.replace(config.cluster, name=f"{config.cluster.name}-{stage}"),
        mesh=dataclasses.replace(config.mesh, mesh_name=f"{config.mesh.mesh_name}-{stage}"),
        discovery=dataclasses.replace(config.discovery, cloud_map_namespace=f"{first}-{stage}.{rest}"),
    )


def resume_canary(config: AppConfig, virtual_service: VirtualService, state: CanaryState) -> AppConfig:
    """A stage's config with its canary where the stored state left it, and its verdict shown."""
    return dataclasses.replace(
        config,
        mesh=dataclasses.replace(
            config.mesh,
            topology=with_state(config.mesh.topology, virtual_service.name, state),
            canary_verdict=(state.verdict, state.reason),
        ),
    )


class AppMeshStage(Stage):
    def __init__(self, scope: Construct, id: str, *, config: AppConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.application: Application = build_application(self, config)


class PipelineStack(Stack):
    def __init__(
        self, scope: Construct, id: str, *, config: AppConfig, pipeline: PipelineConfig, synth_context: dict[str, str], **kwargs: Any
    ) -> None:
        super().__init__(scope, id, **kwargs)
        source = pipelines.CodePipelineSource.connection(pipeline.repository, pipeline.branch, connection_arn=pipeline.connection_arn)
        # Synthesize with the same settings this pipeline was synthesized with.
        cdk_args = " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in sorted(synth_context.items()))
        canary = canary_virtual_service(config.mesh.topology.virtual_services) if pipeline.canary_stages else None
        parameters = {stage: state_parameter(self.stack_name, stage, canary.name) for stage in pipeline.canary_stages} if canary else {}
        synth = self._synth_step(source, cdk_args, parameters)
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            synth=synth,
            synth_code_build_defaults=pipelines.CodeBuildOptions(build_environment=synth_environment()),
            enable_key_rotation=True,
            cross_account_keys=True,
            docker_credentials=self._docker_credentials(pipeline),
        )
        env = Environment(account=config.account, region=config.region)
        self.stages: dict[str, AppMeshStage] = {}
        self._canary_log_groups: list[str] = []
        self._protected_stacks: list[str] = []
        # The candidate as this commit builds it: a stored state of another candidate does not apply.
        fingerprint = candidate_fingerprint(config.mesh.topology.service(canary.canary.candidate)) if canary and canary.canary else ""
        resumed: dict[str, CanaryState | None] = {
            stage: resumed_state(canary.canary, pipeline.canary_state(stage), fingerprint) if canary and canary.canary else None
            for stage in pipeline.canary_stages
        }
        for name in pipeline.stages:
            stage_settings = stage_config(config, name, name in pipeline.protected_stages)
            state = resumed.get(name)
            if canary is not None and state is not None:
                stage_settings = resume_canary(stage_settings, canary, state)
            stage = AppMeshStage(self, name.capitalize(), config=stage_settings, env=env)
            self.stages[name] = stage
            pre: list[pipelines.Step] = []
            if name in pipeline.approval_stages:
                pre.append(pipelines.ManualApprovalStep(f"Approve-{name}", comment=f"Promote to {name}?"))
            post: list[pipelines.Step] = [self._smoke_test(name, stage)]
            if name in pipeline.protected_stages:
                post.append(self._protect(name, stage))
            later: list[tuple[str, list[pipelines.Step]]] = []
            if canary is not None and name in pipeline.canary_stages:
                stage_canary = canary_virtual_service(stage_settings.mesh.topology.virtual_services)
                assert stage_canary is not None
                analysis, later = self._canary_steps(
                    stage, name, stage_canary, source, cdk_args, parameter=parameters[name], fingerprint=fingerprint, resumed=resumed[name]
                )
                if analysis is not None:
                    analysis.add_step_dependency(post[0])  # judged once the smoke test has passed
                    post.append(analysis)
            self.pipeline.add_stage(stage, pre=pre, post=post)
            for wave, steps in later:
                self.pipeline.add_wave(wave, post=steps)
        self.pipeline.build_pipeline()
        self._acknowledge_pipeline_internals()
        self._acknowledge_canary_logs()
        if self._protected_stacks:
            acknowledge(
                self.pipeline,
                "The protect step names each stack it protects; the '/*' is the id CloudFormation gives a stack when it "
                "creates it, which no template can know.",
                *(wildcard_resource(self, arn) for arn in self._protected_stacks),
            )

    def _synth_step(self, source: pipelines.IFileSetProducer, cdk_args: str, parameters: dict[str, str]) -> pipelines.ShellStep:
        """`make test`, then `make synth` with the pipeline's settings; with a canary, through
        scripts/canary_step.py, which adds what each canary stage's last step stored (read from
        SSM: this step's role may read those parameters and no others)."""
        if not parameters:
            return pipelines.ShellStep(
                "Synth",
                input=source,
                commands=["make test", f"make synth CDK_ARGS={shlex.quote(cdk_args)}"],
                primary_output_directory="cdk.out",
            )
        states = [word for stage, name in parameters.items() for word in ("--state", f"{stage}={name}")]
        return pipelines.CodeBuildStep(
            "Synth",
            input=source,
            commands=["make test", INSTALL_BOTOCORE, shlex.join(["python3", STEP_SCRIPT, "synth", f"--synth-args={cdk_args}", *states])],
            primary_output_directory="cdk.out",
            role_policy_statements=[
                iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[parameter_arn(self, name) for name in parameters.values()])
            ],
        )

    def _smoke_test(self, name: str, stage: AppMeshStage) -> pipelines.Step:
        return pipelines.CodeBuildStep(
            f"SmokeTest-{name}",
            commands=_RUN_SMOKE_TEST,
            env_from_cfn_outputs={"SMOKE_TEST_PROJECT": stage.application.routing.smoke_test_project},
            role_policy_statements=[
                iam.PolicyStatement(
                    actions=["codebuild:StartBuild", "codebuild:BatchGetBuilds"],
                    # The stage's project by its fixed name (a token from the stage cannot cross into the pipeline stack).
                    resources=[
                        self.format_arn(
                            service="codebuild", resource="project", resource_name=f"{stage.application.routing.stack_name}-smoke-test"
                        )
                    ],
                )
            ],
        )

    def _protect(self, name: str, stage: AppMeshStage) -> pipelines.Step:
        """Turn on the termination protection of the stage's stacks. The pipeline's CloudFormation
        deploy actions ignore the stacks' `termination_protection` (aws/aws-cdk#17871): only the CLI
        applies it. One command per stack: CodeBuild fails the build on the first that fails."""
        names = [stack.stack_name for stack in stage.application.stacks]
        arns = [self.format_arn(service="cloudformation", resource="stack", resource_name=f"{n}/*") for n in names]
        self._protected_stacks.extend(arns)
        return pipelines.CodeBuildStep(
            f"Protect-{name}",
            commands=[f"aws cloudformation update-termination-protection --enable-termination-protection --stack-name {n}" for n in names],
            role_policy_statements=[
                iam.PolicyStatement(
                    actions=["cloudformation:UpdateTerminationProtection"],
                    # Each stack by name; the trailing `/*` is CloudFormation's stack id, fixed only once it exists.
                    resources=arns,
                )
            ],
        )

    def _canary_steps(
        self,
        stage: AppMeshStage,
        name: str,
        canary: VirtualService,
        source: pipelines.IFileSetProducer,
        synth_args: str,
        *,
        parameter: str,
        fingerprint: str,
        resumed: CanaryState | None,
    ) -> tuple[pipelines.Step | None, list[tuple[str, list[pipelines.Step]]]]:
        """The analysis after the stage's own deploy, and a pipeline stage per further step: its
        deploy, then its analysis. The stage deploys the configured step (judged after it; none when
        the configuration has it rolled back), or where its stored state left the same candidate:
        a promoted step (the next steps follow, unjudged again), or a roll back (nothing follows
        until the candidate changes)."""
        assert canary.canary is not None
        routing = stage.application.routing
        assert routing.canary_analysis is not None and routing.canary_analysis_project is not None, (
            "the capability check lets a canary through only where it can be judged"
        )
        self._canary_log_groups.append(routing.canary_analysis.log_group_name)
        plan = CanaryPlan(
            routing_stack=routing,
            virtual_service=canary,
            synth_args=synth_args,
            analysis_project=routing.canary_analysis_project,
            analysis_log_group=routing.canary_analysis.log_group_name,
            parameter_name=parameter,
            fingerprint=fingerprint,
        )
        if resumed is not None and resumed.verdict == "roll back":
            return None, []
        current = canary.canary.step_of(canary.routes[0].targets)
        environment = pipelines.CodeBuildOptions(build_environment=synth_environment())
        first = None
        if current is not None and resumed is None:
            first = plan.analysis(self, f"Canary-{name}-step{current + 1}", source=source, step=current, defaults=environment)
        later = [
            (
                f"{stage.node.id}-canary-step{index + 1}",
                plan.deploy_and_analysis(self, f"Canary-{name}-step{index + 1}", source=source, step=index, defaults=environment),
            )
            for index in range((-1 if current is None else current) + 1, len(canary.canary.steps))
        ]
        return first, later

    def _acknowledge_canary_logs(self) -> None:
        """A canary step prints the analysis build's log: any stream of the one log group (CodeBuild
        names a stream per build)."""
        findings = [
            wildcard_resource(
                self,
                self.format_arn(service="logs", resource="log-group", resource_name=f"{group}:*", arn_format=ArnFormat.COLON_RESOURCE_NAME),
            )
            for group in self._canary_log_groups
        ]
        if findings:
            acknowledge(
                self.pipeline,
                "A canary step reads the log of the analysis build it started, to print the figures behind the verdict: the "
                "streams of that one log group, which CodeBuild names per build.",
                *findings,
            )

    def _docker_credentials(self, pipeline: PipelineConfig) -> list[pipelines.DockerCredential]:
        """Docker Hub login for every CodeBuild project that runs docker (synth, self-mutation,
        asset publishing): the services' base images and Istio's images come from docker.io."""
        if pipeline.docker_hub_secret is None:
            return []
        secret = secretsmanager.Secret.from_secret_name_v2(self, "DockerHubSecret", pipeline.docker_hub_secret)
        return [pipelines.DockerCredential.docker_hub(secret)]

    def _acknowledge_pipeline_internals(self) -> None:
        """Findings on the roles and bucket CDK Pipelines creates for itself.

        Each is named exactly (per CodeBuild project, by its logical id), so a wildcard anyone adds
        later still fails the check.
        """
        findings = [
            # The artifact bucket's object actions, granted by CodePipeline/CodeBuild to themselves.
            "IAM5[Action::s3:GetObject*]",
            "IAM5[Action::s3:GetBucket*]",
            "IAM5[Action::s3:List*]",
            "IAM5[Action::s3:DeleteObject*]",
            "IAM5[Action::s3:Abort*]",
            "IAM5[Action::kms:GenerateDataKey*]",
            "IAM5[Action::kms:ReEncrypt*]",
            f"IAM5[Resource::<{self.get_logical_id(self.pipeline.pipeline.artifact_bucket.node.default_child)}.Arn>/*]",  # type: ignore[arg-type]
            # CodeBuild's default log groups and report groups, and the bootstrap asset roles.
            wildcard_resource(
                self,
                self.format_arn(
                    service="logs", resource="log-group", resource_name="/aws/codebuild/*", arn_format=ArnFormat.COLON_RESOURCE_NAME
                ),
            ),
            wildcard_resource(self, self.format_arn(service="codebuild", resource="report-group", resource_name="*")),
            f"IAM5[Resource::arn:*:iam::{rendered(self, self.account)}:role/*]",
            # Self-mutation reads CloudFormation stacks, asset roles get ECR auth tokens: APIs
            # without resource-level permissions.
            "IAM5[Resource::*]",
        ]
        for project in self.node.find_all():
            if isinstance(project, codebuild.CfnProject):
                findings += codebuild_project_findings(self, f"<{self.get_logical_id(project)}>")
        acknowledge(
            self.pipeline,
            "CDK Pipelines' own roles: CodePipeline and CodeBuild grant themselves object-level "
            "wildcards on the pipeline's artifact bucket and KMS key, write their default log and "
            "report groups (named after each project), and assume the bootstrap roles "
            "(cdk-*-role) to publish assets.",
            *findings,
        )
        acknowledge(
            self.pipeline,
            "The synth step runs `make test`, which installs Ruby and Crystal from Debian's "
            "packages; the official Python image on Debian bookworm (pinned, from ECR Public) is the "
            "platform the project is developed and tested on, which CodeBuild's Ubuntu images are not.",
            "CB5",
        )
        acknowledge(
            self.pipeline,
            "The artifact bucket holds only pipeline artifacts, encrypted with the pipeline's key; "
            "CodePipeline and CloudTrail record every access, so server access logs would add a "
            "second log bucket without adding information.",
            "S1",
        )
