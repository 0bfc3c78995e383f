"""The four real services behind real Envoy, configured from the topology: routing end to end.

Every request goes to 127.0.0.1 and every burst is bounded in count and time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from localmesh.bench import Burst, send_requests
from localmesh.processes import http_get
from localmesh.runner import REPO_ROOT, LocalMesh, get

pytestmark = pytest.mark.integration

SPLIT_REQUESTS = 3_000
CLIENTS = 8
SIGMAS = 4.0


def binomial_bounds(n: int, p: float, sigmas: float = SIGMAS) -> tuple[int, int]:
    """Counts of v1 answers that are consistent with weight share `p` over n requests.

    Envoy picks a weighted cluster independently per request from its random generator, so the
    number of v1 answers is Binomial(n, p): mean np, standard deviation sqrt(np(1-p)). With
    n = 3,000 the normal approximation is excellent (np and n(1-p) are >= 1,000), and a
    two-sided 4-sigma band is wrong by chance with probability 6.3e-5, i.e. practically never
    flaky. For 2:1 (p = 2/3): sd = 25.8, band 2000 +- 103, share 0.667 +- 0.034; for 1:1
    (p = 1/2): sd = 27.4, band 1500 +- 110, share 0.500 +- 0.037. The two bands
    ([1897, 2103] and [1390, 1610]) are far apart, so the test also tells the two weightings
    apart: passing both proves the split follows the configured weights.
    """
    mean = n * p
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return math.floor(mean - spread), math.ceil(mean + spread)


def services_answering(burst: Burst) -> Counter[str]:
    answers: Counter[str] = Counter()
    for result in burst.results:
        assert result.status == 200, (result.status, result.body[:200])
        answers[json.loads(result.body)["service"]] += 1
    return answers


def split_through_egress(mesh: LocalMesh, count: int) -> Counter[str]:
    host = mesh.mesh_url("nodejs").removeprefix("http://")  # nodejs.<zone>:3000
    burst = send_requests(mesh.ports.egress, count, host=host, clients=CLIENTS, time_limit=20.0)
    assert not burst.timed_out and len(burst.results) == count
    return services_answering(burst)


# ------------------------------------------------------------------ weighted split


@pytest.mark.parametrize(
    ("fixture", "v1_share"),
    [("mesh", 2 / 3), ("mesh_even", 1 / 2)],
    ids=["weights-2-1", "weights-1-1"],
)
def test_egress_split_matches_the_weights(fixture: str, v1_share: float, request: pytest.FixtureRequest) -> None:
    mesh: LocalMesh = request.getfixturevalue(fixture)
    answers = split_through_egress(mesh, SPLIT_REQUESTS)
    assert set(answers) <= {"nodejs", "nodejsv2"}
    low, high = binomial_bounds(SPLIT_REQUESTS, v1_share)
    assert low <= answers["nodejs"] <= high, f"{answers} outside [{low}, {high}] for v1 share {v1_share:.3f}"


def test_bands_tell_the_weightings_apart() -> None:
    assert binomial_bounds(SPLIT_REQUESTS, 2 / 3)[0] > binomial_bounds(SPLIT_REQUESTS, 1 / 2)[1]


def test_zero_weight_gets_nothing(mesh_canary_only: LocalMesh) -> None:
    answers = split_through_egress(mesh_canary_only, 300)
    assert answers == Counter({"nodejsv2": 300})
    status, body = get(mesh_canary_only.gateway_url + "/eks/")
    assert status == 200 and json.loads(body)["service"] == "nodejsv2"


def test_egress_works_as_an_http_proxy(mesh: LocalMesh) -> None:
    """An absolute-form request line, as a client with http_proxy set sends it."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", mesh.ports.egress, timeout=5)
    try:
        connection.request("GET", mesh.mesh_url("crystal") + "/")
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["service"] == "crystal"
    finally:
        connection.close()


# ------------------------------------------------------------------ names the sidecar does not know


@pytest.mark.parametrize("name", ["nodejsv2", "frontend", "unknown"])
def test_undeclared_virtual_service_is_404_at_envoy(mesh: LocalMesh, name: str) -> None:
    status, body = get(mesh.egress_url + "/", host=f"{name}.{mesh.hosted_zone}:3000")
    assert (status, body) == (404, "")


def test_declared_backends_answer_through_egress(mesh: LocalMesh) -> None:
    for vs in ("nodejs", "crystal"):
        status, body = get(mesh.egress_url + "/", host=f"{vs}.{mesh.hosted_zone}")  # without the port too
        assert status == 200 and json.loads(body)["service"].startswith(vs)


# ------------------------------------------------------------------ the ingress gateway


def test_gateway_eks_reaches_nodejs_with_prefix_rewritten(mesh: LocalMesh) -> None:
    trace = f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"
    status, body = http_get(mesh.gateway_url + "/eks/", headers={"X-Amzn-Trace-Id": trace})
    assert status == 200
    answer = json.loads(body)
    assert answer["service"] in ("nodejs", "nodejsv2")
    assert answer["message"].startswith("Hello from the Node.js backend")
    # The backend saw `/`, not `/eks/`, and the Host the gateway rewrote to the mesh name.
    backend = mesh.processes[answer["service"]]
    entry = backend.wait_for_log(lambda e: e.get("x_amzn_trace_id") == trace)
    assert entry["path"] == "/"
    assert mesh.envoy is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logged = [e for e in mesh.envoy.access_logs() if e.get("listener") == "ingress-gw" and e.get("path") == "/eks/"]
        if logged:
            break
        time.sleep(0.05)
    assert logged and logged[-1]["upstream_path"] == "/"
    assert logged[-1]["authority"] == f"nodejs.{mesh.hosted_zone}"


def test_gateway_rewrites_deeper_paths(mesh: LocalMesh) -> None:
    status, body = get(mesh.gateway_url + "/eks/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, body = get(mesh.gateway_url + "/eks/nope")
    # 404 from nodejs itself (it got /nope), not from Envoy (which answers with an empty body).
    assert status == 404 and json.loads(body)["path"] == "/nope"


@pytest.mark.parametrize("path", ["/", "/eks", "/other/", "/json"])
def test_gateway_path_without_a_route_is_404(mesh: LocalMesh, path: str) -> None:
    assert get(mesh.gateway_url + path) == (404, "")


# ------------------------------------------------------------------ the frontend through the mesh


def test_frontend_page_shows_both_backends_through_envoy(mesh: LocalMesh) -> None:
    assert mesh.envoy is not None
    before = mesh.envoy.stats("downstream_rq_completed")
    status, html = http_get(mesh.frontend_url + "/")
    assert status == 200
    assert "Hello from the Node.js backend" in html
    assert "Hello from the Crystal backend" in html
    assert 'class="down"' not in html
    status, body = http_get(mesh.frontend_url + "/json")
    data = json.loads(body)
    assert status == 200
    assert {name: result["ok"] for name, result in data["backends"].items()} == {"nodejs": True, "crystal": True}
    assert data["backends"]["nodejs"]["body"]["service"] in ("nodejs", "nodejsv2")
    # Both calls went through Envoy's egress listener, by mesh name (the frontend's http_proxy is
    # Envoy, as the iptables redirect makes it in the cluster), not straight to the processes.
    assert mesh.egress_mode == "proxy"
    after = mesh.envoy.stats("downstream_rq_completed")
    key = "http.egress_frontend.downstream_rq_completed"
    assert after[key] - before.get(key, 0) >= 4, (key, before.get(key), after.get(key))


@pytest.mark.parametrize(
    ("fixture", "nodejs_weights"),
    [("mesh", {"nodejs": 2, "nodejsv2": 1}), ("mesh_canary_only", {"nodejs": 0, "nodejsv2": 1})],
    ids=["cdk.json", "weights-override"],
)
def test_frontend_shows_the_configured_weights(fixture: str, nodejs_weights: dict[str, int], request: pytest.FixtureRequest) -> None:
    """The weights directory the mesh writes from the topology (one `<vs>.json` per virtual
    service, as the cluster's projected volume has it) reaches the frontend, and only it."""
    mesh: LocalMesh = request.getfixturevalue(fixture)
    status, body = http_get(mesh.frontend_url + "/json")
    assert status == 200
    data = json.loads(body)
    assert data["weights"] == {
        "dir": str(mesh.weights_dir),
        "state": "ok",
        "configured": {"crystal": {"crystal": 1}, "nodejs": nodejs_weights},
        "files": {"crystal.json": {"state": "ok"}, "nodejs.json": {"state": "ok"}},
    }
    split = data["split"]["nodejs"]
    assert split["configured"] is True
    assert {target: split["targets"][target]["weight"] for target in nodejs_weights} == nodejs_weights
    total = sum(nodejs_weights.values())
    assert split["targets"]["nodejsv2"]["configured_percent"] == round(100 * nodejs_weights["nodejsv2"] / total, 1)
    frontend = next(name for name in mesh.processes if mesh.processes[name].kind.name == "frontend")
    with_dir = {name for name, process in mesh.processes.items() if "MESH_WEIGHTS_DIR" in process.env}
    assert with_dir == {frontend}


# ------------------------------------------------------------------ the command line


def test_cli_prints_urls_and_stops_everything_on_sigterm() -> None:
    command = [sys.executable, "-m", "localmesh", "-c", "weights.nodejs=nodejs:0,nodejsv2:1", "--port", "0"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(lines)
        assert "local mesh ready" in text, text
        urls = {}
        for line in lines:
            parts = line.split()
            if parts and parts[-1].startswith("http://127.0.0.1:"):
                urls[" ".join(parts[:-1])] = parts[-1]
        gateway = next(url for label, url in urls.items() if label.startswith("gateway"))
        status, body = get(gateway)
        assert status == 200 and json.loads(body)["service"] == "nodejsv2"
        ports = {int(url.split(":")[2].split("/")[0]) for url in urls.values()}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        for port in ports:  # nothing listens any more: every process was stopped
            with pytest.raises(OSError):
                get(f"http://127.0.0.1:{port}/", timeout=1)
        log_dir = Path(next(line for line in lines if "logs (JSON lines) in" in line).split(" in ", 1)[1].split(";")[0])
        assert (log_dir / "envoy.log").is_file() and (log_dir / "nodejsv2.log").is_file()
        shutil.rmtree(log_dir)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
