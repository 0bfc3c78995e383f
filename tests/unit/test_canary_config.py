"""Canary steps in config: each rule with its exact message, each limit on both sides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from canary.spec import parse_spec
from config import ConfigError
from config.canary import CanaryState, resumed_state
from config.settings import changed_settings
from tests.conftest import cdk_json_context
from tests.unit.test_settings import config_with

CANARY = {"candidate": "nodejsv2", "steps": "2:1 -> 1:1 -> 0:1"}
ISTIO = {"mesh_backend": "istio"}


def with_canary(canary: dict[str, Any] | None = None, **settings: Any) -> Any:
    topology = {"virtual_services": {"nodejs": {"canary": {**CANARY, **(canary or {})}}}}
    return config_with(**{**ISTIO, **settings, "topology": json.dumps(topology)})


def error_for(canary: dict[str, Any] | None = None, **settings: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        with_canary(canary, **settings)
    message = str(caught.value)
    assert "\n" not in message
    return message


KEY = "config error: topology.virtual_services.nodejs.canary"


def test_the_defaults_and_the_steps_as_written() -> None:
    canary = with_canary().mesh.topology.virtual_service("nodejs").canary
    assert (canary.baseline, canary.candidate, canary.steps) == ("nodejs", "nodejsv2", ((2, 1), (1, 1), (0, 1)))
    assert (canary.min_requests, canary.window_seconds, canary.max_waits) == (200, 300, 6)
    assert (canary.success_rate_min, canary.success_rate_max_drop, canary.p99_latency_max_ratio) == (0.99, 0.005, 1.5)
    listed = with_canary({"steps": ["2:1", "1:1"], "success_rate_min_percent": "99.9"}).mesh.topology.virtual_service("nodejs").canary
    assert listed.steps == ((2, 1), (1, 1)) and listed.success_rate_min == pytest.approx(0.999)


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        ({"steps": "2:1"}, ".steps='2:1': list at least two steps, e.g. 2:1 -> 1:1 -> 0:1"),
        (
            {"steps": "2:1 -> 2:1"},
            ".steps='2:1 -> 2:1': each step must give the candidate a larger share than the one before; 2:1 does not",
        ),
        (
            {"steps": "2:1 -> 4:2"},
            ".steps='2:1 -> 4:2': each step must give the candidate a larger share than the one before; 4:2 does not",
        ),
        ({"steps": "2:1 -> half"}, ".steps='2:1 -> half': write the steps as baseline:candidate weights, e.g. 2:1 -> 1:1 -> 0:1"),
        ({"steps": "2:1 -> 0:0"}, ".steps='2:1 -> 0:0': step 0:0 sends traffic nowhere; give the baseline or the candidate a weight"),
        ({"steps": "2:1 -> 1:101"}, ".steps=101: must be an integer from 0 to 100"),
        ({"candidate": "crystal"}, ".candidate='crystal': must be one of the route's targets: nodejs, nodejsv2"),
        ({"steps": "1:1 -> 0:1"}, ".steps='1:1 -> 0:1': the route's weights nodejs:2, nodejsv2:1 are not one of the steps;"),
        ({"pace": 3}, ".pace=3: unknown key"),
        ({"roll_back_to": "zero"}, ".roll_back_to='zero': must be one of: previous_step, baseline"),
    ],
    ids=[
        "one-step",
        "same-share",
        "same-share-scaled",
        "not-weights",
        "nowhere",
        "weight-limit",
        "not-a-target",
        "not-a-step",
        "unknown",
        "roll-back-to",
    ],
)
def test_each_canary_rule_refuses_in_one_line(canary: dict[str, Any], message: str) -> None:
    assert error_for(canary).startswith(KEY + message)


def test_a_roll_back_goes_to_the_step_before_or_when_asked_to_the_baseline() -> None:
    """Issue 18: the previous step's weights (the last an analysis promoted); from the first step,
    and from any step with roll_back_to: baseline, every request to the baseline."""
    default = with_canary().mesh.topology.virtual_service("nodejs").canary
    assert default.roll_back_to == "previous_step"
    assert [default.roll_back(step) for step in range(3)] == [
        ((("nodejs", 1), ("nodejsv2", 0)), "every request to nodejs"),
        ((("nodejs", 2), ("nodejsv2", 1)), "2:1"),
        ((("nodejs", 1), ("nodejsv2", 1)), "1:1"),
    ]
    baseline = with_canary({"roll_back_to": "baseline"}).mesh.topology.virtual_service("nodejs").canary
    assert {baseline.roll_back(step) for step in range(3)} == {((("nodejs", 1), ("nodejsv2", 0)), "every request to nodejs")}


@pytest.mark.parametrize(
    ("key", "low", "high", "below", "above", "others"),
    [
        ("min_requests", 1, 1_000_000, 0, 1_000_001, {}),
        # The longest window with fewer waits, the most waits with a short window: a step must
        # fit in CodePipeline's 8 hours (tested below).
        ("window_seconds", 30, 3600, 29, 3601, {"max_waits": 0}),
        ("max_waits", 0, 100, -1, 101, {"window_seconds": 30}),
        ("p99_latency_tolerance_ms", 0, 60_000, -1, 60_001, {}),
        ("scrape_margin_seconds", 0, 600, -1, 601, {}),
    ],
)
def test_each_integer_limit_holds_on_both_sides(key: str, low: int, high: int, below: int, above: int, others: dict[str, int]) -> None:
    for value in (low, high):
        assert getattr(with_canary({**others, key: value}).mesh.topology.virtual_service("nodejs").canary, key) == value
    for value in (below, above, True):
        assert error_for({**others, key: value}) == f"{KEY}.{key}={value!r}: must be an integer from {low} to {high}"


def test_a_step_settles_a_window_and_a_scrape_margin_and_its_timeouts_add_up() -> None:
    """Defaults: 300 s window + 60 s margin; 6 waits of 300 s. The analysis build: 10 minutes of
    setup + 2160 s; the pipeline's step: that, 10 minutes around it, and a 40-minute roll back."""
    canary = with_canary().mesh.topology.virtual_service("nodejs").canary
    assert (canary.scrape_margin_seconds, canary.settle_seconds, canary.judging_seconds) == (60, 360, 360 + 6 * 300)
    assert (canary.analysis_timeout_minutes, canary.analysis_step_timeout_minutes, canary.deploy_step_timeout_minutes) == (46, 96, 40)
    short = with_canary({"window_seconds": 45, "scrape_margin_seconds": 20, "max_waits": 3}).mesh.topology.virtual_service("nodejs").canary
    # 45 + 20 + 3 * 45 = 200 s: 4 minutes (rounded up) after 10 of setup.
    assert (short.settle_seconds, short.judging_seconds, short.analysis_timeout_minutes, short.analysis_step_timeout_minutes) == (
        65,
        200,
        14,
        64,
    )


def test_a_step_that_would_outlast_codepipelines_eight_hours_is_refused_at_the_boundary() -> None:
    """With 300 s windows: 10 + (360 + 82 * 300) / 60 + 50 = 476 minutes fit, 83 waits (481) do not."""
    assert with_canary({"max_waits": 82}).mesh.topology.virtual_service("nodejs").canary.analysis_step_timeout_minutes == 476
    assert error_for({"max_waits": 83}) == (
        f"{KEY}.max_waits=83: a pipeline step would take up to 481 minutes (360 s settle, 83 waits of 300 s, setup and a roll back), "
        "more than the 480 CodePipeline allows a CodeBuild action; with window_seconds 300, use max_waits 82 or fewer, or a shorter window"
    )
    assert error_for({"window_seconds": 3600}).startswith(f"{KEY}.max_waits=6: a pipeline step would take up to 481 minutes")


@pytest.mark.parametrize(
    ("key", "low", "high", "below"),
    [
        ("success_rate_min_percent", "0", "100", "-0.001"),
        ("success_rate_max_drop_percent", "0", "100", "-0.001"),
        ("p99_latency_max_ratio", "1", "100", "0.999"),
    ],
)
def test_each_number_limit_holds_on_both_sides(key: str, low: str, high: str, below: str) -> None:
    with_canary({key: low})
    with_canary({key: high})
    for value in (below, "100.001", True, "nan"):
        assert error_for({key: value}) == f"{KEY}.{key}={value!r}: must be a number from {low} to {high}"


def test_a_canary_needs_one_route_with_two_targets() -> None:
    three = {"routes": [{"targets": {"nodejs": 1, "nodejsv2": 1, "crystal": 1}}], "canary": CANARY}
    with pytest.raises(ConfigError) as caught:
        config_with(**ISTIO, topology=json.dumps({"virtual_services": {"nodejs": three}}))
    assert str(caught.value) == (
        f"{KEY}='1 route(s), 3 target(s)': a canary needs a virtual service with one route and two targets (the baseline and the candidate)"
    )


def test_only_one_virtual_service_may_run_a_canary() -> None:
    second = {"routes": [{"targets": {"crystal": 1, "nodejs": 1}}], "canary": {"candidate": "nodejs", "steps": "1:1 -> 0:1"}}
    topology = {"virtual_services": {"nodejs": {"canary": CANARY}, "crystal": second}}
    with pytest.raises(ConfigError, match=r"crystal\.canary='crystal': only one virtual service may declare canary steps \(nodejs does\)"):
        config_with(**ISTIO, topology=json.dumps(topology))


def test_shifting_the_weights_by_hand_stays_on_the_steps_or_rolls_back() -> None:
    assert with_canary(**{"weights.nodejs": "nodejs:1,nodejsv2:1"}).mesh.topology.weights()["nodejs"] == {"nodejs": 1, "nodejsv2": 1}
    rolled_back = with_canary(**{"weights.nodejs": "nodejs:1,nodejsv2:0"}).mesh.topology.virtual_service("nodejs")
    assert rolled_back.canary.step_of(rolled_back.routes[0].targets) is None
    assert "the route's weights nodejs:3, nodejsv2:1 are not one of the steps" in error_for(**{"weights.nodejs": "nodejs:3,nodejsv2:1"})


def test_canary_verdict_is_what_the_frontend_shows_and_is_checked() -> None:
    assert with_canary().mesh.canary_verdict == ("deployed", "deployed with these weights")
    assert with_canary(canary_verdict="roll back: rolled back from step 2").mesh.canary_verdict == ("roll back", "rolled back from step 2")
    assert error_for(canary_verdict="maybe: why not").startswith(
        "config error: canary_verdict='maybe: why not': write '<verdict>: <reason>' with a verdict of deployed, promote, roll back"
    )
    with pytest.raises(ConfigError, match="canary_verdict='promote': has no effect: no virtual service declares canary steps"):
        config_with(canary_verdict="promote")


def test_backends_whose_metrics_cannot_judge_a_canary_refuse_it_naming_the_setting() -> None:
    message = error_for(mesh_backend="appmesh")
    assert message.startswith(
        "config error: mesh_backend='appmesh': cannot express 1 setting(s) of this topology: metric-gated canary steps"
    )
    assert "at topology.virtual_services.nodejs.canary (no metrics source in the cluster" in message
    assert "set canary: null" in message and message.endswith("or use mesh_backend=istio")


def test_the_pipeline_shifts_the_canary_in_its_last_stage_by_default() -> None:
    pipeline = {
        "pipeline_connection_arn": "arn:aws:codeconnections:us-west-1:123456789012:connection/12345678-1234-1234-1234-123456789012",
        "pipeline_repository": "my-org/appmesh-eks",
    }
    assert with_canary(**pipeline).pipeline.canary_stages == ("prod",)
    assert with_canary(**pipeline, pipeline_canary_stages="dev,prod").pipeline.canary_stages == ("dev", "prod")
    assert error_for(**pipeline, pipeline_canary_stages="staging") == (
        "config error: pipeline_canary_stages='staging': is not one of pipeline_stages (dev, prod)"
    )
    with pytest.raises(ConfigError, match="pipeline_canary_stages=\\['prod'\\]: has no effect: no virtual service declares canary steps"):
        config_with(**pipeline, pipeline_canary_stages="prod")


def test_the_spec_synth_writes_is_one_the_tool_reads() -> None:
    from backends.render import canary_spec_for

    spec = canary_spec_for(with_canary({"min_requests": 50, "window_seconds": 60}))
    assert spec is not None
    parsed = parse_spec(json.loads(json.dumps(spec)))
    assert (parsed.baseline, parsed.candidate, parsed.window_seconds, parsed.thresholds.min_requests) == ("nodejs", "nodejsv2", 60, 50)
    assert parsed.prometheus_label == "destination_workload"
    assert parsed.prometheus_values == {"nodejs": "nodejs-app", "nodejsv2": "nodejsv2-app"}
    assert parsed.prometheus_matchers == 'reporter="destination",destination_workload_namespace="lab-appmesh"'


# -- the state a pipeline stage's canary steps store ---------------------------------------------

PIPELINE = {
    "pipeline_connection_arn": "arn:aws:codeconnections:us-west-1:123456789012:connection/12345678-1234-1234-1234-123456789012",
    "pipeline_repository": "my-org/appmesh-eks",
}
FINGERPRINT = "0123456789abcdef" * 4
STORED = {"weights": {"nodejs": 1, "nodejsv2": 1}, "verdict": "promote", "reason": "step 2 (1:1) was promoted", "fingerprint": FINGERPRINT}


def test_a_stored_state_is_read_per_canary_stage() -> None:
    pipeline = with_canary(**PIPELINE, **{"canary_state.prod": json.dumps(STORED)}).pipeline
    assert pipeline.canary_state("prod") == CanaryState(
        (("nodejs", 1), ("nodejsv2", 1)), "promote", "step 2 (1:1) was promoted", FINGERPRINT
    )
    assert pipeline.canary_state("dev") is None
    assert with_canary(**PIPELINE).pipeline.canary_state("prod") is None  # nothing stored: the configured weights


STATE_FIX = (
    'must be the JSON a canary step stores: {"weights": {"<baseline>": N, "<candidate>": N}, "verdict": "promote" or "roll back", '
    '"reason": "...", "fingerprint": "<64 hex digits>"}, or delete the SSM parameter of the stage to start a new canary'
)


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        json.dumps([STORED]),
        json.dumps({**STORED, "extra": 1}),
        json.dumps({key: value for key, value in STORED.items() if key != "reason"}),
        json.dumps({**STORED, "weights": {"nodejs": 1}}),
        json.dumps({**STORED, "weights": {"nodejs": 1, "nodejsv2": 101}}),
        json.dumps({**STORED, "weights": {"nodejs": True, "nodejsv2": 1}}),
        json.dumps({**STORED, "verdict": "wait"}),
        json.dumps({**STORED, "reason": "two\nlines"}),
        json.dumps({**STORED, "fingerprint": "abc"}),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "unknown-key",
        "missing-key",
        "one-weight",
        "weight-limit",
        "bool-weight",
        "verdict",
        "reason",
        "fingerprint",
    ],
)
def test_a_malformed_state_is_one_line_naming_the_context_key(value: str) -> None:
    message = error_for(**PIPELINE, **{"canary_state.prod": value})
    assert message.startswith("config error: canary_state.prod=")
    assert message.endswith(STATE_FIX)


def test_a_state_for_a_stage_without_a_canary_or_without_a_pipeline_is_refused() -> None:
    assert error_for(**PIPELINE, **{"canary_state.dev": json.dumps(STORED)}).endswith(
        "names no canary stage; the pipeline_canary_stages are: prod"
    )
    assert error_for(**{"canary_state.prod": json.dumps(STORED)}).endswith(
        "has no effect without pipeline_connection_arn (the CodeConnections connection the pipeline reads)"
    )


def test_a_stored_state_is_never_replayed_by_the_pipeline() -> None:
    defaults = cdk_json_context()
    merged = {**defaults, **PIPELINE, "canary_state.prod": json.dumps(STORED)}
    assert "canary_state.prod" not in changed_settings(defaults, merged)


def _canary() -> Any:
    return with_canary().mesh.topology.virtual_service("nodejs").canary


@pytest.mark.parametrize(
    ("weights", "verdict", "fingerprint", "resumed"),
    [
        ({"nodejs": 1, "nodejsv2": 1}, "promote", FINGERPRINT, True),
        ({"nodejs": 0, "nodejsv2": 1}, "promote", FINGERPRINT, True),
        ({"nodejs": 1, "nodejsv2": 0}, "roll back", FINGERPRINT, True),
        ({"nodejs": 2, "nodejsv2": 1}, "roll back", FINGERPRINT, True),
        ({"nodejs": 1, "nodejsv2": 1}, "promote", "f" * 64, False),  # another candidate: a new canary
        ({"nodejs": 3, "nodejsv2": 1}, "promote", FINGERPRINT, False),  # not a step (the steps changed)
        ({"nodejs": 1, "nodejsv2": 0}, "promote", FINGERPRINT, False),  # a promotion is to a step
        ({"nodejs": 0, "nodejsv2": 0}, "roll back", FINGERPRINT, False),  # traffic nowhere
        ({"crystal": 1, "nodejsv2": 1}, "promote", FINGERPRINT, False),  # another baseline
    ],
)
def test_a_state_resumes_only_the_same_candidate_on_these_steps(
    weights: dict[str, int], verdict: str, fingerprint: str, resumed: bool
) -> None:
    state = CanaryState(tuple(sorted(weights.items())), verdict, "why", fingerprint)
    assert (resumed_state(_canary(), state, FINGERPRINT) is state) is resumed
