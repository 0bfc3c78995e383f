"""Canary steps of a virtual service: how its weights move from the baseline to the candidate, and
the limits each step is judged by (python -m canary; README "Metric-gated canary").

    virtual_services:
      nodejs:
        routes: [{targets: {nodejs: 2, nodejsv2: 1}}]
        canary:
          candidate: nodejsv2            # the new version; the route's other target is the baseline
          steps: 2:1 -> 1:1 -> 0:1       # baseline:candidate weights; the route's weights are one of them
          min_requests: 200              # per version and window, before anything is judged
          window_seconds: 300
          success_rate_min_percent: 99   # the candidate's, absolute
          success_rate_max_drop_percent: 0.5   # below the baseline's
          p99_latency_max_ratio: 1.5     # the candidate's p99 against the baseline's
          p99_latency_tolerance_ms: 10   # and at least this much slower, to count
          max_waits: 6                   # windows a step may wait for enough requests
          scrape_margin_seconds: 60      # after a step's deploy, its first judgement waits a window and this
          roll_back_to: previous_step    # or baseline: where a step that is not promoted goes

Validated here like every other setting; each refusal names the key, the value and the fix. So is
what the pipeline stored of a stage's canary (`canary_state.<stage>`, see CanaryState), and the
time a step may take: CodeBuild timeouts are derived from these settings, and CodePipeline stops a
CodeBuild action after 8 hours.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import ConfigError
from .validate import as_list, as_mapping, check_int, reject_unknown

# A weight as a route takes it (App Mesh: 0..100 per target).
MAX_WEIGHT = 100
_STEP = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_KEYS = {
    "candidate",
    "steps",
    "min_requests",
    "window_seconds",
    "success_rate_min_percent",
    "success_rate_max_drop_percent",
    "p99_latency_max_ratio",
    "p99_latency_tolerance_ms",
    "max_waits",
    "scrape_margin_seconds",
    "roll_back_to",
}
# Where a step that is not promoted sends the traffic: the weights of the step before (the last
# an analysis promoted; from the first step, every request to the baseline), or every request to
# the baseline from any step (what Flagger and Argo Rollouts do on an abort).
ROLL_BACK_TO = ("previous_step", "baseline")

# How long the parts of a pipeline's canary step take at most, in minutes: the CodeBuild timeouts
# are these plus the judge's own waiting (Canary.judging_seconds).
# The analysis build: its ENI in the private subnets, `pip install` of the tool, the queries.
ANALYSIS_SETUP_MINUTES = 10
# The pipeline's step around it: its own `pip install`, the analysis build queued, its log read.
STEP_MARGIN_MINUTES = 10
# A deploy of the weights (a step, or a roll back): venv and `pip install`, `npm ci`, `make synth`
# (about 3 minutes on CodeBuild's large instance), `cdk deploy` of the one routing stack.
DEPLOY_MINUTES = 40
# CodePipeline stops a CodeBuild action after 8 hours, whatever the project's own timeout says
# (CodePipeline quotas: "CodeBuild build action and test action: 8 hours").
PIPELINE_ACTION_MAX_MINUTES = 480
# What a canary step stores of its verdict (CanaryState.verdict): a promotion or a roll back.
STATE_VERDICTS = ("promote", "roll back")
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Canary:
    baseline: str
    candidate: str
    # (baseline weight, candidate weight) per step, the candidate's share rising.
    steps: tuple[tuple[int, int], ...]
    min_requests: int = 200
    window_seconds: int = 300
    success_rate_min: float = 0.99
    success_rate_max_drop: float = 0.005
    p99_latency_max_ratio: float = 1.5
    p99_latency_tolerance_ms: int = 10
    max_waits: int = 6
    # After a step's deploy, the first judgement waits a whole window (so that the window holds
    # only this step's traffic) and this margin (a scrape interval and the ingestion behind it).
    scrape_margin_seconds: int = 60
    roll_back_to: str = "previous_step"

    @property
    def settle_seconds(self) -> int:
        """How long after a deploy the first judgement waits (`python -m canary --settle`)."""
        return self.window_seconds + self.scrape_margin_seconds

    @property
    def judging_seconds(self) -> int:
        """The longest a judgement takes: the settle, then up to max_waits more windows."""
        return self.settle_seconds + self.max_waits * self.window_seconds

    @property
    def analysis_timeout_minutes(self) -> int:
        """The in-VPC analysis build's timeout."""
        return ANALYSIS_SETUP_MINUTES + math.ceil(self.judging_seconds / 60)

    @property
    def analysis_step_timeout_minutes(self) -> int:
        """The pipeline's analysis step: the analysis build, then a roll back if it did not promote."""
        return self.analysis_timeout_minutes + STEP_MARGIN_MINUTES + DEPLOY_MINUTES

    @property
    def deploy_step_timeout_minutes(self) -> int:
        return DEPLOY_MINUTES

    def step_of(self, targets: tuple[tuple[str, int], ...]) -> int | None:
        """The index of the step these route targets are at; None: rolled back (the candidate
        gets nothing)."""
        weights = dict(targets)
        if weights[self.candidate] == 0:
            return None
        return self.steps.index((weights[self.baseline], weights[self.candidate]))

    def targets(self, step: int) -> tuple[tuple[str, int], ...]:
        baseline, candidate = self.steps[step]
        return ((self.baseline, baseline), (self.candidate, candidate))

    @property
    def rolled_back(self) -> tuple[tuple[str, int], ...]:
        """Every request to the baseline: where a roll back from the first step goes (any
        weights that give the candidate 0 are this)."""
        return ((self.baseline, 1), (self.candidate, 0))

    def roll_back(self, step: int) -> tuple[tuple[tuple[str, int], ...], str]:
        """Where step `step` (0-based) goes when it is not promoted, and how to say it."""
        if step > 0 and self.roll_back_to == "previous_step":
            baseline, candidate = self.steps[step - 1]
            return self.targets(step - 1), f"{baseline}:{candidate}"
        return self.rolled_back, f"every request to {self.baseline}"


def _number(key: str, value: Any, low: Decimal, high: Decimal) -> float:
    # YAML floats arrive as the text the user wrote (config/settings.py keeps "1.30" as written).
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(key, value, f"must be a number from {low} to {high}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(key, value, f"must be a number from {low} to {high}") from None
    if not number.is_finite() or not low <= number <= high:
        raise ConfigError(key, value, f"must be a number from {low} to {high}")
    return float(number)


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(key, value, f"must be one of: {', '.join(choices)}")
    return str(value)


def parse_steps(key: str, value: Any) -> tuple[tuple[int, int], ...]:
    """`2:1 -> 1:1 -> 0:1`, or a list of `baseline:candidate` strings."""
    parts = [part for part in value.split("->")] if isinstance(value, str) and "->" in value else as_list(key, value)
    steps = []
    for part in parts:
        match = _STEP.match(str(part))
        if not match:
            raise ConfigError(key, value, "write the steps as baseline:candidate weights, e.g. 2:1 -> 1:1 -> 0:1")
        baseline, candidate = (check_int(key, int(group), 0, MAX_WEIGHT) for group in match.groups())
        if baseline == candidate == 0:
            raise ConfigError(key, value, f"step {part.strip()} sends traffic nowhere; give the baseline or the candidate a weight")
        steps.append((baseline, candidate))
    if len(steps) < 2:
        raise ConfigError(key, value, "list at least two steps, e.g. 2:1 -> 1:1 -> 0:1")
    shares = [Decimal(candidate) / (baseline + candidate) for baseline, candidate in steps]
    for before, after, step in zip(shares, shares[1:], steps[1:], strict=False):
        if after <= before:
            raise ConfigError(
                key, value, f"each step must give the candidate a larger share than the one before; {step[0]}:{step[1]} does not"
            )
    return tuple(steps)


def parse_canary(key: str, raw: Any, targets: tuple[tuple[str, int], ...], routes: int) -> Canary:
    """`targets`: the virtual service's one route's weighted targets (routes: how many it has)."""
    raw = as_mapping(key, raw)
    reject_unknown(key, raw, _KEYS)
    if routes != 1 or len(targets) != 2:
        raise ConfigError(
            key,
            f"{routes} route(s), {len(targets)} target(s)",
            "a canary needs a virtual service with one route and two targets (the baseline and the candidate)",
        )
    names = [name for name, _ in targets]
    candidate = raw.get("candidate")
    if candidate not in names:
        raise ConfigError(f"{key}.candidate", candidate, f"must be one of the route's targets: {', '.join(names)}")
    (baseline,) = [name for name in names if name != candidate]
    steps = parse_steps(f"{key}.steps", raw.get("steps"))
    percent = (Decimal(0), Decimal(100))
    canary = Canary(
        baseline=baseline,
        candidate=candidate,
        steps=steps,
        min_requests=check_int(f"{key}.min_requests", raw.get("min_requests", 200), 1, 1_000_000),
        window_seconds=check_int(f"{key}.window_seconds", raw.get("window_seconds", 300), 30, 3600),
        success_rate_min=_number(f"{key}.success_rate_min_percent", raw.get("success_rate_min_percent", 99), *percent) / 100,
        success_rate_max_drop=_number(f"{key}.success_rate_max_drop_percent", raw.get("success_rate_max_drop_percent", "0.5"), *percent)
        / 100,
        p99_latency_max_ratio=_number(f"{key}.p99_latency_max_ratio", raw.get("p99_latency_max_ratio", "1.5"), Decimal(1), Decimal(100)),
        p99_latency_tolerance_ms=check_int(f"{key}.p99_latency_tolerance_ms", raw.get("p99_latency_tolerance_ms", 10), 0, 60_000),
        max_waits=check_int(f"{key}.max_waits", raw.get("max_waits", 6), 0, 100),
        scrape_margin_seconds=check_int(f"{key}.scrape_margin_seconds", raw.get("scrape_margin_seconds", 60), 0, 600),
        roll_back_to=_choice(f"{key}.roll_back_to", raw.get("roll_back_to", "previous_step"), ROLL_BACK_TO),
    )
    _check_duration(key, canary)
    weights = dict(targets)
    current = (weights[baseline], weights[candidate])
    # Candidate 0: rolled back, every request to the baseline (a roll back from the first step).
    if current not in steps and current[1] != 0:
        listed = " -> ".join(f"{a}:{b}" for a, b in steps)
        raise ConfigError(
            f"{key}.steps",
            listed,
            f"the route's weights {baseline}:{current[0]}, {candidate}:{current[1]} are not one of the steps; "
            f"set the route's weights to a step (usually the first) or give {candidate} 0 (rolled back), "
            f"or add {current[0]}:{current[1]} to the steps",
        )
    return canary


def _check_duration(key: str, canary: Canary) -> None:
    """A pipeline step judges for up to judging_seconds and may then roll back: all of it must fit
    in the 8 hours CodePipeline gives a CodeBuild action, or the pipeline would stop it half-way,
    the step's weights live and nothing rolled back."""
    minutes = canary.analysis_step_timeout_minutes
    if minutes <= PIPELINE_ACTION_MAX_MINUTES:
        return
    spare = (PIPELINE_ACTION_MAX_MINUTES - ANALYSIS_SETUP_MINUTES - STEP_MARGIN_MINUTES - DEPLOY_MINUTES) * 60 - canary.settle_seconds
    fitting = max(0, spare // canary.window_seconds)
    raise ConfigError(
        f"{key}.max_waits",
        canary.max_waits,
        f"a pipeline step would take up to {minutes} minutes ({canary.settle_seconds} s settle, {canary.max_waits} waits of "
        f"{canary.window_seconds} s, setup and a roll back), more than the {PIPELINE_ACTION_MAX_MINUTES} CodePipeline allows a "
        f"CodeBuild action; with window_seconds {canary.window_seconds}, use max_waits {fitting} or fewer, or a shorter window",
    )


@dataclass(frozen=True)
class CanaryState:
    """Where a pipeline stage's canary stands, as its last canary step stored it (an SSM parameter
    the pipeline's synth reads into `canary_state.<stage>`): the weights it left live, the verdict
    that put them there, and the fingerprint of the candidate it judged."""

    weights: tuple[tuple[str, int], ...]
    verdict: str
    reason: str
    fingerprint: str

    def to_json(self) -> str:
        return json.dumps(
            {"fingerprint": self.fingerprint, "reason": self.reason, "verdict": self.verdict, "weights": dict(self.weights)},
            sort_keys=True,
            separators=(",", ":"),
        )


def parse_canary_state(key: str, value: Any) -> CanaryState:
    """The JSON a canary step stores (scripts/canary_step.py), e.g.
    {"fingerprint": "<64 hex>", "reason": "step 2 (1:1) was promoted by its analysis", "verdict": "promote",
     "weights": {"nodejs": 1, "nodejsv2": 1}}."""
    fix = (
        'must be the JSON a canary step stores: {"weights": {"<baseline>": N, "<candidate>": N}, "verdict": "promote" or '
        '"roll back", "reason": "...", "fingerprint": "<64 hex digits>"}, or delete the SSM parameter of the stage to start a new canary'
    )
    data = value
    if isinstance(value, str):
        try:
            data = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(key, value, fix) from None
    if not isinstance(data, Mapping) or set(data) != {"weights", "verdict", "reason", "fingerprint"}:
        raise ConfigError(key, value, fix)
    weights, verdict, reason, fingerprint = data["weights"], data["verdict"], data["reason"], data["fingerprint"]
    if (
        not isinstance(weights, Mapping)
        or len(weights) != 2
        or not all(isinstance(name, str) and type(weight) is int and 0 <= weight <= MAX_WEIGHT for name, weight in weights.items())
        or verdict not in STATE_VERDICTS
        or not isinstance(reason, str)
        or not reason.isprintable()
        or len(reason) > 200
        or not isinstance(fingerprint, str)
        or not _FINGERPRINT.match(fingerprint)
    ):
        raise ConfigError(key, value, fix)
    return CanaryState(tuple(sorted(weights.items())), verdict, reason, fingerprint)


def resumed_state(canary: Canary, state: CanaryState | None, fingerprint: str) -> CanaryState | None:
    """The stored state, when it is this candidate's (the same fingerprint) and its weights still
    fit these steps (a step, or the candidate at 0); None: start a new canary at the configured step."""
    if state is None or state.fingerprint != fingerprint:
        return None
    weights = dict(state.weights)
    if set(weights) != {canary.baseline, canary.candidate}:
        return None
    on_a_step = (weights[canary.baseline], weights[canary.candidate]) in canary.steps
    rolled_back = weights[canary.candidate] == 0 and weights[canary.baseline] > 0
    if not (on_a_step or (rolled_back and state.verdict == "roll back")):
        return None
    return state
