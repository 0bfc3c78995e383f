"""Where the figures come from: the mesh's own request metrics, per version, over one window.

* `PrometheusSource`: Istio's standard metrics (`istio_requests_total`, and the histogram
  `istio_request_duration_milliseconds`), as the destination's sidecar reports them (each attempt
  the version answered, so retries cannot hide its failures), by the workload that answered
  (`destination_workload`, the Deployment: known from the pod itself, where a service name at the
  destination depends on the Host header the client sent), queried with PromQL's `increase()` over
  the window. Amazon Managed Service for Prometheus wants each query signed with SigV4 (service
  `aps`): botocore signs it, with the credentials the environment gives (a CodeBuild role, a
  profile). An unsigned Prometheus answers the same queries.
* `EnvoySource`: Envoy's own counters (`/stats/prometheus` on an admin port), read twice, a window
  apart; the difference is the window. A version is the sum of the client clusters that send to it
  (`nodejs-app`, `ingress-gw-nodejs-app`): each attempt, retried ones included. Envoy updates its
  histograms at each stats flush (the local mesh flushes every second), so a snapshot taken just
  after a request may not hold its time yet: take it a flush later.

Both return `judge.Observed` per version. A source that cannot answer raises SourceError, whose
message is one line.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .judge import Observed
from .stats import INF, Histogram

TIMEOUT_S = 30


class SourceError(Exception):
    """The metrics could not be read: one line saying where and why."""


# -- Prometheus (Amazon Managed Service for Prometheus) -----------------------------------------


@dataclass(frozen=True)
class PrometheusSource:
    """PromQL over Istio's request metrics. `url` is the workspace's Prometheus endpoint
    (`https://aps-workspaces.<region>.amazonaws.com/workspaces/<id>/`)."""

    url: str
    label: str  # the label that tells the versions apart, e.g. destination_workload
    values: Mapping[str, str]  # version -> its value of that label, e.g. nodejs -> nodejs-app
    matchers: str  # further label matchers, e.g. reporter="destination",destination_workload_namespace="lab-appmesh"
    region: str | None = None  # sign with SigV4 for this region (None: unsigned)

    def queries(self, versions: Iterable[str], window_seconds: int) -> dict[str, str]:
        # A regex inside a PromQL string: escaped for the regex, then each backslash for the string
        # (PromQL strings follow Go's escapes, where "\-" alone is an error).
        names = "|".join(re.escape(self.values[version]).replace("\\", "\\\\") for version in versions)
        selector = f'{self.matchers},{self.label}=~"{names}"' if self.matchers else f'{self.label}=~"{names}"'
        window = f"[{window_seconds}s]"
        return {
            "requests": f"sum by ({self.label}) (increase(istio_requests_total{{{selector}}}{window}))",
            "failures": f'sum by ({self.label}) (increase(istio_requests_total{{{selector},response_code=~"5.."}}{window}))',
            "latency": f"sum by ({self.label}, le) (increase(istio_request_duration_milliseconds_bucket{{{selector}}}{window}))",
        }

    def observe(self, versions: Iterable[str], window_seconds: int) -> dict[str, Observed]:
        names = list(versions)
        results = {what: self._query(query) for what, query in self.queries(names, window_seconds).items()}
        observed = {}
        for version in names:
            value = self.values[version]
            requests = _rounded(_sample(results["requests"], self.label, value))
            failures = min(requests, _rounded(_sample(results["failures"], self.label, value)))
            buckets = sorted(
                (_edge(series["metric"].get("le", "")), _rounded(float(series["value"][1])))
                for series in results["latency"]
                if series["metric"].get(self.label) == value
            )
            observed[version] = Observed(requests, failures, _cumulative(buckets, requests))
        return observed

    def _query(self, promql: str) -> list[dict[str, Any]]:
        endpoint = urllib.parse.urljoin(self.url if self.url.endswith("/") else self.url + "/", "api/v1/query")
        body = urllib.parse.urlencode({"query": promql}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.region:
            headers = sign(endpoint, body, headers, self.region)
        request = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace").strip().splitlines()
            raise SourceError(f"prometheus: {endpoint} answered {error.code} ({detail[0] if detail else error.reason})") from None
        except (urllib.error.URLError, OSError) as error:
            raise SourceError(f"prometheus: cannot reach {endpoint} ({getattr(error, 'reason', error)})") from None
        except json.JSONDecodeError:
            raise SourceError(f"prometheus: {endpoint} did not answer JSON") from None
        if answer.get("status") != "success" or answer.get("data", {}).get("resultType") != "vector":
            raise SourceError(f"prometheus: query failed ({answer.get('errorType', '?')}: {answer.get('error', 'not an instant vector')})")
        return list(answer["data"]["result"])


def sign(url: str, body: bytes, headers: Mapping[str, str], region: str) -> dict[str, str]:
    """SigV4 headers for Amazon Managed Service for Prometheus, by botocore (the SDK's own signer)
    with the credentials the environment gives."""
    try:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.session import Session
    except ImportError:
        raise SourceError(
            "prometheus: signing needs botocore (pip install botocore), or pass --no-sign for an unsigned Prometheus"
        ) from None
    credentials = Session().get_credentials()
    if credentials is None:
        raise SourceError("prometheus: no AWS credentials to sign the query with (a role, a profile or AWS_ACCESS_KEY_ID)")
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    SigV4Auth(credentials.get_frozen_credentials(), "aps", region).add_auth(request)
    return dict(request.headers.items())


def _sample(result: list[dict[str, Any]], label: str, value: str) -> float:
    return sum(float(series["value"][1]) for series in result if series["metric"].get(label) == value)


def _rounded(value: float) -> int:
    # increase() extrapolates to the window's edges, so counts come back fractional.
    return max(0, round(value)) if math.isfinite(value) else 0


def _edge(text: str) -> float:
    try:
        return INF if text in ("+Inf", "Inf") else float(text)
    except ValueError:
        raise SourceError(f"metrics: a histogram bucket has an unreadable edge le={text!r}") from None


def _cumulative(buckets: list[tuple[float, int]], total: int) -> Histogram:
    """Buckets as read (rounded, possibly out of step by extrapolation) made cumulative, ending at +Inf."""
    if not buckets:
        return Histogram(((INF, 0),))
    running, fixed = 0, []
    for edge, count in buckets:
        running = max(running, count)
        fixed.append((edge, running))
    if fixed[-1][0] != INF:
        fixed.append((INF, max(running, total)))
    return Histogram(tuple(fixed))


# -- Envoy's own stats -----------------------------------------------------------------------

_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus_text(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition (what Envoy's /stats/prometheus serves)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group("labels") or ""))
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        samples.append((match.group("name"), labels, value))
    return samples


# Envoy 1.40's names, read off its /stats/prometheus: a request's final upstream response is counted
# in upstream_rq_xx, each response a retry replaced in retry_upstream_rq_xx (so every attempt is the
# sum), and request times go to external_ or internal_upstream_rq_time (by x-envoy-internal).
_ATTEMPTS = ("envoy_cluster_upstream_rq_xx", "envoy_cluster_retry_upstream_rq_xx")
_TIMES = ("envoy_cluster_external_upstream_rq_time_bucket", "envoy_cluster_internal_upstream_rq_time_bucket")


def envoy_observed(text: str, clusters: Mapping[str, Iterable[str]]) -> dict[str, tuple[int, int, Histogram]]:
    """Cumulative counters per version: (attempts, 5xx attempts, request-time histogram), summed
    over the version's clusters."""
    owner = {cluster: version for version, names in clusters.items() for cluster in names}
    requests = {version: 0 for version in clusters}
    failures = {version: 0 for version in clusters}
    buckets: dict[str, dict[float, int]] = {version: {} for version in clusters}
    for name, labels, value in parse_prometheus_text(text):
        version = owner.get(labels.get("envoy_cluster_name", ""))
        if version is None:
            continue
        if name in _ATTEMPTS:
            requests[version] += int(value)
            if labels.get("envoy_response_code_class") == "5":
                failures[version] += int(value)
        elif name in _TIMES:
            edge = _edge(labels.get("le", ""))
            buckets[version][edge] = buckets[version].get(edge, 0) + int(value)
    return {
        version: (requests[version], failures[version], _cumulative(sorted(buckets[version].items()), requests[version]))
        for version in clusters
    }


def observed_between(before: str, after: str, clusters: Mapping[str, Iterable[str]]) -> dict[str, Observed]:
    """What each version answered between two snapshots of Envoy's stats."""
    first, second = envoy_observed(before, clusters), envoy_observed(after, clusters)
    result = {}
    for version in clusters:
        requests, failures = second[version][0] - first[version][0], second[version][1] - first[version][1]
        if requests < 0 or failures < 0:
            raise SourceError(f"envoy: the counters of {version} went down between the snapshots (did Envoy restart?)")
        result[version] = Observed(requests, failures, second[version][2].minus(first[version][2]))
    return result


@dataclass(frozen=True)
class EnvoySource:
    """Envoy's admin interfaces (the clients' Envoys), read `window` seconds apart."""

    admin_urls: tuple[str, ...]
    clusters: Mapping[str, tuple[str, ...]]
    sleep: Callable[[float], None] = time.sleep

    def snapshot(self) -> str:
        texts = []
        for url in self.admin_urls:
            endpoint = url.rstrip("/") + "/stats/prometheus"
            try:
                with urllib.request.urlopen(endpoint, timeout=TIMEOUT_S) as response:
                    texts.append(response.read().decode())
            except (urllib.error.URLError, OSError) as error:
                raise SourceError(f"envoy: cannot read {endpoint} ({getattr(error, 'reason', error)})") from None
        return "\n".join(texts)

    def observe(self, versions: Iterable[str], window_seconds: int) -> dict[str, Observed]:
        wanted = {version: self.clusters[version] for version in versions}
        before = self.snapshot()
        self.sleep(window_seconds)
        return observed_between(before, self.snapshot(), wanted)
