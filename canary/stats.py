"""The statistics behind a verdict: one-sided confidence bounds, so that a verdict moves only on
evidence, not on noise.

A canary is judged "innocent until proven guilty": a check fails only when the data say, at the
configured confidence (95 % by default), that the candidate is worse than the limit. A healthy
candidate's figures scatter around the baseline's, and a bound that accounts for that scatter
stays on the right side of the limit; a faulty one's bound crosses it once there are enough
requests. Three bounds:

* a success rate: the exact (Clopper-Pearson) interval, from the binomial law itself: a canary's
  success rate lives near 100 %, where approximations cover less than they claim (the Wilson upper
  bound of a 99 % rate over 300 requests holds in about 91 % of samples, not 95 %), and an exact
  bound never rolls back a candidate that meets the limit more often than 1 - confidence;
* the difference of two success rates (baseline minus candidate): Newcombe's hybrid score
  interval, built from the two Wilson score intervals (no exact interval is as simple for a
  difference; Newcombe's is the one the literature recommends);
* a latency quantile from a histogram (Envoy's and Istio's are cumulative buckets): distribution-free
  bounds from the binomial law of the number of requests above a bucket's edge, at the buckets'
  resolution (a bound is always a bucket edge: no interpolation that could invent precision).

Pure: standard library only, so the analysis runs anywhere Python does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

INF = math.inf


def z_for(confidence: float) -> float:
    """The one-sided normal quantile: 0.95 -> 1.645."""
    return NormalDist().inv_cdf(confidence)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def wilson(successes: int, trials: int, confidence: float) -> Interval:
    """Wilson score interval of a proportion; each side holds with `confidence`."""
    if trials <= 0:
        return Interval(math.nan, 0.0, 1.0)
    z = z_for(confidence)
    p = successes / trials
    denominator = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Interval(p, max(0.0, center - half), min(1.0, center + half))


def clopper_pearson(successes: int, trials: int, confidence: float) -> Interval:
    """The exact interval of a proportion: each side holds with at least `confidence`. The high
    bound is the rate at which seeing `successes` or fewer is only 1 - confidence likely (found
    by bisection on the binomial law), the low bound likewise from above."""
    if trials <= 0:
        return Interval(math.nan, 0.0, 1.0)
    alpha = 1 - confidence

    def solve(too_low: Callable[[float], bool]) -> float:
        low, high = 0.0, 1.0
        for _ in range(60):  # 2**-60: far below any rate a count can tell apart
            middle = (low + high) / 2
            low, high = (middle, high) if too_low(middle) else (low, middle)
        return (low + high) / 2

    upper = 1.0 if successes == trials else solve(lambda p: binomial_cdf(successes, trials, p) > alpha)
    lower = 0.0 if successes == 0 else solve(lambda p: 1 - binomial_cdf(successes - 1, trials, p) <= alpha)
    return Interval(successes / trials, lower, upper)


def newcombe(first: Interval, second: Interval) -> Interval:
    """Newcombe's hybrid score interval of first - second, from the two Wilson intervals."""
    difference = first.estimate - second.estimate
    low = difference - math.sqrt((first.estimate - first.low) ** 2 + (second.high - second.estimate) ** 2)
    high = difference + math.sqrt((first.high - first.estimate) ** 2 + (second.estimate - second.low) ** 2)
    return Interval(difference, max(-1.0, low), min(1.0, high))


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p): the smaller tail summed exactly in log space, term by
    term from k outwards until the terms no longer change the sum (they fall geometrically away
    from the mode), so it stays fast for millions of requests."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_ratio = math.log(p) - math.log1p(-p)

    def log_term(i: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)

    if k < n * p:  # lower tail: i = k, k-1, ..., 0
        first = log_term(k)
        logs, current = [first], first
        for i in range(k, 0, -1):
            current += math.log(i) - math.log(n - i + 1) - log_ratio
            logs.append(current)
            if current < first - 60:
                break
        return min(1.0, _sum_exp(logs))
    first = log_term(k + 1)  # upper tail: i = k+1, ..., n
    logs, current = [first], first
    for i in range(k + 1, n):
        current += math.log(n - i) - math.log(i + 1) + log_ratio
        logs.append(current)
        if current < first - 60:
            break
    return max(0.0, 1.0 - _sum_exp(logs))


def _sum_exp(logs: Sequence[float]) -> float:
    if not logs:
        return 0.0
    top = max(logs)
    return math.exp(top) * math.fsum(math.exp(value - top) for value in logs)


@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts, as Prometheus exposes them: (upper edge, requests at or below it),
    edges ascending, the last one +Inf (its count is the total)."""

    buckets: tuple[tuple[float, int], ...]

    @property
    def count(self) -> int:
        return self.buckets[-1][1] if self.buckets else 0

    def __post_init__(self) -> None:
        edges = [edge for edge, _ in self.buckets]
        counts = [count for _, count in self.buckets]
        if self.buckets and (edges != sorted(edges) or edges[-1] != INF):
            raise ValueError("histogram buckets must ascend and end with +Inf")
        if counts != sorted(counts):
            raise ValueError("histogram bucket counts must be cumulative (never decreasing)")

    def minus(self, earlier: Histogram) -> Histogram:
        """What was observed between two snapshots of the same counters."""
        before = dict(earlier.buckets)
        return Histogram(tuple((edge, count - before.get(edge, 0)) for edge, count in self.buckets))


def quantile_bounds(histogram: Histogram, quantile: float, confidence: float) -> Interval:
    """Bounds on the `quantile` (0.99: p99) of the distribution the histogram samples.

    Let E(b) be the number of requests above edge b. If the quantile were <= b, a request would
    exceed b with probability <= 1 - quantile, so E(b) ~ Binomial(n, <= 1 - quantile): when even
    that makes E(b) or more this unlikely (<= 1 - confidence), the quantile is above b (low bound).
    Symmetrically, when so few exceed b that a quantile above b would make it unlikely, the
    quantile is at most b (high bound). Edges only: the bounds are as fine as the buckets.
    The estimate is the edge of the bucket holding the quantile's rank (as coarse as the bounds).
    """
    n = histogram.count
    if n == 0:
        return Interval(math.nan, 0.0, INF)
    alpha = 1 - confidence
    tail = 1 - quantile
    low, high = 0.0, INF
    for edge, at_or_below in histogram.buckets:
        if edge == INF:
            break
        above = n - at_or_below
        # P(X >= above) under the largest exceedance probability compatible with quantile <= edge.
        if 1 - binomial_cdf(above - 1, n, tail) <= alpha:
            low = edge
        if high == INF and binomial_cdf(above, n, tail) <= alpha:
            high = edge
    rank = math.ceil(quantile * n)
    estimate = next(edge for edge, at_or_below in histogram.buckets if at_or_below >= rank)
    return Interval(estimate, low, high)
