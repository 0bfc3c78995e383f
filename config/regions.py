"""The AWS regions synth accepts, by partition.

Source: aws-cdk-lib 2.275.0 (the version requirements.txt pins), region-info/lib/aws-entities.js
(AWS_REGIONS_AND_RULES) and each region's partition as `aws_cdk.region_info.RegionInfo` reports it,
read on 2026-12-06. tests/unit/test_settings.py holds this table to the installed aws-cdk-lib, so
a bump that knows a new region fails until it is added here.

Only the `aws` partition is supported: the app is built and tested for it (its AWS services, its
service principals, the public image registries its nodes pull from through a NAT gateway); the
China, GovCloud, European Sovereign Cloud and isolated partitions are refused at synth rather than
at deploy, where CloudFormation's validation says little about why.
"""

from __future__ import annotations

SUPPORTED_PARTITION = "aws"

REGIONS: dict[str, tuple[str, ...]] = {
    "aws": (
        "af-south-1",
        "ap-east-1",
        "ap-east-2",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "ap-southeast-6",
        "ap-southeast-7",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "il-central-1",
        "me-central-1",
        "me-south-1",
        "mx-central-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
    ),
    "aws-cn": ("cn-north-1", "cn-northwest-1"),
    "aws-us-gov": ("us-gov-east-1", "us-gov-west-1"),
    "aws-eusc": ("eusc-de-east-1",),
    "aws-iso": ("us-iso-east-1", "us-iso-west-1"),
    "aws-iso-b": ("us-isob-east-1", "us-isob-west-1"),
    "aws-iso-e": ("eu-isoe-west-1",),
    "aws-iso-f": ("us-isof-east-1", "us-isof-south-1"),
}


def partition_of(region: str) -> str | None:
    """The partition a known region is in; None for a name no partition has."""
    return next((partition for partition, regions in REGIONS.items() if region in regions), None)
