"""Every verdict path, and verdicts that do not flip on noise.

The noise tests simulate windows of requests (seeded): a healthy candidate, drawn from the same
distribution as the baseline, must be promoted in at least 99 % of windows; a faulty one (errors, or
added latency, as `make local` injects them) must be rolled back in at least 99 %. Each check is a
one-sided bound at 95 %, and a healthy candidate sits well inside every limit, so its false
roll-back rate is far below 5 %; the simulation measures it rather than trusting the argument.
"""

from __future__ import annotations

import json
import random

import pytest

from canary.judge import Observed, Thresholds, Verdict, judge, report
from canary.stats import INF, Histogram
from tests.canary.test_stats import histogram_of

THRESHOLDS = Thresholds(min_requests=200)


def window(rng: random.Random, n: int, *, failure_rate: float, mean_ms: float, added_ms: float = 0.0) -> Observed:
    failures = sum(rng.random() < failure_rate for _ in range(n))
    return Observed(n, failures, histogram_of([added_ms + rng.expovariate(1 / mean_ms) for _ in range(n)]))


def flat(requests: int, failures: int = 0, latency_ms: float = 3.0) -> Observed:
    return Observed(requests, failures, histogram_of([latency_ms] * requests))


def test_not_enough_requests_is_wait_and_names_who_is_short() -> None:
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(600), "nodejsv2": flat(150)}, THRESHOLDS, 60)
    assert judgement.verdict is Verdict.WAIT and judgement.exit_code == 3
    assert judgement.reason == "not enough requests in the window: nodejsv2 150 (at least 200 each)"
    assert judgement.checks == ()


def test_a_healthy_candidate_is_promoted_with_every_check_shown() -> None:
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(600), "nodejsv2": flat(300)}, THRESHOLDS, 60)
    assert (judgement.verdict, judgement.exit_code, judgement.reason) == (Verdict.PROMOTE, 0, "every check passed")
    assert [(check.name, check.passed) for check in judgement.checks] == [
        ("success rate", True),
        ("success rate vs baseline", True),
        ("p99 latency vs baseline", True),
    ]


def test_a_candidate_failing_one_request_in_five_is_rolled_back_on_both_success_checks() -> None:
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(600), "nodejsv2": flat(300, failures=60)}, THRESHOLDS, 60)
    assert (judgement.verdict, judgement.exit_code) == (Verdict.ROLL_BACK, 4)
    assert judgement.reason == "failed: success rate, success rate vs baseline"
    assert judgement.checks[0].figures == "nodejsv2 80.00% (at most 83.73%), minimum 99.00%"


def test_a_candidate_that_fails_as_often_as_the_baseline_is_judged_by_the_absolute_limit_alone() -> None:
    both_bad = {"nodejs": flat(600, failures=60), "nodejsv2": flat(600, failures=60)}
    judgement = judge("nodejs", "nodejsv2", both_bad, THRESHOLDS, 60)
    assert judgement.reason == "failed: success rate"


def test_a_slower_candidate_is_rolled_back_on_latency_alone() -> None:
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(600), "nodejsv2": flat(300, latency_ms=300)}, THRESHOLDS, 60)
    assert judgement.reason == "failed: p99 latency vs baseline"
    assert judgement.checks[2].figures == ("nodejs p99 ~5 ms (at most 5 ms), nodejsv2 p99 ~500 ms (at least 250 ms); allowed up to 15 ms")


def test_a_latency_regression_inside_the_absolute_tolerance_is_not_a_failure() -> None:
    """1.5x of a 5 ms p99 is 7.5 ms; a histogram cannot tell 5 from 10 ms apart, so the limit is
    also p99 + 10 ms."""
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(600, latency_ms=3), "nodejsv2": flat(600, latency_ms=9)}, THRESHOLDS, 60)
    assert judgement.verdict is Verdict.PROMOTE


def test_a_baseline_without_enough_requests_to_bound_its_p99_does_not_fail_the_candidate() -> None:
    sparse = Thresholds(min_requests=20)
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(20), "nodejsv2": flat(20, latency_ms=900)}, sparse, 60)
    assert judgement.checks[2].passed  # the baseline's p99 could be anything: no evidence of a regression


ALONE = "nodejs has weight 0 at this step: nodejsv2 judged alone on its absolute limits, not against nodejs"


def test_a_step_that_gives_the_baseline_nothing_judges_the_candidate_alone() -> None:
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(0), "nodejsv2": flat(300)}, THRESHOLDS, 60, weights=(0, 1))
    assert (judgement.verdict, judgement.reason) == (Verdict.PROMOTE, f"every check passed ({ALONE})")
    assert [check.name for check in judgement.checks] == ["success rate"]  # no comparison with the baseline
    assert set(judgement.success) == set(judgement.p99_ms) == {"nodejsv2"}
    assert report(judgement, "3 of 3 (0:1)").splitlines()[0] == (
        f"canary nodejsv2 vs nodejs at step 3 of 3 (0:1): PROMOTE (every check passed ({ALONE}))"
    )


def test_a_candidate_judged_alone_is_rolled_back_on_its_absolute_limit() -> None:
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(0), "nodejsv2": flat(300, failures=60)}, THRESHOLDS, 60, weights=(0, 1))
    assert (judgement.verdict, judgement.reason) == (Verdict.ROLL_BACK, f"failed: success rate ({ALONE})")
    # Slow, with nothing to compare with: no latency check to fail.
    slow = judge("nodejs", "nodejsv2", {"nodejs": flat(0), "nodejsv2": flat(300, latency_ms=900)}, THRESHOLDS, 60, weights=(0, 1))
    assert slow.verdict is Verdict.PROMOTE


def test_a_candidate_judged_alone_waits_for_its_own_requests_only() -> None:
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(0), "nodejsv2": flat(150)}, THRESHOLDS, 60, weights=(0, 1))
    assert (judgement.verdict, judgement.reason) == (
        Verdict.WAIT,
        f"not enough requests in the window: nodejsv2 150 (at least 200); {ALONE}",
    )


def test_a_step_that_gives_the_baseline_a_weight_still_needs_its_requests() -> None:
    for weights in ((1, 1), None):
        judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(0), "nodejsv2": flat(300)}, THRESHOLDS, 60, weights=weights)
        assert judgement.reason == "not enough requests in the window: nodejs 0 (at least 200 each)"


def test_the_report_is_one_verdict_line_then_the_figures() -> None:
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(600), "nodejsv2": flat(300, failures=60)}, THRESHOLDS, 60)
    lines = report(judgement, "2 of 3 (1:1)").splitlines()
    assert lines[0] == ("canary nodejsv2 vs nodejs at step 2 of 3 (1:1): ROLL BACK (failed: success rate, success rate vs baseline)")
    assert lines[1:3] == ["  window      60 s", "  requests    nodejs 600, nodejsv2 300"]
    assert [line.split()[0] for line in lines[3:]] == ["FAIL", "FAIL", "pass"]


def test_the_judgement_as_json_has_no_infinity() -> None:
    judgement = judge("nodejs", "nodejsv2", {"nodejs": flat(200), "nodejsv2": flat(200)}, THRESHOLDS, 60)
    text = json.dumps(judgement.as_dict(), allow_nan=False)
    assert json.loads(text)["verdict"] == "promote"


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("min_requests", {"min_requests": 0}),
        ("success_rate_min", {"success_rate_min": 1.5}),
        ("p99_latency_max_ratio", {"p99_latency_max_ratio": 0.9}),
        ("confidence", {"confidence": 1.0}),
    ],
)
def test_thresholds_refuse_what_cannot_be_a_limit(name: str, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=f"^{name}="):
        Thresholds(**kwargs)  # type: ignore[arg-type]


def test_counts_that_cannot_be_are_refused() -> None:
    with pytest.raises(ValueError, match="0 <= failures <= requests"):
        Observed(10, 11, Histogram(((INF, 10),)))


# -- noise ----------------------------------------------------------------------------------

RUNS = 300


def verdicts(candidate: dict[str, float], seed: int) -> dict[Verdict, int]:
    rng = random.Random(seed)
    counts = dict.fromkeys(Verdict, 0)
    for _ in range(RUNS):
        observed = {"nodejs": window(rng, 400, failure_rate=0.001, mean_ms=4.0), "nodejsv2": window(rng, 400, **candidate)}
        counts[judge("nodejs", "nodejsv2", observed, THRESHOLDS, 60).verdict] += 1
    return counts


def test_a_healthy_candidate_is_promoted_in_at_least_99_percent_of_noisy_windows() -> None:
    counts = verdicts({"failure_rate": 0.001, "mean_ms": 4.0}, seed=1)
    assert counts[Verdict.PROMOTE] / RUNS >= 0.99, counts


@pytest.mark.parametrize(
    "fault",
    [
        {"failure_rate": 0.05, "mean_ms": 4.0},  # FAIL_EVERY=20
        {"failure_rate": 0.001, "mean_ms": 4.0, "added_ms": 200.0},  # RESPONSE_DELAY_MS=200
    ],
    ids=["errors", "latency"],
)
def test_a_faulty_candidate_is_rolled_back_in_at_least_99_percent_of_noisy_windows(fault: dict[str, float]) -> None:
    counts = verdicts(fault, seed=2)
    assert counts[Verdict.ROLL_BACK] / RUNS >= 0.99, counts
