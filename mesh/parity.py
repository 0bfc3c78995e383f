"""The neutral form of a mesh: what the topology asks for, feature by feature, as plain data.

Each backend reads its own rendered objects back into this form (`MeshBackend.read_back`), and the
round-trip parity test asserts that the form equals the one computed here from the topology, for
every feature the backend says it carries (`MeshBackend.round_trip`). A policy a backend drops,
or renders wrong, fails that test.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from config.policies import RetryPolicy
from config.topology import Topology

from .capabilities import Feature
from .names import MeshNames


def retry_form(retry: RetryPolicy | None) -> dict[str, Any] | None:
    if retry is None or retry.max_retries == 0:
        return None
    return {
        "max_retries": retry.max_retries,
        "per_retry_timeout_ms": retry.per_retry_timeout_ms,
        "events": sorted({*retry.http_events, *retry.tcp_events}),
    }


def callers(topology: Topology) -> dict[str, list[str]]:
    """service -> the workloads (services, and the gateway) that may call it: those declaring a
    backend, or with a gateway route, whose virtual service routes to it."""
    found: dict[str, set[str]] = {s.name: set() for s in topology.services}
    for caller in topology.services:
        for backend in caller.backends:
            for route in topology.virtual_service(backend).routes:
                for target, _ in route.targets:
                    found[target].add(caller.name)
    if topology.gateway:
        for gateway_route in topology.gateway.routes:
            for route in topology.virtual_service(gateway_route.virtual_service).routes:
                for target, _ in route.targets:
                    found[target].add(topology.gateway.name)
    return {name: sorted(who) for name, who in found.items()}


def neutral_form(topology: Topology, names: MeshNames, features: Collection[Feature]) -> dict[str, Any]:
    """The parts of the topology that `features` cover."""
    has = set(features).__contains__
    virtual_services: dict[str, Any] = {}
    for vs in topology.virtual_services:
        entry: dict[str, Any] = {}
        if has(Feature.WORKSHOP_NAMES):
            entry["host"] = names.mesh_host(vs.name)
        routes = []
        for route in vs.routes:
            item: dict[str, Any] = {}
            if has(Feature.PATH_PREFIX_ROUTES):
                item["prefix"] = route.prefix
            if has(Feature.WEIGHTED_ROUTES):
                item["targets"] = {target: weight for target, weight in route.targets}
            if has(Feature.ROUTE_TIMEOUT):
                item["timeout_ms"] = route.timeout_ms
            if has(Feature.RETRIES):
                item["retry"] = retry_form(route.retry)
            routes.append(item)
        # By prefix: a router matches the longest prefix, whatever the order they are listed in.
        entry["routes"] = sorted(routes, key=lambda route: route.get("prefix", ""))
        virtual_services[vs.name] = entry
    who = callers(topology)
    services: dict[str, Any] = {}
    for service in topology.services:
        item = {}
        if has(Feature.SERVICE_TIMEOUT):
            item["timeout_ms"] = service.timeout_ms
        if has(Feature.HEALTH_CHECKS):
            check = service.health_check
            item["health_check"] = {
                "path": service.health_path,
                "interval_ms": check.interval_ms,
                "timeout_ms": check.timeout_ms,
                "healthy_threshold": check.healthy_threshold,
                "unhealthy_threshold": check.unhealthy_threshold,
            }
        if has(Feature.OUTLIER_DETECTION):
            outlier = service.outlier_detection
            item["outlier_detection"] = None if outlier is None else dict(outlier.__dict__)
        if has(Feature.CONNECTION_POOL):
            pool = service.connection_pool
            item["connection_pool"] = None if pool is None else dict(pool.__dict__)
        if has(Feature.AUTHORIZATION) and topology.mtls == "strict":
            # An exposed service also answers its load balancer: anyone may call it (None).
            item["callers"] = who[service.name] if service.exposure == "none" else None
        if has(Feature.EGRESS_FILTER) and topology.egress_filter == "DROP_ALL":
            item["egress"] = sorted(service.backends)
        services[service.name] = item
    form: dict[str, Any] = {"virtual_services": virtual_services, "services": services}
    if has(Feature.GATEWAY):
        routes_form = []
        for gateway_route in topology.gateway.routes if topology.gateway else ():
            route_form = {"prefix": gateway_route.prefix, "virtual_service": gateway_route.virtual_service}
            if has(Feature.GATEWAY_REWRITE):
                route_form["rewrite"] = "/"
            routes_form.append(route_form)
        form["gateway_routes"] = sorted(routes_form, key=lambda route: route["prefix"])
    if has(Feature.MTLS):
        form["mtls"] = topology.mtls
    if has(Feature.EGRESS_FILTER):
        form["egress_filter"] = topology.egress_filter
    return form
