"""Traffic and security policies in the topology: defaults, overrides, each validation rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from config import ConfigError
from config.policies import ConnectionPool, HealthCheck, OutlierDetection, RetryPolicy
from tests.conftest import cdk_json_context
from tests.unit.test_settings import config_with


def topology_with(mutate: Any) -> Any:
    topology = copy.deepcopy(cdk_json_context()["topology"])
    mutate(topology)
    return config_with(topology=topology).mesh.topology


def error_for(mutate: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        topology_with(mutate)
    return str(caught.value)


def route(t: Any) -> Any:
    return t["virtual_services"]["nodejs"]["routes"][0]


def test_defaults() -> None:
    topology = config_with().mesh.topology
    nodejs = topology.service("nodejs")
    assert (nodejs.timeout_ms, nodejs.health_check, nodejs.outlier_detection, nodejs.connection_pool) == (
        15000,
        HealthCheck(5000, 2000, 2, 2),
        OutlierDetection(5, 10000, 30000, 50),
        ConnectionPool(1024, 1024),
    )
    (nodejs_route,) = topology.virtual_service("nodejs").routes
    assert nodejs_route.timeout_ms == 15000
    assert nodejs_route.retry == RetryPolicy(2, 2000, ("server-error", "gateway-error"), ("connection-error",))
    assert (topology.egress_filter, topology.mtls) == ("DROP_ALL", "strict")


def test_policies_are_configurable() -> None:
    def mutate(t: Any) -> None:
        t["services"]["crystal"].update(
            timeout_ms=5000,
            outlier_detection={"max_server_errors": 3, "max_ejection_percent": 34},
            connection_pool={"max_connections": 50},
            health_check={"interval_ms": 10000},
        )
        t["virtual_services"]["crystal"]["routes"][0].update(
            timeout_ms=3000, retry={"max_retries": 1, "per_retry_timeout_ms": 1000, "http_events": ["server-error"]}
        )

    topology = topology_with(mutate)
    crystal = topology.service("crystal")
    assert crystal.timeout_ms == 5000
    assert crystal.outlier_detection == OutlierDetection(3, 10000, 30000, 34)
    assert crystal.connection_pool == ConnectionPool(50, 1024)
    assert crystal.health_check.interval_ms == 10000
    assert topology.virtual_service("crystal").routes[0].retry == RetryPolicy(1, 1000, ("server-error",), ("connection-error",))


def test_retry_and_outlier_detection_can_be_turned_off() -> None:
    def mutate(t: Any) -> None:
        route(t)["retry"] = "off"
        t["services"]["nodejs"]["outlier_detection"] = False

    topology = topology_with(mutate)
    assert topology.virtual_service("nodejs").routes[0].retry is None
    assert topology.service("nodejs").outlier_detection is None


def test_retries_must_fit_in_the_route_timeout() -> None:
    message = error_for(lambda t: route(t).update(timeout_ms=3000, retry={"max_retries": 3, "per_retry_timeout_ms": 1000}))
    assert message == (
        "config error: topology.virtual_services.nodejs.routes[0].retry.per_retry_timeout_ms=1000: 4 tries of 1000 ms exceed "
        "the route's timeout_ms (3000); the last retries could never run"
    )


def test_unknown_retry_event() -> None:
    message = error_for(lambda t: route(t).update(retry={"http_events": ["server-error", "teapot"]}))
    assert message == (
        "config error: topology.virtual_services.nodejs.routes[0].retry.http_events='teapot': "
        "App Mesh retries on server-error, gateway-error, client-error, stream-error"
    )


def test_retry_needs_an_event() -> None:
    assert "name at least one retry event" in error_for(lambda t: route(t).update(retry={"http_events": [], "tcp_events": []}))


def test_too_many_retries() -> None:
    assert error_for(lambda t: route(t).update(retry={"max_retries": 11})).endswith("max_retries=11: must be an integer from 0 to 10")


def test_health_check_timeout_shorter_than_interval() -> None:
    message = error_for(lambda t: t["services"]["nodejs"].update(health_check={"interval_ms": 5000, "timeout_ms": 5000}))
    assert message == "config error: topology.services.nodejs.health_check.timeout_ms=5000: must be shorter than interval_ms (5000)"


def test_health_check_bounds_are_app_mesh_bounds() -> None:
    assert "must be an integer from 5000 to 300000" in error_for(
        lambda t: t["services"]["nodejs"].update(health_check={"interval_ms": 1000})
    )


def test_outlier_ejection_percent_bounds() -> None:
    message = error_for(lambda t: t["services"]["nodejs"].update(outlier_detection={"max_ejection_percent": 150}))
    assert message.endswith("outlier_detection.max_ejection_percent=150: must be an integer from 0 to 100")


def test_unknown_policy_key_suggests() -> None:
    message = error_for(lambda t: t["services"]["nodejs"].update(connection_pool={"max_connection": 5}))
    assert message.startswith(
        "config error: topology.services.nodejs.connection_pool.max_connection=5: unknown key (did you mean max_connections?)"
    )


@pytest.mark.parametrize(
    ("key", "value", "accepted"), [("mtls", "permissive", "must be strict"), ("egress_filter", "SOME", "must be ALLOW_ALL or DROP_ALL")]
)
def test_mesh_wide_settings(key: str, value: str, accepted: str) -> None:
    assert accepted in error_for(lambda t: t.update({key: value}))
