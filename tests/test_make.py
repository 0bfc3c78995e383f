"""The Makefile's CDK targets, with a fake `cdk` in place of the CLI (no AWS): the synth baseline
(cdk.out) changes only on a successful synth, settings are checked before the CLI runs, destroy
asks or takes FORCE=1 and retries, bounded, only what is safe to retry, and Ctrl-C is one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT

TOOL = PROJECT_ROOT / "scripts" / "cdk_run.py"

FAKE_CDK = f"""#!{sys.executable}
# Writes a cloud assembly into its output folder (the CLI's default is cdk.out), as every command
# of the CLI synthesizes first, records its arguments, then answers as FAKE_CDK_SCRIPT says for
# this call: [exit status, output, seconds before it exits]. Ctrl-C ends it quietly.
import json, os, signal, sys, time
signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
args = sys.argv[1:]
out = args[args.index("--output") + 1] if "--output" in args else "cdk.out"
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "written-by-fake-cdk"), "w") as f:
    f.write(" ".join(args))
with open(os.path.join(out, "Fake.template.json"), "w") as f:
    f.write('{{"Resources": {{"Fake": {{}}}}}}')
with open(os.path.join(out, "manifest.json"), "w") as f:
    artifact = {{"type": "aws:cloudformation:stack", "properties": {{"templateFile": "Fake.template.json"}}}}
    f.write(json.dumps({{"version": "1", "artifacts": {{"Fake": artifact}}}}))
with open(os.environ["FAKE_CDK_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
calls = sum(1 for _ in open(os.environ["FAKE_CDK_LOG"]))
script = json.load(open(os.environ["FAKE_CDK_SCRIPT"]))
code, text, seconds = script[min(calls, len(script)) - 1]
print(text, flush=True)
time.sleep(seconds)
sys.exit(code)
"""
NO_CREDENTIALS = (
    "Unable to resolve AWS account to use. It must be either configured when you define your CDK Stack, or through the environment"
)
HELD_BY_AN_ENI = (
    "AppMesh-Network | DELETE_FAILED | AWS::EC2::Subnet | NetworkVpcprivateSubnet1Subnet "
    "The subnet 'subnet-0abc' has dependencies and cannot be deleted. (Service: Ec2, Status Code: 400) DependencyViolation"
)


class Project:
    """A copy of the project to run make in: symlinks to the real one, except cdk.out (a baseline
    of its own) and meshdiff (copied, so that it reads this copy's cdk.out)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()
        for entry in PROJECT_ROOT.iterdir():
            if entry.name.startswith("cdk.out") or entry.name in ("meshdiff", ".git"):
                continue
            (root / entry.name).symlink_to(entry)
        shutil.copytree(PROJECT_ROOT / "meshdiff", root / "meshdiff", ignore=shutil.ignore_patterns("__pycache__"))
        self.baseline = root / "cdk.out"
        self.baseline.mkdir()
        self._write_baseline_summary()
        (self.baseline / "AppMesh-Network.template.json").write_text('{"Resources": {"baseline": {}}}')
        self.cdk = root.parent / "fake-cdk"
        self.cdk.write_text(FAKE_CDK)
        self.cdk.chmod(0o755)
        self.log = root.parent / "fake-cdk.log"
        self.script = root.parent / "fake-cdk.json"
        self.answer([[0, "ok", 0]])

    def _write_baseline_summary(self) -> None:
        from backends import configure
        from config import merge_layers
        from mesh.summary import SUMMARY_FILE, summarize_config, write_summary
        from tests.conftest import cdk_json_context

        defaults = cdk_json_context()
        write_summary(self.baseline / SUMMARY_FILE, summarize_config(configure(merge_layers(defaults, defaults), {})))

    def answer(self, script: list[list[Any]]) -> None:
        self.script.write_text(json.dumps(script))

    def snapshot(self) -> dict[str, bytes]:
        """Every file of cdk.out and its bytes."""
        return {str(p.relative_to(self.baseline)): p.read_bytes() for p in sorted(self.baseline.rglob("*")) if p.is_file()}

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CDK_", "MAKE"))}
        env.update(FAKE_CDK_LOG=str(self.log), FAKE_CDK_SCRIPT=str(self.script))
        return env

    def make(self, *args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
        # The prerequisites are the real project's (the venv, node_modules): never rebuilt from here.
        command = ["make", "--no-print-directory", "-o", ".venv/bin/.runtime", "-o", "node_modules/.installed", f"CDK={self.cdk}", *args]
        return subprocess.run(command, cwd=self.root, env=self.environment(), stdin=stdin, capture_output=True, text=True, check=False)

    def tool(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(TOOL), *args[:1], "--cdk", str(self.cdk), *args[1:]]
        return subprocess.run(
            command, cwd=self.root, env=self.environment(), stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )


def _without_make_position(line: str) -> str:
    """make's messages name a Makefile line (`Makefile:25: ***`, `[Makefile:59: synth]`), which
    moves whenever the Makefile is edited."""
    return re.sub(r"Makefile:\d+: ", "", line)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "project")


# -- only a successful synth replaces cdk.out ------------------------------------------------------


@pytest.mark.parametrize("target", ["diff", "deploy", "destroy FORCE=1", "bootstrap"])
def test_a_failed_diff_deploy_or_destroy_leaves_the_synth_baseline_alone(project: Project, target: str) -> None:
    """Without credentials the CLI still synthesizes (into its output folder) and then fails: that
    must not be cdk.out, which `make meshdiff` and `make diff` compare with."""
    before = project.snapshot()
    project.answer([[1, NO_CREDENTIALS, 0]])
    result = project.make(*target.split(), "CDK_ARGS=-c mesh_backend=istio")
    assert result.returncode != 0
    (call,) = project.calls()
    assert call[0] == target.split()[0]
    assert call[call.index("--output") + 1] == "cdk.out.account"
    assert project.snapshot() == before
    assert (project.root / "cdk.out.account" / "written-by-fake-cdk").exists()


def test_a_failed_synth_leaves_cdk_out_as_it_was_and_no_cdk_out_next(project: Project) -> None:
    before = project.snapshot()
    project.answer([[1, "synth failed", 0]])
    result = project.make("synth")
    assert result.returncode != 0
    assert project.snapshot() == before
    assert not (project.root / "cdk.out.next").exists()


def test_a_good_synth_replaces_cdk_out(project: Project) -> None:
    project.answer([[0, "Successfully synthesized", 0]])
    (project.root / "cdk.out.next").mkdir()  # a leftover of an older run
    result = project.make("synth")
    assert result.returncode == 0, result.stderr
    assert sorted(project.snapshot()) == ["Fake.template.json", "manifest.json", "written-by-fake-cdk"]
    assert "1 stacks, 1 resources" in result.stdout
    assert not (project.root / "cdk.out.next").exists()
    (call,) = project.calls()
    assert call[:4] == ["synth", "--quiet", "--output", "cdk.out.next"]


# -- settings: given where they are read, or refused in one line ------------------------------------


def test_a_setting_given_as_a_make_variable_is_refused(project: Project) -> None:
    """`make synth mesh_backend=istio` would synthesize App Mesh: make would ignore the variable."""
    before = project.snapshot()
    result = project.make("synth", "mesh_backend=istio")
    assert result.returncode == 2
    assert [_without_make_position(line) for line in result.stderr.splitlines()] == [
        "*** mesh_backend=istio is not a variable of this Makefile (CDK_ARGS LOCAL_ARGS FORCE PYTHON CDK); "
        'a setting goes in CDK_ARGS, quoted: make synth CDK_ARGS="-c mesh_backend=istio".  Stop.'
    ]
    assert project.calls() == []
    assert project.snapshot() == before


def test_unquoted_cdk_args_are_one_line_not_the_clis_help(project: Project) -> None:
    """`make synth CDK_ARGS=-c mesh_backend=istio` gives make CDK_ARGS=-c (and a variable, refused
    above); the CLI answers a lone -c with its whole help."""
    result = project.make("synth", "CDK_ARGS=-c")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "CDK_ARGS='-c': -c needs a KEY=VALUE after it; quote the whole list, e.g. make synth CDK_ARGS=\"-c mesh_backend=istio\""
    )
    assert project.calls() == []
    result = project.make("synth", "CDK_ARGS=mesh_backend=istio")
    assert result.returncode == 2
    assert (
        result.stderr.splitlines()[0]
        == "CDK_ARGS='mesh_backend=istio': mesh_backend=istio is a setting without its -c; write -c mesh_backend=istio"
    )


@pytest.mark.parametrize("target", ["synth", "diff", "deploy", "destroy FORCE=1"])
def test_a_bad_setting_is_one_line_before_the_cli_runs(project: Project, target: str) -> None:
    before = project.snapshot()
    result = project.make(*target.split(), "CDK_ARGS=-c kubernetes_version=1.25")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "config error: kubernetes_version='1.25': Kubernetes 1.25 is past the end of EKS support (standard and extended); "
        "supported: 1.35, 1.36 (default 1.35)"
    )
    assert "Traceback" not in result.stderr
    assert project.calls() == []
    assert project.snapshot() == before


def test_make_local_takes_the_settings_in_cdk_args_too(project: Project) -> None:
    """`make local CDK_ARGS=...` used to run the cdk.json topology, ignoring the weights."""
    result = project.make("-n", "local", "CDK_ARGS=-c weights.nodejs=nodejs:1,nodejsv2:1", "LOCAL_ARGS=--instances crystal=2")
    assert result.returncode == 0, result.stderr
    (command,) = [line for line in result.stdout.splitlines() if "-m localmesh" in line]
    assert command.endswith("-m localmesh -c weights.nodejs=nodejs:1,nodejsv2:1 --instances crystal=2")


# -- deploy -------------------------------------------------------------------------------------


def test_deploy_builds_assets_stack_by_stack_so_the_preflight_goes_first(project: Project) -> None:
    """`cdk deploy` builds every asset (the images) before the first stack unless told otherwise;
    App Mesh's preflight must fail within a minute, not after the Docker builds."""
    project.make("deploy")
    (call,) = project.calls()
    assert call[: call.index("--output")] == ["deploy", "--all", "--require-approval", "broadening", "--no-asset-prebuild"]


def test_the_pinned_cli_has_the_asset_prebuild_option() -> None:
    cdk = PROJECT_ROOT / "node_modules" / ".bin" / "cdk"
    assert cdk.exists(), "make test installs the pinned CLI (node_modules)"
    from scripts.cdk_run import cli_environment

    result = subprocess.run([str(cdk), "deploy", "--help"], env=cli_environment(), capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--asset-prebuild" in result.stdout
    assert json.loads((PROJECT_ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"] == "2.1148.1"


# -- destroy ------------------------------------------------------------------------------------


def test_destroy_without_a_terminal_asks_for_force_and_deletes_nothing(project: Project) -> None:
    result = project.make("destroy")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "make destroy: no terminal to confirm on; to delete every AppMesh-* stack of these settings in us-west-1 "
        "without asking, run make destroy FORCE=1"
    )
    assert project.calls() == []


def test_destroy_with_force_runs_the_cli_without_its_prompt(project: Project) -> None:
    result = project.make("destroy", "FORCE=1", "CDK_ARGS=-c mesh_backend=istio")
    assert result.returncode == 0, result.stderr
    assert project.calls() == [["destroy", "--all", "--force", "--output", "cdk.out.account", "-c", "mesh_backend=istio"]]


def test_destroy_retries_a_stack_held_by_enis_then_succeeds(project: Project) -> None:
    project.answer([[1, HELD_BY_AN_ENI, 0], [1, HELD_BY_AN_ENI, 0], [0, "destroyed", 0]])
    result = project.tool("destroy", "--yes", "--attempts", "4", "--retry-wait", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(project.calls()) == 3
    assert result.stdout.count("a stack is still held by ENIs the deleted kubectl Lambda left (aws/aws-cdk#27055)") == 2


def test_destroy_gives_up_after_its_attempts_and_says_what_to_do(project: Project) -> None:
    project.answer([[1, HELD_BY_AN_ENI, 0]])
    result = project.tool("destroy", "--yes", "--attempts", "2", "--retry-wait", "0")
    assert result.returncode == 1
    assert len(project.calls()) == 2
    assert result.stderr.splitlines()[-1] == (
        "destroy: a stack is still held by ENIs after 2 attempts; AWS releases a deleted Lambda's ENIs by itself: "
        "run make destroy FORCE=1 again later (README: Deploy and destroy)"
    )


def test_destroy_does_not_retry_any_other_failure(project: Project) -> None:
    project.answer([[1, NO_CREDENTIALS, 0]])
    result = project.tool("destroy", "--yes", "--attempts", "4", "--retry-wait", "0")
    assert result.returncode == 1
    assert len(project.calls()) == 1
    assert result.stderr.splitlines()[-1] == "destroy: failed (exit 1), and not for an ENI that AWS has yet to release: not retried"


def test_destroy_waits_between_attempts(project: Project) -> None:
    project.answer([[1, HELD_BY_AN_ENI, 0], [0, "destroyed", 0]])
    started = time.monotonic()
    result = project.tool("destroy", "--yes", "--attempts", "2", "--retry-wait", "1.5")
    assert result.returncode == 0
    assert time.monotonic() - started >= 1.5
    assert "attempt 2 of 2 in 1.5 s" in result.stdout


# -- Ctrl-C ---------------------------------------------------------------------------------------


def _interrupt(command: list[str], cwd: Path, env: dict[str, str], when: Any) -> subprocess.CompletedProcess[str]:
    """Run `command` as a terminal runs a foreground job (its own process group, SIGINT at its
    default), and press Ctrl-C (SIGINT to the whole group) once `when()` is true."""

    def as_a_terminal_job() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setpgid(0, 0)

    process = subprocess.Popen(
        command, cwd=cwd, env=env, preexec_fn=as_a_terminal_job, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not when() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_ctrl_c_on_make_synth_is_one_line_and_leaves_cdk_out_as_it_was(project: Project) -> None:
    before = project.snapshot()
    project.answer([[0, "synthesizing", 30]])
    result = _interrupt(
        ["make", "--no-print-directory", "-o", ".venv/bin/.runtime", "-o", "node_modules/.installed", f"CDK={project.cdk}", "synth"],
        project.root,
        project.environment(),
        lambda: bool(project.calls()),
    )
    assert "Traceback" not in result.stdout + result.stderr
    # Ours, then make's own line about its recipe.
    assert [_without_make_position(line) for line in result.stderr.splitlines() if line] == [
        "synth: interrupted; cdk.out is as it was",
        "make: *** [synth] Error 130",
    ]
    assert project.snapshot() == before
    assert not (project.root / "cdk.out.next").exists()


def test_ctrl_c_during_the_apps_synth_prints_no_traceback(tmp_path: Path) -> None:
    """The CLI's app process (app.py) gets the same Ctrl-C; it exits at once, without a traceback."""
    defaults = json.loads((PROJECT_ROOT / "cdk.json").read_text())["context"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDK_")}
    env.update({"CDK_CONTEXT_JSON": json.dumps(defaults), "CDK_OUTDIR": str(tmp_path / "out")})
    started = time.monotonic()
    # The app runs for several seconds (loading jsii alone takes more than one); its handler is
    # set before any import of the app's own: Ctrl-C after 1.5 s lands in the middle of it.
    result = _interrupt([sys.executable, str(PROJECT_ROOT / "app.py")], tmp_path, env, lambda: time.monotonic() > started + 1.5)
    assert result.returncode == 130
    assert "Traceback" not in result.stderr, result.stderr


def test_the_cli_runs_on_the_real_node_not_the_venvs_python_wrapper() -> None:
    """The venv's bin/node is a Python script that prints a traceback on Ctrl-C."""
    from scripts.cdk_run import cli_environment

    node = shutil.which("node", path=cli_environment()["PATH"])
    assert node is not None
    assert not Path(node).read_bytes().startswith(b"#!"), node


# -- make test, offline and without ../shared ---------------------------------------------------------


def test_make_test_offline_without_shared_stops_before_installing_anything(tmp_path: Path) -> None:
    """The pinned upstream files are checked first (standard library only): offline, and without
    ../shared or a cache, `make test` stops with the upstream line instead of after pip's retries."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for entry in PROJECT_ROOT.iterdir():
        if entry.name in (".venv", ".venv-checkov", "node_modules", ".cache", "upstream", ".git") or entry.name.startswith("cdk.out"):
            continue
        (fresh / entry.name).symlink_to(entry)
    # A copy, so that its cache is this checkout's (empty), not the project's.
    shutil.copytree(PROJECT_ROOT / "upstream", fresh / "upstream", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env.update(SHARED_DIR=str(tmp_path / "no-shared"), UPSTREAM_BASE_URL="http://127.0.0.1:9", PIP_INDEX_URL="http://127.0.0.1:9/simple")
    result = subprocess.run(
        ["make", "--no-print-directory", "test"], cwd=fresh, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    assert result.returncode != 0
    assert result.stderr.splitlines()[0].startswith("upstream: cannot fetch ")
    assert result.stderr.splitlines()[0].endswith("put ../shared beside the checkout, or retry with network access")
    assert not (fresh / ".venv").exists() and not (fresh / "node_modules").exists()
