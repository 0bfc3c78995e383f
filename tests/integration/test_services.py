"""The three services as real processes (node, ruby, crystal) talking over
loopback: what the frontend shows when backends are up, down, slow or a
canary; trace header propagation; graceful shutdown on SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localmesh.processes import ManagedProcess, free_port, http_get, write_weights_dir

pytestmark = pytest.mark.integration

AMZN_TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def get_json(url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    status, body = http_get(url, **kwargs)
    return status, json.loads(body)


def timed_get(url: str) -> tuple[int, str, float]:
    started = time.monotonic()
    status, body = http_get(url, timeout=10)
    return status, body, time.monotonic() - started


def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def nodejs() -> Iterator[ManagedProcess]:
    with ManagedProcess("nodejs", env={"POD_NAME": "nodejs-pod-1", "AVAILABILITY_ZONE": "us-west-2a"}) as proc:
        yield proc


@pytest.fixture(scope="module")
def crystal() -> Iterator[ManagedProcess]:
    with ManagedProcess("crystal", env={"POD_NAME": "crystal-pod-1", "AVAILABILITY_ZONE": "us-west-2b"}) as proc:
        yield proc


@pytest.fixture(scope="module")
def frontend(nodejs: ManagedProcess, crystal: ManagedProcess) -> Iterator[ManagedProcess]:
    with ManagedProcess("frontend", env={"NODEJS_URL": nodejs.url, "CRYSTAL_URL": crystal.url}) as proc:
        yield proc


class TestBothBackendsUp:
    def test_page_shows_both_backends(self, frontend: ManagedProcess) -> None:
        status, body = http_get(frontend.url + "/")
        assert status == 200
        for text in (
            "Hello from the Node.js backend",
            "nodejs-pod-1",
            "us-west-2a",
            "Hello from the Crystal backend",
            "crystal-pod-1",
            "us-west-2b",
        ):
            assert text in body
        assert "unavailable" not in body

    def test_json_reports_both_ok(self, frontend: ManagedProcess) -> None:
        status, data = get_json(frontend.url + "/json")
        assert status == 200
        node, crys = data["backends"]["nodejs"], data["backends"]["crystal"]
        assert node["ok"] and crys["ok"]
        assert node["body"] == {
            "service": "nodejs",
            "version": "1",
            "message": "Hello from the Node.js backend",
            "pod": "nodejs-pod-1",
            "zone": "us-west-2a",
        }
        assert crys["body"]["service"] == "crystal"
        assert isinstance(node["elapsed_ms"], (int, float)) and isinstance(crys["elapsed_ms"], (int, float))
        assert set(data["nodejs_versions"]) == {"1"}
        assert data["window"] == 100
        # Which service answered, over the window; no weights directory here, so none configured.
        assert data["weights"] == {"dir": "/etc/mesh/weights", "state": "absent", "configured": {}, "files": {}}
        split = data["split"]["nodejs"]
        assert split["configured"] is False and split["samples"] >= 1 and split["window"] == 100
        assert set(split["targets"]) == {"nodejs"} and split["targets"]["nodejs"]["observed_percent"] == 100.0
        assert data["split"]["crystal"]["targets"]["crystal"]["count"] >= 1
        server = data["server"]
        assert server["errors"] == 0 and server["refused"] == 0 and server["requests"] >= 1
        assert server["capacity"]["concurrent_requests"] == server["capacity"]["threads"] + server["capacity"]["backlog"]

    def test_page_offers_refresh_and_shows_the_split(self, frontend: ManagedProcess) -> None:
        status, body = http_get(frontend.url + "/?refresh=2")
        assert status == 200
        assert '<meta http-equiv="refresh" content="2">' in body
        assert '<a href="?">stop</a>' in body and "auto-refresh every 2 s" in body
        assert "configured weights unknown: no &lt;virtual service&gt;.json files in /etc/mesh/weights." in body
        assert "Sample size: the last" in body
        assert "Requests served" in body

    def test_trace_headers_reach_both_backends(self, frontend: ManagedProcess, nodejs: ManagedProcess, crystal: ManagedProcess) -> None:
        headers = {"X-Amzn-Trace-Id": AMZN_TRACE, "traceparent": TRACEPARENT}
        assert http_get(frontend.url + "/", headers=headers)[0] == 200
        for backend in (nodejs, crystal):
            line = backend.wait_for_log(lambda e: e.get("traceparent") == TRACEPARENT)
            assert line["x_amzn_trace_id"] == AMZN_TRACE
            assert line["trace_id"] == "1-67891233-abcdef012345678912345678"
            assert line["path"] == "/"
        front = frontend.wait_for_log(lambda e: e.get("traceparent") == TRACEPARENT)
        assert front["status"] == 200

    @pytest.mark.parametrize("name", ["nodejs", "crystal", "frontend"])
    def test_health_404_and_log_line(self, name: str, request: pytest.FixtureRequest) -> None:
        proc: ManagedProcess = request.getfixturevalue(name)
        assert get_json(proc.url + "/health") == (200, {"status": "ok"})
        status, data = get_json(proc.url + "/no-such-path")
        assert status == 404 and data["error"] == "not found"
        line = proc.wait_for_log(lambda e: e.get("path") == "/no-such-path")
        assert line["method"] == "GET" and line["status"] == 404
        assert isinstance(line["duration_ms"], (int, float))
        assert {"time", "trace_id"} <= set(line)


def test_crystal_also_answers_on_crystal_path(crystal: ManagedProcess) -> None:
    status, data = get_json(crystal.url + "/crystal")
    assert status == 200 and data["service"] == "crystal" and data["version"] == "1"


def test_canary_marks_itself_and_is_tallied() -> None:
    with ManagedProcess("nodejs", env={"APP_VERSION": "2"}) as canary:
        status, data = get_json(canary.url + "/")
        assert status == 200
        assert data["version"] == "2" and "Canary" in data["message"]
        with ManagedProcess("frontend", env={"NODEJS_URL": canary.url, "CRYSTAL_URL": dead_url()}) as front:
            for _ in range(3):
                http_get(front.url + "/json")
            _, summary = get_json(front.url + "/json")
            assert summary["nodejs_versions"] == {"2": 4}
            page = http_get(front.url + "/")[1]
            assert "Canary" in page and "100.0%" in page


def test_configured_weights_are_shown_next_to_the_observed_split(tmp_path: Path) -> None:
    """The canary process answers every call (no Envoy here to split them), next to weights of
    1:1 from a directory with one `<virtual service>.json` per backend, as the cluster's projected
    volume of ConfigMaps has it. The frontend notices a file that appears, changes in place,
    turns invalid or goes away, and the directory going away, while it runs."""
    weights = write_weights_dir(tmp_path / "weights", {"nodejs": {"nodejs": 1, "nodejsv2": 1}})
    with (
        ManagedProcess("nodejs", env={"APP_VERSION": "2", "SERVICE_NAME": "nodejsv2"}) as canary,
        ManagedProcess("frontend", env={"NODEJS_URL": canary.url, "CRYSTAL_URL": dead_url(), "MESH_WEIGHTS_DIR": str(weights)}) as front,
    ):
        for _ in range(3):
            assert get_json(front.url + "/json")[0] == 200
        _, data = get_json(front.url + "/json")
        assert data["weights"] == {
            "dir": str(weights),
            "state": "ok",
            "configured": {"nodejs": {"nodejs": 1, "nodejsv2": 1}},
            "files": {"nodejs.json": {"state": "ok"}},
        }
        split = data["split"]["nodejs"]
        assert split["configured"] is True and split["samples"] == 4 and split["window"] == 100
        assert split["targets"] == {
            "nodejs": {"weight": 1, "configured_percent": 50.0, "count": 0, "observed_percent": 0.0},
            "nodejsv2": {"weight": 1, "configured_percent": 50.0, "count": 4, "observed_percent": 100.0},
        }
        assert data["nodejs_versions"] == {"2": 4}
        assert data["split"]["crystal"]["configured"] is False  # its file is not there yet
        page = http_get(front.url + "/")[1]
        assert f"Configured weights from {weights}: nodejs.json." in page
        assert 'crystal <span class="muted">(configured weights unknown: no crystal.json)</span>' in page
        assert "Sample size: the last 5 answers (window 100)." in page
        # crystal's ConfigMap arrives: its file appears.
        write_weights_dir(weights, {"crystal": {"crystal": 1}})
        data = get_json(front.url + "/json")[1]
        assert data["weights"]["configured"] == {"crystal": {"crystal": 1}, "nodejs": {"nodejs": 1, "nodejsv2": 1}}
        assert data["split"]["crystal"]["targets"]["crystal"]["configured_percent"] == 100.0
        # Changed in place: the next request shows the new weights.
        (weights / "nodejs.json").write_text(json.dumps({"nodejs": 3, "nodejsv2": 1}))
        targets = get_json(front.url + "/json")[1]["split"]["nodejs"]["targets"]
        assert (targets["nodejs"]["configured_percent"], targets["nodejsv2"]["configured_percent"]) == (75.0, 25.0)
        # One file turns invalid: it is named, and the other keeps its weights.
        (weights / "crystal.json").write_text('{"crystal": ')
        data = get_json(front.url + "/json")[1]
        assert data["weights"]["state"] == "invalid"
        assert data["weights"]["error"].startswith("crystal.json: not JSON")
        assert data["weights"]["configured"] == {"nodejs": {"nodejs": 3, "nodejsv2": 1}}
        assert (data["split"]["nodejs"]["configured"], data["split"]["crystal"]["configured"]) == (True, False)
        assert 'crystal <span class="muted">(configured weights unknown: crystal.json is invalid)</span>' in http_get(front.url + "/")[1]
        # Deleted: no weights at all, then no directory either.
        for file in ("nodejs.json", "crystal.json"):
            (weights / file).unlink()
        assert get_json(front.url + "/json")[1]["weights"] == {"dir": str(weights), "state": "absent", "configured": {}, "files": {}}
        weights.rmdir()
        assert f"configured weights unknown: no &lt;virtual service&gt;.json files in {weights}." in http_get(front.url + "/")[1]


def test_one_backend_down(crystal: ManagedProcess) -> None:
    with ManagedProcess("frontend", env={"NODEJS_URL": dead_url(), "CRYSTAL_URL": crystal.url}) as front:
        status, body = http_get(front.url + "/")
        assert status == 200
        assert 'nodejs <span class="down">unavailable' in body
        assert "Hello from the Crystal backend" in body
        _, data = get_json(front.url + "/json")
        assert data["backends"]["nodejs"]["ok"] is False
        assert "refused" in data["backends"]["nodejs"]["error"].lower()
        assert data["backends"]["crystal"]["ok"] is True


def test_slow_backend_times_out(nodejs: ManagedProcess) -> None:
    with (
        ManagedProcess("crystal", env={"RESPONSE_DELAY_MS": "3000"}) as slow,
        ManagedProcess("frontend", env={"NODEJS_URL": nodejs.url, "CRYSTAL_URL": slow.url, "BACKEND_TIMEOUT_MS": "500"}) as front,
    ):
        status, body, elapsed = timed_get(front.url + "/json")
        assert status == 200
        assert elapsed < 0.5 + 0.7, f"took {elapsed:.2f}s with a 500 ms timeout"
        data = json.loads(body)
        assert data["backends"]["crystal"]["ok"] is False
        assert "timeout" in data["backends"]["crystal"]["error"]
        assert data["backends"]["nodejs"]["ok"] is True
        status, page, elapsed = timed_get(front.url + "/")
        assert status == 200 and elapsed < 1.2
        assert 'crystal <span class="down">unavailable' in page


def test_backends_are_called_concurrently() -> None:
    delay = {"RESPONSE_DELAY_MS": "300"}
    with (
        ManagedProcess("nodejs", env=delay) as node,
        ManagedProcess("crystal", env=delay) as crys,
        ManagedProcess("frontend", env={"NODEJS_URL": node.url, "CRYSTAL_URL": crys.url}) as front,
    ):
        timings = []
        for _ in range(3):
            status, body, elapsed = timed_get(front.url + "/json")
            data = json.loads(body)
            assert status == 200
            assert data["backends"]["nodejs"]["ok"] and data["backends"]["crystal"]["ok"]
            timings.append(elapsed)
        best = min(timings)
        assert 0.3 <= best < 0.55, f"expected ~0.3s (concurrent), got {timings}"


def _graceful_shutdown(proc: ManagedProcess, path: str = "/") -> dict[str, Any]:
    """Start a slow request, SIGTERM mid-flight; the answer must still come,
    new connections must be refused, and the exit code must be 0."""
    result: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            result["status"], result["body"] = http_get(proc.url + path, timeout=10)
        except OSError as err:  # pragma: no cover - reported by the assert below
            result["error"] = repr(err)

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.4)  # the request is now waiting on RESPONSE_DELAY_MS
    proc.signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):
        http_get(proc.url + "/health", timeout=2)
    worker.join(timeout=10)
    assert result.get("status") == 200, result
    assert proc.wait(timeout=10) == 0
    return result


@pytest.mark.parametrize("kind", ["nodejs", "crystal"])
def test_backend_sigterm_finishes_in_flight_request(kind: str) -> None:
    proc = ManagedProcess(kind, env={"RESPONSE_DELAY_MS": "1500"}).start()
    try:
        result = _graceful_shutdown(proc)
        assert json.loads(result["body"])["service"] == kind
        assert any(e.get("event") == "shutdown" for e in proc.json_logs())
    finally:
        proc.stop()


def test_frontend_sigterm_finishes_in_flight_request() -> None:
    with ManagedProcess("nodejs", env={"RESPONSE_DELAY_MS": "1500"}) as slow_node:
        front = ManagedProcess(
            "frontend", env={"NODEJS_URL": slow_node.url, "CRYSTAL_URL": dead_url(), "BACKEND_TIMEOUT_MS": "5000"}
        ).start()
        try:
            result = _graceful_shutdown(front, "/json")
            assert json.loads(result["body"])["backends"]["nodejs"]["ok"] is True
        finally:
            front.stop()
