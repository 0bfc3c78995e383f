"""The mesh diff as a reviewer reads it: exact lines for canary steps and for each kind of change."""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshdiff.diff import NO_CHANGES, diff_summaries, has_changes

from .support import FIXTURES, HEADER, cdk_json_context, summary_of_topology, summary_with

SEED = summary_with()  # nodejs:2, nodejsv2:1


def weights(nodejs: int, nodejsv2: int) -> dict[str, Any]:
    return summary_with(**{"weights.nodejs": f"nodejs:{nodejs},nodejsv2:{nodejsv2}"})


def test_canary_2to1_to_1to1_shows_only_the_weights() -> None:
    assert diff_summaries(SEED, weights(1, 1)) == [
        HEADER,
        "~ route nodejs/route-to-nodejs-app (prefix /):",
        "    nodejs      2 -> 1   (66.7% -> 50.0%)",
        "    nodejsv2    1 -> 1   (33.3% -> 50.0%)",
    ]
    assert has_changes(SEED, weights(1, 1))


def test_canary_1to1_to_0to1() -> None:
    assert diff_summaries(weights(1, 1), weights(0, 1)) == [
        HEADER,
        "~ route nodejs/route-to-nodejs-app (prefix /):",
        "    nodejs      1 -> 0   (50.0% -> 0.0%)",
        "    nodejsv2    1 -> 1   (50.0% -> 100.0%)",
    ]


def test_rollback_0to1_to_2to1() -> None:
    assert diff_summaries(weights(0, 1), SEED) == [
        HEADER,
        "~ route nodejs/route-to-nodejs-app (prefix /):",
        "    nodejs      0 -> 2     (0.0% -> 66.7%)",
        "    nodejsv2    1 -> 1   (100.0% -> 33.3%)",
    ]


def test_unchanged() -> None:
    assert diff_summaries(SEED, summary_with()) == [HEADER, NO_CHANGES]
    assert not has_changes(SEED, summary_with())


def test_scaled_weights_are_a_change_with_the_same_shares() -> None:
    assert diff_summaries(weights(1, 1), weights(50, 50))[1:] == [
        "~ route nodejs/route-to-nodejs-app (prefix /):",
        "    nodejs      1 -> 50   (50.0% -> 50.0%)",
        "    nodejsv2    1 -> 50   (50.0% -> 50.0%)",
    ]


def add_nodejsv3(topology: dict[str, Any]) -> None:
    topology["services"]["nodejsv3"] = {"source": "services/nodejs", "build_args": {"APP_VERSION": "3"}}


def test_added_and_removed_service() -> None:
    grown = summary_of_topology(add_nodejsv3)
    assert diff_summaries(SEED, grown) == [HEADER, "+ service nodejsv3 (port 3000, 2 replicas)"]
    assert diff_summaries(grown, SEED) == [HEADER, "- service nodejsv3 (port 3000, 2 replicas)"]


def test_added_service_shows_its_exposure_and_backends() -> None:
    def add_admin(topology: dict[str, Any]) -> None:
        topology["services"]["admin"] = {
            "source": "services/frontend",
            "replicas": 1,
            "backends": ["nodejs"],
            "exposure": "internal",
            "source_cidrs": ["10.0.0.0/16"],
        }

    assert diff_summaries(SEED, summary_of_topology(add_admin))[1:] == [
        "+ service admin (port 3000, 1 replica, exposure internal from 10.0.0.0/16, backends nodejs)"
    ]


def test_added_and_removed_virtual_service() -> None:
    def add(topology: dict[str, Any]) -> None:
        add_nodejsv3(topology)
        topology["virtual_services"]["nodejsv3"] = {"routes": [{"prefix": "/", "targets": {"nodejsv3": 1}}]}

    grown, with_service = summary_of_topology(add), summary_of_topology(add_nodejsv3)
    assert diff_summaries(with_service, grown) == [
        HEADER,
        "+ virtual service nodejsv3 (nodejsv3.appmeshworkshop.hosted.local)",
        "+ route nodejsv3/route-to-nodejsv3-app (prefix /): nodejsv3 1 (100.0%)",
    ]
    assert diff_summaries(grown, with_service) == [
        HEADER,
        "- virtual service nodejsv3 (nodejsv3.appmeshworkshop.hosted.local)",
        "- route nodejsv3/route-to-nodejsv3-app (prefix /): nodejsv3 1 (100.0%)",
    ]


def test_added_and_removed_route_and_changed_prefix() -> None:
    def split(topology: dict[str, Any]) -> None:
        topology["virtual_services"]["nodejs"]["routes"] = [
            {"prefix": "/", "targets": {"nodejs": 1}},
            {"name": "route-to-nodejsv2-beta", "prefix": "/beta", "targets": {"nodejsv2": 1}},
        ]

    assert diff_summaries(SEED, summary_of_topology(split))[1:] == [
        "~ route nodejs/route-to-nodejs-app (prefix /):",
        "    nodejs      2 -> 1   (66.7% -> 100.0%)",
        "    nodejsv2    1 -> -   (33.3% -> 0.0%)",
        "+ route nodejs/route-to-nodejsv2-beta (prefix /beta): nodejsv2 1 (100.0%)",
    ]
    moved = summary_of_topology(lambda t: t["virtual_services"]["crystal"]["routes"][0].update(prefix="/crystal"))
    assert diff_summaries(SEED, moved)[1:] == ["~ route crystal/route-to-crystal-app (prefix / -> /crystal)"]


def test_added_removed_and_changed_gateway_route() -> None:
    def add(topology: dict[str, Any]) -> None:
        topology["gateway"]["routes"].append({"name": "gateway-route-crystal", "prefix": "/crystal/", "virtual_service": "crystal"})

    grown = summary_of_topology(add)
    assert diff_summaries(SEED, grown) == [HEADER, "+ gateway route gateway-route-crystal /crystal/ -> crystal"]
    assert diff_summaries(grown, SEED) == [HEADER, "- gateway route gateway-route-crystal /crystal/ -> crystal"]
    retargeted = summary_of_topology(lambda t: t["gateway"]["routes"][0].update(virtual_service="crystal"))
    assert diff_summaries(SEED, retargeted) == [HEADER, "~ gateway route gateway-route-eks: virtual_service nodejs -> crystal"]


def test_added_and_removed_gateway() -> None:
    without = summary_of_topology(lambda t: t.pop("gateway"))
    assert diff_summaries(without, SEED)[1:] == [
        "+ gateway ingress-gw (port 8088, 2 replicas, scheme internal)",
        "+ gateway route gateway-route-eks /eks/ -> nodejs",
    ]
    assert diff_summaries(SEED, without)[1:] == [
        "- gateway ingress-gw (port 8088, 2 replicas, scheme internal)",
        "- gateway route gateway-route-eks /eks/ -> nodejs",
    ]
    scaled = summary_of_topology(lambda t: t["gateway"].update(replicas=3, scheme="internet-facing"))
    assert diff_summaries(SEED, scaled)[1:] == [
        "~ gateway ingress-gw: replicas 2 -> 3",
        "~ gateway ingress-gw: scheme internal -> internet-facing",
    ]


def test_mesh_settings_and_names() -> None:
    changed = summary_with(mesh_name="mesh-b", namespace="lab-b", hosted_zone="b.hosted.local", topology=allow_all())
    assert diff_summaries(SEED, changed) == [
        "Mesh mesh-b (namespace lab-b)",
        "~ egress_filter: DROP_ALL -> ALLOW_ALL",
        "~ mesh: app-mesh -> mesh-b",
        "~ namespace: lab-appmesh -> lab-b",
        "~ virtual service crystal: awsName crystal.appmeshworkshop.hosted.local -> crystal.b.hosted.local",
        "~ virtual service nodejs: awsName nodejs.appmeshworkshop.hosted.local -> nodejs.b.hosted.local",
    ]


def allow_all() -> dict[str, Any]:
    topology: dict[str, Any] = copy.deepcopy(cdk_json_context()["topology"])
    topology["egress_filter"] = "ALLOW_ALL"
    return topology


def test_reshaped_fixture_shows_every_kind_of_change() -> None:
    reshaped = summary_with(config=str(FIXTURES / "reshaped.yaml"))
    assert diff_summaries(SEED, reshaped) == [
        HEADER,
        "~ egress_filter: DROP_ALL -> ALLOW_ALL",
        "- virtual service crystal (crystal.appmeshworkshop.hosted.local)",
        "- route crystal/route-to-crystal-app (prefix /): crystal 1 (100.0%)",
        "~ route nodejs/route-to-nodejs-app (prefix /):",
        "    retry.max_retries: 2 -> 3",
        "    nodejs      2 -> 2   (66.7% -> 50.0%)",
        "    nodejsv2    1 -> 1   (33.3% -> 25.0%)",
        "    nodejsv3    - -> 1    (0.0% -> 25.0%)",
        "- service crystal (port 3000, 2 replicas)",
        "~ service frontend: backends [crystal, nodejs] -> [nodejs]",
        f"~ service frontend: outlier_detection {OUTLIER_DETECTION} -> off",
        "~ service frontend: replicas 2 -> 3",
        "+ service nodejsv3 (port 3000, 2 replicas)",
        "- gateway route gateway-route-eks /eks/ -> nodejs",
        "+ gateway route gateway-route-nodejs /nodejs/ -> nodejs",
    ]


# Policies (config/policies.py), changed through the topology as a reviewer would change them.

RETRY = "{http_events: [gateway-error, server-error], max_retries: 2, per_retry_timeout_ms: 2000, tcp_events: [connection-error]}"
OUTLIER_DETECTION = "{base_ejection_ms: 30000, interval_ms: 10000, max_ejection_percent: 50, max_server_errors: 5}"
NODEJS_ROUTE = "~ route nodejs/route-to-nodejs-app (prefix /):"


def nodejs_route(**settings: Any) -> dict[str, Any]:
    return summary_of_topology(lambda t: t["virtual_services"]["nodejs"]["routes"][0].update(settings))


def crystal(**settings: Any) -> dict[str, Any]:
    return summary_of_topology(lambda t: t["services"]["crystal"].update(settings))


def test_route_retry_changed() -> None:
    assert diff_summaries(SEED, nodejs_route(retry={"max_retries": 3})) == [HEADER, NODEJS_ROUTE, "    retry.max_retries: 2 -> 3"]
    fewer_events = nodejs_route(retry={"http_events": ["server-error"], "tcp_events": [], "per_retry_timeout_ms": 1000})
    assert diff_summaries(SEED, fewer_events)[1:] == [
        NODEJS_ROUTE,
        "    retry.http_events: [gateway-error, server-error] -> [server-error]",
        "    retry.per_retry_timeout_ms: 2000 -> 1000",
        "    retry.tcp_events: [connection-error] -> []",
    ]


def test_route_retry_turned_off_and_back_on() -> None:
    """`retry: off` is one readable line with the whole policy, not an `(unset)` per setting."""
    for off in ("off", False):
        assert diff_summaries(SEED, nodejs_route(retry=off)) == [HEADER, NODEJS_ROUTE, f"    retry: {RETRY} -> off"]
    assert diff_summaries(nodejs_route(retry="off"), SEED) == [HEADER, NODEJS_ROUTE, f"    retry: off -> {RETRY}"]
    custom = "{http_events: [gateway-error, server-error], max_retries: 3, per_retry_timeout_ms: 2000, tcp_events: [connection-error]}"
    assert diff_summaries(nodejs_route(retry="off"), nodejs_route(retry={"max_retries": 3}))[1:] == [
        NODEJS_ROUTE,
        f"    retry: off -> {custom}",
    ]
    assert not has_changes(nodejs_route(retry="off"), nodejs_route(retry=False))
    assert not has_changes(SEED, nodejs_route(retry=True))


def test_route_timeout_with_retries_and_a_weight_shift() -> None:
    """Policy lines first, then the target table, in one route block."""

    def change(topology: dict[str, Any]) -> None:
        route = topology["virtual_services"]["nodejs"]["routes"][0]
        route.update(timeout_ms=30000, retry={"per_retry_timeout_ms": 10000}, targets={"nodejs": 1, "nodejsv2": 1})

    assert diff_summaries(SEED, summary_of_topology(change)) == [
        HEADER,
        NODEJS_ROUTE,
        "    retry.per_retry_timeout_ms: 2000 -> 10000",
        "    timeout_ms: 15000 -> 30000",
        "    nodejs      2 -> 1   (66.7% -> 50.0%)",
        "    nodejsv2    1 -> 1   (33.3% -> 50.0%)",
    ]


def test_service_policies_changed() -> None:
    changed = crystal(
        timeout_ms=5000,
        outlier_detection={"max_server_errors": 3},
        health_check={"interval_ms": 10000, "unhealthy_threshold": 3},
        connection_pool={"max_pending_requests": 64},
    )
    assert diff_summaries(SEED, changed) == [
        HEADER,
        "~ service crystal: connection_pool.max_pending_requests 1024 -> 64",
        "~ service crystal: health_check.interval_ms 5000 -> 10000",
        "~ service crystal: health_check.unhealthy_threshold 2 -> 3",
        "~ service crystal: outlier_detection.max_server_errors 5 -> 3",
        "~ service crystal: timeout_ms 15000 -> 5000",
    ]


def test_outlier_detection_turned_off_and_back_on() -> None:
    for off in ("off", False):
        assert diff_summaries(SEED, crystal(outlier_detection=off)) == [
            HEADER,
            f"~ service crystal: outlier_detection {OUTLIER_DETECTION} -> off",
        ]
    assert diff_summaries(crystal(outlier_detection="off"), SEED)[1:] == [
        f"~ service crystal: outlier_detection off -> {OUTLIER_DETECTION}"
    ]
    assert not has_changes(SEED, crystal(outlier_detection=True))


def test_mtls_and_egress_filter() -> None:
    opened = summary_of_topology(lambda t: t.update(mtls="off", egress_filter="ALLOW_ALL"))
    assert diff_summaries(SEED, opened) == [HEADER, "~ egress_filter: DROP_ALL -> ALLOW_ALL", "~ mtls: strict -> off"]
    assert diff_summaries(opened, SEED)[1:] == ["~ egress_filter: ALLOW_ALL -> DROP_ALL", "~ mtls: off -> strict"]

    def defaults(topology: dict[str, Any]) -> None:
        del topology["mtls"], topology["egress_filter"]

    # Both are cdk.json's values and the model's defaults: leaving them out is no change.
    assert not has_changes(SEED, summary_of_topology(defaults))


def test_a_summary_from_before_the_policies() -> None:
    """A summary written before the model had a policy (no `retry` key) or with it null: each setting is new."""
    old = copy.deepcopy(SEED)
    del old["virtual_services"][1]["routes"][0]["retry"]
    assert diff_summaries(old, SEED)[1:] == [
        NODEJS_ROUTE,
        "    retry.http_events: (unset) -> [gateway-error, server-error]",
        "    retry.max_retries: (unset) -> 2",
        "    retry.per_retry_timeout_ms: (unset) -> 2000",
        "    retry.tcp_events: (unset) -> [connection-error]",
    ]
    # Absent and null are the same (unset).
    nulled = copy.deepcopy(old)
    nulled["virtual_services"][1]["routes"][0]["retry"] = None
    assert not has_changes(old, nulled)


def test_order_of_the_summary_lists_does_not_matter() -> None:
    reshaped = summary_with(config=str(FIXTURES / "reshaped.yaml"))
    shuffled = copy.deepcopy(reshaped)
    rng = random.Random(7)
    for key in ("services", "virtual_services"):
        rng.shuffle(shuffled[key])
    rng.shuffle(shuffled["gateway"]["routes"])
    assert diff_summaries(SEED, shuffled) == diff_summaries(SEED, reshaped)


pair = st.tuples(st.integers(0, 100), st.integers(0, 100)).filter(lambda p: sum(p) > 0)


@settings(max_examples=60, deadline=None)
@given(before=pair, after=pair)
def test_any_weight_shift_is_one_route_block(before: tuple[int, int], after: tuple[int, int]) -> None:
    old, new = with_weights(SEED, before), with_weights(SEED, after)
    lines = diff_summaries(old, new)
    assert has_changes(old, new) == (before != after)
    if before == after:
        assert lines == [HEADER, NO_CHANGES]
        return
    assert lines[:2] == [HEADER, "~ route nodejs/route-to-nodejs-app (prefix /):"]
    assert len(lines) == 4
    for line, name, was, now in zip(lines[2:], ("nodejs", "nodejsv2"), before, after, strict=True):
        assert line.split()[:4] == [name, str(was), "->", str(now)]
        assert f"({100 * was / sum(before):.1f}% -> {100 * now / sum(after):.1f}%)" in line


def with_weights(summary: dict[str, Any], weights: tuple[int, int]) -> dict[str, Any]:
    changed = copy.deepcopy(summary)
    changed["virtual_services"][1]["routes"][0]["targets"] = {"nodejs": weights[0], "nodejsv2": weights[1]}
    return changed
