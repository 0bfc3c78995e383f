"""Who can reach what, and who can act as whom, decided in every backend's templates: no security
group rule admits the whole internet, only the services the topology exposes to anyone are
reachable from anywhere (each named here), and every RBAC binding names its ServiceAccount in the
namespace that ServiceAccount lives in. A snapshot update would accept a change to any of these;
these tests do not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Synthesized
from tests.stacks.support import helm_values, manifests, releases
from tests.unit.test_settings import backend_config

BACKENDS = ["appmesh", "istio", "lattice"]
ANYONE = {"0.0.0.0/0", "::/0"}
# The only workloads reachable from anywhere, and why: the topology exposes them to anyone.
OPEN_TO_ANYONE = {
    "frontend": "cdk.json topology.services.frontend: exposure external, source_cidrs [0.0.0.0/0] (the workshop opens its page in a browser)",
}


def _templates(synthesized: Synthesized) -> dict[str, Any]:
    return {stack.stack_name: synthesized.template(stack) for stack in synthesized.application.stacks}


def _ingress_rules(template: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every ingress rule of every security group: inline ones and separate resources."""
    rules = [
        (lid, rule)
        for lid, group in template.find_resources("AWS::EC2::SecurityGroup").items()
        for rule in group["Properties"].get("SecurityGroupIngress", [])
    ]
    rules += [(lid, rule["Properties"]) for lid, rule in template.find_resources("AWS::EC2::SecurityGroupIngress").items()]
    return rules


def _public(annotations: dict[str, str], source_ranges: list[str] | None) -> bool:
    """A LoadBalancer Service reachable from anywhere: internet-facing, and no allowlist narrower
    than the whole internet. Internal only when both provisioners read it so (the AWS Load Balancer
    Controller reads `-scheme`, EKS's built-in service controller `-internal`: charts/workloads.py)."""
    internal = (
        annotations.get("service.beta.kubernetes.io/aws-load-balancer-scheme") == "internal"
        and annotations.get("service.beta.kubernetes.io/aws-load-balancer-internal") == "true"
    )
    return not internal and (not source_ranges or bool(ANYONE & set(source_ranges)))


def _source(rule: dict[str, Any]) -> str:
    """Where a rule admits traffic from: a CIDR, or a token (the VPC's CIDR, a prefix list, a group)."""
    for key in ("CidrIp", "CidrIpv6", "SourcePrefixListId", "SourceSecurityGroupId"):
        if key in rule:
            return rule[key] if isinstance(rule[key], str) else f"{key}:token"
    raise AssertionError(f"an ingress rule with no source: {rule}")


# Each backend's ingress rules by where they admit from (tokens, resolved at deploy time: Istio's
# metrics scraper group on 443 and 15020; the VPC's CIDR and the VPC Lattice prefix list).
INGRESS_SOURCES = {
    "appmesh": [],
    "istio": ["SourceSecurityGroupId:token", "SourceSecurityGroupId:token"],
    "lattice": ["CidrIp:token", "SourcePrefixListId:token"],
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_security_group_admits_the_whole_internet(synths: Any, backend: str) -> None:
    rules = [(stack, lid, rule) for stack, template in _templates(synths[backend]).items() for lid, rule in _ingress_rules(template)]
    assert [(stack, lid) for stack, lid, rule in rules if _source(rule) in ANYONE] == []
    assert sorted(_source(rule) for _, _, rule in rules) == INGRESS_SOURCES[backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_the_services_the_topology_opens_to_anyone_are_reachable_from_anywhere(synths: Any, backend: str) -> None:
    synthesized = synths[backend]
    public = set()
    for template in _templates(synthesized).values():
        for objects, _ in manifests(template).values():
            for obj in objects:
                if obj["kind"] == "Service" and obj["spec"].get("type") == "LoadBalancer":
                    if _public(obj["metadata"].get("annotations", {}), obj["spec"].get("loadBalancerSourceRanges")):
                        public.add(obj["metadata"]["name"])
        for chart, (_, release) in releases(template).items():
            service = helm_values(release).get("service", {})
            if service.get("type") == "LoadBalancer" and _public(service.get("annotations", {}), service.get("loadBalancerSourceRanges")):
                public.add(f"helm:{chart}")
    assert public == set(OPEN_TO_ANYONE)
    # ... and the topology the app was built from is what opens them.
    topology = backend_config(backend).mesh.topology
    assert {s.name for s in topology.services if s.exposure == "external" and ANYONE & set(s.source_cidrs)} == set(OPEN_TO_ANYONE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_binding_names_its_service_account_where_it_lives(synths: Any, backend: str) -> None:
    """A subject in the wrong namespace binds a ServiceAccount that does not exist (or someone
    else's): the Job it was for would fail with Forbidden at deploy time."""
    service_accounts = set()
    bindings = []
    for template in _templates(synths[backend]).values():
        for objects, _ in manifests(template).values():
            for obj in objects:
                if obj["kind"] == "ServiceAccount":
                    service_accounts.add((obj["metadata"]["name"], obj["metadata"]["namespace"]))
                elif obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                    bindings.append(obj)
    assert bindings  # every backend waits on at least one Job with its own binding
    for binding in bindings:
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", binding["metadata"]["name"]
            assert (subject["name"], subject["namespace"]) in service_accounts, (binding["kind"], binding["metadata"])
