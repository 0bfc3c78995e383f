"""Validation of the topology model: each rule, with its message."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from config import ConfigError
from tests.conftest import cdk_json_context
from tests.unit.test_settings import config_with


def topology_error(mutate: Any) -> str:
    topology = copy.deepcopy(cdk_json_context()["topology"])
    mutate(topology)
    with pytest.raises(ConfigError) as caught:
        config_with(topology=topology)
    return str(caught.value)


def test_default_topology_is_the_seed() -> None:
    topology = config_with().mesh.topology
    assert [s.name for s in topology.services] == ["frontend", "nodejs", "nodejsv2", "crystal"]
    assert topology.service("frontend").backends == ("nodejs", "crystal")
    assert topology.service("frontend").exposure == "external"
    assert topology.weights() == {"nodejs": {"nodejs": 2, "nodejsv2": 1}, "crystal": {"crystal": 1}}
    assert topology.gateway is not None
    assert (topology.gateway.name, topology.gateway.port, topology.gateway.replicas) == ("ingress-gw", 8088, 2)
    assert [(r.name, r.prefix, r.virtual_service) for r in topology.gateway.routes] == [("gateway-route-eks", "/eks/", "nodejs")]
    assert topology.discovery == "cloudmap"


def test_weights_shift_from_the_command_line() -> None:
    assert config_with(**{"weights.nodejs": "nodejs:0,nodejsv2:1"}).mesh.topology.weights()["nodejs"] == {"nodejs": 0, "nodejsv2": 1}


def test_weights_for_an_unknown_virtual_service() -> None:
    with pytest.raises(
        ConfigError, match=r"^config error: weights.nodjs='nodejs:1': no virtual service 'nodjs'; defined: crystal, nodejs$"
    ):
        config_with(**{"weights.nodjs": "nodejs:1"})


def test_unknown_backend() -> None:
    message = topology_error(lambda t: t["services"]["frontend"].update(backends=["nodejs", "ruby"]))
    assert (
        message
        == "config error: topology.services.frontend.backends='ruby': unknown virtual service; defined virtual services: crystal, nodejs"
    )


def test_unknown_route_target() -> None:
    message = topology_error(lambda t: t["virtual_services"]["nodejs"]["routes"][0].update(targets={"nodejs": 1, "nodejsv3": 1}))
    assert message.startswith("config error: topology.virtual_services.nodejs.routes[0].targets='nodejsv3': unknown target service")


def test_unknown_gateway_virtual_service() -> None:
    message = topology_error(lambda t: t["gateway"]["routes"][0].update(virtual_service="ruby"))
    assert (
        message
        == "config error: topology.gateway.routes[0].virtual_service='ruby': unknown virtual service; defined virtual services: crystal, nodejs"
    )


def test_duplicate_route_targets() -> None:
    assert "duplicate target" in topology_error(lambda t: t["virtual_services"]["nodejs"]["routes"][0].update(targets="nodejs:1,nodejs:2"))


@pytest.mark.parametrize("weight", [-1, 101, "heavy"])
def test_weight_outside_app_mesh_range(weight: Any) -> None:
    message = topology_error(lambda t: t["virtual_services"]["nodejs"]["routes"][0].update(targets={"nodejs": weight, "nodejsv2": 1}))
    assert (
        message == f"config error: topology.virtual_services.nodejs.routes[0].targets.nodejs={weight!r}: must be an integer from 0 to 100"
    )


def test_all_zero_weights() -> None:
    message = topology_error(lambda t: t["virtual_services"]["nodejs"]["routes"][0].update(targets={"nodejs": 0, "nodejsv2": 0}))
    assert "all weights are 0" in message


def test_too_many_targets() -> None:
    def mutate(t: Any) -> None:
        for i in range(11):
            t["services"][f"s{i}"] = {"source": "services/nodejs"}
        t["virtual_services"]["nodejs"]["routes"][0]["targets"] = {f"s{i}": 1 for i in range(11)}

    assert "App Mesh accepts 1 to 10 weighted targets per route" in topology_error(mutate)


@pytest.mark.parametrize("prefix", ["eks/", "/eks /", "/eks?x", ""])
def test_prefix_app_mesh_rejects(prefix: str) -> None:
    message = topology_error(lambda t: t["virtual_services"]["nodejs"]["routes"][0].update(prefix=prefix))
    assert "must be a URL path prefix that starts with '/'" in message


def test_gateway_prefix_must_end_with_slash() -> None:
    assert "must end with '/'" in topology_error(lambda t: t["gateway"]["routes"][0].update(prefix="/eks"))


def test_name_too_long_for_kubernetes() -> None:
    long_name = "a" * 57
    message = topology_error(lambda t: t["services"].update({long_name: {"source": "services/nodejs"}}))
    assert message == f"config error: topology.services.{long_name}={long_name!r}: is 57 characters; at most 56 are allowed here"


def test_name_not_a_dns_label() -> None:
    assert "must be a DNS-1123 label" in topology_error(lambda t: t["services"].update({"Node_JS": {"source": "services/nodejs"}}))


def test_pod_labels_matched_by_two_selectors() -> None:
    # A gateway named like a virtual node selects that service's pods too.
    message = topology_error(lambda t: t["gateway"].update(name="nodejs-app"))
    assert message.startswith(
        "config error: topology='service nodejs': its pods (labels {'app': 'nodejs-app'}) are selected by VirtualNode nodejs-app and VirtualGateway nodejs-app"
    )


def test_exposed_service_needs_an_allowlist() -> None:
    message = topology_error(lambda t: t["services"]["frontend"].update(source_cidrs=[]))
    assert "needs a source-CIDR allowlist" in message


def test_unknown_service_key_suggests() -> None:
    message = topology_error(lambda t: t["services"]["nodejs"].update(replica=3))
    assert message.startswith("config error: topology.services.nodejs.replica=3: unknown key (did you mean replicas?)")


def test_targets_of_a_route_must_share_a_port() -> None:
    message = topology_error(lambda t: t["services"]["nodejsv2"].update(port=4000))
    assert (
        message
        == "config error: topology.virtual_services.nodejs.routes[0].targets='nodejsv2': listens on 4000, but nodejs listens on 3000; a router has one listener port"
    )


# -- each limit on both sides of its boundary ------------------------------------------------------


def test_exactly_ten_targets_are_accepted() -> None:
    topology = copy.deepcopy(cdk_json_context()["topology"])
    for i in range(10):
        topology["services"][f"s{i}"] = {"source": "services/nodejs", "replicas": 1}
    topology["virtual_services"]["nodejs"]["routes"][0]["targets"] = {f"s{i}": 1 for i in range(10)}
    assert len(config_with(topology=topology, node_desired=4).mesh.topology.virtual_service("nodejs").routes[0].targets) == 10


def test_health_port_equal_to_port_is_refused() -> None:
    def mutate(t: Any) -> None:
        t["services"]["crystal"]["health_port"] = 3000

    assert topology_error(mutate) == (
        "config error: topology.services.crystal.health_port=3000: must differ from port (3000): probes must bypass Envoy's listener"
    )


@pytest.mark.parametrize(("service", "backend"), [("nodejs", "nodejs"), ("nodejsv2", "nodejs")])
def test_a_service_that_would_call_itself_through_a_virtual_service_is_refused(service: str, backend: str) -> None:
    def mutate(t: Any) -> None:
        t["services"][service]["backends"] = [backend]

    assert topology_error(mutate) == (
        f"config error: topology.services.{service}.backends='{backend}': routes to {service} itself: a service cannot call itself through the mesh"
    )


def test_gateway_port_below_1024_is_refused_and_1024_accepted() -> None:
    """The gateway's Envoy runs as a non-root uid, which cannot bind a privileged port."""

    def mutate(t: Any) -> None:
        t["gateway"]["port"] = 1023

    assert topology_error(mutate) == "config error: topology.gateway.port=1023: must be an integer from 1024 to 65535"
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["gateway"]["port"] = 1024
    assert config_with(topology=topology).mesh.topology.gateway.port == 1024


@pytest.mark.parametrize(("field", "value"), [("interval_ms", 5500), ("timeout_ms", 2500)])
def test_health_check_times_are_whole_seconds(field: str, value: int) -> None:
    def mutate(t: Any) -> None:
        t["services"]["crystal"]["health_check"] = {field: value}

    assert topology_error(mutate) == (
        f"config error: topology.services.crystal.health_check.{field}={value}: must be whole seconds (a multiple of 1000): kubelet probes count seconds"
    )


# -- boundaries a hand-made mutant crossed without a test noticing ------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_an_integer(value: bool) -> None:
    """YAML's `replicas: true` is a bool, and a bool is an int in Python (True == 1)."""

    def mutate(t: Any) -> None:
        t["services"]["crystal"]["replicas"] = value

    assert topology_error(mutate) == f"config error: topology.services.crystal.replicas={value}: must be an integer from 1 to 100"
    with pytest.raises(ConfigError, match=rf"^config error: services_per_stack={value}: must be an integer from 1 to 80$"):
        config_with(services_per_stack=value)


@pytest.mark.parametrize("name", ["nodejs-", "-nodejs", "node--js-"])
def test_a_name_that_ends_or_starts_with_a_dash_is_not_a_dns_label(name: str) -> None:
    message = topology_error(lambda t: t["services"].update({name: {"source": "services/nodejs"}}))
    assert message == (
        f"config error: topology.services.{name}={name!r}: must be a DNS-1123 label: lower-case letters, digits and '-', "
        "starting and ending with a letter or digit (Kubernetes object names)"
    )
    assert config_with(namespace="lab-appmesh").mesh.namespace == "lab-appmesh"
    with pytest.raises(ConfigError, match=r"^config error: namespace='lab-': must be a DNS-1123 label"):
        config_with(namespace="lab-")


@pytest.mark.parametrize(("key", "limit"), [("namespace", 63), ("mesh_name", 63), ("cluster_name", 100)])
def test_a_name_of_exactly_its_limit_is_accepted_and_one_more_refused(key: str, limit: int) -> None:
    at_limit, over = "a" * limit, "a" * (limit + 1)
    config = config_with(**{key: at_limit})
    assert {"namespace": config.mesh.namespace, "mesh_name": config.mesh.mesh_name, "cluster_name": config.cluster.name}[key] == at_limit
    with pytest.raises(ConfigError) as caught:
        config_with(**{key: over})
    assert str(caught.value).endswith(f": is {limit + 1} characters; at most {limit} are allowed here")


def test_a_service_name_of_exactly_56_characters_is_accepted() -> None:
    """56 = 63 - len("-router"): the longest suffix appended stays within a label (57 is refused above)."""
    name = "a" * 56
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["services"][name] = {"source": "services/nodejs", "replicas": 1}
    assert name in [s.name for s in config_with(topology=topology, node_desired=4).mesh.topology.services]


@pytest.mark.parametrize(("port", "accepted"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_a_service_port_is_from_1_to_65535(port: int, accepted: bool) -> None:
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["services"]["crystal"]["port"] = port
    if accepted:
        assert config_with(topology=topology).mesh.topology.service("crystal").port == port
        return
    with pytest.raises(ConfigError) as caught:
        config_with(topology=topology)
    assert str(caught.value) == f"config error: topology.services.crystal.port={port}: must be an integer from 1 to 65535"


def test_a_prefix_of_255_characters_is_accepted_and_256_refused() -> None:
    """App Mesh's limit on a route's path prefix is 255 characters."""
    longest, over = "/" + "a" * 254, "/" + "a" * 255
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["virtual_services"]["crystal"]["routes"][0]["prefix"] = longest
    assert config_with(topology=topology).mesh.topology.virtual_service("crystal").routes[0].prefix == longest
    message = topology_error(lambda t: t["virtual_services"]["crystal"]["routes"][0].update(prefix=over))
    assert message.startswith(
        f"config error: topology.virtual_services.crystal.routes[0].prefix='{over[:76]}...: must be a URL path prefix"
    )
    assert "at most 255 characters" in message


def test_every_route_of_a_virtual_service_listens_on_the_first_routes_port() -> None:
    """A virtual service has one listener port: each route's targets are compared with the
    virtual service's first target, not with their own route's first (which would let a second
    route on another port through)."""

    def mutate(t: Any) -> None:
        t["services"]["nodejsv2"]["port"] = 4000
        t["virtual_services"]["nodejs"]["routes"] = [
            {"prefix": "/", "targets": {"nodejs": 1}},
            {"prefix": "/v2/", "targets": {"nodejsv2": 1}},
        ]

    assert topology_error(mutate) == (
        "config error: topology.virtual_services.nodejs.routes[1].targets='nodejsv2': listens on 4000, but nodejs listens on 3000; "
        "a router has one listener port"
    )
