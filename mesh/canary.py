"""A virtual service's canary as the analysis tool reads it (canary/spec.py): the steps, the
limits, and how each metrics source tells the two versions apart. Pure data; the backend says
how its Prometheus metrics name a version, the local mesh how its Envoy clusters do.

Synth writes one file per canary into the cloud assembly (`canary-<virtual service>.json`), the
pipeline's analysis step gets it in its environment, and `make local` writes its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from config.canary import Canary, CanaryState
from config.topology import Topology, VirtualService

SPEC_FILE = "canary-{virtual_service}.json"


def canary_spec(
    virtual_service: VirtualService,
    *,
    prometheus: Mapping[str, Any] | None = None,
    envoy_clusters: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    canary = virtual_service.canary
    if canary is None:
        raise ValueError(f"virtual service {virtual_service.name} declares no canary steps")
    spec: dict[str, Any] = {
        "virtual_service": virtual_service.name,
        "baseline": canary.baseline,
        "candidate": canary.candidate,
        "steps": [list(step) for step in canary.steps],
        "window_seconds": canary.window_seconds,
        "thresholds": thresholds(canary),
    }
    if prometheus is not None:
        spec["prometheus"] = dict(prometheus)
    if envoy_clusters is not None:
        spec["envoy_clusters"] = {version: list(clusters) for version, clusters in envoy_clusters.items()}
    return spec


def thresholds(canary: Canary) -> dict[str, Any]:
    return {
        "min_requests": canary.min_requests,
        "success_rate_min": canary.success_rate_min,
        "success_rate_max_drop": canary.success_rate_max_drop,
        "p99_latency_max_ratio": canary.p99_latency_max_ratio,
        "p99_latency_tolerance_ms": float(canary.p99_latency_tolerance_ms),
    }


def canary_virtual_service(virtual_services: Sequence[VirtualService]) -> VirtualService | None:
    """The one virtual service with canary steps, if any (the topology allows one)."""
    return next((vs for vs in virtual_services if vs.canary), None)


def step_status(virtual_service: VirtualService, *, step: int | None, verdict: str, reason: str) -> dict[str, Any]:
    """What the frontend shows next to the weights (canary/<virtual service>.json in its weights
    directory): the live step and the verdict that put it there. `step` None: rolled back from the
    first step, every request to the baseline."""
    canary = virtual_service.canary
    assert canary is not None
    if step is None:
        label = f"0 of {len(canary.steps)} (all to {canary.baseline})"
    else:
        baseline, candidate = canary.steps[step]
        label = f"{step + 1} of {len(canary.steps)} ({baseline}:{candidate})"
    return {"virtual_service": virtual_service.name, "step": label, "verdict": verdict, "reason": reason}


def canary_status(virtual_service: VirtualService, *, verdict: str, reason: str) -> dict[str, Any]:
    """The status of the step the virtual service's one route is at (its weights say which)."""
    canary = virtual_service.canary
    assert canary is not None
    step = canary.step_of(virtual_service.routes[0].targets)
    return step_status(virtual_service, step=step, verdict=verdict, reason=reason)


def with_state(topology: Topology, virtual_service: str, state: CanaryState) -> Topology:
    """The topology with the canary's route at the weights a pipeline stage's canary reached
    (config.canary.resumed_state says when they apply), in the route's own order of targets."""
    weights = dict(state.weights)

    def resumed(vs: VirtualService) -> VirtualService:
        if vs.name != virtual_service:
            return vs
        (route,) = vs.routes
        return dataclasses.replace(vs, routes=(dataclasses.replace(route, targets=tuple((t, weights[t]) for t, _ in route.targets)),))

    return dataclasses.replace(topology, virtual_services=tuple(resumed(vs) for vs in topology.virtual_services))
