"""Traffic and security policies of the mesh: timeouts, retries, health checks, outlier detection,
connection pools. Modelled once; charts/appmesh.py renders them to App Mesh objects and
envoyconfig/render.py to plain Envoy, so both meshes behave the same.

Defaults are App Mesh's own where it has one (15 s request timeout) and otherwise what a
small HTTP service wants: retry twice on 5xx and connection errors within the timeout, eject an
instance after 5 consecutive 5xx for 30 s, never more than half of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .validate import check_int, fields

# Events App Mesh accepts in a route's retry policy (HttpRetryPolicy).
HTTP_RETRY_EVENTS = ("server-error", "gateway-error", "client-error", "stream-error")
TCP_RETRY_EVENTS = ("connection-error",)
MAX_TIMEOUT_MS = 3_600_000


@dataclass(frozen=True)
class HealthCheck:
    interval_ms: int = 5000
    timeout_ms: int = 2000
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2


@dataclass(frozen=True)
class OutlierDetection:
    max_server_errors: int = 5
    interval_ms: int = 10_000
    base_ejection_ms: int = 30_000
    max_ejection_percent: int = 50


@dataclass(frozen=True)
class ConnectionPool:
    max_connections: int = 1024
    max_pending_requests: int = 1024


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    per_retry_timeout_ms: int = 2000
    http_events: tuple[str, ...] = ("server-error", "gateway-error")
    tcp_events: tuple[str, ...] = ("connection-error",)


# App Mesh retry events -> Envoy `retry_on` conditions. App Mesh documents its events as:
#   server-error      HTTP 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511 -> "5xx"
#                     (Envoy's 5xx also covers an upstream that does not answer at all)
#   gateway-error     HTTP 502, 503, 504 -> "gateway-error"
#   client-error      HTTP 409 -> "retriable-4xx" (Envoy's only retriable 4xx is 409)
#   stream-error      "retry on refused stream" -> "refused-stream"
#   connection-error  (TCP) the connection failed or dropped before an answer -> "connect-failure,reset"
ENVOY_RETRY_ON: dict[str, tuple[str, ...]] = {
    "server-error": ("5xx",),
    "gateway-error": ("gateway-error",),
    "client-error": ("retriable-4xx",),
    "stream-error": ("refused-stream",),
    "connection-error": ("connect-failure", "reset"),
}


def retry_on(policy: RetryPolicy) -> str:
    """Envoy's `retry_on` for a retry policy's events (ENVOY_RETRY_ON), no duplicates: what the
    local mesh's Envoy and Istio's `retries.retryOn` are given."""
    conditions: list[str] = []
    for event in (*policy.http_events, *policy.tcp_events):
        for condition in ENVOY_RETRY_ON[event]:
            if condition not in conditions:
                conditions.append(condition)
    return ",".join(conditions)


def retry_events(retry_on: str) -> list[str]:
    """The events whose Envoy conditions are all in `retry_on` (the inverse of retry_on)."""
    conditions = set(retry_on.split(","))
    return sorted(event for event, needed in ENVOY_RETRY_ON.items() if set(needed) <= conditions)


DEFAULT_TIMEOUT_MS = 15_000
# Shared defaults (the dataclasses are frozen, so one instance serves every service and route).
DEFAULT_HEALTH_CHECK = HealthCheck()
DEFAULT_OUTLIER_DETECTION = OutlierDetection()
DEFAULT_CONNECTION_POOL = ConnectionPool()
DEFAULT_RETRY = RetryPolicy()


def is_off(raw: Any) -> bool:
    """`off` (or false) turns a policy off: the mesh sets none of its own."""
    return raw is False or raw == "off"


def parse_timeout(key: str, value: Any) -> int | None:
    """A per-request timeout in ms, or None (`off`): the mesh's own default applies (App Mesh
    and Envoy: 15 s; Istio: none)."""
    if is_off(value):
        return None
    return check_int(key, DEFAULT_TIMEOUT_MS if value is None else value, 1, MAX_TIMEOUT_MS)


def parse_health_check(key: str, raw: Any) -> HealthCheck:
    if raw is None:
        return HealthCheck()
    raw = fields(key, raw, {"interval_ms", "timeout_ms", "healthy_threshold", "unhealthy_threshold"})
    default = HealthCheck()
    # App Mesh HealthCheckPolicy: interval 5..300 s, timeout 2..60 s, thresholds 2..10.
    check = HealthCheck(
        interval_ms=check_int(f"{key}.interval_ms", raw.get("interval_ms", default.interval_ms), 5000, 300_000),
        timeout_ms=check_int(f"{key}.timeout_ms", raw.get("timeout_ms", default.timeout_ms), 2000, 60_000),
        healthy_threshold=check_int(f"{key}.healthy_threshold", raw.get("healthy_threshold", default.healthy_threshold), 2, 10),
        unhealthy_threshold=check_int(f"{key}.unhealthy_threshold", raw.get("unhealthy_threshold", default.unhealthy_threshold), 2, 10),
    )
    if check.timeout_ms >= check.interval_ms:
        raise ConfigError(f"{key}.timeout_ms", check.timeout_ms, f"must be shorter than interval_ms ({check.interval_ms})")
    for field in ("interval_ms", "timeout_ms"):
        if getattr(check, field) % 1000:
            # The same check drives the kubelet's readiness probe, which counts whole seconds.
            raise ConfigError(
                f"{key}.{field}", getattr(check, field), "must be whole seconds (a multiple of 1000): kubelet probes count seconds"
            )
    return check


def parse_outlier_detection(key: str, raw: Any) -> OutlierDetection | None:
    if is_off(raw):
        return None
    if raw is None or raw is True:
        return OutlierDetection()
    raw = fields(key, raw, {"max_server_errors", "interval_ms", "base_ejection_ms", "max_ejection_percent"})
    default = OutlierDetection()
    return OutlierDetection(
        max_server_errors=check_int(f"{key}.max_server_errors", raw.get("max_server_errors", default.max_server_errors), 1, 1000),
        interval_ms=check_int(f"{key}.interval_ms", raw.get("interval_ms", default.interval_ms), 1, MAX_TIMEOUT_MS),
        base_ejection_ms=check_int(f"{key}.base_ejection_ms", raw.get("base_ejection_ms", default.base_ejection_ms), 1, MAX_TIMEOUT_MS),
        max_ejection_percent=check_int(
            f"{key}.max_ejection_percent", raw.get("max_ejection_percent", default.max_ejection_percent), 0, 100
        ),
    )


def parse_connection_pool(key: str, raw: Any) -> ConnectionPool | None:
    if is_off(raw):
        return None
    if raw is None or raw is True:
        return ConnectionPool()
    raw = fields(key, raw, {"max_connections", "max_pending_requests"})
    default = ConnectionPool()
    return ConnectionPool(
        max_connections=check_int(f"{key}.max_connections", raw.get("max_connections", default.max_connections), 1, 100_000),
        max_pending_requests=check_int(
            f"{key}.max_pending_requests", raw.get("max_pending_requests", default.max_pending_requests), 1, 100_000
        ),
    )


def parse_retry(key: str, raw: Any, route_timeout_ms: int | None) -> RetryPolicy | None:
    if is_off(raw):
        return None
    retry = RetryPolicy()
    if raw is not None and raw is not True:
        raw = fields(key, raw, {"max_retries", "per_retry_timeout_ms", "http_events", "tcp_events"})
        http_events = tuple(raw.get("http_events", retry.http_events))
        tcp_events = tuple(raw.get("tcp_events", retry.tcp_events))
        for event in http_events:
            if event not in HTTP_RETRY_EVENTS:
                raise ConfigError(f"{key}.http_events", event, f"App Mesh retries on {', '.join(HTTP_RETRY_EVENTS)}")
        for event in tcp_events:
            if event not in TCP_RETRY_EVENTS:
                raise ConfigError(f"{key}.tcp_events", event, f"App Mesh retries on {', '.join(TCP_RETRY_EVENTS)}")
        if not http_events and not tcp_events:
            raise ConfigError(key, dict(raw), "name at least one retry event, or set retry: off")
        retry = RetryPolicy(
            max_retries=check_int(f"{key}.max_retries", raw.get("max_retries", retry.max_retries), 0, 10),
            per_retry_timeout_ms=check_int(
                f"{key}.per_retry_timeout_ms", raw.get("per_retry_timeout_ms", retry.per_retry_timeout_ms), 1, MAX_TIMEOUT_MS
            ),
            http_events=http_events,
            tcp_events=tcp_events,
        )
    budget = retry.per_retry_timeout_ms * (retry.max_retries + 1)
    if route_timeout_ms is not None and budget > route_timeout_ms:
        raise ConfigError(
            f"{key}.per_retry_timeout_ms",
            retry.per_retry_timeout_ms,
            f"{retry.max_retries + 1} tries of {retry.per_retry_timeout_ms} ms exceed the route's timeout_ms ({route_timeout_ms}); "
            "the last retries could never run",
        )
    return retry
