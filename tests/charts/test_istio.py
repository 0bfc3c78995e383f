"""The Istio backend's objects: the workshop's names, routes and policies as Istio expresses them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

import upstream
from backends import backend_named
from backends.render import all_objects, render
from components.istio import EXAMPLE_IMAGES, istiod_values
from mesh.names import mesh_names
from tests.charts.conftest import find
from tests.conftest import cdk_json_context
from tests.unit.test_settings import backend_config

NETWORKING = "networking.istio.io/v1"


@pytest.fixture(scope="module")
def istio() -> dict[str, list[dict[str, Any]]]:
    return render(backend_config("istio"), backend_named("istio"))


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return find([o for o in objects if o["apiVersion"] != "v1"], kind, name)


def test_each_workshop_name_is_a_service_entry_the_dns_proxy_answers(istio: dict[str, list[dict[str, Any]]]) -> None:
    entry = _find(istio["routing-nodejs"], "ServiceEntry", "nodejs")
    assert entry["spec"] == {
        "hosts": ["nodejs.appmeshworkshop.hosted.local"],
        "location": "MESH_INTERNAL",
        # STATIC with no endpoints: istiod allocates an address (NONE would get none).
        "resolution": "STATIC",
        "ports": [{"number": 3000, "name": "http", "protocol": "HTTP"}],
        "exportTo": ["."],
    }


def test_the_canary_is_a_weighted_virtual_service_with_timeout_and_retries(istio: dict[str, list[dict[str, Any]]]) -> None:
    route = _find(istio["routing-nodejs"], "VirtualService", "nodejs")
    assert route["spec"]["hosts"] == ["nodejs.appmeshworkshop.hosted.local"]
    assert "gateways" not in route["spec"]  # the mesh's sidecars
    (http,) = route["spec"]["http"]
    assert http == {
        "name": "route-to-nodejs-app",
        "match": [{"uri": {"prefix": "/"}}],
        "route": [
            {"destination": {"host": "nodejs.lab-appmesh.svc.cluster.local", "port": {"number": 3000}}, "weight": 2},
            {"destination": {"host": "nodejsv2.lab-appmesh.svc.cluster.local", "port": {"number": 3000}}, "weight": 1},
        ],
        "timeout": "15s",
        # server-error, gateway-error and connection-error, in Envoy's words (config/policies.py).
        "retries": {"attempts": 2, "perTryTimeout": "2s", "retryOn": "5xx,gateway-error,connect-failure,reset"},
    }


def test_retry_off_is_zero_attempts_and_timeout_off_is_no_timeout() -> None:
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["virtual_services"]["crystal"]["routes"][0].update(retry="off", timeout_ms="off")
    objects = all_objects(render(backend_config("istio", topology=topology), backend_named("istio")))
    (http,) = _find(objects, "VirtualService", "crystal")["spec"]["http"]
    assert http["retries"] == {"attempts": 0}  # Istio would otherwise retry twice
    assert "timeout" not in http


def test_the_gateway_route_rewrites_eks_to_the_same_weighted_targets(istio: dict[str, list[dict[str, Any]]]) -> None:
    """In the nodejs routing manifest, beside the mesh's route, so a canary step is one manifest."""
    route = _find(istio["routing-nodejs"], "VirtualService", "gateway-route-eks")
    assert route["spec"]["gateways"] == ["lab-appmesh/ingress-gw"]
    (http,) = route["spec"]["http"]
    assert http["match"] == [{"uri": {"prefix": "/eks/"}}]
    assert http["rewrite"] == {"uri": "/"}
    assert [(d["destination"]["host"], d["weight"]) for d in http["route"]] == [
        ("nodejs.lab-appmesh.svc.cluster.local", 2),
        ("nodejsv2.lab-appmesh.svc.cluster.local", 1),
    ]
    gateway = _find(istio["gateway"], "Gateway", "ingress-gw")
    assert gateway["spec"] == {
        "selector": {"istio": "ingress-gw"},
        "servers": [{"port": {"number": 8088, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
    }


def test_outlier_detection_and_connection_pool_are_a_destination_rule(istio: dict[str, list[dict[str, Any]]]) -> None:
    rule = _find(istio["service-crystal"], "DestinationRule", "crystal")
    assert rule["spec"] == {
        "host": "crystal.lab-appmesh.svc.cluster.local",
        "exportTo": ["."],
        "trafficPolicy": {
            "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s", "maxEjectionPercent": 50},
            "connectionPool": {"tcp": {"maxConnections": 1024}, "http": {"http1MaxPendingRequests": 1024}},
        },
    }
    assert "tls" not in rule["spec"]["trafficPolicy"]  # automatic mTLS stays on


def test_only_declared_callers_reach_a_service(istio: dict[str, list[dict[str, Any]]]) -> None:
    nodejs = _find(istio["service-nodejsv2"], "AuthorizationPolicy", "nodejsv2")
    assert nodejs["spec"] == {
        "selector": {"matchLabels": {"app": "nodejsv2-app"}},
        "action": "ALLOW",
        "rules": [
            {
                "from": [
                    {"source": {"principals": ["cluster.local/ns/lab-appmesh/sa/frontend", "cluster.local/ns/lab-appmesh/sa/ingress-gw"]}}
                ],
                "to": [{"operation": {"ports": ["3000"]}}],
            }
        ],
    }
    crystal = _find(istio["service-crystal"], "AuthorizationPolicy", "crystal")
    assert crystal["spec"]["rules"][0]["from"][0]["source"]["principals"] == ["cluster.local/ns/lab-appmesh/sa/frontend"]


def test_mtls_is_strict_and_the_exposed_frontend_also_takes_its_load_balancer(istio: dict[str, list[dict[str, Any]]]) -> None:
    assert _find(istio["platform"], "PeerAuthentication", "default")["spec"] == {"mtls": {"mode": "STRICT"}}
    frontend = _find(istio["service-frontend"], "PeerAuthentication", "frontend")
    assert frontend["spec"] == {
        "selector": {"matchLabels": {"app": "frontend-app"}},
        "mtls": {"mode": "STRICT"},
        "portLevelMtls": {"3000": {"mode": "PERMISSIVE"}},
    }
    assert not [o for o in istio["service-frontend"] if o["kind"] == "AuthorizationPolicy"]


def test_each_workload_may_call_only_its_backends(istio: dict[str, list[dict[str, Any]]]) -> None:
    frontend = _find(istio["service-frontend"], "Sidecar", "frontend")
    assert frontend["spec"] == {
        "workloadSelector": {"labels": {"app": "frontend-app"}},
        "egress": [
            {
                "hosts": [
                    "./crystal.appmeshworkshop.hosted.local",
                    "./crystal.lab-appmesh.svc.cluster.local",
                    "./nodejs.appmeshworkshop.hosted.local",
                    "./nodejs.lab-appmesh.svc.cluster.local",
                    "./nodejsv2.lab-appmesh.svc.cluster.local",
                    "amazon-cloudwatch/cloudwatch-agent.amazon-cloudwatch.svc.cluster.local",
                    "istio-system/*",
                ]
            }
        ],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    crystal = _find(istio["service-crystal"], "Sidecar", "crystal")
    assert crystal["spec"]["egress"] == [
        {"hosts": ["amazon-cloudwatch/cloudwatch-agent.amazon-cloudwatch.svc.cluster.local", "istio-system/*"]}
    ]


def test_traces_go_to_the_collector_through_telemetry(istio: dict[str, list[dict[str, Any]]]) -> None:
    assert _find(istio["platform"], "Telemetry", "tracing")["spec"] == {
        "tracing": [{"providers": [{"name": "otel"}], "randomSamplingPercentage": 10.0}]
    }


def test_probes_are_http_for_the_injector_to_rewrite_and_no_pod_carries_an_irsa_role(istio: dict[str, list[dict[str, Any]]]) -> None:
    """No port is excluded from the redirect: under STRICT mTLS the kubelet's plain probes pass
    only because the injector rewrites HTTP probes to the agent's status port, which the pinned
    chart does by default and the app's values leave alone."""
    objects = all_objects(istio)
    for name in ("frontend", "nodejs", "nodejsv2", "crystal"):
        pod = find(objects, "Deployment", f"{name}-app")["spec"]["template"]
        assert "annotations" not in pod["metadata"]
        (app,) = pod["spec"]["containers"]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert set(app[probe]) - {"periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold", "initialDelaySeconds"} == {
                "httpGet"
            }
    chart = yaml.safe_load(upstream.text("istio-1.31-istio-discovery-values.yaml"))["_internal_defaults_do_not_set"]
    assert chart["sidecarInjectorWebhook"]["rewriteAppHTTPProbe"] is True
    assert "sidecarInjectorWebhook" not in istiod_values(egress_registry_only=True, tracing=True, images=EXAMPLE_IMAGES)
    for name in ("frontend", "nodejs", "nodejsv2", "crystal"):
        assert "annotations" not in find(objects, "ServiceAccount", name)["metadata"]


def test_mtls_off_and_egress_open_render_no_such_policies() -> None:
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology.update(mtls="off", egress_filter="ALLOW_ALL", tracing="off")
    objects = all_objects(render(backend_config("istio", topology=topology), backend_named("istio")))
    kinds = {o["kind"] for o in objects if o["apiVersion"].endswith("istio.io/v1")}
    assert kinds == {"ServiceEntry", "VirtualService", "DestinationRule", "Gateway"}


@pytest.mark.parametrize(("name", "version"), [("frontend", "v1"), ("nodejs", "v1"), ("nodejsv2", "v2"), ("crystal", "v1")])
def test_pods_carry_their_version_and_drain_before_sigterm(istio: dict[str, list[dict[str, Any]]], name: str, version: str) -> None:
    """`version` tells v1 from v2 in Istio's metrics (the canonical revision); it is on the pods
    only, so the Deployment's and the Service's selectors stay the service's own. The preStop sleep
    outlasts istiod's endpoint-push debounce (10 s at most), within a 30 s grace period."""
    objects = istio[f"service-{name}"]
    deployment = find(objects, "Deployment", f"{name}-app")
    pod = deployment["spec"]["template"]
    labels = {k: v for k, v in pod["metadata"]["labels"].items() if not k.startswith("cdk8s.io/")}
    assert labels == {"app": f"{name}-app", "version": version}
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": f"{name}-app"}}
    selector = find(objects, "Service", name)["spec"]["selector"]
    assert "version" not in selector and selector.items() <= pod["metadata"]["labels"].items()
    (app,) = pod["spec"]["containers"]
    assert app["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30


def _two_route_topology() -> dict[str, Any]:
    """nodejs with `/` configured before `/api/` (the order a config file may well use)."""
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["virtual_services"]["nodejs"]["routes"] = [
        {"prefix": "/", "targets": {"nodejs": 1}},
        {"prefix": "/api/", "targets": {"nodejsv2": 1}},
    ]
    return topology


def test_istio_takes_the_longest_prefix_first() -> None:
    """Istio uses the first route that matches: `/` ahead of `/api/` would take every request."""
    objects = all_objects(render(backend_config("istio", topology=_two_route_topology()), backend_named("istio")))
    mesh = _find(objects, "VirtualService", "nodejs")["spec"]["http"]
    assert [(h["match"][0]["uri"]["prefix"], h["route"][0]["destination"]["host"]) for h in mesh] == [
        ("/api/", "nodejsv2.lab-appmesh.svc.cluster.local"),
        ("/", "nodejs.lab-appmesh.svc.cluster.local"),
    ]
    gateway = _find(objects, "VirtualService", "gateway-route-eks")["spec"]["http"]
    assert [h["match"][0]["uri"]["prefix"] for h in gateway] == ["/eks/api/", "/eks/"]


def test_the_gateway_rewrites_its_prefix_to_each_routes_own() -> None:
    """`/eks/api/x` reaches the virtual service as `/api/x` (App Mesh strips the gateway's prefix,
    then routes): rewriting every route to `/` would lose the route's prefix."""
    objects = all_objects(render(backend_config("istio", topology=_two_route_topology()), backend_named("istio")))
    gateway = _find(objects, "VirtualService", "gateway-route-eks")["spec"]["http"]
    assert [(h["match"], h["rewrite"]) for h in gateway] == [
        ([{"uri": {"prefix": "/eks/api/"}}], {"uri": "/api/"}),
        ([{"uri": {"prefix": "/eks/"}}], {"uri": "/"}),
    ]


def test_a_service_nobody_calls_gets_an_allow_policy_with_no_rule() -> None:
    """No rule at all: an ALLOW policy that matches nothing denies everything. A rule whose source
    lists no principals would be refused by istiod's validation, and an unset field there would
    match anyone."""
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["services"]["frontend"]["backends"] = ["nodejs"]
    objects = all_objects(render(backend_config("istio", topology=topology), backend_named("istio")))
    assert _find(objects, "AuthorizationPolicy", "crystal")["spec"] == {
        "selector": {"matchLabels": {"app": "crystal-app"}},
        "action": "ALLOW",
        "rules": [],
    }


def test_an_internally_exposed_service_takes_its_load_balancers_plain_traffic() -> None:
    """Its internal NLB is not in the mesh either: its port is PERMISSIVE, as an external one's is,
    and no AuthorizationPolicy turns that plain traffic (which has no principal) away."""
    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["services"]["crystal"].update(exposure="internal", source_cidrs=["10.0.0.0/16"])
    objects = render(backend_config("istio", topology=topology), backend_named("istio"))["service-crystal"]
    assert sorted(o["kind"] for o in objects if o["apiVersion"].endswith("istio.io/v1")) == [
        "DestinationRule",
        "PeerAuthentication",
        "Sidecar",
    ]
    assert _find(objects, "PeerAuthentication", "crystal")["spec"] == {
        "selector": {"matchLabels": {"app": "crystal-app"}},
        "mtls": {"mode": "STRICT"},
        "portLevelMtls": {"3000": {"mode": "PERMISSIVE"}},
    }


def test_the_read_back_refuses_a_route_without_retries(istio: dict[str, list[dict[str, Any]]]) -> None:
    """The parity test's oracle: a route with no `retries` gets Istio's default two retries, which
    the topology never asks for, so it is not "retry off" (that is `attempts: 0`)."""
    objects = copy.deepcopy(all_objects(istio))
    del _find(objects, "VirtualService", "nodejs")["spec"]["http"][0]["retries"]
    with pytest.raises(ValueError, match="a route without `retries` gets Istio's default retries"):
        backend_named("istio").read_back(objects, mesh_names(backend_config("istio")))
