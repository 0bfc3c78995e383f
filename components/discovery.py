"""Names: the Route 53 private zone clients call, and the Cloud Map namespace pods register in.

Each is created only when the mesh backend uses it (backends/*: `discovery_needs`).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct

from config.settings import DiscoveryConfig

# Short: a record that points at something a deploy replaces (a Lattice service) heals quickly.
RECORD_TTL = Duration.seconds(60)


class ServiceDiscovery(Construct):
    def __init__(self, scope: Construct, id: str, *, config: DiscoveryConfig, vpc: ec2.IVpc, hosted_zone: bool, cloud_map: bool) -> None:
        super().__init__(scope, id)
        # The workshop names (<virtual service>.appmeshworkshop.hosted.local).
        self.zone = route53.PrivateHostedZone(self, "Zone", zone_name=config.hosted_zone, vpc=vpc) if hosted_zone else None
        # The App Mesh controller registers pods in Cloud Map but never creates namespaces.
        self.namespace = (
            servicediscovery.PrivateDnsNamespace(
                self,
                "CloudMapNamespace",
                name=config.cloud_map_namespace,
                vpc=vpc,
                description="App Mesh service discovery for the workshop services",
            )
            if cloud_map
            else None
        )
        self.cloud_map_domain = config.cloud_map_namespace

    def _zone(self) -> route53.IHostedZone:
        if self.zone is None:
            raise ValueError("this backend asked for no private hosted zone")
        return self.zone

    def add_cname(self, scope: Construct, virtual_service: str, target: str) -> route53.CnameRecord:
        """`<virtual service>.<zone>` as a CNAME to `target`."""
        return route53.CnameRecord(
            scope, f"Name-{virtual_service}", zone=self._zone(), record_name=virtual_service, domain_name=target, ttl=RECORD_TTL
        )

    def add_a_record(self, scope: Construct, virtual_service: str, address: str) -> route53.ARecord:
        """`<virtual service>.<zone>` as an A record to one address."""
        return route53.ARecord(
            scope,
            f"Name-{virtual_service}",
            zone=self._zone(),
            record_name=virtual_service,
            target=route53.RecordTarget.from_ip_addresses(address),
            ttl=RECORD_TTL,
        )
