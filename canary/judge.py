"""One canary step judged: the candidate's requests against the baseline's, over one window.

The verdict is one of three:

* WAIT: either version answered fewer than `min_requests` in the window; nothing can be said yet;
* ROLL BACK: at least one check shows, at the configured confidence, that the candidate is worse
  than its limit (canary.stats says how each bound is computed);
* PROMOTE: every check passed on enough requests.

The checks, each with the bound that must cross the limit before it fails:

* success rate, absolute: the candidate's exact (Clopper-Pearson) upper bound below `success_rate_min`;
* success rate, relative: the Newcombe lower bound of (baseline - candidate) above
  `success_rate_max_drop`;
* p99 latency, relative: the candidate's p99 low bound above both `p99_latency_max_ratio` times
  the baseline's p99 high bound and that high bound plus `p99_latency_tolerance_ms` (a histogram
  cannot tell 1 ms from 3 ms, so a regression must also be large in absolute terms).

A step that sends the baseline nothing (the last, 0:1) has no baseline to compare with: the
candidate alone is judged, on its absolute limit (its own `min_requests` and success rate), and the
reason says so. Without the step's weights, both versions are judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from .stats import Histogram, Interval, clopper_pearson, newcombe, quantile_bounds, wilson


class Verdict(Enum):
    PROMOTE = "promote"
    WAIT = "wait"
    ROLL_BACK = "roll back"


# Exit codes of `python -m canary`: a pipeline step branches on them.
EXIT_CODES = {Verdict.PROMOTE: 0, Verdict.WAIT: 3, Verdict.ROLL_BACK: 4}


@dataclass(frozen=True)
class Thresholds:
    min_requests: int = 200
    success_rate_min: float = 0.99
    success_rate_max_drop: float = 0.005
    p99_latency_max_ratio: float = 1.5
    p99_latency_tolerance_ms: float = 10.0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.min_requests < 1:
            raise ValueError(f"min_requests={self.min_requests}: must be at least 1")
        for name in ("success_rate_min", "success_rate_max_drop"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name}={value}: must be between 0 and 1")
        if self.p99_latency_max_ratio < 1:
            raise ValueError(f"p99_latency_max_ratio={self.p99_latency_max_ratio}: must be at least 1")
        if not 0.5 <= self.confidence < 1:
            raise ValueError(f"confidence={self.confidence}: must be at least 0.5 and below 1")


@dataclass(frozen=True)
class Observed:
    """What one version answered in the window: requests, the failed ones (5xx), and latency."""

    requests: int
    failures: int
    latency_ms: Histogram

    def __post_init__(self) -> None:
        if self.requests < 0 or not 0 <= self.failures <= self.requests:
            raise ValueError(f"requests={self.requests}, failures={self.failures}: counts must satisfy 0 <= failures <= requests")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    figures: str


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    baseline: str
    candidate: str
    window_seconds: float
    requests: Mapping[str, int]
    checks: tuple[Check, ...] = ()
    reason: str = ""
    success: Mapping[str, Interval] = field(default_factory=dict)
    p99_ms: Mapping[str, Interval] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict.value
        data["exit_code"] = self.exit_code
        return _finite(data)


def _finite(value: Any) -> Any:
    """JSON has no infinity: an unbounded bound is null."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 100:.2f}%"


def milliseconds(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:g} ms"


def judge(
    baseline: str,
    candidate: str,
    observed: Mapping[str, Observed],
    thresholds: Thresholds,
    window_seconds: float,
    weights: tuple[int, int] | None = None,
) -> Judgement:
    """`weights`: the step's (baseline, candidate) weights; a baseline weight of 0 judges the
    candidate alone."""
    requests = {name: observed[name].requests for name in (baseline, candidate)}
    if weights is not None and weights[0] == 0:
        return _judge_alone(baseline, candidate, observed, thresholds, window_seconds, requests)
    short = [name for name, count in requests.items() if count < thresholds.min_requests]
    if short:
        counts = ", ".join(f"{name} {requests[name]}" for name in short)
        return Judgement(
            Verdict.WAIT,
            baseline,
            candidate,
            window_seconds,
            requests,
            reason=f"not enough requests in the window: {counts} (at least {thresholds.min_requests} each)",
        )
    confidence = thresholds.confidence
    successes = {name: observed[name].requests - observed[name].failures for name in requests}
    success = {name: clopper_pearson(successes[name], requests[name], confidence) for name in requests}
    p99 = {name: quantile_bounds(observed[name].latency_ms, 0.99, confidence) for name in requests}
    drop = newcombe(*(wilson(successes[name], requests[name], confidence) for name in (baseline, candidate)))
    allowed_p99 = max(p99[baseline].high * thresholds.p99_latency_max_ratio, p99[baseline].high + thresholds.p99_latency_tolerance_ms)
    checks = (
        Check(
            "success rate",
            success[candidate].high >= thresholds.success_rate_min,
            f"{candidate} {percent(success[candidate].estimate)} (at most {percent(success[candidate].high)}), "
            f"minimum {percent(thresholds.success_rate_min)}",
        ),
        Check(
            "success rate vs baseline",
            drop.low <= thresholds.success_rate_max_drop,
            f"{baseline} {percent(success[baseline].estimate)}, {candidate} {percent(success[candidate].estimate)}: "
            f"drop {percent(drop.estimate)} (at least {percent(max(drop.low, 0.0))}), maximum {percent(thresholds.success_rate_max_drop)}",
        ),
        Check(
            "p99 latency vs baseline",
            p99[candidate].low <= allowed_p99,
            f"{baseline} p99 ~{milliseconds(p99[baseline].estimate)} (at most {milliseconds(p99[baseline].high)}), "
            f"{candidate} p99 ~{milliseconds(p99[candidate].estimate)} (at least {milliseconds(p99[candidate].low)}); "
            f"allowed up to {milliseconds(allowed_p99)}",
        ),
    )
    failed = [check.name for check in checks if not check.passed]
    return Judgement(
        Verdict.ROLL_BACK if failed else Verdict.PROMOTE,
        baseline,
        candidate,
        window_seconds,
        requests,
        checks,
        reason=f"failed: {', '.join(failed)}" if failed else "every check passed",
        success=success,
        p99_ms=p99,
    )


def _judge_alone(
    baseline: str, candidate: str, observed: Mapping[str, Observed], thresholds: Thresholds, window_seconds: float, requests: dict[str, int]
) -> Judgement:
    """The baseline gets no requests at this step: nothing to compare with, so the candidate is
    judged on its absolute limit alone."""
    alone = f"{baseline} has weight 0 at this step: {candidate} judged alone on its absolute limits, not against {baseline}"
    if requests[candidate] < thresholds.min_requests:
        return Judgement(
            Verdict.WAIT,
            baseline,
            candidate,
            window_seconds,
            requests,
            reason=f"not enough requests in the window: {candidate} {requests[candidate]} (at least {thresholds.min_requests}); {alone}",
        )
    successes = observed[candidate].requests - observed[candidate].failures
    success = clopper_pearson(successes, requests[candidate], thresholds.confidence)
    check = Check(
        "success rate",
        success.high >= thresholds.success_rate_min,
        f"{candidate} {percent(success.estimate)} (at most {percent(success.high)}), minimum {percent(thresholds.success_rate_min)}",
    )
    return Judgement(
        Verdict.PROMOTE if check.passed else Verdict.ROLL_BACK,
        baseline,
        candidate,
        window_seconds,
        requests,
        (check,),
        reason=f"{'every check passed' if check.passed else 'failed: success rate'} ({alone})",
        success={candidate: success},
        p99_ms={candidate: quantile_bounds(observed[candidate].latency_ms, 0.99, thresholds.confidence)},
    )


def report(judgement: Judgement, step: str = "") -> str:
    """The verdict as a person reads it: one line, then the figures behind it."""
    where = f" at step {step}" if step else ""
    lines = [
        f"canary {judgement.candidate} vs {judgement.baseline}{where}: {judgement.verdict.value.upper()} ({judgement.reason})",
        f"  window      {judgement.window_seconds:g} s" if judgement.window_seconds else "  window      between the two snapshots",
        "  requests    " + ", ".join(f"{name} {count:,}" for name, count in judgement.requests.items()),
    ]
    for check in judgement.checks:
        lines.append(f"  {'pass' if check.passed else 'FAIL'}        {check.name}: {check.figures}")
    return "\n".join(lines)
