"""The mesh summary: plain, sorted, JSON-serialisable data; stable when the model grows."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from backends import configure
from config import merge_layers
from mesh.summary import SUMMARY_VERSION, SummaryError, dumps, load_summary, summarize, write_summary

from .support import FIXTURES, REPO_ROOT, cdk_json_context, summary_of_topology, summary_with


def test_default_summary() -> None:
    summary = summary_with()
    assert summary["version"] == SUMMARY_VERSION == 1
    assert (summary["mesh"], summary["namespace"]) == ("app-mesh", "lab-appmesh")
    assert (summary["discovery"], summary["egress_filter"], summary["mtls"]) == ("cloudmap", "DROP_ALL", "strict")
    assert [s["name"] for s in summary["services"]] == ["crystal", "frontend", "nodejs", "nodejsv2"]
    frontend = summary["services"][1]
    assert frontend == {
        "name": "frontend",
        "source": "services/frontend",
        "port": 3000,
        "protocol": "http",
        "replicas": 2,
        "health_path": "/health",
        "health_port": 3001,
        "backends": ["crystal", "nodejs"],
        "exposure": "external",
        "source_cidrs": ["0.0.0.0/0"],
        "build_args": {},
        "timeout_ms": 15000,
        "health_check": {"interval_ms": 5000, "timeout_ms": 2000, "healthy_threshold": 2, "unhealthy_threshold": 2},
        "outlier_detection": DEFAULT_OUTLIER_DETECTION,
        "connection_pool": {"max_connections": 1024, "max_pending_requests": 1024},
    }
    assert summary["services"][3]["build_args"] == {"APP_VERSION": "2"}
    assert summary["virtual_services"][1] == {
        "name": "nodejs",
        "awsName": "nodejs.appmeshworkshop.hosted.local",
        "routes": [
            {
                "name": "route-to-nodejs-app",
                "prefix": "/",
                "targets": {"nodejs": 2, "nodejsv2": 1},
                "timeout_ms": 15000,
                "retry": DEFAULT_RETRY,
            }
        ],
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


# The policies of the model (config/policies.py) reach the summary; a policy turned off is "off".

DEFAULT_RETRY = {
    "max_retries": 2,
    "per_retry_timeout_ms": 2000,
    "http_events": ["gateway-error", "server-error"],
    "tcp_events": ["connection-error"],
}
DEFAULT_OUTLIER_DETECTION = {"max_server_errors": 5, "interval_ms": 10000, "base_ejection_ms": 30000, "max_ejection_percent": 50}


def nodejs_route(summary: dict[str, Any]) -> dict[str, Any]:
    route: dict[str, Any] = next(vs for vs in summary["virtual_services"] if vs["name"] == "nodejs")["routes"][0]
    return route


def service(summary: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in summary["services"] if s["name"] == name)
    return found


def test_policy_settings_reach_the_summary() -> None:
    def edit(topology: dict[str, Any]) -> None:
        topology.update(mtls="off", egress_filter="ALLOW_ALL")
        topology["virtual_services"]["nodejs"]["routes"][0].update(
            timeout_ms=30000, retry={"max_retries": 3, "per_retry_timeout_ms": 5000, "http_events": ["server-error"], "tcp_events": []}
        )
        topology["services"]["crystal"].update(
            timeout_ms=5000,
            health_check={"interval_ms": 10000},
            outlier_detection={"max_server_errors": 3},
            connection_pool={"max_connections": 256},
        )

    summary = summary_of_topology(edit)
    assert (summary["mtls"], summary["egress_filter"]) == ("off", "ALLOW_ALL")
    route = nodejs_route(summary)
    assert route["timeout_ms"] == 30000
    assert route["retry"] == {"max_retries": 3, "per_retry_timeout_ms": 5000, "http_events": ["server-error"], "tcp_events": []}
    crystal = service(summary, "crystal")
    assert crystal["timeout_ms"] == 5000
    assert crystal["health_check"] == {"interval_ms": 10000, "timeout_ms": 2000, "healthy_threshold": 2, "unhealthy_threshold": 2}
    assert crystal["outlier_detection"] == {**DEFAULT_OUTLIER_DETECTION, "max_server_errors": 3}
    assert crystal["connection_pool"] == {"max_connections": 256, "max_pending_requests": 1024}
    assert service(summary, "nodejs") == service(summary_with(), "nodejs")
    assert json.loads(dumps(summary)) == summary


@pytest.mark.parametrize("off", ["off", False])
def test_a_policy_turned_off_is_off(off: Any) -> None:
    """None in the model is a policy turned off (the default is on), not a setting left out."""

    def turn_off(topology: dict[str, Any]) -> None:
        topology["virtual_services"]["nodejs"]["routes"][0]["retry"] = off
        topology["services"]["crystal"]["outlier_detection"] = off

    summary = summary_of_topology(turn_off)
    assert nodejs_route(summary)["retry"] == "off"
    assert service(summary, "crystal")["outlier_detection"] == "off"
    assert nodejs_route(summary_with())["retry"] == DEFAULT_RETRY
    assert service(summary_with(), "crystal")["outlier_detection"] == DEFAULT_OUTLIER_DETECTION
    assert json.loads(dumps(summary)) == summary


def test_the_model_and_the_configuration_agree_on_off() -> None:
    """summarize reads the dataclasses: Route.retry or Service.outlier_detection set to None is "off" too."""
    topology = configure(merge_layers(cdk_json_context(), cdk_json_context(), REPO_ROOT), {}).mesh.topology
    changed = dataclasses.replace(
        topology,
        services=tuple(dataclasses.replace(s, outlier_detection=None) if s.name == "nodejs" else s for s in topology.services),
        virtual_services=tuple(
            dataclasses.replace(vs, routes=tuple(dataclasses.replace(r, retry=None) for r in vs.routes)) for vs in topology.virtual_services
        ),
    )

    def turn_off(raw: dict[str, Any]) -> None:
        raw["services"]["nodejs"]["outlier_detection"] = "off"
        for virtual_service in raw["virtual_services"].values():
            for route in virtual_service["routes"]:
                route["retry"] = "off"

    summary = summarize(changed, hosted_zone="appmeshworkshop.hosted.local", mesh_name="app-mesh", namespace="lab-appmesh")
    assert summary == summary_of_topology(turn_off)
    assert [route["retry"] for vs in summary["virtual_services"] for route in vs["routes"]] == ["off", "off"]
    assert [s["outlier_detection"] == "off" for s in summary["services"]] == [False, False, True, False]
