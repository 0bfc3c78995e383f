"""`python -m meshdiff`: what a configuration change does to the mesh, next to `cdk diff`.

python -m meshdiff -c weights.nodejs=nodejs:1,nodejsv2:1   # last synth -> cdk.json + -c
python -m meshdiff -c config=canary.yaml                   # last synth -> cdk.json + the file
python -m meshdiff --from before.json                      # a saved summary -> cdk.json
python -m meshdiff --from-config stable.yaml               # cdk.json + that file -> cdk.json
python -m meshdiff -o /tmp/out                             # the last `cdk synth -o /tmp/out` -> cdk.json

The old side is, by default, the summary the app wrote on the last synth (cdk.out/mesh-topology.json,
or DIR/mesh-topology.json with `-o DIR`); `--from` names another summary file (relative to the
current directory), `--from-config` a YAML file of settings layered over cdk.json's context
(relative to the project, as with `-c config=FILE.yaml`). The new side is cdk.json's context
with the `-c` settings, built by the same `build_config` as `cdk synth`. Prints the diff and
exits 0; exits 2, with one line on stderr, when the old side is missing or a setting is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from backends import configure  # noqa: E402
from config import ConfigError, merge_layers  # noqa: E402
from mesh.summary import SUMMARY_FILE, SummaryError, load_summary, summarize_config  # noqa: E402
from meshdiff.diff import diff_summaries  # noqa: E402

DEFAULT_SUMMARY = REPO_ROOT / "cdk.out" / SUMMARY_FILE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m meshdiff", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    old_side = parser.add_mutually_exclusive_group()
    old_side.add_argument(
        "--from",
        dest="from_summary",
        metavar="SUMMARY.json",
        type=Path,
        help=f"the old side: a mesh summary file (default: cdk.out/{SUMMARY_FILE}, written by the last synth)",
    )
    old_side.add_argument(
        "--from-config",
        metavar="FILE.yaml",
        help="the old side: the mesh of this config file layered over cdk.json's context (relative to the project)",
    )
    old_side.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        type=Path,
        help=f"the old side: the {SUMMARY_FILE} of the last synth into this CDK output directory (default: <project>/cdk.out)",
    )
    parser.add_argument(
        "-c",
        "--context",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a setting of the new side, as with `cdk synth -c` (repeatable)",
    )
    return parser


def cdk_json_context() -> dict[str, Any]:
    context = json.loads((REPO_ROOT / "cdk.json").read_text()).get("context", {})
    return context if isinstance(context, dict) else {}


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("-c", pair, "expected KEY=VALUE, e.g. -c weights.nodejs=nodejs:1,nodejsv2:1")
        overrides[key.strip()] = value
    return overrides


def summary_of(overrides: dict[str, Any]) -> dict[str, Any]:
    """The mesh of cdk.json's context with `-c`-style settings, validated as `cdk synth` does."""
    defaults = cdk_json_context()
    return summarize_config(configure(merge_layers(defaults, {**defaults, **overrides}, REPO_ROOT), {}))


def old_summary(args: argparse.Namespace) -> dict[str, Any]:
    if args.from_config is not None:
        return summary_of({"config": args.from_config})
    return load_summary(args.from_summary if args.from_summary is not None else default_summary(args))


def default_summary(args: argparse.Namespace) -> Path:
    return DEFAULT_SUMMARY if args.output is None else args.output / SUMMARY_FILE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        new = summary_of(parse_overrides(args.context))
        old = old_summary(args)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        if args.from_summary is None:
            missing = default_summary(args)
            print(
                f"meshdiff: no synthesized mesh summary at {missing}; run `make synth` first (or use --from-config FILE.yaml)",
                file=sys.stderr,
            )
        else:
            print(f"meshdiff: no mesh summary at {error.filename or args.from_summary}", file=sys.stderr)
        return 2
    except (SummaryError, OSError) as error:
        print(f"meshdiff: {error}", file=sys.stderr)
        return 2
    try:
        lines = diff_summaries(old, new)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        print(f"meshdiff: cannot compare, the old summary is malformed ({type(error).__name__}: {error})", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
