"""The mesh's request metrics in Amazon Managed Service for Prometheus, scraped by AWS's managed
collector: a query can compare a canary's request rate, 5xx rate and latency with the stable
version's (README, "Judging a canary").

Istio's sidecars and gateways expose istio_requests_total and istio_request_duration_milliseconds
on :15020/stats/prometheus and say so in `prometheus.io/*` pod annotations (the injector sets
them). The scraper runs in the cluster's private subnets; with the cluster's access entries
(authentication mode API) AMP grants it read access to the cluster itself.

Its network interfaces reach two things: the API server's private endpoint (pod discovery; AMP
requires the cluster's endpoint access to include private) and the pods' metrics port. AMP's
user guide suggests giving the scraper the cluster security group, which admits everything from
itself; the scraper gets its own group instead, and the cluster group admits it on exactly those
two ports. Without the first rule the scraper still reports ACTIVE and scrapes nothing.
Discovery is limited to the mesh's namespace: every pod there serves 15020.
"""

from __future__ import annotations

import base64

import yaml
from aws_cdk import aws_aps as aps
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from constructs import Construct

# The managed collector's minimum.
SCRAPE_INTERVAL = "30s"
METRICS_PORT = 15020  # the Istio agent's merged metrics (the app's and Envoy's)
API_SERVER_PORT = 443


def scrape_configuration(namespace: str) -> str:
    """Pods of `namespace` that ask to be scraped (prometheus.io/scrape), at the path and port
    they name."""
    relabel = [
        {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
        {
            "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
            "action": "replace",
            "target_label": "__metrics_path__",
            "regex": "(.+)",
        },
        {
            "source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
            "action": "replace",
            "regex": "(.+);(\\d+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
        },
        {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "kubernetes-pods",
                "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
                "relabel_configs": relabel,
            }
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


class ManagedPrometheus(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, vpc: ec2.IVpc, alias: str, namespace: str) -> None:
        super().__init__(scope, id)
        self.workspace = aps.CfnWorkspace(self, "Workspace", alias=alias)
        self.security_group = ec2.SecurityGroup(
            self, "ScraperSecurityGroup", vpc=vpc, description="AMP managed scraper, to the API server and the pod metrics port"
        )
        for port, what in (
            (API_SERVER_PORT, "the API server's private endpoint (pod discovery)"),
            (METRICS_PORT, "the pods' merged metrics"),
        ):
            ec2.CfnSecurityGroupIngress(
                self,
                f"FromScraper{port}",
                group_id=cluster.cluster_security_group_id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                source_security_group_id=self.security_group.security_group_id,
                description=f"AMP managed scraper to {what}",
            )
        self.scraper = aps.CfnScraper(
            self,
            "Scraper",
            alias=alias,
            source=aps.CfnScraper.SourceProperty(
                eks_configuration=aps.CfnScraper.EksConfigurationProperty(
                    cluster_arn=cluster.cluster_arn,
                    subnet_ids=[subnet.subnet_id for subnet in vpc.private_subnets],
                    security_group_ids=[self.security_group.security_group_id],
                )
            ),
            destination=aps.CfnScraper.DestinationProperty(
                amp_configuration=aps.CfnScraper.AmpConfigurationProperty(workspace_arn=self.workspace.attr_arn)
            ),
            # CloudFormation takes the scrape configuration base64-encoded.
            scrape_configuration=aps.CfnScraper.ScrapeConfigurationProperty(
                configuration_blob=base64.b64encode(scrape_configuration(namespace).encode()).decode()
            ),
        )
