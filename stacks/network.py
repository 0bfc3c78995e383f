from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from components.network import MeshVpc
from config.settings import NetworkConfig


class NetworkStack(Stack):
    """The VPC: public and private subnets tagged for load balancers, NAT, flow logs."""

    def __init__(self, scope: Construct, id: str, *, config: NetworkConfig, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        self.network = MeshVpc(self, "Network", config=config)
        self.vpc = self.network.vpc
