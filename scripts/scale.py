"""Generated topologies for scale tests and the benchmark."""

from __future__ import annotations

from typing import Any


def generated_topology(services: int) -> dict[str, Any]:
    """`services` services: a frontend calling the first few, each backend behind its own
    virtual service, every fourth one with a 2:1 canary, and a gateway route to the first."""
    names = [f"svc-{index:03d}" for index in range(1, services)]
    topology: dict[str, Any] = {
        "services": {"frontend": {"source": "services/frontend", "replicas": 1, "backends": names[:2], "exposure": "none"}},
        "virtual_services": {},
        "gateway": {"routes": [{"name": "gateway-route-first", "prefix": "/first/", "virtual_service": names[0]}]},
    }
    for index, name in enumerate(names):
        topology["services"][name] = {"source": "services/nodejs", "replicas": 1}
        targets = {name: 1}
        if index % 4 == 3:
            targets = {names[index - 1]: 2, name: 1}
        topology["virtual_services"][name] = {"routes": [{"prefix": "/", "targets": targets}]}
    return topology


def scale_context(services: int) -> dict[str, Any]:
    """Context overrides for a generated topology, in place of cdk.json's (a merge patch that
    removes what the generated one does not have); node capacity sized for its pods."""
    import json
    from pathlib import Path

    from config.settings import patch_between

    default = json.loads((Path(__file__).resolve().parents[1] / "cdk.json").read_text())["context"]["topology"]
    topology = patch_between(default, generated_topology(services))
    return {"topology": topology, "node_desired": 4, "node_max": 100, "node_max_pods": 737, "auto_mode": False}
