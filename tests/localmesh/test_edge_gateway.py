"""The gateway the VPC Lattice backend runs in front of its services: the local mesh's renderer,
on real Envoy. `/eks/...` goes to the virtual service's workshop name with the prefix rewritten to
`/`, as App Mesh's gateway does; other paths answer 404."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envoyconfig.render import render_edge_gateway
from localmesh.processes import free_port
from localmesh.runner import EnvoyProcess, get, validate_envoy_config
from tests.loopback import serving
from tests.unit.test_settings import backend_config

ZONE = "appmeshworkshop.hosted.local"


def test_the_cluster_config_is_valid_for_envoy(tmp_path: Path) -> None:
    """As rendered into the gateway's ConfigMap: listening on all addresses, upstreams by name."""
    bootstrap = render_edge_gateway(backend_config("lattice").mesh.topology, ZONE)
    (listener,) = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8088}
    (cluster,) = bootstrap["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert endpoint == {"address": "nodejs.appmeshworkshop.hosted.local", "port_value": 3000}
    path = tmp_path / "edge.json"
    path.write_text(json.dumps(bootstrap))
    result = validate_envoy_config(path)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def upstream() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({"path": self.path, "host": self.headers["Host"]})
            body = b'{"service": "nodejs"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serving(Echo) as port:
        yield port, seen


@pytest.mark.integration
def test_eks_requests_reach_the_virtual_service_rewritten(tmp_path: Path, upstream: tuple[int, list[dict[str, Any]]]) -> None:
    port, seen = upstream
    topology = backend_config("lattice").mesh.topology
    gateway_port, admin_port = free_port(), free_port()
    bootstrap = render_edge_gateway(topology, ZONE, admin_port=admin_port, bind="127.0.0.1", upstream=lambda vs: ("127.0.0.1", port))
    bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] = gateway_port
    path = tmp_path / "edge.json"
    path.write_text(json.dumps(bootstrap))
    envoy = EnvoyProcess(path, admin_port).start()
    try:
        assert get(f"http://127.0.0.1:{gateway_port}/eks/")[0] == 200
        assert get(f"http://127.0.0.1:{gateway_port}/eks/hello?x=1")[0] == 200
        assert get(f"http://127.0.0.1:{gateway_port}/other")[0] == 404
    finally:
        envoy.stop()
    assert seen == [
        {"path": "/", "host": "nodejs.appmeshworkshop.hosted.local"},
        {"path": "/hello?x=1", "host": "nodejs.appmeshworkshop.hosted.local"},
    ]
