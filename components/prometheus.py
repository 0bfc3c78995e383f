"""The mesh's request metrics in Amazon Managed Service for Prometheus, scraped by AWS's managed
collector: a query can compare a canary's request rate, 5xx rate and latency with the stable
version's (README, "Judging a canary").

Istio's sidecars and gateways expose istio_requests_total and istio_request_duration_milliseconds
on :15020/stats/prometheus and say so in `prometheus.io/*` pod annotations (the injector sets
them). The scraper runs in the cluster's private subnets; with the cluster's access entries
(authentication mode API) AMP grants it read access to the cluster itself.

Its network interfaces carry the cluster security group, as AMP's user guide asks: they must
reach the API server's private endpoint (pod discovery) as well as the pods, and that group
admits all traffic from itself. A separate group would need rules to both; without the first,
the scraper still reports ACTIVE and scrapes nothing.
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


def scrape_configuration() -> str:
    """Pods that ask to be scraped (prometheus.io/scrape), at the path and port they name."""
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
        "scrape_configs": [{"job_name": "kubernetes-pods", "kubernetes_sd_configs": [{"role": "pod"}], "relabel_configs": relabel}],
    }
    return yaml.safe_dump(config, sort_keys=False)


class ManagedPrometheus(Construct):
    def __init__(self, scope: Construct, id: str, *, cluster: eks.ICluster, vpc: ec2.IVpc, alias: str) -> None:
        super().__init__(scope, id)
        self.workspace = aps.CfnWorkspace(self, "Workspace", alias=alias)
        self.scraper = aps.CfnScraper(
            self,
            "Scraper",
            alias=alias,
            source=aps.CfnScraper.SourceProperty(
                eks_configuration=aps.CfnScraper.EksConfigurationProperty(
                    cluster_arn=cluster.cluster_arn,
                    subnet_ids=[subnet.subnet_id for subnet in vpc.private_subnets],
                    security_group_ids=[cluster.cluster_security_group_id],
                )
            ),
            destination=aps.CfnScraper.DestinationProperty(
                amp_configuration=aps.CfnScraper.AmpConfigurationProperty(workspace_arn=self.workspace.attr_arn)
            ),
            # CloudFormation takes the scrape configuration base64-encoded.
            scrape_configuration=aps.CfnScraper.ScrapeConfigurationProperty(
                configuration_blob=base64.b64encode(scrape_configuration().encode()).decode()
            ),
        )
