"""What a mesh backend can express: one row per topology feature, the same rows for every backend.

Each backend module declares a table `{Feature: Capability}`. From the tables come three things:

* the config check: a topology that uses a feature its backend `cannot` express is refused, with
  every such setting listed in one message, before anything is built;
* the README's parity table (`parity_table`), which a test holds the README to;
* what the round-trip parity test expects a backend's objects to carry.

A feature is "used" by the settings that turn it on; `Feature.used_by(topology)` lists them as
(config key, value) pairs, in the keys a user writes, so the error names what to change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from config.errors import ConfigError
from config.topology import Topology

Support = Literal["yes", "partial", "no", "n/a"]


@dataclass(frozen=True)
class Capability:
    """How a backend expresses a feature (`yes`), how far it goes (`partial`: expressed with a
    stated gap, never refused), why it cannot (`no`: a topology that uses the feature is refused),
    or why the feature does not apply to it (`n/a`: the setting is ignored)."""

    support: Support
    how: str
    # What a user moving from App Mesh notices, if anything (the parity table's last column).
    differs: str = ""

    def __post_init__(self) -> None:
        if self.support not in ("yes", "partial", "no", "n/a") or not self.how:
            raise ValueError(f"a capability needs a support level and a description: {self}")


def yes(how: str, differs: str = "") -> Capability:
    return Capability("yes", how, differs)


def partial(how: str, differs: str = "") -> Capability:
    return Capability("partial", how, differs or how)


def cannot(why: str) -> Capability:
    return Capability("no", why)


def not_applicable(why: str) -> Capability:
    return Capability("n/a", why)


Setting = tuple[str, Any]
_KEY = "topology"


def _routes(topology: Topology, pick: Callable[[Any], Any], field: str) -> list[Setting]:
    return [
        (f"{_KEY}.virtual_services.{vs.name}.routes[{index}].{field}", pick(route))
        for vs in topology.virtual_services
        for index, route in enumerate(vs.routes)
        if pick(route) is not None
    ]


def _services(topology: Topology, pick: Callable[[Any], Any], field: str) -> list[Setting]:
    return [(f"{_KEY}.services.{s.name}.{field}", pick(s)) for s in topology.services if pick(s) is not None]


def _shown(policy: Any) -> Any:
    """A policy as the user would write it (a dataclass as its fields)."""
    return policy.__dict__ if hasattr(policy, "__dict__") else policy


class Feature(Enum):
    """Topology features, in the order of the parity table."""

    WEIGHTED_ROUTES = "weighted routes (the canary)"
    PATH_PREFIX_ROUTES = "path-prefix routes"
    ROUTE_TIMEOUT = "per-route request timeout"
    RETRIES = "retries"
    SERVICE_TIMEOUT = "per-service request timeout"
    HEALTH_CHECKS = "health checks"
    OUTLIER_DETECTION = "outlier detection"
    CONNECTION_POOL = "connection pool limits"
    MTLS = "mutual TLS between services"
    AUTHORIZATION = "only declared callers reach a service"
    EGRESS_FILTER = "egress limited to declared backends"
    WORKSHOP_NAMES = "workshop names (<vs>.appmeshworkshop.hosted.local)"
    GATEWAY = "ingress gateway behind an internal NLB"
    GATEWAY_REWRITE = "gateway prefix rewrite (/eks/ -> /)"
    DISCOVERY = "service discovery setting (cloudmap or dns)"
    TRACING = "traces to X-Ray"
    ACCESS_LOGS = "access logs to CloudWatch Logs"
    CANARY_ANALYSIS = "metric-gated canary steps (python -m canary)"

    def used_by(self, topology: Topology) -> list[Setting]:
        """The settings of `topology` that turn this feature on (empty: it is not used)."""
        return _USAGE[self](topology)


_USAGE: dict[Feature, Callable[[Topology], list[Setting]]] = {
    Feature.WEIGHTED_ROUTES: lambda t: _routes(t, lambda r: dict(r.targets) if len(r.targets) > 1 else None, "targets"),
    Feature.PATH_PREFIX_ROUTES: lambda t: _routes(t, lambda r: r.prefix, "prefix"),
    Feature.ROUTE_TIMEOUT: lambda t: _routes(t, lambda r: r.timeout_ms, "timeout_ms"),
    Feature.RETRIES: lambda t: _routes(t, lambda r: _shown(r.retry) if r.retry else None, "retry"),
    Feature.SERVICE_TIMEOUT: lambda t: _services(t, lambda s: s.timeout_ms, "timeout_ms"),
    Feature.HEALTH_CHECKS: lambda t: _services(t, lambda s: _shown(s.health_check), "health_check"),
    Feature.OUTLIER_DETECTION: lambda t: _services(
        t, lambda s: _shown(s.outlier_detection) if s.outlier_detection else None, "outlier_detection"
    ),
    Feature.CONNECTION_POOL: lambda t: _services(t, lambda s: _shown(s.connection_pool) if s.connection_pool else None, "connection_pool"),
    Feature.MTLS: lambda t: [(f"{_KEY}.mtls", t.mtls)] if t.mtls == "strict" else [],
    Feature.AUTHORIZATION: lambda t: _services(t, lambda s: list(s.backends) or None, "backends"),
    Feature.EGRESS_FILTER: lambda t: [(f"{_KEY}.egress_filter", t.egress_filter)] if t.egress_filter == "DROP_ALL" else [],
    Feature.WORKSHOP_NAMES: lambda t: _services(t, lambda s: list(s.backends) or None, "backends"),
    Feature.GATEWAY: lambda t: [(f"{_KEY}.gateway", t.gateway.name)] if t.gateway else [],
    Feature.GATEWAY_REWRITE: lambda t: (
        [(f"{_KEY}.gateway.routes[{i}].prefix", r.prefix) for i, r in enumerate(t.gateway.routes)] if t.gateway else []
    ),
    Feature.DISCOVERY: lambda t: [(f"{_KEY}.discovery", t.discovery)],
    Feature.TRACING: lambda t: [(f"{_KEY}.tracing", t.tracing)] if t.tracing == "on" else [],
    Feature.ACCESS_LOGS: lambda t: [(f"{_KEY}", "access logs are always on")],
    Feature.CANARY_ANALYSIS: lambda t: [
        (f"{_KEY}.virtual_services.{vs.name}.canary", " -> ".join(f"{a}:{b}" for a, b in vs.canary.steps))
        for vs in t.virtual_services
        if vs.canary
    ],
}

# How to turn each feature off, for the error message ("drop the setting").
TURN_OFF: dict[Feature, str] = {
    Feature.ROUTE_TIMEOUT: "timeout_ms: off",
    Feature.RETRIES: "retry: off",
    Feature.SERVICE_TIMEOUT: "timeout_ms: off",
    Feature.OUTLIER_DETECTION: "outlier_detection: off",
    Feature.CONNECTION_POOL: "connection_pool: off",
    Feature.MTLS: "mtls: off",
    Feature.EGRESS_FILTER: "egress_filter: ALLOW_ALL",
    Feature.TRACING: "tracing: off",
    Feature.CANARY_ANALYSIS: "canary: null",
}

CapabilityTable = Mapping[Feature, Capability]


def check_table(backend: str, table: CapabilityTable) -> None:
    """Every backend answers for every feature."""
    missing = [feature.name for feature in Feature if feature not in table]
    if missing:
        raise ValueError(f"backend {backend} has no capability for {', '.join(missing)}")


def unsupported(table: CapabilityTable, topology: Topology) -> list[tuple[Feature, Setting]]:
    """Each setting of `topology` that turns on a feature the backend cannot express."""
    return [(feature, setting) for feature in Feature if table[feature].support == "no" for setting in feature.used_by(topology)]


def check_topology(backend: str, table: CapabilityTable, topology: Topology, other_backend: str) -> None:
    """Refuse, in one line listing every offending setting, a topology the backend cannot express."""
    found = unsupported(table, topology)
    if not found:
        return
    features = list(dict.fromkeys(feature for feature, _ in found))
    listing = "; ".join(
        f"{feature.value} at {', '.join(key for f, (key, _) in found if f is feature)} ({table[feature].how}"
        + (f"; set {TURN_OFF[feature]})" if feature in TURN_OFF else ")")
        for feature in features
    )
    raise ConfigError(
        "mesh_backend",
        backend,
        f"cannot express {len(found)} setting(s) of this topology: {listing}. "
        f"Drop these settings (config/examples/{backend}.yaml does), or use mesh_backend={other_backend}",
    )


def parity_table(tables: Mapping[str, CapabilityTable], titles: Mapping[str, str]) -> str:
    """The README's parity table: one row per feature, one column per backend, then what differs."""
    marks = {"yes": "", "partial": "partly: ", "no": "**cannot**: ", "n/a": "n/a: "}
    header = "| feature | " + " | ".join(titles[name] for name in tables) + " | what differs |"
    lines = [header, "|" + "---|" * (len(tables) + 2)]
    for feature in Feature:
        cells = [marks[tables[name][feature].support] + tables[name][feature].how for name in tables]
        differs = "; ".join(f"{titles[name]}: {tables[name][feature].differs}" for name in tables if tables[name][feature].differs)
        lines.append(f"| {feature.value} | " + " | ".join(cells) + f" | {differs or '-'} |")
    return "\n".join(lines)
