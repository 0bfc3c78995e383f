"""Security and resilience policies of the topology, proven on real Envoy by injecting faults.

Each mesh below is the app's own configuration (cdk.json's context plus a `topology` override, the
way `-c` works) with a fault set in the services (localmesh.processes.FAULTS: fail_every, delay_ms; see
services/nodejs/server.js and services/crystal/src/app.cr). Every request goes to 127.0.0.1, every
burst is bounded in count and time, and each test states the threshold it checks.
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localmesh.certs import issue, make_ca
from localmesh.processes import ManagedProcess, fault_env, http_get
from localmesh.runner import REPO_ROOT, LocalMesh, get
from tests.localmesh.conftest import MISSING_RUNTIMES

pytestmark = pytest.mark.integration

CALLS = 400  # frontend calls per retry measurement (one at a time: see the retry test)
ROUTE_TIMEOUT_MS = 1000  # the hung backend's route timeout


def topology(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """cdk.json's topology, deep-copied and edited: the `topology` override of a mesh."""
    raw = copy.deepcopy(json.loads((REPO_ROOT / "cdk.json").read_text())["context"]["topology"])
    edit(raw)
    return {"topology": raw}


def start(overrides: dict[str, Any], **options: Any) -> Iterator[LocalMesh]:
    if MISSING_RUNTIMES:
        pytest.skip(f"{', '.join(MISSING_RUNTIMES)} not installed: run scripts/install-runtimes.sh")
    with LocalMesh(overrides, **options) as mesh:
        yield mesh


def greetings(process: ManagedProcess) -> list[dict[str, Any]]:
    """The process's request log lines for the greeting (`/`), not health checks."""
    return [entry for entry in process.json_logs() if entry.get("path") == "/" and "status" in entry]


def frontend_nodejs_ok(mesh: LocalMesh, calls: int, time_limit: float = 30.0) -> int:
    """How many of `calls` frontend /json answers (one after the other) show nodejs ok."""
    ok = 0
    deadline = time.monotonic() + time_limit
    for _ in range(calls):
        assert time.monotonic() < deadline, f"{calls} frontend calls took more than {time_limit} s"
        status, body = http_get(mesh.frontend_url + "/json", timeout=10)
        ok += status == 200 and json.loads(body)["backends"]["nodejs"]["ok"] is True
    return ok


def through_egress(mesh: LocalMesh, virtual_service: str, path: str = "/", timeout: float = 10.0) -> tuple[int, str, float]:
    started = time.monotonic()
    status, body = get(mesh.egress_url + path, host=f"{virtual_service}.{mesh.hosted_zone}:3000", timeout=timeout)
    return status, body, time.monotonic() - started


def half_failing_nodejs(raw: dict[str, Any], retry: Any = None) -> None:
    if retry is not None:
        raw["virtual_services"]["nodejs"]["routes"][0]["retry"] = retry


FAIL_HALF = {"nodejs": fault_env({"fail_every": 2}), "nodejsv2": fault_env({"fail_every": 2})}
# The frontend reaches its backends through its upstream listeners (same routes, policies and
# clusters as the egress listener): with http_proxy set, Ruby's Net::HTTP resolves the mesh name
# in DNS on every call (URI#find_proxy), which stalls for seconds on a slow resolver and would
# blur the timings measured here.
UPSTREAMS: dict[str, Any] = {"egress_mode": "upstreams"}


# ------------------------------------------------------------------ meshes


@pytest.fixture(scope="module")
def retry_mesh() -> Iterator[LocalMesh]:
    """Both targets of the nodejs virtual service answer 503 to every 2nd request; default retries."""
    yield from start(topology(half_failing_nodejs), service_env=FAIL_HALF, **UPSTREAMS)


@pytest.fixture(scope="module")
def no_retry_mesh() -> Iterator[LocalMesh]:
    """The same faults with the nodejs route's retry off (the control); plain HTTP (mtls off)."""

    def edit(raw: dict[str, Any]) -> None:
        half_failing_nodejs(raw, retry="off")
        raw["mtls"] = "off"

    yield from start(topology(edit), service_env=FAIL_HALF, **UPSTREAMS)


@pytest.fixture(scope="module")
def hung_mesh() -> Iterator[LocalMesh]:
    """Crystal hangs for 10 s; its route times out after ROUTE_TIMEOUT_MS (no retries)."""

    def edit(raw: dict[str, Any]) -> None:
        raw["virtual_services"]["crystal"]["routes"][0].update({"timeout_ms": ROUTE_TIMEOUT_MS, "retry": "off"})

    # The hung requests would hold Crystal's graceful drain for 10 s: stop it sooner.
    yield from start(topology(edit), service_env={"crystal": fault_env({"delay_ms": 10000})}, stop_grace=1.0, **UPSTREAMS)


@pytest.fixture(scope="module")
def outlier_mesh() -> Iterator[LocalMesh]:
    """Three crystal instances; instance 2 answers 503 to every request (its /health still passes)."""
    yield from start({}, instances={"crystal": 3}, instance_env={"crystal": {2: fault_env({"fail_every": 1})}})


# ------------------------------------------------------------------ retries


def test_retries_hide_a_backend_that_fails_half_the_time(retry_mesh: LocalMesh, no_retry_mesh: LocalMesh) -> None:
    """Default retry policy (server-error, gateway-error, connection-error; 2 retries): >= 99% of
    CALLS frontend calls show nodejs ok although every 2nd request to each nodejs process is a 503.
    Control, same faults with retry off: 35%..65% ok, i.e. the faults are real and the retries are
    what helps.

    The calls go one at a time. A weighted route picks its cluster once per request, so a retry
    goes back to the same (single-process) cluster, whose next answer is a success: FAIL_EVERY is
    a counter. Under concurrency other calls take turns in between and each try fails with
    probability 1/2 independently; 3 tries would then give 1 - 1/8 = 87.5%, not 99%."""
    with_retries = frontend_nodejs_ok(retry_mesh, CALLS)
    injected = sum(1 for name in ("nodejs", "nodejsv2") for e in greetings(retry_mesh.processes[name]) if e["status"] == 503)
    without = frontend_nodejs_ok(no_retry_mesh, CALLS)
    print(f"\nnodejs ok at the frontend: with retries {with_retries}/{CALLS}, without {without}/{CALLS}; 503s injected {injected}")
    assert with_retries >= 0.99 * CALLS
    assert injected >= 0.3 * CALLS, "the backends did fail (every 2nd request)"
    assert 0.35 * CALLS <= without <= 0.65 * CALLS
    assert retry_mesh.envoy is not None
    retried = sum(v for k, v in retry_mesh.envoy.stats("upstream_rq_retry").items() if k.endswith(".upstream_rq_retry"))
    assert retried >= injected * 0.9, (retried, injected)


def test_mtls_off_serves_plain_http_on_the_ingress_listener(no_retry_mesh: LocalMesh) -> None:
    url = no_retry_mesh.inbound_urls["crystal"][0]
    assert url.startswith("http://")
    assert http_get(url + "/health") == (200, '{"status":"ok"}')


# ------------------------------------------------------------------ timeouts


def test_hung_backend_fails_fast_at_the_route_timeout(hung_mesh: LocalMesh) -> None:
    """Crystal answers after 10 s; through Envoy the call ends with 504 within the route timeout
    (1 s) + 0.6 s, three times in a row."""
    for _ in range(3):
        status, _, elapsed = through_egress(hung_mesh, "crystal", timeout=5)
        print(f"\nhung crystal through Envoy: {status} after {elapsed * 1000:.0f} ms")
        assert status == 504
        assert ROUTE_TIMEOUT_MS / 1000 - 0.05 <= elapsed <= ROUTE_TIMEOUT_MS / 1000 + 0.6
    assert hung_mesh.envoy is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(e.get("flags") == "UT" for e in hung_mesh.envoy.access_logs()):
        time.sleep(0.05)
    assert any(e.get("flags") == "UT" and e.get("upstream_cluster") == "crystal-app" for e in hung_mesh.envoy.access_logs())


def test_frontend_still_answers_with_the_hung_backend_marked_unavailable(hung_mesh: LocalMesh) -> None:
    """The frontend's own budget per backend is 2 s (BACKEND_TIMEOUT_MS): its page answers 200
    within 2.5 s, crystal failed with Envoy's 504 after ~1 s, nodejs is fine."""
    started = time.monotonic()
    status, body = http_get(hung_mesh.frontend_url + "/json", timeout=10)
    elapsed = time.monotonic() - started
    data = json.loads(body)
    crystal = data["backends"]["crystal"]
    print(f"\nfrontend /json with hung crystal: {status} in {elapsed * 1000:.0f} ms; crystal {crystal}")
    assert status == 200 and elapsed < 2.5
    assert crystal["ok"] is False and crystal["status"] == 504
    assert crystal["elapsed_ms"] < ROUTE_TIMEOUT_MS + 600
    assert data["backends"]["nodejs"]["ok"] is True
    status, html = http_get(hung_mesh.frontend_url + "/", timeout=10)
    assert status == 200 and "Hello from the Node.js backend" in html
    assert '<section id="crystal"><h2>crystal <span class="down">unavailable</span>' in html


# ------------------------------------------------------------------ outlier detection


def test_outlier_detection_ejects_the_failing_instance(outlier_mesh: LocalMesh) -> None:
    """One of three crystal instances fails every request but passes its health checks. After a
    warm-up of 60 calls it is ejected (5 consecutive 5xx); of the next 300 calls >= 99% succeed,
    the failing instance receives at most 3 of them, and no retry was needed for >= 99%."""
    envoy = outlier_mesh.envoy
    assert envoy is not None
    failing = outlier_mesh.instances["crystal"][2]
    for _ in range(60):
        through_egress(outlier_mesh, "crystal")
    deadline = time.monotonic() + 5
    while (
        time.monotonic() < deadline
        and envoy.stats("cluster.crystal-app.outlier_detection.ejections_active").get(
            "cluster.crystal-app.outlier_detection.ejections_active", 0
        )
        < 1
    ):
        time.sleep(0.05)
    stats = envoy.stats("cluster.crystal-app.outlier_detection")
    assert stats["cluster.crystal-app.outlier_detection.ejections_active"] == 1, stats
    assert stats["cluster.crystal-app.outlier_detection.ejections_enforced_consecutive_5xx"] >= 1, stats

    before = len(greetings(failing))
    retries_before = envoy.stats("cluster.crystal-app.upstream_rq_retry").get("cluster.crystal-app.upstream_rq_retry", 0)
    statuses = [through_egress(outlier_mesh, "crystal")[0] for _ in range(300)]
    time.sleep(0.2)  # the instance logs just after answering
    reached_failing = len(greetings(failing)) - before
    retries = envoy.stats("cluster.crystal-app.upstream_rq_retry").get("cluster.crystal-app.upstream_rq_retry", 0) - retries_before
    served = {i: len(greetings(p)) for i, p in enumerate(outlier_mesh.instances["crystal"])}
    ok = statuses.count(200)
    print(
        f"\noutlier detection: {ok}/300 ok after warm-up; failing instance got {reached_failing}; retries {retries}; per instance {served}"
    )
    assert ok >= 0.99 * 300
    assert reached_failing <= 3
    assert retries <= 3
    # Its health checks passed all along: outlier detection, not the health check, took it out.
    assert envoy.stats("cluster.crystal-app.health_check.failure")["cluster.crystal-app.health_check.failure"] == 0
    assert (
        envoy.stats("cluster.crystal-app.outlier_detection.ejections_active")["cluster.crystal-app.outlier_detection.ejections_active"] == 1
    )


# ------------------------------------------------------------------ mTLS (cdk.json's topology: mtls strict)


def tls_request(port: int, server_name: str, ca: str, cert: tuple[str, str] | None) -> bytes:
    """GET /health over TLS to an ingress listener; what came back ("" when the server hung up).
    Raises ssl.SSLError / OSError when the handshake or the read is refused."""
    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(*cert)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(f"GET /health HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def refused(call: Callable[[], bytes]) -> bool:
    try:
        answer = call()
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    return not answer.startswith(b"HTTP/")


def ssl_stats(mesh: LocalMesh, port: int) -> dict[str, int]:
    assert mesh.inbound_envoy is not None
    prefix = f"listener.127.0.0.1_{port}.ssl."
    return {k.removeprefix(prefix): v for k, v in mesh.inbound_envoy.stats(prefix).items()}


def test_mtls_ingress_listener_accepts_a_mesh_certificate(mesh: LocalMesh) -> None:
    """Positive control: with the frontend's certificate the nodejs listener answers, and its own
    certificate is valid for nodejs.<zone> from the mesh CA."""
    assert mesh.topology.mtls == "strict" and mesh.tls is not None
    port = mesh.ports.inbound["nodejs"][0]
    frontend = mesh.tls.files("frontend")
    answer = tls_request(port, f"nodejs.{mesh.hosted_zone}", mesh.tls.ca, (frontend.certificate, frontend.private_key))
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}')


def test_mtls_client_without_certificate_is_refused(mesh: LocalMesh) -> None:
    assert mesh.tls is not None
    ca, port = mesh.tls.ca, mesh.ports.inbound["nodejs"][0]
    before = ssl_stats(mesh, port).get("fail_verify_no_cert", 0)
    assert refused(lambda: tls_request(port, f"nodejs.{mesh.hosted_zone}", ca, None))
    # Plain HTTP to the TLS listener gets nothing either.
    with pytest.raises(OSError):
        get(f"http://127.0.0.1:{port}/health", timeout=3)
    assert ssl_stats(mesh, port)["fail_verify_no_cert"] == before + 1


def test_mtls_client_certificate_from_another_ca_is_refused(mesh: LocalMesh, tmp_path: Path) -> None:
    assert mesh.tls is not None
    make_ca(tmp_path / "ca.crt", tmp_path / "ca.key", common_name="not the mesh CA")
    cert, key = tmp_path / "frontend.crt", tmp_path / "frontend.key"
    issue(cert, key, [f"frontend.{mesh.hosted_zone}"], tmp_path / "ca.crt", tmp_path / "ca.key")  # the right name, the wrong CA
    ca, port = mesh.tls.ca, mesh.ports.inbound["crystal"][0]
    before = ssl_stats(mesh, port).get("fail_verify_error", 0)
    assert refused(lambda: tls_request(port, f"crystal.{mesh.hosted_zone}", ca, (str(cert), str(key))))
    assert ssl_stats(mesh, port)["fail_verify_error"] == before + 1


def test_services_still_talk_over_mtls(mesh: LocalMesh) -> None:
    """The frontend page shows both backends and the gateway's /eks/ works, every hop to a
    backend's ingress listener over mutual TLS (handshakes counted by the inbound Envoy)."""
    ports = [mesh.ports.inbound[name][0] for name in ("nodejs", "nodejsv2", "crystal")]

    def totals() -> dict[str, int]:
        return {key: sum(ssl_stats(mesh, port).get(key, 0) for port in ports) for key in ("handshake", "connection_error")}

    before = totals()
    status, html = http_get(mesh.frontend_url + "/")
    assert status == 200
    assert "Hello from the Node.js backend" in html and "Hello from the Crystal backend" in html
    assert 'class="down"' not in html
    for _ in range(6):
        status, body = get(mesh.gateway_url + "/eks/")
        assert status == 200 and json.loads(body)["service"] in ("nodejs", "nodejsv2")
    after = totals()
    # Connections are pooled, so a call need not shake hands anew; the listeners did accept TLS,
    # and none of these calls was refused.
    assert after["handshake"] >= before["handshake"] > 0
    assert after["connection_error"] == before["connection_error"]


# ------------------------------------------------------------------ egress


@pytest.mark.parametrize("name", ["nodejsv2", "frontend", "payments"])
def test_undeclared_virtual_service_is_refused_at_egress_and_never_reaches_a_process(mesh: LocalMesh, name: str) -> None:
    """DROP_ALL: the frontend's sidecar routes only its declared backends (nodejs, crystal); any
    other name is 404 from Envoy (empty body, flag NR) and no process or ingress listener sees it."""
    assert mesh.inbound_envoy is not None and mesh.envoy is not None
    seen_before = {n: len(p.json_logs()) for n, p in mesh.processes.items()}
    marker = f"/egress-probe-{name}"
    status, body, _ = through_egress(mesh, name, path=marker)
    assert (status, body) == (404, "")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(e.get("path") == marker for e in mesh.envoy.access_logs()):
        time.sleep(0.05)
    (entry,) = [e for e in mesh.envoy.access_logs() if e.get("path") == marker]
    assert entry["flags"] == "NR" and entry["upstream_cluster"] in ("-", None)
    time.sleep(0.2)
    for process_name, process in mesh.processes.items():
        assert not any(e.get("path") == marker for e in process.json_logs()[seen_before[process_name] :])
    # Health checks reach the ingress listeners on their own schedule, but never with the probe's path.
    assert not any(e.get("path") == marker for e in mesh.inbound_envoy.access_logs())
