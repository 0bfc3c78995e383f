"""Figures for the local mesh: what the Envoy hop costs, and that the frontend calls in parallel.

    python -m localmesh.bench          # (what `make bench` calls through run_benchmarks())

* a backend (nodejs) called directly vs through Envoy's egress listener: requests/s, p50 and p99
  latency over a fixed number of GETs from a few concurrent keep-alive clients;
* the frontend page with each backend delayed by 200 ms (RESPONSE_DELAY_MS): the frontend asks
  both backends at once, so the page takes about 200 ms, not 400;
* load (frontend_load_figures): error rate and p50/p99 latency of 2,000 GETs at 50, 100 and 200
  concurrent keep-alive clients, to the frontend's /json and to the gateway's /eks/.

Both nodejs figures hit the same single `nodejs` process (the route's weights are set to
nodejs:1,nodejsv2:0 for it). Every run is bounded in count and in time; all traffic goes to
127.0.0.1. Envoy's access log is off while measuring (the figure is the proxy hop, not the log
pipe).
"""

from __future__ import annotations

import http.client
import json
import math
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from localmesh.runner import LocalMesh  # noqa: E402

REQUESTS = 2_000
CLIENTS = 8
DELAY_MS = 200
PAGE_SAMPLES = 20
TIME_LIMIT_S = 60.0


@dataclass
class Result:
    """One request: HTTP status (0 for a connection error), body, latency in seconds."""

    status: int
    body: bytes
    latency: float


@dataclass
class Burst:
    results: list[Result] = field(default_factory=list)
    elapsed: float = 0.0
    timed_out: bool = False

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.status == 200]

    def requests_per_second(self) -> float:
        return len(self.results) / self.elapsed if self.elapsed else 0.0

    def latency_ms(self, quantile: float) -> float:
        return percentile([r.latency for r in self.results], quantile) * 1000


def percentile(values: list[float], quantile: float) -> float:
    """Nearest-rank percentile (quantile in 0..1) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(quantile * len(ordered))))
    return ordered[rank - 1]


def send_requests(
    port: int,
    count: int,
    *,
    host: str | None = None,
    path: str = "/",
    clients: int = CLIENTS,
    time_limit: float = TIME_LIMIT_S,
    keep_alive: bool = True,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> Burst:
    """`count` GETs of `path` to 127.0.0.1:`port` from `clients` threads, each on its own
    keep-alive connection (re-opened after an error or when `keep_alive` is False). `host` sets
    the Host header (the virtual host Envoy routes on). Stops early at `time_limit` seconds."""
    burst = Burst()
    lock = threading.Lock()
    issued = 0
    started = time.perf_counter()
    deadline = started + time_limit
    request_headers = {**(headers or {}), **({"Host": host} if host else {})}

    def take() -> bool:
        nonlocal issued
        with lock:
            if issued >= count:
                return False
            if time.perf_counter() > deadline:
                burst.timed_out = True
                return False
            issued += 1
            return True

    def worker() -> None:
        connection: http.client.HTTPConnection | None = None
        local: list[Result] = []
        while take():
            begin = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                connection.request("GET", path, headers=request_headers)
                response = connection.getresponse()
                body = response.read()
                local.append(Result(response.status, body, time.perf_counter() - begin))
                if not keep_alive or response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException):
                local.append(Result(0, b"", time.perf_counter() - begin))
                if connection is not None:
                    connection.close()
                connection = None
        if connection is not None:
            connection.close()
        with lock:
            burst.results.extend(local)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=time_limit + timeout + 5)
    burst.elapsed = time.perf_counter() - started
    return burst


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _throughput_rows(label: str, burst: Burst) -> list[tuple[str, str]]:
    errors = len(burst.results) - len(burst.ok)
    note = f" ({errors} errors)" if errors else ""
    note += " (time limit hit)" if burst.timed_out else ""
    return [
        (f"{label}: requests/s ({len(burst.results)} GETs, {CLIENTS} clients)", f"{burst.requests_per_second():,.0f}{note}"),
        (f"{label}: latency p50 / p99", f"{burst.latency_ms(0.5):.2f} ms / {burst.latency_ms(0.99):.2f} ms"),
    ]


LOAD_REQUESTS = 2_000
LOAD_CLIENTS = (50, 100, 200)
LOAD_TIME_LIMIT_S = 90.0
LOAD_TIMEOUT_S = 30.0


def _load_row(label: str, clients: int, burst: Burst) -> tuple[str, str]:
    """One burst as (label, figure): errors (non-200 answers and connection errors) over the
    requests sent, then p50 / p99 latency; the frontend's 200s with a failed backend call are
    noted as degraded."""
    sent = len(burst.results)
    errors = sent - len(burst.ok)
    rate = errors / sent if sent else 0.0
    figure = f"errors {errors}/{sent} ({rate:.2%}), p50 {burst.latency_ms(0.5):.1f} ms / p99 {burst.latency_ms(0.99):.1f} ms"
    degraded = 0
    for result in burst.ok:
        try:
            backends = json.loads(result.body).get("backends", {})
        except ValueError:
            continue
        degraded += any(not answer.get("ok") for answer in backends.values())
    if degraded:
        figure += f" ({degraded} degraded: a backend failed)"
    if burst.timed_out:
        figure += f" (time limit hit: {sent} of {LOAD_REQUESTS} sent)"
    return (f"load: {label}, {clients} clients, {LOAD_REQUESTS:,} GETs", figure)


def frontend_load_figures(mesh: LocalMesh | None = None) -> list[tuple[str, str]]:
    """(label, figure) rows: for 50, 100 and 200 concurrent keep-alive clients, 2,000 GETs to the
    frontend's /json (which calls both backends through Envoy) and 2,000 to the gateway's /eks/
    (Envoy to nodejs): error rate and p50/p99 latency. Uses `mesh`, else starts a LocalMesh with
    cdk.json's topology. Each burst is bounded by LOAD_TIME_LIMIT_S; all traffic is loopback."""
    if mesh is None:
        with LocalMesh(access_log=False) as own:
            return frontend_load_figures(own)
    targets = [("frontend /json", _port(mesh.frontend_url), "/json")]
    if mesh.ports.gateway is not None:
        targets.append(("gateway /eks/", mesh.ports.gateway, "/eks/"))
    for _, port, path in targets:
        send_requests(port, 100, path=path, clients=10, time_limit=30.0)  # warm-up
    rows: list[tuple[str, str]] = []
    for clients in LOAD_CLIENTS:
        for label, port, path in targets:
            burst = send_requests(port, LOAD_REQUESTS, path=path, clients=clients, time_limit=LOAD_TIME_LIMIT_S, timeout=LOAD_TIMEOUT_S)
            rows.append(_load_row(label, clients, burst))
    return rows


def run_benchmarks() -> list[tuple[str, str]]:
    """(label, figure) rows. Starts three local meshes in turn; the first two take about 15 s,
    the load figures (frontend_load_figures) up to a few minutes more."""
    rows: list[tuple[str, str]] = []
    # All of `nodejs` to the one `nodejs` process, so both figures measure the same server.
    with LocalMesh({"weights.nodejs": "nodejs:1,nodejsv2:0"}, access_log=False) as mesh:
        nodejs = _port(mesh.service_urls["nodejs"])
        mesh_host = mesh.mesh_url("nodejs").removeprefix("http://")
        send_requests(nodejs, 200)  # warm-up: JIT, connection pools
        send_requests(mesh.ports.egress, 200, host=mesh_host)
        direct = send_requests(nodejs, REQUESTS)
        via_envoy = send_requests(mesh.ports.egress, REQUESTS, host=mesh_host)
        rows += _throughput_rows("nodejs direct", direct)
        rows += _throughput_rows("nodejs via Envoy egress", via_envoy)
        extra = via_envoy.latency_ms(0.5) - direct.latency_ms(0.5)
        rows.append(("Envoy hop: added p50 latency", f"{extra:+.2f} ms"))

    delayed = {name: {"RESPONSE_DELAY_MS": str(DELAY_MS)} for name in ("nodejs", "nodejsv2", "crystal")}
    with LocalMesh(access_log=False, service_env=delayed) as mesh:
        frontend = _port(mesh.frontend_url)
        send_requests(frontend, 2, clients=1, keep_alive=False)
        page = send_requests(frontend, PAGE_SAMPLES, clients=1, keep_alive=False, time_limit=30.0)
        ok = len(page.ok)
        median = statistics.median(r.latency for r in page.results) * 1000 if page.results else float("nan")
        rows.append(
            (
                f"frontend page, backends delayed {DELAY_MS} ms: median of {len(page.results)}",
                f"{median:.0f} ms ({ok} OK; one call after the other would take >= {2 * DELAY_MS} ms)",
            )
        )
    rows += frontend_load_figures()
    return rows


def main() -> int:
    rows = run_benchmarks()
    width = max(len(label) for label, _ in rows)
    for label, figure in rows:
        print(f"{label:<{width}}  {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
