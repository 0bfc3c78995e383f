"""The Istio layer's parts that need no cluster, no Go and no root (these run in plain `make test`):
that istiod is built from the module its charts come from, that the test-only values are keys the
chart reads, how istiod's webhooks are pointed at it, what the kubelet stand-in hands a container,
and how an Envoy config dump is read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import upstream
from components.istio import VERSION
from conformance import binaries, charts, envoy_config
from conformance.cloudformation import Manifest, Step
from conformance.istio import TEST_ONLY_VALUES, IstioLayer
from conformance.kubelet import expand, field_value, parse_quantity, resource_value
from conformance.pod_network import _endpoint


def test_istiod_istioctl_and_pilot_agent_are_built_from_the_module_the_istio_charts_come_from() -> None:
    """One Istio: the programs that judge the charts are the charts' own release branch."""
    source = charts.source_for("https://blob.istio.io/istio-release/charts", "istiod", VERSION)
    assert isinstance(source, charts.ChartSource)
    programs = binaries.programs()
    assert {programs[name].version for name in ("pilot-discovery", "istioctl", "pilot-agent")} == {source.module.version}
    # Istio's release build: the agent without the gRPC and retry tracing the control plane has.
    assert programs["pilot-agent"].tags == ("agent", "disable_pgv", "grpcnotrace", "retrynotrace")
    assert programs["pilot-discovery"].tags == programs["istioctl"].tags == ("vtprotobuf", "disable_pgv")


def test_the_test_only_values_are_keys_the_pinned_istiod_chart_reads() -> None:
    """Helm ignores a key a chart does not read: each test-only switch must be one it reads, or
    the extensions would stay on and the test would judge something else than it says."""
    values = yaml.safe_load(upstream.text("istio-1.31-istio-discovery-values.yaml"))["_internal_defaults_do_not_set"]
    assert isinstance(values["env"], dict)
    assert values["telemetry"]["v2"]["prometheus"]["enabled"] is True  # the default the test turns off
    assert set(TEST_ONLY_VALUES) == {"env", "telemetry"}


def _layer(tmp_path: Path) -> IstioLayer:
    return IstioLayer(tmp_path, {"pilot-discovery": Path("pilot-discovery"), "pilot-agent": Path("pilot-agent")})


def _webhook_configuration(kind: str, service: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": "example"},
        "webhooks": [{"name": "a.example.io", "clientConfig": {"service": service, "caBundle": ""}}],
    }


def test_istiods_webhooks_are_kept_and_pointed_at_the_local_istiod(tmp_path: Path) -> None:
    layer = _layer(tmp_path)
    step = Step("Stack", "Istiod", "Stack/Istiod", Manifest(False, False, ()))
    service = {"name": "istiod-1-31", "namespace": "istio-system", "path": "/inject", "port": 443}
    kept, reason = layer.webhooks(step, _webhook_configuration("MutatingWebhookConfiguration", service))
    assert reason == "" and kept is not None
    assert kept["webhooks"][0]["clientConfig"] == {"url": f"https://127.0.0.1:{layer.ports.webhooks}/inject", "caBundle": ""}
    assert layer.kept_webhooks == ["MutatingWebhookConfiguration/example"]


def test_any_other_webhook_is_left_out_as_the_api_server_layer_leaves_it_out(tmp_path: Path) -> None:
    layer = _layer(tmp_path)
    step = Step("Stack", "CertManager", "Stack/CertManager", Manifest(False, False, ()))
    service = {"name": "cert-manager-webhook", "namespace": "cert-manager", "path": "/validate"}
    kept, reason = layer.webhooks(step, _webhook_configuration("ValidatingWebhookConfiguration", service))
    assert kept is None and "cert-manager/cert-manager-webhook" in reason
    assert layer.kept_webhooks == []


def test_the_kubelet_stand_in_writes_labels_and_annotations_as_the_kubelet_does() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "n", "labels": {"b": "2", "a": 'say "hi"'}},
        "spec": {},
        "status": {"podIP": "10.244.0.2"},
    }
    assert field_value(pod, "metadata.labels") == 'a="say \\"hi\\""\nb="2"'
    assert field_value(pod, "metadata.labels['b']") == "2"
    assert field_value(pod, "status.podIP") == "10.244.0.2"


def test_the_kubelet_stand_in_expands_environment_references_as_kubernetes_does() -> None:
    assert expand("$(POD_NAMESPACE).svc.cluster.local", {"POD_NAMESPACE": "lab-appmesh"}) == "lab-appmesh.svc.cluster.local"
    assert expand("$$(POD_NAMESPACE) $(UNSET)", {"POD_NAMESPACE": "lab-appmesh"}) == "$(POD_NAMESPACE) $(UNSET)"


@pytest.mark.parametrize(
    ("reference", "value"),
    [
        ({"resource": "limits.cpu"}, "1"),  # 500m rounded up to whole cores
        ({"resource": "limits.cpu", "divisor": "1m"}, "500"),
        ({"resource": "limits.memory"}, str(256 * 2**20)),
        ({"resource": "requests.memory", "divisor": "1Mi"}, "64"),
        ({"resource": "limits.ephemeral-storage", "divisor": "1Gi"}, "500"),  # no limit: the node's allocatable
    ],
)
def test_the_kubelet_stand_in_resolves_resources_as_the_kubelet_does(reference: dict[str, str], value: str) -> None:
    container = {"resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}}
    assert resource_value(container, reference) == value
    assert parse_quantity("1.5Gi") == 1.5 * 2**30


def test_a_pod_network_listens_and_connects_only_on_loopback_or_a_unix_socket() -> None:
    assert _endpoint("tcp:127.0.0.1:15012") == ("tcp", "127.0.0.1", 15012)
    assert _endpoint("unix:/tmp/istiod.sock") == ("unix", "/tmp/istiod.sock", 0)
    with pytest.raises(SystemExit, match=re.escape("tcp:0.0.0.0:15012: only unix:PATH and tcp:127.x.x.x:PORT (loopback)")):
        _endpoint("tcp:0.0.0.0:15012")


def test_an_envoy_route_reads_as_the_mesh_speaks_of_routes() -> None:
    route = {
        "match": {"prefix": "/eks/"},
        "route": {
            "weighted_clusters": {
                "clusters": [
                    {"name": "outbound|3000||nodejs.lab-appmesh.svc.cluster.local", "weight": 2},
                    {"name": "outbound|3000||nodejsv2.lab-appmesh.svc.cluster.local", "weight": 1},
                ]
            },
            "prefix_rewrite": "/",
            "timeout": "0.300s",
            "retry_policy": {"retry_on": "5xx,reset", "num_retries": 2, "per_try_timeout": "2s"},
        },
    }
    assert envoy_config.route_form(route) == {
        "prefix": "/eks/",
        "targets": {"nodejs.lab-appmesh.svc.cluster.local": 2, "nodejsv2.lab-appmesh.svc.cluster.local": 1},
        "timeout_ms": 300,
        "retry": {"max_retries": 2, "per_retry_timeout_ms": 2000, "retry_on": "5xx,reset"},
        "rewrite": "/",
    }
    # Istio writes "no timeout" as 0s and "no retries" as zero of them.
    route["route"].update(timeout="0s", retry_policy={"num_retries": 0})
    assert (envoy_config.route_form(route)["timeout_ms"], envoy_config.route_form(route)["retry"]) == (None, None)


def test_an_rbac_filter_reads_as_its_principals_and_ports() -> None:
    """The shape istiod gives an ALLOW policy's rule: or/and trees of principals and permissions
    (what test_istio.py reads from each sidecar's inbound chains)."""
    rules = {
        "policies": {
            "ns[lab-appmesh]-policy[nodejs]-rule[0]": {
                "permissions": [{"and_rules": {"rules": [{"or_rules": {"rules": [{"destination_port": 3000}]}}]}}],
                "principals": [
                    {
                        "and_ids": {
                            "ids": [
                                {
                                    "or_ids": {
                                        "ids": [
                                            {
                                                "authenticated": {
                                                    "principal_name": {"exact": "spiffe://cluster.local/ns/lab-appmesh/sa/frontend"}
                                                }
                                            },
                                            {
                                                "authenticated": {
                                                    "principal_name": {"exact": "spiffe://cluster.local/ns/lab-appmesh/sa/ingress-gw"}
                                                }
                                            },
                                        ]
                                    }
                                }
                            ]
                        }
                    }
                ],
            }
        }
    }
    assert envoy_config.principals(rules) == {
        "spiffe://cluster.local/ns/lab-appmesh/sa/frontend",
        "spiffe://cluster.local/ns/lab-appmesh/sa/ingress-gw",
    }
    assert envoy_config.destination_ports(rules) == {3000}
    assert (envoy_config.principals({}), envoy_config.destination_ports({"policies": {"p": {"permissions": [{"any": True}]}}})) == (
        set(),
        set(),
    )
