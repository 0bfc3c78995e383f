"""Names: the Route53 private zone clients call, and the Cloud Map namespace pods register in."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct

from config.settings import DiscoveryConfig


class ServiceDiscovery(Construct):
    def __init__(self, scope: Construct, id: str, *, config: DiscoveryConfig, vpc: ec2.IVpc) -> None:
        super().__init__(scope, id)
        # Virtual service names (<name>.appmeshworkshop.hosted.local) must resolve to some IP so
        # the application's connect() happens and Envoy's iptables redirect can intercept it.
        self.zone = route53.PrivateHostedZone(self, "Zone", zone_name=config.hosted_zone, vpc=vpc)
        # The App Mesh controller registers pods in Cloud Map but never creates namespaces.
        self.namespace = servicediscovery.PrivateDnsNamespace(
            self,
            "CloudMapNamespace",
            name=config.cloud_map_namespace,
            vpc=vpc,
            description="App Mesh service discovery for the workshop services",
        )
        self.cloud_map_domain = config.cloud_map_namespace

    def add_service_name(self, scope: Construct, virtual_service: str, target_service: str) -> route53.CnameRecord:
        """`<virtual service>.<zone>` as a CNAME to `<target>.<cloud map namespace>`."""
        return route53.CnameRecord(
            scope,
            f"Name-{virtual_service}",
            zone=self.zone,
            record_name=virtual_service,
            domain_name=f"{target_service}.{self.cloud_map_domain}",
            ttl=Duration.seconds(300),
        )
