"""cdk-nag acknowledgments, attached to the construct they excuse, each with its reason.

cdk-nag 3 reads CDK's native acknowledgments (`Validations.of(...).acknowledge`), so the app
itself needs no cdk-nag import; the tests attach the AwsSolutions pack. An acknowledgment on a
construct covers the findings of the resources below it, and names one finding exactly
(`AwsSolutions-IAM5[Resource::*]`), so a new, different wildcard still fails the check.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import Acknowledgment, ArnFormat, CfnResource, IAspect, Stack, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(construct: IConstruct, reason: str, *findings: str) -> None:
    """Acknowledge AwsSolutions findings (`IAM5[Resource::*]`, `L1`, ...) on `construct`."""
    Validations.of(construct).acknowledge(*(Acknowledgment(id=f"{PACK}::{PACK}-{finding}", reason=reason) for finding in findings))


def managed_policy(name: str) -> str:
    """The IAM4 finding for an AWS managed policy attached by name."""
    return f"IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]"


def wildcard_resource(stack: Stack, arn: str) -> str:
    """The IAM5 finding for a resource ARN, written the way cdk-nag prints it.

    cdk-nag renders `{"Ref": X}` as `<X>` and `{"Fn::GetAtt": [A, B]}` as `<A.B>`; computing the
    id from the same ARN the policy uses keeps the acknowledgment exact for any account/region.
    """
    return f"IAM5[Resource::{_render(stack.resolve(arn))}]"


def rendered(stack: Stack, value: str) -> str:
    """A string with tokens (an ARN, an account), written the way cdk-nag prints it."""
    return _render(stack.resolve(value))


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_render(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    raise ValueError(f"cannot render {value!r} as a cdk-nag finding")


def codebuild_project_findings(stack: Stack, project_name: str) -> list[str]:
    """The IAM5 findings of the grants CodeBuild gives each project: its default log group and
    report groups, named after the project with run-time suffixes."""
    log_group = stack.format_arn(
        service="logs", resource="log-group", resource_name=f"/aws/codebuild/{project_name}:*", arn_format=ArnFormat.COLON_RESOURCE_NAME
    )
    report_groups = stack.format_arn(service="codebuild", resource="report-group", resource_name=f"{project_name}-*")
    return [wildcard_resource(stack, log_group), wildcard_resource(stack, report_groups)]


# -- checkov ------------------------------------------------------------------------------------


def checkov_skip(resource: IConstruct, skips: dict[str, str]) -> None:
    """Skip checkov findings on one CloudFormation resource, each with its reason (template
    Metadata, where checkov and a reviewer read it next to the resource)."""
    cfn = resource if isinstance(resource, CfnResource) else resource.node.default_child
    assert isinstance(cfn, CfnResource), resource.node.path
    existing = cfn.get_metadata("checkov") or {"skip": []}
    # Idempotent: aspects run again whenever the app is re-synthesized (Template.from_stack does).
    present = {skip["id"] for skip in existing["skip"]}
    existing["skip"] += [{"id": check, "comment": reason} for check, reason in sorted(skips.items()) if check not in present]
    cfn.add_metadata("checkov", existing)


# Findings on the Lambda functions and log groups CDK itself creates for its custom-resource
# providers (kubectl, CfnJson, the default security group restriction): they are invoked only
# by CloudFormation, synchronously, with no secrets in their environment.
_PROVIDER_FUNCTION_SKIPS = {
    "CKV_AWS_115": "CDK custom-resource provider: invoked only by CloudFormation during deploys, no concurrency to reserve",
    "CKV_AWS_116": "CDK custom-resource provider: CloudFormation invokes it and receives its failures; a DLQ would get nothing",
    "CKV_AWS_117": "CDK custom-resource provider that calls only AWS APIs; the kubectl provider is in the VPC already",
    "CKV_AWS_173": "CDK custom-resource provider: its environment holds no secrets (names and ARNs only)",
}
_PROVIDER_LOG_SKIPS = {"CKV_AWS_158": "log group of a CDK custom-resource provider: deploy-time logs with no application data"}
# aws-cdk-lib's AwsCustomResource singleton function has this fixed construct id.
AWS_CUSTOM_RESOURCE_FUNCTION_ID = "AWS679f53fac002430cb0da5b7982bd2287"
_PROVIDER_MARKERS = ("KubectlProvider", "CustomResourceProvider", AWS_CUSTOM_RESOURCE_FUNCTION_ID)


@jsii.implements(IAspect)
class CdkProviderCheckovSkips:
    """Attach the reasons above to CDK's provider resources, found by their construct ids."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource) or not any(marker in node.node.path for marker in _PROVIDER_MARKERS):
            return
        if node.cfn_resource_type == "AWS::Lambda::Function":
            checkov_skip(node, _PROVIDER_FUNCTION_SKIPS)
        elif node.cfn_resource_type == "AWS::Logs::LogGroup":
            checkov_skip(node, _PROVIDER_LOG_SKIPS)
