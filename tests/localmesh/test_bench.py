"""The load generator the split tests and the benchmark share."""

from __future__ import annotations

import http.server
from collections.abc import Iterator

import pytest

from localmesh.bench import percentile, send_requests
from tests.loopback import serving


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([3.0], 0.5) == 3.0


class _Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = self.headers.get("Host", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    with serving(_Hello) as port:
        yield port


def test_send_requests_sends_exactly_count_with_the_host_header(server: int) -> None:
    burst = send_requests(server, 57, host="nodejs.example:3000", clients=4, time_limit=10)
    assert len(burst.results) == 57 and not burst.timed_out
    assert {r.body for r in burst.ok} == {b"nodejs.example:3000"}
    assert burst.requests_per_second() > 0


def test_send_requests_counts_connection_errors() -> None:
    from localmesh.processes import free_port

    burst = send_requests(free_port(), 5, clients=2, time_limit=5, timeout=1)
    assert [r.status for r in burst.results] == [0] * 5
