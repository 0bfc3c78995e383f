"""The statistics behind a verdict, each against an oracle that does not share its code: the exact
binomial sum, and coverage measured by simulation (a bound that claims 95 % must hold in about 95 %
of samples, and not much less). Seeded, so every run sees the same samples."""

from __future__ import annotations

import math
import random

import pytest

from canary.stats import INF, Histogram, binomial_cdf, clopper_pearson, newcombe, quantile_bounds, wilson

ENVOY_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def exact_binomial_cdf(k: int, n: int, p: float) -> float:
    return math.fsum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(
    ("k", "n", "p"),
    [(0, 1, 0.5), (0, 10, 0.1), (3, 100, 0.01), (5, 1000, 0.01), (15, 1000, 0.01), (50, 100, 0.5), (98, 100, 0.99), (7, 7, 0.3)],
)
def test_the_binomial_tail_equals_the_exact_sum(k: int, n: int, p: float) -> None:
    assert binomial_cdf(k, n, p) == pytest.approx(exact_binomial_cdf(k, n, p), rel=1e-9, abs=1e-15)


def test_the_binomial_tail_is_fast_and_right_for_a_million_requests() -> None:
    # 10,000 expected, sd ~99.5: five sd above and below the mean.
    assert binomial_cdf(10_500, 1_000_000, 0.01) == pytest.approx(1 - 2.9e-7, abs=2e-7)
    assert binomial_cdf(9_500, 1_000_000, 0.01) == pytest.approx(2.9e-7, rel=0.5)


def test_wilson_stays_inside_zero_and_one_where_the_normal_approximation_does_not() -> None:
    perfect = wilson(100, 100, 0.95)
    assert perfect.estimate == 1.0 and perfect.high == 1.0
    assert perfect.low == pytest.approx(0.9737, abs=1e-4)  # the normal approximation would say [1, 1]
    assert wilson(0, 100, 0.95).low == 0.0
    none = wilson(0, 0, 0.95)
    assert math.isnan(none.estimate) and (none.low, none.high) == (0.0, 1.0)


def test_the_exact_interval_has_the_closed_form_at_the_extremes() -> None:
    # Every one of n succeeded: the low bound solves p**n = 1 - confidence.
    assert clopper_pearson(10, 10, 0.95).low == pytest.approx(0.05 ** (1 / 10), abs=1e-12)
    assert clopper_pearson(0, 10, 0.95).high == pytest.approx(1 - 0.05 ** (1 / 10), abs=1e-12)
    assert clopper_pearson(10, 10, 0.95).high == 1.0 and clopper_pearson(0, 10, 0.95).low == 0.0


@pytest.mark.parametrize("true_rate", [0.99, 0.995, 0.95])
def test_the_exact_upper_bound_covers_the_true_rate_at_least_as_often_as_it_claims(true_rate: float) -> None:
    """The bound the absolute check uses: a candidate whose true rate meets the limit is rolled
    back in at most 5 % of windows. Wilson's bound, for comparison, covers 99 % over 300
    requests in only about 91 % of windows, which is why the absolute check does not use it."""
    rng = random.Random(7)
    runs, n = 2000, 300
    counts = [sum(rng.random() < true_rate for _ in range(n)) for _ in range(runs)]
    exact = sum(clopper_pearson(count, n, 0.95).high >= true_rate for count in counts) / runs
    assert exact >= 0.945  # guaranteed >= 0.95; 0.005 of Monte Carlo slack over 2,000 runs
    if true_rate == 0.99:
        assert sum(wilson(count, n, 0.95).high >= true_rate for count in counts) / runs < 0.93


def test_newcombe_covers_a_difference_of_zero_between_equal_versions() -> None:
    rng = random.Random(11)
    runs, n = 1000, 400
    false_alarms = 0
    for _ in range(runs):
        first = wilson(sum(rng.random() < 0.99 for _ in range(n)), n, 0.95)
        second = wilson(sum(rng.random() < 0.99 for _ in range(n)), n, 0.95)
        false_alarms += newcombe(first, second).low > 0
    assert false_alarms / runs <= 0.06  # a one-sided 95 % bound


def histogram_of(samples: list[float], edges: tuple[float, ...] = ENVOY_BUCKETS_MS) -> Histogram:
    ordered = sorted(samples)
    buckets, index = [], 0
    for edge in edges:
        while index < len(ordered) and ordered[index] <= edge:
            index += 1
        buckets.append((float(edge), index))
    return Histogram((*buckets, (INF, len(ordered))))


def test_p99_bounds_cover_the_true_p99_in_both_directions() -> None:
    rng = random.Random(3)
    mean_ms = 40.0
    true_p99 = -mean_ms * math.log(0.01)  # exponential: about 184 ms, inside the (100, 250] bucket
    runs, n = 400, 2000
    low_held = high_held = 0
    for _ in range(runs):
        bounds = quantile_bounds(histogram_of([rng.expovariate(1 / mean_ms) for _ in range(n)]), 0.99, 0.95)
        low_held += bounds.low <= true_p99
        high_held += true_p99 <= bounds.high
    assert low_held / runs >= 0.95 and high_held / runs >= 0.95  # edges only: coverage is at least nominal


def test_p99_bounds_with_few_requests_say_little_rather_than_something_wrong() -> None:
    few = histogram_of([3.0] * 20)
    bounds = quantile_bounds(few, 0.99, 0.95)
    assert bounds.low <= 3.0 and bounds.high == INF  # 20 requests cannot upper-bound a p99


def test_an_empty_histogram_bounds_nothing() -> None:
    bounds = quantile_bounds(Histogram(((INF, 0),)), 0.99, 0.95)
    assert (bounds.low, bounds.high) == (0.0, INF)


def test_a_histogram_must_be_cumulative_and_end_at_infinity() -> None:
    with pytest.raises(ValueError, match="must ascend and end with"):
        Histogram(((1.0, 1), (5.0, 2)))
    with pytest.raises(ValueError, match="cumulative"):
        Histogram(((1.0, 5), (INF, 2)))
    later = Histogram(((1.0, 15), (5.0, 30), (INF, 31)))
    assert later.minus(Histogram(((1.0, 5), (5.0, 10), (INF, 10)))).buckets == ((1.0, 10), (5.0, 20), (INF, 21))
