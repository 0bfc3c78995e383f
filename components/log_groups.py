"""Log groups: those the app owns (retention from config, encrypted with one KMS key per stack),
and those an AWS service names and creates itself, which the app only gives its retention and key.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import custom_resources as cr
from constructs import Construct

from config.settings import LOG_RETENTION_DAYS

from .nag import acknowledge, checkov_skip, managed_policy, wildcard_resource

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


# -- log groups a service names ----------------------------------------------------------------

SERVICE_LOG_GROUP_HANDLER = Path(__file__).resolve().parent / "service_log_group"
_PROVIDER_ID = "ServiceLogGroups"


class ServiceLogGroup(Construct):
    """A log group an AWS service creates under a fixed name (EKS's `/aws/eks/<cluster>/cluster`,
    the CloudWatch add-on's `/aws/containerinsights/<cluster>/*`), given our retention and key
    without CloudFormation owning it.

    Owned by CloudFormation (`AWS::Logs::LogGroup` with that name), the next deploy after a destroy
    fails with "already exists": the service recreates the group after the stack has deleted it.
    A custom resource instead creates it if absent, tolerates "already exists", and sets the
    retention and key; on delete it leaves the group (components/service_log_group/index.py says
    why).

    Stack sets deployed before this construct had an `AWS::Logs::LogGroup` under the id
    `<id>/Resource`, with DeletionPolicy Delete. CloudFormation refuses to change the type behind a
    logical id ("Update of resource type is not permitted"), so the custom resource has its own id;
    and it deletes a resource removed from a template by the policy of the template that had it,
    so dropping the old one outright would delete the group and its events right after the custom
    resource adopted it. `retain_legacy=True` (one deploy, setting `retain_legacy_log_groups`) keeps
    the old resource unchanged but for DeletionPolicy Retain; the deploy after it drops the resource
    and the group stays."""

    def __init__(self, scope: Construct, id: str, *, name: str, days: int, retain_legacy: bool = False) -> None:
        super().__init__(scope, id)
        self.log_group_name = name
        provider = _service_log_group_provider(scope, days)
        stack = Stack.of(self)
        group_arn = stack.format_arn(service="logs", resource="log-group", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME)
        provider.handler.add_to_role_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:AssociateKmsKey", "logs:DisassociateKmsKey", "logs:PutRetentionPolicy"],
                resources=[group_arn, f"{group_arn}:*"],
            )
        )
        acknowledge(
            provider.handler,
            "The log-group actions are granted on the group by its name, with and without IAM's ':*' suffix "
            "for the streams in it: nothing else matches.",
            wildcard_resource(stack, f"{group_arn}:*"),
        )
        self.resource = CustomResource(
            self,
            "Adopted",
            service_token=provider.provider.service_token,
            resource_type="Custom::ServiceLogGroup",
            properties={"LogGroupName": name, "RetentionInDays": days, "KmsKeyArn": logs_key(scope).key_arn},
        )
        if retain_legacy:
            # The properties the old resource had, so that CloudFormation changes nothing but its
            # policies; the group exists, so the custom resource adopts it either way.
            legacy = logs.CfnLogGroup(self, "Resource", log_group_name=name, retention_in_days=days, kms_key_id=logs_key(scope).key_arn)
            legacy.apply_removal_policy(RemovalPolicy.RETAIN)
            self.resource.node.add_dependency(legacy)


class _ServiceLogGroupProvider(Construct):
    def __init__(self, scope: Construct, id: str, *, log_retention_days: int) -> None:
        super().__init__(scope, id)
        self.handler = lambda_.Function(
            self,
            "Handler",
            runtime=lambda_.Runtime.PYTHON_3_13,
            handler="index.on_event",
            code=lambda_.Code.from_asset(str(SERVICE_LOG_GROUP_HANDLER), exclude=["__pycache__"]),
            timeout=Duration.seconds(60),
            description="Creates the log groups AWS services name, if absent, and sets their retention and key",
            log_group=log_group(self, "HandlerLogs", days=log_retention_days),
        )
        self.provider = cr.Provider(
            self, "Provider", on_event_handler=self.handler, log_group=log_group(self, "ProviderLogs", days=log_retention_days)
        )
        for function in (self.handler, self.provider.node.find_child("framework-onEvent")):
            checkov_skip(
                function,
                {
                    "CKV_AWS_115": "invoked only by CloudFormation during deploys: no concurrency to reserve",
                    "CKV_AWS_116": "CloudFormation invokes it synchronously and reports its failure: a DLQ would receive nothing",
                    "CKV_AWS_117": "it calls only the CloudWatch Logs API; a VPC would only add a NAT dependency",
                    "CKV_AWS_173": "its environment holds no secrets",
                },
            )
        stack = Stack.of(self)
        acknowledge(
            self,
            "The log-group handler and the custom-resource provider framework's function use AWS's basic "
            "execution policy for their own logs, the provider may invoke any version of the handler "
            "(<arn>:*), and the runtimes are the newest aws-cdk-lib offers for each.",
            managed_policy("service-role/AWSLambdaBasicExecutionRole"),
            f"IAM5[Resource::<{stack.get_logical_id(self.handler.node.default_child)}.Arn>:*]",  # type: ignore[arg-type]
            "L1",
        )


def _service_log_group_provider(scope: Construct, log_retention_days: int) -> _ServiceLogGroupProvider:
    """One handler per stack, however many groups it looks after (its own logs keep the first
    group's retention)."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(_PROVIDER_ID)
    if isinstance(existing, _ServiceLogGroupProvider):
        return existing
    return _ServiceLogGroupProvider(stack, _PROVIDER_ID, log_retention_days=log_retention_days)
