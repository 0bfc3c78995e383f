"""`python -m canary`: judge one canary step from the mesh's own metrics, and say promote, wait or
roll back, with the figures behind it.

    python -m canary --spec nodejs.json --prometheus URL --region us-west-1      # Amazon Managed Prometheus (SigV4)
    python -m canary --spec nodejs.json --prometheus http://127.0.0.1:9090 --no-sign
    python -m canary --spec nodejs.json --envoy-admin http://127.0.0.1:15000    # the local mesh's Envoy, over --window
    python -m canary --spec nodejs.json --envoy-stats before.txt after.txt      # two saved snapshots

Exit status: 0 promote, 3 wait (not enough requests yet), 4 roll back; 2 a wrong argument or spec,
1 the metrics could not be read. `--settle SECONDS` waits that long before the first judgement (after a
step's deploy: a window and a scrape margin, so that the window holds only the step's traffic).
`--max-waits N` judges again, a window later, up to N times while the verdict is wait. With `--step
N`, the step's weights are the spec's: a step that gives the baseline weight 0 judges the candidate
alone, on its absolute limits. `--json` prints the judgement as JSON instead of the report; `--write-json
FILE` writes it beside the report; `--record DIR` writes it to DIR/canary/<virtual service>.json,
where the frontend shows it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .judge import Verdict, judge, report
from .sources import EnvoySource, PrometheusSource, SourceError, observed_between
from .spec import CanarySpec, SpecError, load_spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m canary", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, required=True, help="the canary spec (JSON) the app renders for a virtual service")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", metavar="URL", help="a Prometheus endpoint (an AMP workspace's prometheusEndpoint)")
    source.add_argument("--envoy-admin", metavar="URL", action="append", help="an Envoy admin URL (repeatable), read a window apart")
    source.add_argument("--envoy-stats", metavar="FILE", nargs=2, type=Path, help="two saved /stats/prometheus snapshots, before and after")
    signing = parser.add_mutually_exclusive_group()
    signing.add_argument("--region", help="sign the Prometheus queries with SigV4 for this region (Amazon Managed Prometheus)")
    signing.add_argument("--no-sign", action="store_true", help="send the Prometheus queries unsigned")
    parser.add_argument("--window", type=int, metavar="SECONDS", help="the window to judge (default: the spec's window_seconds)")
    parser.add_argument("--step", type=int, metavar="N", help="which step of the spec is live (1-based), for the report")
    parser.add_argument(
        "--settle", type=int, default=0, metavar="SECONDS", help="wait this long before the first judgement (after a step's deploy)"
    )
    parser.add_argument(
        "--max-waits", type=int, default=0, metavar="N", help="while the verdict is wait, judge again a window later, up to N times"
    )
    parser.add_argument("--json", action="store_true", help="print the judgement as JSON")
    parser.add_argument("--write-json", type=Path, metavar="FILE", help="also write the judgement as JSON to FILE")
    parser.add_argument("--record", type=Path, metavar="DIR", help="also write the judgement to DIR/canary/<virtual service>.json")
    return parser


def _observe(args: argparse.Namespace, spec: CanarySpec, window: int) -> Any:
    versions = [spec.baseline, spec.candidate]
    if args.prometheus:
        if not spec.prometheus_label:
            raise SpecError(f"canary spec {args.spec}: no `prometheus` section: this backend's metrics are not in Prometheus")
        if not args.region and not args.no_sign:
            raise SpecError("--prometheus needs --region (to sign for Amazon Managed Prometheus) or --no-sign")
        source = PrometheusSource(
            args.prometheus,
            spec.prometheus_label,
            spec.prometheus_values or {},
            spec.prometheus_matchers,
            None if args.no_sign else args.region,
        )
        return source.observe(versions, window)
    if spec.envoy_clusters is None:
        raise SpecError(f"canary spec {args.spec}: no `envoy_clusters`: Envoy's stats cannot tell the versions apart")
    if args.envoy_stats:
        before, after = (path.read_text() for path in args.envoy_stats)
        return observed_between(before, after, spec.envoy_clusters)
    return EnvoySource(tuple(args.envoy_admin), spec.envoy_clusters).observe(versions, window)


def main(argv: list[str] | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.spec)
        if args.step is not None and not 1 <= args.step <= len(spec.steps):
            raise SpecError(f"--step {args.step}: the spec has steps 1 to {len(spec.steps)}")
        # Saved snapshots are as far apart as they were taken: their window is theirs (0: unknown).
        window = args.window if args.window is not None else (0 if args.envoy_stats else spec.window_seconds)
        if window < 1 and not args.envoy_stats:
            raise SpecError(f"--window {window}: must be at least 1 second")
        if not 0 <= args.max_waits <= 100 or (args.max_waits and args.envoy_stats):
            raise SpecError(f"--max-waits {args.max_waits}: 0 to 100, and only with a live source (not --envoy-stats)")
        if not 0 <= args.settle <= 7200 or (args.settle and args.envoy_stats):
            raise SpecError(f"--settle {args.settle}: 0 to 7200 seconds, and only with a live source (not --envoy-stats)")
        weights = spec.steps[args.step - 1] if args.step else None
        if args.settle:
            print(f"canary: waiting {args.settle} s for a window of this step's traffic before the first judgement", flush=True)
            sleep(args.settle)
        waits = 0
        while True:
            judgement = judge(spec.baseline, spec.candidate, _observe(args, spec, window), spec.thresholds, window, weights)
            if judgement.verdict is not Verdict.WAIT or waits == args.max_waits:
                break
            waits += 1
            print(f"canary: wait {waits} of {args.max_waits}: {judgement.reason}; judging again in {window} s", flush=True)
            if not args.envoy_admin:  # the Envoy source waits a window itself; a query's window trails
                sleep(window)
    except SpecError as error:
        print(error, file=sys.stderr)
        return 2
    except (SourceError, OSError) as error:
        print(f"canary: {error}", file=sys.stderr)
        return 1
    step = spec.step_label(args.step - 1) if args.step else ""
    data = {"virtual_service": spec.virtual_service, "step": step, **judgement.as_dict()}
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else report(judgement, step))
    if args.write_json:
        args.write_json.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if args.record:
        target = args.record / "canary" / f"{spec.virtual_service}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps(data, sort_keys=True))
        partial.replace(target)  # the frontend never reads half a file
    return judgement.exit_code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("canary: interrupted; nothing judged", file=sys.stderr)
        sys.exit(130)
