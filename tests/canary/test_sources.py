"""The metric sources against recorded answers: Amazon Managed Prometheus (a loopback server that
answers as the Prometheus HTTP API does and checks each query is SigV4-signed for `aps`), and
Envoy's /stats/prometheus text. Every verdict path through `python -m canary`, with its exit code."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from canary.__main__ import main
from canary.sources import EnvoySource, SourceError, envoy_observed, observed_between, parse_prometheus_text
from canary.stats import INF
from tests.loopback import serving

SPEC = {
    "virtual_service": "nodejs",
    "baseline": "nodejs",
    "candidate": "nodejsv2",
    "steps": [[2, 1], [1, 1], [0, 1]],
    "window_seconds": 300,
    "thresholds": {"min_requests": 200},
    "prometheus": {
        "label": "destination_workload",
        "values": {"nodejs": "nodejs-app", "nodejsv2": "nodejsv2-app"},
        "matchers": 'reporter="destination",destination_workload_namespace="lab-appmesh"',
    },
    "envoy_clusters": {"nodejs": ["nodejs-app", "ingress-gw-nodejs-app"], "nodejsv2": ["nodejsv2-app", "ingress-gw-nodejsv2-app"]},
}
EDGES = ("0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "+Inf")


def vector(samples: list[tuple[dict[str, str], float]]) -> dict[str, Any]:
    """An instant-vector answer, as the Prometheus HTTP API gives it (values are strings)."""
    result = [{"metric": labels, "value": [1796000000.123, repr(value)]} for labels, value in samples]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def recorded(requests: dict[str, float], failures: dict[str, float], p99_bucket: dict[str, str]) -> dict[str, dict[str, Any]]:
    """What AMP answers to the three queries: increase() over the window, so fractional counts."""
    latency = []
    for version, total in requests.items():
        reached = False
        for edge in EDGES:
            reached = reached or edge == p99_bucket[version]
            latency.append(({"destination_workload": f"{version}-app", "le": edge}, total if reached else total * 0.9))
    return {
        "requests": vector([({"destination_workload": f"{v}-app"}, n) for v, n in requests.items()]),
        "failures": vector([({"destination_workload": f"{v}-app"}, n) for v, n in failures.items() if n]),
        "latency": vector(latency),
    }


class FakePrometheus:
    def __init__(self) -> None:
        self.answers: dict[str, dict[str, Any]] = {}
        # Answers for later rounds of three queries, used in turn (then `answers` again).
        self.rounds: list[dict[str, dict[str, Any]]] = []
        self.queries: list[str] = []
        self.authorizations: list[str | None] = []
        self.status = 200


@pytest.fixture
def prometheus(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakePrometheus]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    for variable in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(variable, raising=False)
    fake = FakePrometheus()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            query = urllib.parse.parse_qs(self.rfile.read(length).decode())["query"][0]
            fake.queries.append(query)
            fake.authorizations.append(self.headers.get("Authorization"))
            if self.path != "/workspaces/ws-1/api/v1/query":
                self._answer(404, {"status": "error", "errorType": "not_found", "error": self.path})
            elif fake.status != 200:
                self._answer(fake.status, {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"})
            else:
                kind = "latency" if "_bucket" in query else "failures" if "response_code" in query else "requests"
                if kind == "requests" and fake.rounds:
                    fake.answers = fake.rounds.pop(0)
                self._answer(200, fake.answers[kind])

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as port:
        yield f"http://127.0.0.1:{port}/workspaces/ws-1/", fake


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "nodejs.json"
    path.write_text(json.dumps(SPEC))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


HEALTHY = recorded({"nodejs": 1204.6, "nodejsv2": 598.2}, {"nodejs": 0.0, "nodejsv2": 0.0}, {"nodejs": "10", "nodejsv2": "10"})
FAULTY = recorded({"nodejs": 1204.6, "nodejsv2": 598.2}, {"nodejs": 0.0, "nodejsv2": 119.6}, {"nodejs": "10", "nodejsv2": "10"})
SLOW = recorded({"nodejs": 1204.6, "nodejsv2": 598.2}, {"nodejs": 0.0, "nodejsv2": 0.0}, {"nodejs": "10", "nodejsv2": "500"})
QUIET = recorded({"nodejs": 120.4, "nodejsv2": 59.8}, {"nodejs": 0.0, "nodejsv2": 0.0}, {"nodejs": "10", "nodejsv2": "10"})


@pytest.mark.parametrize(
    ("answers", "code", "first_line"),
    [
        (HEALTHY, 0, "canary nodejsv2 vs nodejs at step 2 of 3 (1:1): PROMOTE (every check passed)"),
        (
            QUIET,
            3,
            "canary nodejsv2 vs nodejs at step 2 of 3 (1:1): WAIT (not enough requests in the window: nodejs 120, nodejsv2 60 (at least 200 each))",
        ),
        (FAULTY, 4, "canary nodejsv2 vs nodejs at step 2 of 3 (1:1): ROLL BACK (failed: success rate, success rate vs baseline)"),
        (SLOW, 4, "canary nodejsv2 vs nodejs at step 2 of 3 (1:1): ROLL BACK (failed: p99 latency vs baseline)"),
    ],
    ids=["promote", "wait", "roll-back-errors", "roll-back-latency"],
)
def test_amp_verdicts_from_recorded_answers(
    prometheus: tuple[str, FakePrometheus],
    spec_file: Path,
    capsys: pytest.CaptureFixture[str],
    answers: dict[str, dict[str, Any]],
    code: int,
    first_line: str,
) -> None:
    url, fake = prometheus
    fake.answers = answers
    exit_code, out, err = run(capsys, "--spec", str(spec_file), "--prometheus", url, "--region", "us-west-1", "--step", "2")
    assert (exit_code, err) == (code, "")
    assert out.splitlines()[0] == first_line


def test_max_waits_judges_again_a_window_later_until_there_are_enough_requests(
    prometheus: tuple[str, FakePrometheus], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, fake = prometheus
    fake.rounds = [QUIET, QUIET, HEALTHY]
    slept: list[float] = []
    code = main(["--spec", str(spec_file), "--prometheus", url, "--no-sign", "--max-waits", "3"], sleep=slept.append)
    out = capsys.readouterr().out.splitlines()
    assert (code, slept) == (0, [300, 300])
    assert out[:2] == [
        "canary: wait 1 of 3: not enough requests in the window: nodejs 120, nodejsv2 60 (at least 200 each); judging again in 300 s",
        "canary: wait 2 of 3: not enough requests in the window: nodejs 120, nodejsv2 60 (at least 200 each); judging again in 300 s",
    ]
    assert out[2].endswith("PROMOTE (every check passed)")


def test_max_waits_ends_in_wait_when_the_requests_never_come(
    prometheus: tuple[str, FakePrometheus], spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, fake = prometheus
    fake.answers = QUIET
    slept: list[float] = []
    written = tmp_path / "judgement.json"
    argv = ["--spec", str(spec_file), "--prometheus", url, "--no-sign", "--max-waits", "2", "--write-json", str(written)]
    assert main(argv, sleep=slept.append) == 3
    assert slept == [300, 300] and len(fake.queries) == 9
    assert json.loads(written.read_text())["verdict"] == "wait"
    assert (
        capsys.readouterr()
        .out.splitlines()[-3]
        .endswith("WAIT (not enough requests in the window: nodejs 120, nodejsv2 60 (at least 200 each))")
    )


def test_settle_waits_before_the_first_query_so_the_window_holds_only_the_steps_traffic(
    prometheus: tuple[str, FakePrometheus], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, fake = prometheus
    fake.rounds = [QUIET, HEALTHY]
    waited: list[tuple[float, int]] = []  # (seconds, queries sent before the wait)
    argv = ["--spec", str(spec_file), "--prometheus", url, "--no-sign", "--settle", "360", "--max-waits", "1"]
    assert main(argv, sleep=lambda seconds: waited.append((seconds, len(fake.queries)))) == 0
    assert waited == [(360, 0), (300, 3)]
    assert capsys.readouterr().out.splitlines()[0] == (
        "canary: waiting 360 s for a window of this step's traffic before the first judgement"
    )


@pytest.mark.parametrize("settle", ["-1", "7201"])
def test_a_settle_out_of_bounds_is_one_line_and_exit_2(spec_file: Path, capsys: pytest.CaptureFixture[str], settle: str) -> None:
    code, out, err = run(capsys, "--spec", str(spec_file), "--prometheus", "http://127.0.0.1:9/", "--no-sign", "--settle", settle)
    assert (code, out) == (2, "")
    assert err == f"--settle {settle}: 0 to 7200 seconds, and only with a live source (not --envoy-stats)\n"


ALL_TO_V2 = recorded({"nodejs": 0.0, "nodejsv2": 1802.4}, {"nodejs": 0.0, "nodejsv2": 0.0}, {"nodejs": "10", "nodejsv2": "10"})


def test_the_last_step_judges_the_candidate_alone_since_the_baseline_gets_nothing(
    prometheus: tuple[str, FakePrometheus], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Step 3 of 3 is 0:1: the step's weights come from the spec, and the baseline's missing
    requests are no reason to wait (which would end, after the waits, in a roll back)."""
    url, fake = prometheus
    fake.answers = ALL_TO_V2
    code, out, _ = run(capsys, "--spec", str(spec_file), "--prometheus", url, "--no-sign", "--step", "3")
    assert code == 0
    assert out.splitlines()[0] == (
        "canary nodejsv2 vs nodejs at step 3 of 3 (0:1): PROMOTE (every check passed "
        "(nodejs has weight 0 at this step: nodejsv2 judged alone on its absolute limits, not against nodejs))"
    )
    # Without the step, both versions are judged, and the baseline's 0 requests are a wait.
    code, out, _ = run(capsys, "--spec", str(spec_file), "--prometheus", url, "--no-sign")
    assert code == 3


def test_amp_queries_are_signed_for_aps_and_ask_for_the_window_by_version(
    prometheus: tuple[str, FakePrometheus], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, fake = prometheus
    fake.answers = HEALTHY
    assert run(capsys, "--spec", str(spec_file), "--prometheus", url, "--region", "us-west-1")[0] == 0
    assert len(fake.authorizations) == 3
    for header in fake.authorizations:
        assert header is not None
        assert re.fullmatch(
            r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/us-west-1/aps/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}",
            header,
        ), header
    selector = 'reporter="destination",destination_workload_namespace="lab-appmesh",destination_workload=~"nodejs\\\\-app|nodejsv2\\\\-app"'
    assert fake.queries == [
        f"sum by (destination_workload) (increase(istio_requests_total{{{selector}}}[300s]))",
        f'sum by (destination_workload) (increase(istio_requests_total{{{selector},response_code=~"5.."}}[300s]))',
        f"sum by (destination_workload, le) (increase(istio_request_duration_milliseconds_bucket{{{selector}}}[300s]))",
    ]


def test_an_unsigned_prometheus_gets_no_authorization_and_a_window_override(
    prometheus: tuple[str, FakePrometheus], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, fake = prometheus
    fake.answers = HEALTHY
    assert run(capsys, "--spec", str(spec_file), "--prometheus", url, "--no-sign", "--window", "120")[0] == 0
    assert fake.authorizations == [None, None, None]
    assert all("[120s]" in query for query in fake.queries)


def test_a_prometheus_error_is_one_line_and_exit_1(
    prometheus: tuple[str, FakePrometheus], spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, fake = prometheus
    fake.status = 400
    code, out, err = run(capsys, "--spec", str(spec_file), "--prometheus", url, "--region", "us-west-1")
    assert (code, out) == (1, "")
    assert (
        err
        == f"canary: prometheus: {url}api/v1/query answered 400 ("
        + '{"status": "error", "errorType": "bad_data", "error": "parse error at char 3"})\n'
    )


def test_an_unreachable_prometheus_is_one_line_and_exit_1(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--spec", str(spec_file), "--prometheus", "http://127.0.0.1:9/", "--no-sign")
    assert (code, out) == (1, "")
    assert err.startswith("canary: prometheus: cannot reach http://127.0.0.1:9/api/v1/query (") and err.count("\n") == 1


def test_prometheus_needs_to_be_told_whether_to_sign(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--spec", str(spec_file), "--prometheus", "http://127.0.0.1:9/") == (
        2,
        "",
        "--prometheus needs --region (to sign for Amazon Managed Prometheus) or --no-sign\n",
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("candidate"), "`candidate` is missing"),
        (lambda s: s.update(window_seconds=True), "`window_seconds`=True must be a int"),
        (lambda s: s.update(steps=[[2, 1], [1]]), "`steps`=[[2, 1], [1]] must be a non-empty list of [baseline weight, candidate weight]"),
        (lambda s: s["thresholds"].update(p99=2), "unknown thresholds p99 (known: confidence, min_requests,"),
        (lambda s: s["thresholds"].update(success_rate_min=2), "thresholds: success_rate_min=2: must be between 0 and 1"),
    ],
    ids=["missing", "bool-is-not-a-count", "steps", "unknown-threshold", "bad-threshold"],
)
def test_a_wrong_spec_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, message: str) -> None:
    spec = json.loads(json.dumps(SPEC))
    edit(spec)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    code, out, err = run(capsys, "--spec", str(path), "--envoy-stats", str(path), str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"canary spec {path}: ") and message in err and err.count("\n") == 1


# -- Envoy's own stats ------------------------------------------------------------------------


def envoy_text(counts: dict[str, tuple[int, int, int]]) -> str:
    """/stats/prometheus as Envoy 1.40 writes it (names read off the local mesh's Envoy), for
    clusters: (2xx, 5xx, requests at or below 5 ms). Of the 5xx, half were retried: a retried
    attempt's response is counted in retry_upstream_rq_xx, a request's final one in upstream_rq_xx."""
    lines = ["# TYPE envoy_cluster_upstream_rq_xx counter"]
    for cluster, (ok, failed, _) in counts.items():
        retried = failed // 2
        lines.append(f'envoy_cluster_upstream_rq_xx{{envoy_response_code_class="2",envoy_cluster_name="{cluster}"}} {ok}')
        lines.append(f'envoy_cluster_upstream_rq_xx{{envoy_response_code_class="5",envoy_cluster_name="{cluster}"}} {failed - retried}')
        lines.append(f'envoy_cluster_retry_upstream_rq_xx{{envoy_response_code_class="5",envoy_cluster_name="{cluster}"}} {retried}')
        lines.append(f'envoy_cluster_external_upstream_rq_xx{{envoy_response_code_class="2",envoy_cluster_name="{cluster}"}} {ok}')
    lines.append("# TYPE envoy_cluster_external_upstream_rq_time histogram")
    for cluster, (ok, failed, fast) in counts.items():
        for edge in EDGES:
            value = ok + failed if edge in ("10", "25", "50", "100", "250", "500", "1000", "+Inf") else fast
            lines.append(f'envoy_cluster_external_upstream_rq_time_bucket{{envoy_cluster_name="{cluster}",le="{edge}"}} {value}')
        lines.append(f'envoy_cluster_external_upstream_rq_time_sum{{envoy_cluster_name="{cluster}"}} 1234.5')
        lines.append(f'envoy_cluster_external_upstream_rq_time_count{{envoy_cluster_name="{cluster}"}} {ok + failed}')
    lines.append('envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="crystal-app"} 999')
    return "\n".join(lines) + "\n"


BEFORE = envoy_text({"nodejs-app": (100, 0, 0), "ingress-gw-nodejs-app": (10, 0, 0), "nodejsv2-app": (50, 0, 0)})
AFTER = envoy_text(
    {"nodejs-app": (700, 0, 0), "ingress-gw-nodejs-app": (110, 0, 0), "nodejsv2-app": (350, 60, 0), "ingress-gw-nodejsv2-app": (20, 0, 0)}
)


def test_envoy_text_is_read_by_name_labels_and_value() -> None:
    samples = parse_prometheus_text('# HELP x\nfoo{a="1",b="x\\"y"} 3\nbar 4.5\nnot a sample\n')
    assert samples == [("foo", {"a": "1", "b": 'x\\"y'}, 3.0), ("bar", {}, 4.5)]


def test_a_version_is_the_sum_of_the_clusters_that_send_to_it() -> None:
    cumulative = envoy_observed(AFTER, SPEC["envoy_clusters"])
    assert cumulative["nodejs"][:2] == (810, 0)
    assert cumulative["nodejsv2"][:2] == (430, 60)
    assert cumulative["nodejsv2"][2].buckets[-1] == (INF, 430)


def test_the_window_is_the_difference_of_two_snapshots() -> None:
    observed = observed_between(BEFORE, AFTER, SPEC["envoy_clusters"])
    assert (observed["nodejs"].requests, observed["nodejs"].failures) == (700, 0)
    assert (observed["nodejsv2"].requests, observed["nodejsv2"].failures) == (380, 60)
    assert observed["nodejsv2"].latency_ms.buckets[0] == (0.5, 0)
    with pytest.raises(SourceError, match="went down between the snapshots"):
        observed_between(AFTER, BEFORE, SPEC["envoy_clusters"])


def test_saved_envoy_snapshots_give_a_verdict(tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, after = tmp_path / "before.txt", tmp_path / "after.txt"
    before.write_text(BEFORE)
    after.write_text(AFTER)
    code, out, _ = run(capsys, "--spec", str(spec_file), "--envoy-stats", str(before), str(after), "--json")
    assert code == 4
    judgement = json.loads(out)
    assert (judgement["verdict"], judgement["exit_code"], judgement["requests"]) == ("roll back", 4, {"nodejs": 700, "nodejsv2": 380})
    assert judgement["window_seconds"] == 0  # as far apart as the snapshots were taken
    code, out, _ = run(capsys, "--spec", str(spec_file), "--envoy-stats", str(before), str(after))
    assert out.splitlines()[1] == "  window      between the two snapshots"


def test_the_envoy_source_reads_the_admin_interfaces_a_window_apart() -> None:
    snapshots = iter([BEFORE, AFTER])
    slept: list[float] = []

    class Recorded(EnvoySource):
        def snapshot(self) -> str:
            return next(snapshots)

    source = Recorded(("http://127.0.0.1:1",), {k: tuple(v) for k, v in SPEC["envoy_clusters"].items()}, sleep=slept.append)
    observed = source.observe(["nodejs", "nodejsv2"], 30)
    assert slept == [30] and observed["nodejsv2"].failures == 60


def test_the_judgement_is_recorded_where_the_frontend_reads_it(tmp_path: Path, spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before, after = tmp_path / "before.txt", tmp_path / "after.txt"
    before.write_text(BEFORE)
    after.write_text(envoy_text({"nodejs-app": (700, 0, 0), "nodejsv2-app": (400, 0, 0)}))
    weights = tmp_path / "weights"
    assert run(capsys, "--spec", str(spec_file), "--envoy-stats", str(before), str(after), "--step", "1", "--record", str(weights))[0] == 0
    recorded_judgement = json.loads((weights / "canary" / "nodejs.json").read_text())
    assert (recorded_judgement["verdict"], recorded_judgement["step"]) == ("promote", "1 of 3 (2:1)")
    assert sorted(path.name for path in (weights / "canary").iterdir()) == ["nodejs.json"]
