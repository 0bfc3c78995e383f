from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from components.discovery import ServiceDiscovery
from config.settings import DiscoveryConfig


class DiscoveryStack(Stack):
    """Route53 private zone for virtual service names; Cloud Map namespace for instances."""

    def __init__(self, scope: Construct, id: str, *, config: DiscoveryConfig, vpc: ec2.IVpc, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.discovery = ServiceDiscovery(self, "Discovery", config=config, vpc=vpc)
