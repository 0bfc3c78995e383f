"""The frontend under ordinary load: the real server (Puma) on 127.0.0.1 against two real
Node.js backends, 2,000 requests to /json from 50 concurrent clients, and not one error.

The hand-written server it replaced answered 1.6%-17% of such a run with a silent 503. Counts
only, no timing assertions (speed is `make bench`'s business); bounded in requests and time,
loopback only."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from localmesh.bench import send_requests
from localmesh.processes import ManagedProcess, http_get

pytestmark = pytest.mark.integration

REQUESTS = 2_000
CLIENTS = 50
TIME_LIMIT_S = 120.0


@pytest.fixture(scope="module")
def frontend() -> Iterator[ManagedProcess]:
    with (
        ManagedProcess("nodejs", env={"POD_NAME": "nodejs-load"}) as nodejs,
        ManagedProcess("nodejs", env={"APP_VERSION": "2", "POD_NAME": "stand-in-for-crystal"}) as crystal,
        ManagedProcess(
            "frontend",
            # A generous budget: a backend answer counts only if it is a real failure, not a
            # slow moment on a busy machine.
            env={"NODEJS_URL": nodejs.url, "CRYSTAL_URL": crystal.url, "BACKEND_TIMEOUT_MS": "10000"},
        ) as front,
    ):
        yield front


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "connection-per-request"])
def test_no_request_fails_at_50_concurrent_clients(frontend: ManagedProcess, keep_alive: bool) -> None:
    first_line = len(frontend.stdout_lines)
    before = json.loads(http_get(frontend.url + "/json")[1])["server"]
    burst = send_requests(
        frontend.port, REQUESTS, path="/json", clients=CLIENTS, time_limit=TIME_LIMIT_S, timeout=30.0, keep_alive=keep_alive
    )
    assert not burst.timed_out, f"only {len(burst.results)} of {REQUESTS} requests within {TIME_LIMIT_S:.0f} s"
    assert len(burst.results) == REQUESTS
    failed = [(r.status, r.body[:200]) for r in burst.results if r.status != 200]
    assert failed == [], f"{len(failed)} of {REQUESTS} failed, e.g. {failed[:3]}"
    # Every answer is the page's data, with both backends answered.
    degraded = []
    for result in burst.results:
        backends = json.loads(result.body)["backends"]
        if not (backends["nodejs"]["ok"] and backends["crystal"]["ok"]):
            degraded.append(backends)
    assert degraded == [], f"{len(degraded)} answers with a failed backend call, e.g. {degraded[:1]}"
    # The server's own counters agree: nothing refused, no errors, every request counted.
    after = json.loads(http_get(frontend.url + "/json")[1])["server"]
    assert after["refused"] == before["refused"] == 0
    assert after["errors"] == before["errors"] == 0
    assert after["requests"] - before["requests"] == REQUESTS + 1  # the burst and the `before` probe
    assert after["capacity"]["concurrent_requests"] >= CLIENTS
    # And so does its log: one line per request (written just after each answer, so the last
    # ones may still be on their way), none for a refusal or a failure.
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in frontend.stdout_lines[first_line:] if line.startswith("{")]
        logged = sum(1 for e in lines if e.get("path") == "/json" and e.get("status") == 200)
        if logged >= REQUESTS + 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert logged == REQUESTS + 2  # with the `before` and `after` probes
    assert not [e for e in lines if e.get("event") in ("request_refused", "server_error", "connection_error")]
