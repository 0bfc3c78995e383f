"""cdk-nag acknowledgments, attached to the construct they excuse, each with its reason.

cdk-nag 3 reads CDK's native acknowledgments (`Validations.of(...).acknowledge`), so the app
itself needs no cdk-nag import; the tests attach the AwsSolutions pack. An acknowledgment on a
construct covers the findings of the resources below it, and names one finding exactly
(`AwsSolutions-IAM5[Resource::*]`), so a new, different wildcard still fails the check.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
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
