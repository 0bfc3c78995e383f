"""The first stack `cdk deploy --all` deploys when the backend asks for a preflight: one call to the
mesh's own API. If AWS no longer serves it (App Mesh after 2026-09-30), the deploy stops here,
within about a minute, with one message naming the way forward, and nothing billable exists.
Every other stack depends on this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CustomResource, Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import custom_resources as cr
from constructs import Construct

from backends.base import Preflight
from components.log_groups import log_group
from components.nag import acknowledge, checkov_skip, managed_policy

HANDLER = Path(__file__).resolve().parents[1] / "components" / "preflight"


class PreflightStack(Stack):
    def __init__(self, scope: Construct, id: str, *, preflight: Preflight, log_retention_days: int, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.function = lambda_.Function(
            self,
            "Check",
            runtime=lambda_.Runtime.PYTHON_3_13,
            handler="index.on_event",
            code=lambda_.Code.from_asset(str(HANDLER), exclude=["__pycache__"]),
            timeout=Duration.seconds(60),
            description=f"Preflight: {preflight.iam_action} answers before anything else is deployed",
            environment={"SERVICE": preflight.service, "ACTION": preflight.action, "MESSAGE": preflight.message},
            log_group=log_group(self, "CheckLogs", days=log_retention_days),
        )
        # The one read-only call it makes; list actions have no resource-level permissions.
        self.function.add_to_role_policy(iam.PolicyStatement(actions=[preflight.iam_action], resources=["*"]))
        provider = cr.Provider(
            self, "Provider", on_event_handler=self.function, log_group=log_group(self, "ProviderLogs", days=log_retention_days)
        )
        self.check = CustomResource(self, "Answered", service_token=provider.service_token, resource_type="Custom::MeshPreflight")
        for function in (self.function, provider.node.find_child("framework-onEvent")):
            checkov_skip(
                function,
                {
                    "CKV_AWS_115": "the preflight runs once per deploy, invoked only by CloudFormation: no concurrency to reserve",
                    "CKV_AWS_116": "CloudFormation invokes it synchronously and reports its failure: a DLQ would receive nothing",
                    "CKV_AWS_117": "it calls one public AWS API; a VPC would only add a NAT dependency to a check meant to run first",
                    "CKV_AWS_173": "its environment holds the call to make and the message to print, no secrets",
                },
            )
        acknowledge(
            self,
            "The preflight's Lambda functions (ours and the custom-resource provider framework's) use "
            "AWS's basic execution policy for their logs, the provider may invoke any version of the "
            f"handler (<arn>:*), and {preflight.iam_action} supports no resource-level permissions; the "
            "runtimes are the newest aws-cdk-lib offers for each.",
            managed_policy("service-role/AWSLambdaBasicExecutionRole"),
            "IAM5[Resource::*]",
            f"IAM5[Resource::<{self.get_logical_id(self.function.node.default_child)}.Arn>:*]",  # type: ignore[arg-type]
            "L1",
        )
