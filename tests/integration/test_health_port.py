"""HEALTH_PORT on the real processes: a second listener that answers /health
and nothing else (it bypasses the mesh's mTLS, so the application must not be
reachable there), closed with the main one on SIGTERM; equal to PORT it is
refused at startup."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from localmesh.processes import SERVICE_KINDS, ManagedProcess, free_port, http_get, wait_http_ok

pytestmark = pytest.mark.integration

APP_PATHS = {"nodejs": ["/"], "crystal": ["/", "/crystal"], "frontend": ["/", "/json"]}


def other_free_port(taken: int) -> int:
    port = free_port()
    while port == taken:
        port = free_port()
    return port


@pytest.mark.parametrize("kind", sorted(APP_PATHS))
def test_health_port_serves_health_only(kind: str) -> None:
    env = {"NODEJS_URL": "http://127.0.0.1:9", "CRYSTAL_URL": "http://127.0.0.1:9"} if kind == "frontend" else {}
    proc = ManagedProcess(kind, env=env)
    health_port = other_free_port(proc.port)
    proc.env["HEALTH_PORT"] = str(health_port)
    with proc:
        health_url = f"http://127.0.0.1:{health_port}"
        wait_http_ok(health_url + "/health", timeout=10)
        proc.wait_for_log(lambda e: e.get("path") == "/health")  # start()'s own probe on PORT
        logged_before = len(proc.json_logs())
        status, body = http_get(health_url + "/health")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        for path in APP_PATHS[kind]:
            status, body = http_get(health_url + path)
            assert status == 404, path
            assert json.loads(body)["error"] == "not found"
            assert http_get(proc.url + path, timeout=10)[0] == 200, path
        assert proc.stop() == 0
    logs = proc.json_logs()
    assert any(e.get("event") == "listening" and e.get("listener") == "health" and e.get("port") == health_port for e in logs)
    # Only the application requests on PORT were logged, not the probes on HEALTH_PORT.
    requests = [e for e in logs[logged_before:] if "path" in e]
    assert [(e["path"], e["status"]) for e in requests] == [(path, 200) for path in APP_PATHS[kind]]
    with pytest.raises(OSError):
        http_get(health_url + "/health", timeout=2)


@pytest.mark.parametrize("kind", sorted(APP_PATHS))
def test_health_port_equal_to_port_is_refused(kind: str) -> None:
    service = SERVICE_KINDS[kind]
    port = str(free_port())
    env = {**os.environ, "PORT": port, "HEALTH_PORT": port, "BIND_ADDRESS": "127.0.0.1"}
    result = subprocess.run(service.command(), cwd=service.source, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2, result
    assert result.stdout == ""
    error = json.loads(result.stderr.splitlines()[0])
    assert error["event"] == "config_error"
    assert f"HEALTH_PORT ({port}) must differ from PORT ({port})" in error["error"]
