"""How many pods an EC2 instance type can hold with the VPC CNI (no prefix delegation).

max pods = ENIs * (IPv4 addresses per ENI - 1) + 2, per the EKS AMI's eni-max-pods table. The
seed's t2.micro holds 4, which the per-node DaemonSets alone fill, so its pods never schedule.
"""

from __future__ import annotations

MAX_PODS: dict[str, int] = {
    "t2.micro": 4,
    "t2.small": 11,
    "t2.medium": 17,
    "t2.large": 35,
    "t3.micro": 4,
    "t3.small": 11,
    "t3.medium": 17,
    "t3.large": 35,
    "t3.xlarge": 58,
    "t3.2xlarge": 58,
    "t3a.medium": 17,
    "t3a.large": 35,
    "t3a.xlarge": 58,
    "m5.large": 29,
    "m5.xlarge": 58,
    "m5.2xlarge": 58,
    "m6i.large": 29,
    "m6i.xlarge": 58,
    "m6i.2xlarge": 58,
    "m7i.large": 29,
    "m7i.xlarge": 58,
    "c5.large": 29,
    "c5.xlarge": 58,
    "c6i.large": 29,
    "c6i.xlarge": 58,
    "c7i.large": 29,
    "r5.large": 29,
    "r6i.large": 29,
}

# Pods every node runs (aws-node, kube-proxy, eks-pod-identity-agent, the CloudWatch agent and
# Fluent Bit of the observability add-on).
DAEMONSET_PODS_PER_NODE = 5
# Pods the platform runs once per cluster whatever the mesh (2 CoreDNS, the CloudWatch
# observability operator); each mesh backend adds its own (backends/*: platform_pods).
PLATFORM_PODS = 3
