"""`python -m meshdiff` as `make diff` runs it, from a directory other than the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import meshdiff.__main__ as cli
from mesh.summary import write_summary

from .support import FIXTURES, HEADER, REPO_ROOT, cdk_json_context, summary_with

VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))
SEED_SUMMARY = FIXTURES / "summary-2to1.json"
CANARY_1TO1 = [
    HEADER,
    "~ route nodejs/route-to-nodejs-app (prefix /):",
    "    nodejs      2 -> 1   (66.7% -> 50.0%)",
    "    nodejsv2    1 -> 1   (33.3% -> 50.0%)",
]


def run(cwd: Path, *args: str, as_module: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDK_", "PYTHON"))}
    if as_module:
        env["PYTHONPATH"] = str(REPO_ROOT)
        command = [PYTHON, "-m", "meshdiff", *args]
    else:
        command = [PYTHON, str(REPO_ROOT / "meshdiff"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(message), result.stderr


def test_canary_shift_from_a_summary(tmp_path: Path) -> None:
    result = run(tmp_path, "--from", str(SEED_SUMMARY), "-c", "weights.nodejs=nodejs:1,nodejsv2:1")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == CANARY_1TO1


def test_run_as_a_path_with_a_relative_summary(tmp_path: Path) -> None:
    (tmp_path / "before.json").write_text(SEED_SUMMARY.read_text())
    result = run(tmp_path, "--from", "before.json", "-c", "weights.nodejs=nodejs:1,nodejsv2:1", as_module=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == CANARY_1TO1


def test_canary_shift_from_a_config_file(tmp_path: Path) -> None:
    """`-c config=FILE` layers the file over cdk.json (relative to the project, not the cwd)."""
    config = str((FIXTURES / "canary-1to1.yaml").relative_to(REPO_ROOT))
    result = run(tmp_path, "--from", str(SEED_SUMMARY), "-c", f"config={config}")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == CANARY_1TO1


def test_rollback_from_config(tmp_path: Path) -> None:
    """--from-config: the old side is cdk.json + the file; the new side cdk.json (nodejs:2, nodejsv2:1)."""
    result = run(tmp_path, "--from-config", str(FIXTURES / "canary-1to1.yaml"))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        HEADER,
        "~ route nodejs/route-to-nodejs-app (prefix /):",
        "    nodejs      1 -> 2   (50.0% -> 66.7%)",
        "    nodejsv2    1 -> 1   (50.0% -> 33.3%)",
    ]


def test_retry_off_as_a_topology_setting(tmp_path: Path) -> None:
    """`-c topology=<JSON>` with the nodejs route's retry turned off: one line, the whole policy -> off."""
    topology = cdk_json_context()["topology"]
    topology["virtual_services"]["nodejs"]["routes"][0]["retry"] = "off"
    result = run(tmp_path, "--from", str(SEED_SUMMARY), "-c", f"topology={json.dumps(topology)}")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        HEADER,
        "~ route nodejs/route-to-nodejs-app (prefix /):",
        "    retry: {http_events: [gateway-error, server-error], max_retries: 2, per_retry_timeout_ms: 2000, tcp_events: [connection-error]} -> off",
    ]


def test_no_changes(tmp_path: Path) -> None:
    result = run(tmp_path, "--from", str(SEED_SUMMARY))
    assert (result.returncode, result.stdout) == (0, f"{HEADER}\nNo mesh changes.\n")


def test_missing_synth_summary(tmp_path: Path) -> None:
    out = tmp_path / "cdk.out"
    result = run(tmp_path, "-o", str(out), "-c", "weights.nodejs=nodejs:1,nodejsv2:1")
    assert_one_line_error(
        result,
        f"meshdiff: no synthesized mesh summary at {out / 'mesh-topology.json'}; run `make synth` first (or use --from-config FILE.yaml)",
    )


def test_missing_summary_file(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path, "--from", "nowhere.json"), "meshdiff: no mesh summary at nowhere.json")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("weights.nodejs=nodejs:x,nodejsv2:1", "config error: weights.nodejs.nodejs='x': must be an integer from 0 to 100"),
        ("weights.nodejs=nodejs:0,nodejsv2:0", "config error: weights.nodejs='nodejs:0,nodejsv2:0': all weights are 0"),
        ("weights.nodjs=nodejs:1", "config error: weights.nodjs='nodejs:1': no virtual service 'nodjs'; defined: crystal, nodejs"),
        ("clustr_name=x", "config error: clustr_name='x': unknown setting (did you mean cluster_name?)"),
        ("config=missing.yaml", "config error: config='missing.yaml': file not found"),
        ("weights.nodejs", "config error: -c='weights.nodejs': expected KEY=VALUE, e.g. -c weights.nodejs=nodejs:1,nodejsv2:1"),
    ],
)
def test_bad_setting_is_one_line(tmp_path: Path, setting: str, message: str) -> None:
    assert_one_line_error(run(tmp_path, "--from", str(SEED_SUMMARY), "-c", setting), message)


def test_bad_from_config_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path, "--from-config", "missing.yaml"), "config error: config='missing.yaml': file not found")


def test_unreadable_summary_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text(json.dumps({"version": 0}))
    assert_one_line_error(
        run(tmp_path, "--from", "old.json"),
        "meshdiff: old.json is a mesh summary of version 0; this meshdiff reads version 1 (run `make synth` to write a current one)",
    )


# In-process: the default old side, <project>/cdk.out/mesh-topology.json, without touching the project.


def test_default_old_side_is_the_last_synth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    synthesized = tmp_path / "mesh-topology.json"
    write_summary(synthesized, summary_with(**{"weights.nodejs": "nodejs:1,nodejsv2:1"}))
    monkeypatch.setattr(cli, "DEFAULT_SUMMARY", synthesized)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["-c", "weights.nodejs=nodejs:0,nodejsv2:1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        HEADER,
        "~ route nodejs/route-to-nodejs-app (prefix /):",
        "    nodejs      1 -> 0   (50.0% -> 0.0%)",
        "    nodejsv2    1 -> 1   (50.0% -> 100.0%)",
    ]
    synthesized.unlink()
    assert cli.main([]) == 2
    assert capsys.readouterr().err.startswith(f"meshdiff: no synthesized mesh summary at {synthesized}; run `make synth` first")
