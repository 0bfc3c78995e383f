"""The Istio backend judged by Istio itself (README, Conformance: "Istio: real istiod and Envoy"):
on the real API server, istiod runs with the synthesized values and webhooks, injects the pods the
controller manager makes (Pod Security then judges them), and a real Envoy per proxy (each
service's sidecar and the gateway) takes its config from istiod with that pod's identity. What
each Envoy runs is compared with the topology the app was synthesized from; `istioctl analyze`
reads every object; and it bites: what istiod or Envoy refuses, shown on our own output with one
thing broken, and accepted once that thing is fixed.

The tests share one control plane and run in this file's order; the last destroys it.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from backends import backend_named
from backends.istio import PROXY_IMAGE
from charts.istio import service_host
from config.policies import retry_events, retry_on
from conformance import cloudformation, envoy_config
from conformance.cloudformation import HelmRelease, Manifest
from conformance.envoy_config import Config
from conformance.harness import summary
from conformance.istio import LISTENERS, TEST_ONLY_VALUES, IstioLayer, is_istiod, merged
from conformance.kubelet import wait_for
from conformance.proxies import Proxy
from mesh.names import MeshNames, mesh_names
from mesh.parity import callers, retry_form
from mesh.parts import Injection
from tests.charts.admission import kubelet_refusals
from tests.conformance.conftest import ASSET_IMAGE, Deployed, assemblies, deploy, synthesized_config

pytestmark = pytest.mark.conformance

BACKEND = "istio"
SYNC_TIMEOUT_S = 90
RELOAD_TIMEOUT_S = 60
ANALYZE_TIMEOUT_S = 180


@dataclass
class Mesh:
    """What the app was synthesized from, and what it set istiod's values to."""

    config: Any
    names: MeshNames
    istiod_values: dict[str, Any]

    @property
    def topology(self) -> Any:
        return self.config.mesh.topology

    @property
    def proxy_image(self) -> str:
        """The proxyv2 mirror as this deploy gave it to istiod (an image asset's URI)."""
        return str(self.istiod_values["global"]["proxy"]["image"])

    def deployed(self, image: str) -> str:
        """An image as the backend's model writes it (the mirror at an example account, where no
        deploy has filled in the asset's URI), as this deploy gave it to istiod."""
        return self.proxy_image if image == PROXY_IMAGE else image


@pytest.fixture(scope="module")
def istio(programs: dict[str, Path]) -> Iterator[Deployed]:
    """The Istio backend deployed with istiod running, then one Envoy per workload started."""
    with deploy(BACKEND, programs, folder="istio-envoy") as deployed:
        layer = deployed.istio
        assert layer is not None
        if not deployed.report.refusals:
            names = mesh_names(synthesized_config(BACKEND))
            layer.start_proxies(deployed.running, names.namespace)
        yield deployed


@pytest.fixture(scope="module")
def mesh(istio: Deployed) -> Mesh:
    config = synthesized_config(BACKEND)
    (release,) = [step.action for step in istio.steps if is_istiod(step)]
    assert isinstance(release, HelmRelease)
    return Mesh(config, mesh_names(config), release.values)


def _layer(istio: Deployed) -> IstioLayer:
    assert istio.istio is not None
    return istio.istio


def _fail_with(istio: Deployed, problems: list[str], what: str) -> None:
    if problems:
        lines = "\n  ".join(problems)
        pytest.fail(f"istio: {what}:\n  {lines}\n(files and logs: {istio.workdir})", pytrace=False)


def _proxy(istio: Deployed, labels: dict[str, str]) -> Proxy:
    """The proxy of the workload whose pods carry `labels`."""
    found = [proxy for proxy in _layer(istio).proxies.values() if labels.items() <= proxy.pod["metadata"].get("labels", {}).items()]
    assert len(found) == 1, (labels, list(_layer(istio).proxies))
    return found[0]


@pytest.fixture(scope="module")
def envoy(istio: Deployed, mesh: Mesh) -> dict[str, Config]:
    """What each workload's Envoy runs (services by name, and the gateway), read once istiod has
    sent every proxy its config and each has answered."""
    _fail_with(istio, [f"{r.step}: {r.message}" for r in istio.report.refusals], "the deploy was refused\n" + summary(istio.report))
    _fail_with(istio, _layer(istio).wait_proxies_synced(SYNC_TIMEOUT_S), f"proxies not in sync with istiod after {SYNC_TIMEOUT_S} s")
    workloads = {service.name: service.pod_labels for service in mesh.topology.services}
    if mesh.topology.gateway:
        workloads[mesh.topology.gateway.name] = mesh.topology.gateway.pod_labels
    dumps = {}
    for name, labels in workloads.items():
        dump = _proxy(istio, labels).config_dump()
        (istio.workdir / "proxies" / f"{name}.config_dump.json").write_text(json.dumps(dump, indent=1))
        dumps[name] = envoy_config.read(dump)
    return dumps


# -- injection and admission --------------------------------------------------------------------


def test_istiods_webhooks_are_kept_and_everything_is_accepted(istio: Deployed) -> None:
    """Nothing is left out (the API-server layer left istiod's webhooks out): the injector, the
    revision tag's injector and both validators go to the local istiod, and every object,
    admitted through them, is accepted."""
    layer = _layer(istio)
    assert sorted(layer.kept_webhooks) == [
        "MutatingWebhookConfiguration/istio-revision-tag-default",
        "MutatingWebhookConfiguration/istio-sidecar-injector-1-31",
        "ValidatingWebhookConfiguration/istio-validator-1-31-istio-system",
        "ValidatingWebhookConfiguration/istiod-default-validator",
    ]
    assert [f"{item.step}: {item.what}" for item in istio.report.left_out] == []
    _fail_with(istio, [f"{r.step}: {r.message}" for r in istio.report.refusals], "refused\n" + summary(istio.report))


def _namespace_pods(istio: Deployed, namespace: str) -> list[dict[str, Any]]:
    return list(istio.running.plane.api().get(f"/api/v1/namespaces/{namespace}/pods")["items"])


def test_every_meshed_pod_is_injected_by_istiod_and_admitted_at_the_namespaces_level(istio: Deployed, mesh: Mesh) -> None:
    """The controller manager's pods of our Deployments and of the gateway chart went through
    istiod's injector, then Pod Security at the level the namespace enforces (restricted): every
    one admitted and Running, each with the proxy the injector adds (a native sidecar for the
    services, the gateway's own container for the gateway)."""
    harness = istio.running.harness
    _fail_with(istio, harness.pod_refusals() + harness.workloads_short(), "pods refused or not running")
    namespace = istio.running.plane.api().get(f"/api/v1/namespaces/{mesh.names.namespace}")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == backend_named(BACKEND).pod_security == "restricted"
    pods = _namespace_pods(istio, mesh.names.namespace)
    workloads = {service.virtual_node for service in mesh.topology.services} | {mesh.topology.gateway.name}
    assert {pod["metadata"]["labels"]["app"] for pod in pods} == workloads
    for pod in pods:
        name, spec = pod["metadata"]["name"], pod["spec"]
        assert "sidecar.istio.io/status" in pod["metadata"]["annotations"], name
        assert pod["status"]["phase"] == "Running", name
        if pod["metadata"]["labels"]["app"] == mesh.topology.gateway.name:
            (proxy,) = spec["containers"]
            assert proxy["name"] == "istio-proxy", name
            injected = [proxy]
        else:
            init = {container["name"]: container for container in spec["initContainers"]}
            assert set(init) == {"istio-validation", "istio-proxy"}, name
            assert init["istio-proxy"]["restartPolicy"] == "Always", name  # native: the kubelet is 1.35
            injected = list(init.values())
        # Every container the injector adds runs the proxyv2 mirror word for word, as given in
        # `global.proxy.image` and `global.proxy_init.image` (a full reference: no hub before it, no
        # tag after it; components/istio.py IstioImages), the ECR asset the deploy pushes.
        mirror = mesh.proxy_image
        assert ASSET_IMAGE.match(mirror) and mesh.istiod_values["global"]["proxy_init"]["image"] == mirror
        assert {container["name"]: container["image"] for container in injected} == {c["name"]: mirror for c in injected}, name


def test_the_backends_picture_of_the_injector_is_istiods_own(istio: Deployed, mesh: Mesh) -> None:
    """What `IstioBackend.injected` says the injector adds (containers, their order, images and
    security contexts, the pod's sysctls) is what istiod's injector added to each pod."""
    backend = backend_named(BACKEND)
    for pod in _namespace_pods(istio, mesh.names.namespace):
        name, spec = pod["metadata"]["name"], pod["spec"]
        said = backend.injected(pod, mesh.topology)
        # Our pod templates have no init containers of their own: every one there is the injector's.
        added = spec.get("initContainers", [])
        assert [(c["name"], c["image"], c.get("restartPolicy"), c["securityContext"]) for c in added] == [
            (c["name"], mesh.deployed(c["image"]), c.get("restartPolicy"), c["securityContext"]) for c in said.init_containers
        ], name
        containers = {container["name"]: container for container in spec["containers"]}
        for container in said.containers:
            real = containers[container["name"]]
            assert real["image"] == mesh.deployed(container["image"]), name
            assert container["securityContext"].items() <= real["securityContext"].items(), name
        for sysctl in said.pod_security_context.get("sysctls", []):
            assert sysctl in spec["securityContext"].get("sysctls", []), name


def test_every_injected_proxy_is_pointed_at_istiods_service(istio: Deployed) -> None:
    """The proxies here reach istiod over a bridge (a test-only address); what istiod injected, and
    a pod would use, is its revision's Service on 15012 for xDS and certificates, which the chart
    made with that port."""
    expected = "istiod-1-31.istio-system.svc:15012"
    pods = _namespace_pods(istio, mesh_names(synthesized_config(BACKEND)).namespace)
    assert pods
    for pod in pods:
        (proxy,) = [c for c in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]] if c["name"] == "istio-proxy"]
        env = {e["name"]: e.get("value") for e in proxy.get("env", [])}
        assert json.loads(env["PROXY_CONFIG"]).get("discoveryAddress") == expected, pod["metadata"]["name"]
        assert env.get("CA_ADDR", expected) == expected, pod["metadata"]["name"]  # unset: the agent uses discoveryAddress
    service = istio.running.harness.api.get("/api/v1/namespaces/istio-system/services/istiod-1-31")
    assert 15012 in {port["port"] for port in service["spec"]["ports"]}


def test_the_kubelet_would_start_every_injected_pod(istio: Deployed, mesh: Mesh) -> None:
    """The one rule no API server judges (the kubelet's runAsNonRoot against the image's user),
    from the admission model, applied to the pods as istiod injected them. No image's USER is
    assumed: every container of every meshed pod must name its non-root user."""
    for pod in _namespace_pods(istio, mesh.names.namespace):
        assert kubelet_refusals(pod, Injection(), {}) == [], pod["metadata"]["name"]


# -- every proxy takes its config ---------------------------------------------------------------


def test_every_proxy_takes_its_config(istio: Deployed, envoy: dict[str, Config]) -> None:
    """istiod's view (/debug/syncz: every type it sent acknowledged, no error) and each Envoy's
    (no update of any kind rejected)."""
    layer = _layer(istio)
    status = {entry["proxy"].split(".")[0]: entry for entry in layer.istiod.syncz()}
    assert set(status) == set(layer.proxies)
    problems = []
    for name, entry in status.items():
        for kind, resource in entry.get("resources", {}).items():
            if resource.get("lastError") or resource.get("acked") != resource.get("sent"):
                problems.append(f"{name} {kind}: {resource}")
        rejected = {stat: value for stat, value in layer.proxies[name].stats().items() if stat.endswith("update_rejected") and value}
        problems += [f"{name}: {stat} = {value}" for stat, value in rejected.items()]
    _fail_with(istio, problems, "configs refused")
    assert {entry["proxy_type"] for entry in status.values()} == {"sidecar", "router"}


def _shares(weights: dict[str, int]) -> dict[str, Fraction]:
    """Each target's share of the traffic: 2:1 is 2:1 whatever the scale (Istio sends a route
    with one destination to its cluster alone, weightless)."""
    total = sum(weights.values())
    return {target: Fraction(weight, total) for target, weight in weights.items()}


def _routes(mesh: Mesh, virtual_service: str, *, gateway_prefix: str | None = None) -> list[dict[str, Any]]:
    """The topology's routes of a virtual service as Envoy should run them (hosts of the targets'
    Services; at the gateway, under the gateway's prefix and rewritten back)."""
    found = []
    for route in mesh.topology.virtual_service(virtual_service).routes:
        form: dict[str, Any] = {
            "prefix": route.prefix if gateway_prefix is None else gateway_prefix + route.prefix[1:],
            "targets": _shares({service_host(target, mesh.names): weight for target, weight in route.targets}),
            "timeout_ms": route.timeout_ms,
            "retry": _retry(route.retry),
        }
        if gateway_prefix is not None:
            form["rewrite"] = route.prefix
        found.append(form)
    # Envoy takes the first route that matches: the longest prefix must come first.
    return sorted(found, key=lambda form: (-len(form["prefix"]), form["prefix"]))


def _retry(policy: Any) -> dict[str, Any] | None:
    """The topology's retry policy as compared with Envoy's: its events, and the exact conditions
    (no more, no fewer) Envoy is given for them."""
    form = retry_form(policy)
    if form is not None:
        form["conditions"] = sorted(retry_on(policy).split(","))
    return form


def _envoy_routes(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Envoy's routes in the same form: its retry conditions read back as the topology's events."""
    found = []
    for route in routes:
        form = envoy_config.route_form(route)
        form["targets"] = _shares(form["targets"])
        if form["retry"]:
            retry = form["retry"]
            form["retry"] = {
                "max_retries": retry["max_retries"],
                "per_retry_timeout_ms": retry["per_retry_timeout_ms"],
                "events": retry_events(retry["retry_on"]),
                "conditions": sorted(retry["retry_on"].split(",")),
            }
        found.append(form)
    return found  # in Envoy's order


def test_the_gateway_listens_on_its_port_and_routes_each_prefix_as_the_topology_says(envoy: dict[str, Config], mesh: Mesh) -> None:
    """/eks/ to nodejs and nodejsv2 at 2:1, rewritten to /, with the route's timeout and retries
    (from the topology, whatever it says)."""
    gateway = mesh.topology.gateway
    config = envoy[gateway.name]
    listener = config.listeners[f"0.0.0.0_{gateway.port}"]
    assert listener["address"]["socket_address"]["port_value"] == gateway.port
    (host,) = config.routes[f"http.{gateway.port}"]["virtual_hosts"]
    expected = sorted(
        (form for route in gateway.routes for form in _routes(mesh, route.virtual_service, gateway_prefix=route.prefix)),
        key=lambda form: (-len(form["prefix"]), form["prefix"]),
    )
    assert _envoy_routes(host["routes"]) == expected


def test_each_service_routes_each_backend_it_calls_as_the_topology_says(envoy: dict[str, Config], mesh: Mesh) -> None:
    """A caller's routes for a workshop name (frontend's for nodejs.appmeshworkshop.hosted.local:3000):
    the weights, timeouts and retries of that virtual service's routes."""
    checked = 0
    for service in mesh.topology.services:
        for backend in service.backends:
            port = mesh.topology.virtual_service_port(backend)
            host = envoy_config.virtual_host(envoy[service.name], str(port), f"{mesh.names.mesh_host(backend)}:{port}")
            assert host is not None, f"{service.name} has no route for {mesh.names.mesh_host(backend)}:{port}"
            assert _envoy_routes(host["routes"]) == _routes(mesh, backend), (service.name, backend)
            checked += 1
    assert checked


def test_each_callers_clusters_carry_the_services_outlier_detection_and_connection_pool(envoy: dict[str, Config], mesh: Mesh) -> None:
    """The DestinationRule of each service, as every caller's Envoy applies it."""
    checked = 0
    for caller in mesh.topology.services:
        for backend in caller.backends:
            for route in mesh.topology.virtual_service(backend).routes:
                for target, _ in route.targets:
                    service = mesh.topology.service(target)
                    cluster = envoy[caller.name].clusters[f"outbound|{service.port}||{service_host(target, mesh.names)}"]
                    outlier, pool = service.outlier_detection, service.connection_pool
                    found = cluster.get("outlier_detection", {})
                    assert (found.get("consecutive_5xx"), envoy_config.duration_ms(found.get("interval"))) == (
                        outlier.max_server_errors,
                        outlier.interval_ms,
                    ), (caller.name, target)
                    assert (envoy_config.duration_ms(found.get("base_ejection_time")), found.get("max_ejection_percent")) == (
                        outlier.base_ejection_ms,
                        outlier.max_ejection_percent,
                    ), (caller.name, target)
                    (threshold,) = cluster["circuit_breakers"]["thresholds"]
                    assert (threshold["max_connections"], threshold["max_pending_requests"]) == (
                        pool.max_connections,
                        pool.max_pending_requests,
                    ), (caller.name, target)
                    checked += 1
    assert checked


def test_every_inbound_port_requires_mtls_but_an_exposed_services(envoy: dict[str, Config], mesh: Mesh) -> None:
    """STRICT mTLS for the namespace: every chain of every sidecar's inbound listener demands a
    client certificate of the mesh, except the plain-text chain of an exposed service's port,
    which takes its load balancer's traffic (PERMISSIVE there, by design: README, Security and resilience)."""
    assert mesh.topology.mtls == "strict"
    for service in mesh.topology.services:
        chains = envoy_config.inbound_chains(envoy[service.name])
        assert chains, f"{service.name} has no inbound chain"
        plain = sorted(
            ((chain.port, chain.transport) for chain in chains if not chain.client_certificate_required),
            key=lambda c: (c[0] or 0, c[1] or ""),
        )
        expected = [] if service.exposure == "none" else [(service.port, "raw_buffer")]
        assert plain == expected, service.name
        assert any(chain.port == service.port and chain.client_certificate_required for chain in chains), service.name


def test_each_authorization_policy_admits_exactly_the_declared_callers(istio: Deployed, envoy: dict[str, Config], mesh: Mesh) -> None:
    """Every AuthorizationPolicy we render becomes, on the service's sidecar, an RBAC filter on
    every inbound chain allowing exactly the principals it names, which are exactly the
    identities of the callers the topology declares (the gateway's included)."""
    policies = {
        obj["metadata"]["name"]: obj
        for step in istio.steps
        if isinstance(step.action, Manifest)
        for obj in step.action.objects
        if obj["kind"] == "AuthorizationPolicy"
    }
    declared = callers(mesh.topology)
    assert policies
    for service in mesh.topology.services:
        chains = [chain for chain in envoy_config.inbound_chains(envoy[service.name]) if chain.client_certificate_required]
        if service.exposure != "none":
            assert service.name not in policies and all(not chain.rbac for chain in chains), service.name
            continue
        policy = policies[service.name]
        named = {f"spiffe://{p}" for rule in policy["spec"]["rules"] for f in rule["from"] for p in f["source"]["principals"]}
        assert named == {f"spiffe://cluster.local/ns/{mesh.names.namespace}/sa/{caller}" for caller in declared[service.name]}
        assert any(chain.port == service.port for chain in chains), f"{service.name}: no mTLS chain on its port {service.port}"
        for chain in chains:
            assert [rules.get("action", "ALLOW") for rules in chain.rbac] == ["ALLOW"], (service.name, chain.name)
            assert envoy_config.principals(chain.rbac[0]) == named, (service.name, chain.name)
            # The callers are admitted on the service's port only (the policy's `to.operation.ports`).
            assert envoy_config.destination_ports(chain.rbac[0]) == {service.port}, (service.name, chain.name)


def test_registry_only_leaves_no_passthrough_and_each_sidecar_knows_only_its_backends(envoy: dict[str, Config], mesh: Mesh) -> None:
    """REGISTRY_ONLY: nothing sends to the PassthroughCluster (the outbound catch-all goes to the
    BlackHoleCluster, route tables end in `block_all`); and each service's Sidecar limits what
    its Envoy knows of the namespace to its declared backends."""
    assert mesh.topology.egress_filter == "DROP_ALL"
    for name, config in envoy.items():
        assert envoy_config.sends_to(config, "PassthroughCluster") == [], name
        for route_config in config.routes.values():
            names = [host["name"] for host in route_config.get("virtual_hosts", [])]
            assert "allow_any" not in names, (name, route_config["name"])
    for service in mesh.topology.services:
        config = envoy[service.name]
        outbound_listener = config.listeners[envoy_config.OUTBOUND_LISTENER]
        (catch_all,) = [chain for chain in outbound_listener["filter_chains"] if chain.get("name") == "virtualOutbound-catchall-tcp"]
        assert [f["typed_config"]["cluster"] for f in catch_all["filters"]] == ["BlackHoleCluster"], service.name
        # The namespace's hosts this Envoy can send to: Services and workshop names.
        ours = (f".{mesh.names.namespace}.svc.cluster.local", f".{mesh.names.hosted_zone}")
        outbound = [envoy_config.outbound_host(cluster) for cluster in config.clusters if cluster.startswith("outbound|")]
        known = {host for host in outbound if host.endswith(ours)}
        expected = {mesh.names.mesh_host(backend) for backend in service.backends} | {
            service_host(target, mesh.names)
            for backend in service.backends
            for route in mesh.topology.virtual_service(backend).routes
            for target, _ in route.targets
        }
        assert known == expected, service.name


def test_every_http_connection_manager_traces_with_a_timeout_and_logs_json(envoy: dict[str, Config], mesh: Mesh) -> None:
    """The Telemetry's tracer (the OpenTelemetry provider of istiod's values, with its timeout:
    without one, Envoy refuses the listener) and the mesh's access log, on every HTTP connection
    manager of every proxy."""
    # Written out, not read from the values under test: the CloudWatch agent's OTLP/HTTP port (the
    # add-on operator's 4318), the timeout Envoy requires, the Telemetry's 10 %, JSON to stdout.
    collector = "cloudwatch-agent.amazon-cloudwatch.svc.cluster.local"
    expected_tracer = {
        "provider": "envoy.tracers.opentelemetry",
        "uri": f"{collector}/v1/traces",
        "cluster": f"outbound|4318||{collector}",
        "timeout": "3s",
        "sampling": 10.0,
    }
    expected_log = [{"logger": "envoy.access_loggers.file", "path": "/dev/stdout", "json": True}]
    checked = 0
    for name, config in envoy.items():
        for listener, manager in envoy_config.http_managers(config):
            assert envoy_config.tracing(manager) == expected_tracer, (name, listener)
            assert envoy_config.access_logs(manager) == expected_log, (name, listener)
            checked += 1
    assert checked


def test_only_the_istio_only_extensions_are_turned_off(mesh: Mesh) -> None:
    """The test-only values, and nothing else, differ from what the app deploys (README lists
    what each leaves untested)."""
    (deployed,) = [step.action for step in cloudformation.read(assemblies() / BACKEND) if is_istiod(step)]
    assert isinstance(deployed, HelmRelease)
    # The app sets none of these keys (so nothing it deploys is overridden unseen) ...
    assert "telemetry" not in deployed.values and not set(deployed.values.get("env", {})) & set(TEST_ONLY_VALUES["env"])
    # ... and the values istiod ran with are the app's plus these, and nothing more.
    assert mesh.istiod_values == merged(deployed.values, TEST_ONLY_VALUES)


# -- istioctl analyze ---------------------------------------------------------------------------


def _analyze(istio: Deployed, *arguments: str) -> list[dict[str, Any]]:
    command = [str(istio.running.plane.binaries["istioctl"]), "analyze", "--output=json", "--output-threshold=Info", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=ANALYZE_TIMEOUT_S, check=False)
    # 0: nothing at the failure threshold (Error); 79: something is.
    assert result.returncode in (0, 79), result.stderr[-800:]
    return list(json.loads(result.stdout or "[]"))


def _lines(messages: list[dict[str, Any]], *levels: str) -> list[str]:
    return [f"{m['level']} [{m['code']}] ({m.get('origin', '')}) {m['message']}" for m in messages if m["level"] in levels]


# Every Info line is one the README explains; a new one (e.g. IST0118 on a Service of ours whose
# port name hides its protocol) fails the test. IST0164: the test-only URL of each webhook.
WEBHOOK_URL_INFOS = sorted(
    [
        ("IST0164", "MutatingWebhookConfiguration istio-sidecar-injector-1-31"),
        ("IST0164", "MutatingWebhookConfiguration istio-sidecar-injector-1-31"),
        ("IST0164", "ValidatingWebhookConfiguration istio-validator-1-31-istio-system"),
        ("IST0164", "ValidatingWebhookConfiguration istiod-default-validator"),
    ]
)


def _infos(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((m["code"], m.get("origin", "")) for m in messages if m["level"] == "Info")


def _every_object_file(istio: Deployed) -> Path:
    """Every object the deploy applied (the manifests as the handler sent them, the charts as
    rendered), one YAML stream."""
    path = istio.workdir / "analyze" / "applied.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    objects = [obj for applied in istio.report.applied for obj in applied.objects]
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return path


def test_istioctl_analyze_offline_finds_no_error_or_warning(istio: Deployed) -> None:
    """Every object applied, analyzed without a cluster. Offline, 21 analyzers are skipped (the
    destination-host check among them): the next test runs them all against the cluster."""
    messages = _analyze(istio, "--use-kube=false", "--all-namespaces", str(_every_object_file(istio)))
    (istio.workdir / "analyze" / "offline.json").write_text(json.dumps(messages, indent=1))
    assert _lines(messages, "Error", "Warning") == []
    assert _infos(messages) == WEBHOOK_URL_INFOS


def test_istioctl_analyze_against_the_cluster_finds_no_error_or_warning(istio: Deployed, mesh: Mesh) -> None:
    """Every analyzer, against the API server with everything deployed, for the revision istiod
    runs as (without `--revision`, istioctl looks for an unrevisioned injector and warns, IST0146,
    that the gateway's `image: auto` matches none, although the default tag's injector injected it:
    README). The README explains each Info line."""
    messages = _analyze(istio, *_against_the_cluster(istio, mesh))
    (istio.workdir / "analyze" / "cluster.json").write_text(json.dumps(messages, indent=1))
    assert _lines(messages, "Error", "Warning") == []
    assert _infos(messages) == sorted(
        [
            *WEBHOOK_URL_INFOS,
            # Namespaces without injection, neither ours: Kubernetes' and the CloudWatch add-on's.
            ("IST0102", "Namespace amazon-cloudwatch"),
            ("IST0102", "Namespace default"),
            # The add-on operator's port names (otlp-grpc, otlp-http): Istio sniffs their protocol.
            ("IST0118", "Service amazon-cloudwatch/cloudwatch-agent"),
            ("IST0118", "Service amazon-cloudwatch/cloudwatch-agent"),
        ]
    )


def _against_the_cluster(istio: Deployed, mesh: Mesh) -> list[str]:
    return [f"--kubeconfig={istio.running.plane.kubeconfig_file()}", f"--revision={mesh.istiod_values['revision']}", "--all-namespaces"]


def test_istioctl_analyze_against_the_cluster_catches_a_route_to_no_service_which_offline_misses(istio: Deployed, mesh: Mesh) -> None:
    """Why both runs: a copy of our VirtualService routing to a Service that does not exist is an
    error against the cluster (virtualservice.DestinationHostAnalyzer), and passes offline, where
    that analyzer is among those skipped; as rendered, it is clean either way. (The file stands in
    for the deployed object of the same name.)"""
    step = istio.step("/Routing-nodejs/")
    assert isinstance(step.action, Manifest)
    (virtual_service,) = [
        copy.deepcopy(obj) for obj in step.action.objects if obj["kind"] == "VirtualService" and not obj["spec"].get("gateways")
    ]
    broken = copy.deepcopy(virtual_service)
    missing = broken["spec"]["http"][0]["route"][0]["destination"]["host"].replace(".", "-missing.", 1)
    broken["spec"]["http"][0]["route"][0]["destination"]["host"] = missing
    folder = istio.workdir / "analyze"
    (folder / "broken.yaml").write_text(yaml.safe_dump(broken))
    (folder / "fixed.yaml").write_text(yaml.safe_dump(virtual_service))
    cluster = _against_the_cluster(istio, mesh)
    found = _lines(_analyze(istio, *cluster, str(folder / "broken.yaml")), "Error")
    origin = f"VirtualService {broken['metadata']['namespace']}/{broken['metadata']['name']}"
    assert found == [f'Error [IST0101] ({origin}) Referenced host not found: "{missing}"'], found
    assert _lines(_analyze(istio, "--use-kube=false", "--all-namespaces", str(folder / "broken.yaml")), "Error") == []
    assert _lines(_analyze(istio, *cluster, str(folder / "fixed.yaml")), "Error", "Warning") == []


# -- proof that it bites ------------------------------------------------------------------------


def _listener_errors(layer: IstioLayer) -> dict[str, str]:
    """What istiod last heard from each proxy about its listeners: Envoy's refusal, or nothing."""
    return {
        entry["proxy"].split(".")[0]: entry.get("resources", {}).get(LISTENERS, {}).get("lastError", "") for entry in layer.istiod.syncz()
    }


def test_z1_a_tracer_without_a_timeout_is_refused_by_every_proxy_and_taken_once_fixed(
    istio: Deployed, envoy: dict[str, Config], mesh: Mesh
) -> None:
    """The bug of issue 15's review, on our own values: istiod copies the provider's missing
    timeout into every HTTP listener, and every Envoy refuses them (gateway and sidecars alike).
    With the timeout back, every Envoy takes the next push."""
    layer, harness = _layer(istio), istio.running.harness

    def untimed(values: dict[str, Any]) -> None:
        for provider in values["meshConfig"]["extensionProviders"]:
            del provider["opentelemetry"]["http"]["timeout"]

    refusal = "HttpUriValidationError.Timeout: value is required"
    stats = {name: proxy.stats() for name, proxy in layer.proxies.items()}
    with layer.istiod_changed(harness, untimed) as changed:
        revision = mesh.istiod_values["revision"]
        assert f"istio-{revision}" in changed and f"istio-sidecar-injector-{revision}" not in changed  # the mesh config

        def every_proxy_refuses() -> bool:
            errors = _listener_errors(layer)
            return set(errors) == set(layer.proxies) and all(refusal in error for error in errors.values())

        assert wait_for(every_proxy_refuses, RELOAD_TIMEOUT_S, interval_s=1.0), _listener_errors(layer)
        for name, proxy in layer.proxies.items():
            assert proxy.stats()["listener_manager.lds.update_rejected"] > stats[name]["listener_manager.lds.update_rejected"], name

    def every_proxy_takes_the_fix() -> bool:
        errors = _listener_errors(layer)
        return set(errors) == set(layer.proxies) and not any(errors.values())

    assert wait_for(every_proxy_takes_the_fix, RELOAD_TIMEOUT_S, interval_s=1.0), _listener_errors(layer)
    _fail_with(istio, layer.wait_proxies_synced(RELOAD_TIMEOUT_S), "proxies not back in sync after the fix")
    for name, proxy in layer.proxies.items():  # a listener update taken after the refused ones
        assert proxy.stats()["listener_manager.lds.update_success"] > stats[name]["listener_manager.lds.update_success"], name


def test_z2_an_authorization_rule_with_no_principals_is_refused_by_istiods_validation(istio: Deployed) -> None:
    """istiod's validating webhook (fail-closed: a refusal is istiod's answer, not a timeout)
    refuses a rule whose source names no principal; our policy, as rendered, is accepted."""
    step = next(
        step
        for step in istio.steps
        if isinstance(step.action, Manifest) and any(o["kind"] == "AuthorizationPolicy" for o in step.action.objects)
    )
    assert isinstance(step.action, Manifest)
    (policy,) = [copy.deepcopy(obj) for obj in step.action.objects if obj["kind"] == "AuthorizationPolicy"]
    policy["metadata"]["name"] += "-probe"  # a dry run beside the deployed one
    broken = copy.deepcopy(policy)
    broken["spec"]["rules"][0]["from"] = [{"source": {"principals": []}}]
    harness = istio.running.harness
    validator = harness.api.get("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/istiod-default-validator")
    assert {webhook["failurePolicy"] for webhook in validator["webhooks"]} == {"Fail"}
    refused = _dry_run(istio, broken)
    assert any(
        'admission webhook "validation.istio.io" denied the request' in line and "`from.source` must not be empty" in line
        for line in refused
    ), refused
    assert _dry_run(istio, policy) == []


def _dry_run(istio: Deployed, *objects: dict[str, Any]) -> list[str]:
    from tests.conformance.test_backends import _probe

    step = next(step for step in istio.steps if isinstance(step.action, Manifest))
    return istio.running.harness.apply_manifest(*_probe(step, *objects), dry_run=True)


def test_z3_a_root_init_container_from_the_injector_is_refused_by_pod_security_and_admitted_with_istio_cni(
    istio: Deployed, mesh: Mesh
) -> None:
    """The first P0's shape under Istio: a pod that says `runAsNonRoot: true`, under an injector
    whose init container runs as root. With istio-cni off (istiod rendered with `cni.enabled:
    false`), the injector adds `istio-init`, root with NET_ADMIN and NET_RAW, which sets its own
    `runAsNonRoot: false` (so, unlike App Mesh's proxyinit, it does not inherit the pod's): Pod
    Security `restricted` refuses the pods on the init container's own fields. With istio-cni, as
    the app deploys it, the same Deployment's pods are admitted and Running, and the kubelet's
    runAsNonRoot rule (the admission model's, which no API server applies) passes on every
    container of the pod as istiod injected it."""
    layer, harness = _layer(istio), istio.running.harness
    step = istio.step("/Service-nodejs/")
    assert isinstance(step.action, Manifest)
    (template,) = [copy.deepcopy(obj) for obj in step.action.objects if obj["kind"] == "Deployment"]
    probe = copy.deepcopy(template)
    probe["metadata"]["name"] = "nodejs-app-run-as-non-root"
    for labels in (probe["spec"]["selector"]["matchLabels"], probe["spec"]["template"]["metadata"]["labels"]):
        labels["app"] = probe["metadata"]["name"]
    probe["spec"]["replicas"] = 1
    probe["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = True
    namespace = probe["metadata"]["namespace"]
    path = istio.workdir / "bite-run-as-non-root.json"
    path.write_text(json.dumps(probe))

    def pod_dry_run() -> subprocess.CompletedProcess[str]:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "injector-probe", "namespace": namespace, "labels": probe["spec"]["template"]["metadata"]["labels"]},
            "spec": probe["spec"]["template"]["spec"],
        }
        return istio.running.plane.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod))

    def without_cni(values: dict[str, Any]) -> None:
        values["cni"]["enabled"] = False

    try:
        with layer.istiod_changed(harness, without_cni) as changed:
            assert f"istio-sidecar-injector-{mesh.istiod_values['revision']}" in changed
            assert wait_for(lambda: "istio-init" in pod_dry_run().stderr, RELOAD_TIMEOUT_S, interval_s=1.0), pod_dry_run().stderr
            assert istio.running.plane.kubectl("create", "-f", str(path)).returncode == 0
            refused: list[str] = []

            def refused_now() -> bool:
                refused[:] = [line for line in harness.pod_refusals() if probe["metadata"]["name"] in line]
                return bool(refused)

            assert wait_for(refused_now, RELOAD_TIMEOUT_S), "no FailedCreate for the pods under the root init container"
            assert 'violates PodSecurity "restricted:latest"' in refused[0], refused
            for reason in (
                'container "istio-init" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add',
                'container "istio-init" must not set securityContext.runAsNonRoot=false',
                'container "istio-init" must not set runAsUser=0',
            ):
                assert reason in refused[0], (reason, refused)
            istio.running.plane.kubectl("delete", "-f", str(path), "--timeout=60s")

        def injected_with_cni() -> bool:
            answer = pod_dry_run()
            return answer.returncode == 0 and "istio-validation" in answer.stdout

        assert wait_for(injected_with_cni, RELOAD_TIMEOUT_S, interval_s=1.0), pod_dry_run().stderr
        assert istio.running.plane.kubectl("create", "-f", str(path)).returncode == 0

        def ready() -> bool:
            live = harness.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{probe['metadata']['name']}")
            return bool(live.get("status", {}).get("readyReplicas", 0) == 1)

        assert wait_for(ready, RELOAD_TIMEOUT_S), "the Deployment's pods are not admitted under istio-cni"
        pods = harness.api.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=f"app={probe['metadata']['name']}")["items"]
        assert pods and all(kubelet_refusals(pod, Injection(), {}) == [] for pod in pods), pods
    finally:
        istio.running.plane.kubectl("delete", "-f", str(path), "--ignore-not-found", "--timeout=60s")


# -- destroy -----------------------------------------------------------------------------------


def test_z_destroy_stops_istiod_with_its_release_and_leaves_nothing_waiting(istio: Deployed) -> None:
    """`cdk destroy` with istiod running until its release is uninstalled (its webhooks go with
    it): nothing may wait on a finalizer, and every namespace the deploy made is gone."""
    report = istio.running.harness.destroy()
    assert not _layer(istio).istiod.alive()
    _fail_with(istio, report.stuck, "left waiting after the destroy")
