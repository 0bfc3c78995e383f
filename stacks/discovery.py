from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from backends.base import DiscoveryNeeds
from components.discovery import ServiceDiscovery
from config.settings import DiscoveryConfig


class DiscoveryStack(Stack):
    """The Route 53 private zone of the workshop names, and the Cloud Map namespace pods register
    in: whichever of the two the mesh backend uses."""

    def __init__(self, scope: Construct, id: str, *, config: DiscoveryConfig, vpc: ec2.IVpc, needs: DiscoveryNeeds, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.discovery = ServiceDiscovery(
            self, "Discovery", config=config, vpc=vpc, hosted_zone=needs.hosted_zone, cloud_map=needs.cloud_map
        )
