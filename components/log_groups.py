"""Log groups the app owns: retention from config, encrypted with one KMS key per stack."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from config.settings import LOG_RETENTION_DAYS

_KEY_ID = "LogsKey"


def retention(days: int) -> logs.RetentionDays:
    # RetentionDays lists the finite periods in the same ascending order as CloudWatch's
    # accepted values (LOG_RETENTION_DAYS); jsii exposes only the member names, not the days.
    return list(logs.RetentionDays)[LOG_RETENTION_DAYS.index(days)]


def logs_key(scope: Construct) -> kms.Key:
    """The stack's key for its log groups (one key, not one per group: keys cost $1/month)."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(_KEY_ID)
    if isinstance(existing, kms.Key):
        return existing
    key = kms.Key(
        stack,
        _KEY_ID,
        description=f"Encrypts the CloudWatch log groups of {stack.stack_name}",
        enable_key_rotation=True,
        removal_policy=RemovalPolicy.DESTROY,
    )
    # CloudWatch Logs encrypts with the key on the log group's behalf, for this account's groups.
    key.add_to_resource_policy(
        iam.PolicyStatement(
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs", resource="log-group", resource_name="*", arn_format=ArnFormat.COLON_RESOURCE_NAME
                    )
                }
            },
        )
    )
    return key


def log_group(scope: Construct, id: str, *, days: int, name: str | None = None) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        id,
        log_group_name=name,
        retention=retention(days),
        encryption_key=logs_key(scope),
        removal_policy=RemovalPolicy.DESTROY,
    )
