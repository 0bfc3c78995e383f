"""A CodeBuild project that runs inside the VPC's private subnets, started by name.

The application's checks that must run where its services are (the smoke test, the canary
analysis) live in the application, not in the pipeline stack, because only the application knows
its VPC: a pipeline step cannot reference a stage's resources at synth time. The pipeline starts
them by their fixed names (`<stack>-<purpose>`), and anyone can with `aws codebuild start-build`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from .log_groups import log_group
from .nag import acknowledge, checkov_skip, codebuild_project_findings


def project_name(scope: Construct, purpose: str) -> str:
    """The fixed name the pipeline starts the project by."""
    return f"{Stack.of(scope).stack_name}-{purpose}"


def vpc_build_project(
    scope: Construct,
    *,
    purpose: str,
    description: str,
    key_description: str,
    group_description: str,
    vpc: ec2.IVpc,
    build_spec: Mapping[str, Any],
    environment_variables: Mapping[str, str],
    log_retention_days: int,
    timeout: Duration,
    source: codebuild.ISource | None = None,
    log_group_name: str | None = None,
) -> tuple[codebuild.Project, logs.LogGroup]:
    """The project, egress only, its artifacts and logs under a key of its own, built in `scope`
    (construct ids Key, Logs, SecurityGroup, Project)."""
    key = kms.Key(scope, "Key", enable_key_rotation=True, removal_policy=RemovalPolicy.DESTROY, description=key_description)
    logs_group = log_group(scope, "Logs", days=log_retention_days, name=log_group_name)
    security_group = ec2.SecurityGroup(scope, "SecurityGroup", vpc=vpc, description=group_description)
    project = codebuild.Project(
        scope,
        "Project",
        # A fixed name, so the pipeline may start exactly this project and no other.
        project_name=project_name(scope, purpose),
        source=source,
        security_groups=[security_group],
        description=description,
        vpc=vpc,
        subnet_selection=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        encryption_key=key,
        timeout=timeout,
        environment=codebuild.BuildEnvironment(build_image=codebuild.LinuxBuildImage.STANDARD_7_0),
        environment_variables={name: codebuild.BuildEnvironmentVariable(value=value) for name, value in environment_variables.items()},
        logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=logs_group)),
        build_spec=codebuild.BuildSpec.from_object(dict(build_spec)),
    )
    document = project.node.try_find_child("PolicyDocument")
    assert document is not None
    checkov_skip(
        document,
        {"CKV_AWS_111": "CodeBuild's own ENI management in the VPC (ec2:CreateNetworkInterface and friends), which EC2 cannot scope"},
    )
    acknowledge(
        project,
        "Grants aws-codebuild writes for every project: managing its ENIs in the VPC (EC2 "
        "supports no narrower resource for CreateNetworkInterface and friends), its default log "
        "group and report groups (named after the project, with run-time suffixes), and the "
        "KMS data-key actions for its own key.",
        "IAM5[Resource::*]",
        "IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface/*]",
        *codebuild_project_findings(Stack.of(scope), project.project_name),
        "IAM5[Action::kms:GenerateDataKey*]",
        "IAM5[Action::kms:ReEncrypt*]",
    )
    return project, logs_group
