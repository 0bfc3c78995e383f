"""The README as a user follows it: every setting the app reads is in it, every `make` target it
names exists, and every CDK command it gives runs the pinned CLI (a global `cdk`, or `npx cdk`
without the venv's Node.js first on the PATH, may be another version)."""

from __future__ import annotations

import re

from config.settings import KNOWN_KEYS
from tests.conftest import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (PROJECT_ROOT / "Makefile").read_text(), flags=re.M))


def test_every_setting_is_in_the_configuration_table() -> None:
    table = {key for row in re.findall(r"^\| (`[^|]+`) \|", README, flags=re.M) for key in re.findall(r"`([a-z_.<>*]+)`", row)}
    documented = {key for key in KNOWN_KEYS if key in table or (key.startswith("pipeline_") and "pipeline_*" in table)}
    assert sorted(KNOWN_KEYS - documented - {"config", "canary_verdict"}) == []
    # pipeline_* stands for the settings the pipeline's sections name one by one.
    assert [key for key in sorted(KNOWN_KEYS) if key.startswith("pipeline_") and not re.search(rf"\b{key}[`=]", README)] == []


def test_every_make_target_the_readme_names_exists() -> None:
    named = set(re.findall(r"(?:^|`|\$ )make ([a-z][a-z-]*)", README, flags=re.M))
    assert named, "no make command found: the pattern is wrong"
    assert sorted(named - TARGETS) == []


def test_every_cdk_command_runs_the_pinned_cli() -> None:
    bare = [
        line.strip()
        for line in README.splitlines()
        for match in re.finditer(r"npx cdk", line)
        if "PATH=$PWD/.venv/bin:$PATH npx cdk" not in line and "may be another version" not in line
    ]
    assert bare == []
    assert "cdk bootstrap" not in README.replace("make bootstrap", "")
