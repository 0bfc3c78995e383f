"""The mesh summary: plain, sorted, JSON-serialisable data; stable when the model grows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from config import Topology, build_config, merge_layers
from config.topology import Route, Service
from meshdiff.summary import SUMMARY_VERSION, SummaryError, dumps, load_summary, summarize, write_summary

from .support import FIXTURES, REPO_ROOT, cdk_json_context, summary_of_topology, summary_with


def test_default_summary() -> None:
    summary = summary_with()
    assert summary["version"] == SUMMARY_VERSION == 1
    assert (summary["mesh"], summary["namespace"]) == ("app-mesh", "lab-appmesh")
    assert (summary["discovery"], summary["egress_filter"]) == ("cloudmap", "ALLOW_ALL")
    assert [s["name"] for s in summary["services"]] == ["crystal", "frontend", "nodejs", "nodejsv2"]
    frontend = summary["services"][1]
    assert frontend == {
        "name": "frontend",
        "source": "services/frontend",
        "port": 3000,
        "protocol": "http",
        "replicas": 2,
        "health_path": "/health",
        "backends": ["crystal", "nodejs"],
        "exposure": "external",
        "source_cidrs": ["0.0.0.0/0"],
        "build_args": {},
    }
    assert summary["services"][3]["build_args"] == {"APP_VERSION": "2"}
    assert summary["virtual_services"][1] == {
        "name": "nodejs",
        "awsName": "nodejs.appmeshworkshop.hosted.local",
        "routes": [{"name": "route-to-nodejs-app", "prefix": "/", "targets": {"nodejs": 2, "nodejsv2": 1}}],
    }
    assert summary["gateway"] == {
        "name": "ingress-gw",
        "port": 8088,
        "replicas": 2,
        "scheme": "internal",
        "routes": [{"name": "gateway-route-eks", "prefix": "/eks/", "virtual_service": "nodejs"}],
    }


def test_summary_is_json_and_deterministic() -> None:
    summary = summary_with()
    assert json.loads(json.dumps(summary)) == summary
    assert dumps(summary_with()) == dumps(summary)


def test_summary_does_not_depend_on_the_order_of_the_configuration() -> None:
    def reverse(topology: dict[str, Any]) -> None:
        for section in ("services", "virtual_services"):
            topology[section] = dict(reversed(list(topology[section].items())))
        topology["services"]["frontend"]["backends"].reverse()
        topology["gateway"]["routes"].insert(0, {"name": "gateway-route-crystal", "prefix": "/crystal/", "virtual_service": "crystal"})

    def append(topology: dict[str, Any]) -> None:
        topology["gateway"]["routes"].append({"name": "gateway-route-crystal", "prefix": "/crystal/", "virtual_service": "crystal"})

    assert dumps(summary_of_topology(reverse)) == dumps(summary_of_topology(append))


def test_gateway_absent() -> None:
    assert summary_of_topology(lambda t: t.pop("gateway"))["gateway"] is None


def test_write_and_load(tmp_path: Path) -> None:
    summary = summary_with()
    path = tmp_path / "mesh-topology.json"
    write_summary(path, summary)
    text = path.read_text()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text == json.dumps(summary, indent=2, sort_keys=True) + "\n"
    assert load_summary(path) == summary


def test_fixture_is_the_seed_summary() -> None:
    """summary-2to1.json is the summary of cdk.json's default topology (the CLI tests start from it)."""
    assert load_summary(FIXTURES / "summary-2to1.json") == summary_with(), "regenerate the fixture if cdk.json's topology changed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "is not a mesh summary: invalid JSON"),
        ("[]", "is not a mesh summary: expected a JSON object"),
        ('{"version": 2, "services": [], "virtual_services": []}', "is a mesh summary of version 2; this meshdiff reads version 1"),
        ('{"version": 1, "services": {}, "virtual_services": []}', "is not a mesh summary: 'services' must be a list"),
    ],
)
def test_load_refuses_what_it_cannot_read(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "summary.json"
    path.write_text(text)
    with pytest.raises(SummaryError, match=message):
        load_summary(path)


# The model will grow optional policy fields; they must reach the summary with no code change.


@dataclasses.dataclass(frozen=True)
class OutlierDetection:
    max_server_errors: int
    interval_ms: int


@dataclasses.dataclass(frozen=True)
class PolicyRoute(Route):
    retries: int | None = None
    retry_events: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PolicyService(Service):
    outlier_detection: OutlierDetection | None = None
    timeouts: tuple[tuple[str, int], ...] = ()
    mtls: bool = False


def with_policies(crystal_policy: dict[str, Any] | None = None, **route_policy: Any) -> Topology:
    """cdk.json's topology with the model's classes swapped for ones with policy fields."""
    topology = summary_topology()
    services = tuple(
        PolicyService(
            **{f.name: getattr(s, f.name) for f in dataclasses.fields(s)}, **(crystal_policy if s.name == "crystal" else None) or {}
        )
        for s in topology.services
    )
    virtual_services = tuple(
        dataclasses.replace(vs, routes=tuple(PolicyRoute(r.name, r.prefix, r.targets, **route_policy) for r in vs.routes))
        for vs in topology.virtual_services
    )
    return dataclasses.replace(topology, services=services, virtual_services=virtual_services)


def summary_topology() -> Topology:
    defaults = cdk_json_context()
    return build_config(merge_layers(defaults, defaults, REPO_ROOT), {}).mesh.topology


def summarize_default(topology: Topology) -> dict[str, Any]:
    return summarize(topology, hosted_zone="appmeshworkshop.hosted.local", mesh_name="app-mesh", namespace="lab-appmesh")


def test_unset_policy_fields_leave_the_summary_unchanged() -> None:
    plain = summarize_default(with_policies())
    route = plain["virtual_services"][1]["routes"][0]
    assert "retries" not in route
    assert route["retry_events"] == []
    assert plain["services"][0]["timeouts"] == {} and plain["services"][0]["mtls"] is False
    assert "outlier_detection" not in plain["services"][0]


def test_policy_fields_are_summarized_generically() -> None:
    crystal_policy = {"outlier_detection": OutlierDetection(5, 10000), "timeouts": (("request", 15), ("idle", 300)), "mtls": True}
    summary = summarize_default(with_policies(crystal_policy, retries=3, retry_events=("server-error", "gateway-error")))
    assert summary["virtual_services"][1]["routes"][0]["retries"] == 3
    assert summary["virtual_services"][1]["routes"][0]["retry_events"] == ["gateway-error", "server-error"]
    crystal_summary = next(s for s in summary["services"] if s["name"] == "crystal")
    assert crystal_summary["outlier_detection"] == {"max_server_errors": 5, "interval_ms": 10000}
    assert crystal_summary["timeouts"] == {"idle": 300, "request": 15}
    assert crystal_summary["mtls"] is True
    assert json.loads(dumps(summary)) == summary
