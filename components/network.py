"""The VPC the cluster lives in."""

from __future__ import annotations

from aws_cdk import Tags
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from config.settings import NetworkConfig

from .log_groups import log_group

# Subnet tags the AWS Load Balancer Controller and the in-tree service controller read to find
# where internet-facing and internal load balancers go.
PUBLIC_ELB_TAG = ("kubernetes.io/role/elb", "1")
INTERNAL_ELB_TAG = ("kubernetes.io/role/internal-elb", "1")


class MeshVpc(Construct):
    """Public and private subnets over the configured zones, NAT for the nodes, flow logs on."""

    def __init__(self, scope: Construct, id: str, *, config: NetworkConfig) -> None:
        super().__init__(scope, id)
        zones = list(config.availability_zones) or None
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.vpc_cidr),
            availability_zones=zones,
            max_azs=None if zones else config.max_azs,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                # Pods take their IPs from the private subnets (VPC CNI), so these are large.
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=19),
            ],
        )
        for subnet in self.vpc.public_subnets:
            Tags.of(subnet).add(*PUBLIC_ELB_TAG)
        for subnet in self.vpc.private_subnets:
            Tags.of(subnet).add(*INTERNAL_ELB_TAG)

        self.flow_log_group = log_group(self, "FlowLogs", days=config.flow_log_retention_days)
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
