from __future__ import annotations

from typing import Any

from aws_cdk import Fn, Stack
from constructs import Construct

from components.network import MeshVpc
from config.settings import NetworkConfig


class NetworkStack(Stack):
    """The VPC: public and private subnets tagged for load balancers, NAT, flow logs."""

    def __init__(self, scope: Construct, id: str, *, config: NetworkConfig, **kwargs: Any) -> None:
        self._zones = config.availability_zones
        super().__init__(scope, id, **kwargs)
        self.network = MeshVpc(self, "Network", config=config)
        self.vpc = self.network.vpc

    @property
    def availability_zones(self) -> list[str]:
        """The zones the VPC spans, without a lookup: the configured ones, else the region's first
        two as CloudFormation resolves them (Fn::GetAZs), which is what an environment-agnostic
        stack renders.

        With an account set, CDK's default asks the CLI to look the zones up (a `missing` context
        entry, resolved with the bootstrap lookup role into cdk.context.json). That file is not
        committed, and a pipeline's synth step may not assume the lookup role (aws-cdk-lib
        pipelines README), so the pipeline's stages could not be synthesized; and a direct synth
        (no account) and a stage (account set) would render different subnets."""
        if self._zones:
            return list(self._zones)
        return [Fn.select(0, Fn.get_azs()), Fn.select(1, Fn.get_azs())]
