"""Traffic and security policies of the mesh: timeouts, retries, health checks, outlier detection,
connection pools. Modelled once; charts/appmesh.py renders them to App Mesh objects and
localmesh/envoy.py to plain Envoy, so both meshes behave the same.

Defaults are App Mesh's own where it has one (15 s request timeout) and otherwise what a
small HTTP service wants: retry twice on 5xx and connection errors within the timeout, eject an
instance after 5 consecutive 5xx for 30 s, never more than half of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

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


DEFAULT_TIMEOUT_MS = 15_000
# Shared defaults (the dataclasses are frozen, so one instance serves every service and route).
DEFAULT_HEALTH_CHECK = HealthCheck()
DEFAULT_OUTLIER_DETECTION = OutlierDetection()
DEFAULT_CONNECTION_POOL = ConnectionPool()
DEFAULT_RETRY = RetryPolicy()


def _int(key: str, value: Any, low: int, high: int) -> int:
    from .topology import check_int

    return check_int(key, value, low, high)


def _fields(key: str, raw: Any, allowed: set[str]) -> Mapping[str, Any]:
    from .settings import suggest

    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, f"must be a mapping with keys {', '.join(sorted(allowed))}")
    for name in raw:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", raw[name], f"unknown key{suggest(name, allowed)}; accepted: {', '.join(sorted(allowed))}")
    return raw


def parse_timeout(key: str, value: Any) -> int:
    return _int(key, DEFAULT_TIMEOUT_MS if value is None else value, 1, MAX_TIMEOUT_MS)


def parse_health_check(key: str, raw: Any) -> HealthCheck:
    if raw is None:
        return HealthCheck()
    raw = _fields(key, raw, {"interval_ms", "timeout_ms", "healthy_threshold", "unhealthy_threshold"})
    default = HealthCheck()
    # App Mesh HealthCheckPolicy: interval 5..300 s, timeout 2..60 s, thresholds 2..10.
    check = HealthCheck(
        interval_ms=_int(f"{key}.interval_ms", raw.get("interval_ms", default.interval_ms), 5000, 300_000),
        timeout_ms=_int(f"{key}.timeout_ms", raw.get("timeout_ms", default.timeout_ms), 2000, 60_000),
        healthy_threshold=_int(f"{key}.healthy_threshold", raw.get("healthy_threshold", default.healthy_threshold), 2, 10),
        unhealthy_threshold=_int(f"{key}.unhealthy_threshold", raw.get("unhealthy_threshold", default.unhealthy_threshold), 2, 10),
    )
    if check.timeout_ms >= check.interval_ms:
        raise ConfigError(f"{key}.timeout_ms", check.timeout_ms, f"must be shorter than interval_ms ({check.interval_ms})")
    return check


def parse_outlier_detection(key: str, raw: Any) -> OutlierDetection | None:
    if raw is False or raw == "off":
        return None
    if raw is None or raw is True:
        return OutlierDetection()
    raw = _fields(key, raw, {"max_server_errors", "interval_ms", "base_ejection_ms", "max_ejection_percent"})
    default = OutlierDetection()
    return OutlierDetection(
        max_server_errors=_int(f"{key}.max_server_errors", raw.get("max_server_errors", default.max_server_errors), 1, 1000),
        interval_ms=_int(f"{key}.interval_ms", raw.get("interval_ms", default.interval_ms), 1, MAX_TIMEOUT_MS),
        base_ejection_ms=_int(f"{key}.base_ejection_ms", raw.get("base_ejection_ms", default.base_ejection_ms), 1, MAX_TIMEOUT_MS),
        max_ejection_percent=_int(f"{key}.max_ejection_percent", raw.get("max_ejection_percent", default.max_ejection_percent), 0, 100),
    )


def parse_connection_pool(key: str, raw: Any) -> ConnectionPool:
    if raw is None:
        return ConnectionPool()
    raw = _fields(key, raw, {"max_connections", "max_pending_requests"})
    default = ConnectionPool()
    return ConnectionPool(
        max_connections=_int(f"{key}.max_connections", raw.get("max_connections", default.max_connections), 1, 100_000),
        max_pending_requests=_int(f"{key}.max_pending_requests", raw.get("max_pending_requests", default.max_pending_requests), 1, 100_000),
    )


def parse_retry(key: str, raw: Any, route_timeout_ms: int) -> RetryPolicy | None:
    if raw is False or raw == "off":
        return None
    retry = RetryPolicy()
    if raw is not None and raw is not True:
        raw = _fields(key, raw, {"max_retries", "per_retry_timeout_ms", "http_events", "tcp_events"})
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
            max_retries=_int(f"{key}.max_retries", raw.get("max_retries", retry.max_retries), 0, 10),
            per_retry_timeout_ms=_int(
                f"{key}.per_retry_timeout_ms", raw.get("per_retry_timeout_ms", retry.per_retry_timeout_ms), 1, MAX_TIMEOUT_MS
            ),
            http_events=http_events,
            tcp_events=tcp_events,
        )
    budget = retry.per_retry_timeout_ms * (retry.max_retries + 1)
    if budget > route_timeout_ms:
        raise ConfigError(
            f"{key}.per_retry_timeout_ms",
            retry.per_retry_timeout_ms,
            f"{retry.max_retries + 1} tries of {retry.per_retry_timeout_ms} ms exceed the route's timeout_ms ({route_timeout_ms}); "
            "the last retries could never run",
        )
    return retry
