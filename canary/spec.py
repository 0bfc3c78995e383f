"""What to judge: one virtual service's canary, as the app renders it from the topology (a JSON
file: mesh/canary.py writes it), read back here with every field checked.

    {"virtual_service": "nodejs", "baseline": "nodejs", "candidate": "nodejsv2",
     "steps": [[2, 1], [1, 1], [0, 1]], "window_seconds": 300,
     "thresholds": {"min_requests": 200, "success_rate_min": 0.99, ...},
     "prometheus": {"label": "destination_workload", "values": {"nodejs": "nodejs-app", "nodejsv2": "nodejsv2-app"},
                    "matchers": "reporter=\\"destination\\""},
     "envoy_clusters": {"nodejs": ["nodejs-app"], "nodejsv2": ["nodejsv2-app"]}}

`prometheus` and `envoy_clusters` say how each source tells the versions apart; either may be absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .judge import Thresholds


class SpecError(ValueError):
    """The spec file is missing or wrong: one line naming the field and the fix."""


@dataclass(frozen=True)
class CanarySpec:
    virtual_service: str
    baseline: str
    candidate: str
    steps: tuple[tuple[int, int], ...]
    window_seconds: int
    thresholds: Thresholds
    prometheus_label: str | None = None
    prometheus_values: dict[str, str] | None = None
    prometheus_matchers: str = ""
    envoy_clusters: dict[str, tuple[str, ...]] | None = None

    def step_label(self, index: int) -> str:
        """'2 of 3 (1:1)' for index 1."""
        baseline, candidate = self.steps[index]
        return f"{index + 1} of {len(self.steps)} ({baseline}:{candidate})"


def _field(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise SpecError(f"canary spec {where}: `{key}` is missing")
    value = data[key]
    # JSON's true is not a count: bool is an int subclass in Python.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SpecError(f"canary spec {where}: `{key}`={value!r} must be a {kind.__name__}")
    return value


def parse_spec(data: Any, where: str = "") -> CanarySpec:
    if not isinstance(data, dict):
        raise SpecError(f"canary spec {where}: expected a JSON object")
    steps = _field(data, "steps", list, where)
    if not steps or not all(
        isinstance(step, list) and len(step) == 2 and all(isinstance(w, int) and not isinstance(w, bool) and w >= 0 for w in step)
        for step in steps
    ):
        raise SpecError(f"canary spec {where}: `steps`={steps!r} must be a non-empty list of [baseline weight, candidate weight]")
    known = {f.name for f in fields(Thresholds)}
    raw_thresholds = _field(data, "thresholds", dict, where)
    unknown = sorted(set(raw_thresholds) - known)
    if unknown:
        raise SpecError(f"canary spec {where}: unknown thresholds {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    try:
        thresholds = Thresholds(**raw_thresholds)
    except (TypeError, ValueError) as error:
        raise SpecError(f"canary spec {where}: thresholds: {error}") from None
    prometheus = data.get("prometheus")
    clusters = data.get("envoy_clusters")
    spec = CanarySpec(
        virtual_service=_field(data, "virtual_service", str, where),
        baseline=_field(data, "baseline", str, where),
        candidate=_field(data, "candidate", str, where),
        steps=tuple((int(a), int(b)) for a, b in steps),
        window_seconds=_field(data, "window_seconds", int, where),
        thresholds=thresholds,
        prometheus_label=prometheus.get("label") if isinstance(prometheus, dict) else None,
        prometheus_values={str(k): str(v) for k, v in prometheus.get("values", {}).items()} if isinstance(prometheus, dict) else None,
        prometheus_matchers=str(prometheus.get("matchers", "")) if isinstance(prometheus, dict) else "",
        envoy_clusters={str(k): tuple(str(c) for c in v) for k, v in clusters.items()} if isinstance(clusters, dict) else None,
    )
    if spec.window_seconds < 1:
        raise SpecError(f"canary spec {where}: `window_seconds`={spec.window_seconds} must be at least 1")
    versions = {spec.baseline, spec.candidate}
    if spec.envoy_clusters is not None and set(spec.envoy_clusters) != versions:
        raise SpecError(f"canary spec {where}: `envoy_clusters` must name exactly {spec.baseline} and {spec.candidate}")
    if spec.prometheus_label is not None and set(spec.prometheus_values or {}) != versions:
        raise SpecError(
            f"canary spec {where}: `prometheus.values` must give the {spec.prometheus_label} of {spec.baseline} and {spec.candidate}"
        )
    return spec


def load_spec(path: Path) -> CanarySpec:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"canary spec {path}: no such file") from None
    except json.JSONDecodeError as error:
        raise SpecError(f"canary spec {path}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    return parse_spec(data, str(path))
