"""Each validation rule of the settings, with its exact message; the layering of sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backends import configure
from config import ConfigError, merge_layers
from tests.conftest import BACKEND_OVERRIDES, cdk_json_context


def config_with(**overrides: Any) -> Any:
    defaults = cdk_json_context()
    return configure(merge_layers(defaults, {**defaults, **overrides}), {})


def backend_config(backend: str, **overrides: Any) -> Any:
    """The configuration each backend is tested with (tests/conftest.py, BACKEND_OVERRIDES)."""
    return config_with(**{**BACKEND_OVERRIDES[backend], **overrides})


def error_for(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        config_with(**overrides)
    return str(caught.value)


def test_defaults_are_the_seed_final_state() -> None:
    config = config_with()
    assert config.region == "us-west-1"
    assert config.account is None
    assert config.cluster.name == "app-mesh"
    assert config.cluster.kubernetes.minor == "1.35"
    assert (config.cluster.desired_nodes, config.cluster.min_nodes, config.cluster.max_nodes) == (3, 1, 4)
    assert config.cluster.instance_type == "m5.large"
    assert config.network.nat_gateways == 1
    assert config.discovery.hosted_zone == "appmeshworkshop.hosted.local"
    assert config.discovery.cloud_map_namespace == "appmesh.pvt.local"
    assert config.mesh.mesh_name == "app-mesh"
    assert config.mesh.namespace == "lab-appmesh"


def test_unknown_key_is_refused_with_a_suggestion() -> None:
    assert error_for(node_instance_typ="m5.large") == (
        "config error: node_instance_typ='m5.large': unknown setting (did you mean node_instance_type?); "
        "see the configuration table in README.md"
    )


def test_feature_flags_and_toolkit_keys_are_not_settings() -> None:
    config_with(**{"@aws-cdk/core:newStyleStackSynthesis": True, "aws:cdk:enable-path-metadata": True})


@pytest.mark.parametrize(
    ("region", "suggestion"),
    [
        ("us-west", " (did you mean us-west-2?)"),
        ("US-WEST-1", ""),
        ("uswest1", " (did you mean us-west-1?)"),
        ("us-west-1a", " (did you mean us-west-1?)"),
        ("us-weast-1", " (did you mean us-west-1?)"),
        ("eu-central-3", " (did you mean eu-central-2?)"),
    ],
)
def test_a_region_the_partition_does_not_have_is_refused(region: str, suggestion: str) -> None:
    """Well-formed is not enough: `us-weast-1` would synthesize and fail at deploy."""
    assert error_for(region=region) == (
        f"config error: region={region!r}: is not an AWS region{suggestion}; "
        "the aws partition's regions are listed in config/regions.py, e.g. us-west-1"
    )


@pytest.mark.parametrize(
    ("region", "partition"), [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("eusc-de-east-1", "aws-eusc")]
)
def test_a_region_of_another_partition_is_refused_in_one_line(region: str, partition: str) -> None:
    assert error_for(region=region) == (
        f"config error: region={region!r}: is in the {partition} partition; this app is built and tested for the aws "
        "partition only (config/regions.py): choose a region such as us-west-1"
    )


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-7", "mx-central-1", "il-central-1"])
def test_every_region_of_the_aws_partition_is_accepted(region: str) -> None:
    assert config_with(region=region).region == region


def test_the_region_table_is_the_pinned_aws_cdk_libs() -> None:
    """config/regions.py is a committed copy (config/ does not import aws_cdk); a bump of
    aws-cdk-lib that knows another region fails here until the copy has it."""
    from aws_cdk import region_info

    from config.regions import REGIONS

    known: dict[str, set[str]] = {}
    for region in region_info.RegionInfo.regions:
        known.setdefault(region.partition, set()).add(region.name)
    assert {partition: set(regions) for partition, regions in REGIONS.items()} == known


def test_account_comes_from_the_cdk_environment_but_the_region_from_the_config() -> None:
    """The CDK CLI always sets CDK_DEFAULT_REGION (us-east-1 when the profile has none), so
    reading it would make the documented default (cdk.json's us-west-1) never apply."""
    defaults = cdk_json_context()
    assert defaults["region"] == "us-west-1"
    environ = {"CDK_DEFAULT_ACCOUNT": "123456789012", "CDK_DEFAULT_REGION": "us-east-1"}
    config = configure(merge_layers(defaults, defaults), environ)
    assert (config.account, config.region) == ("123456789012", "us-west-1")
    # Without a region in the context either, still not the CLI's: the documented default.
    without = {key: value for key, value in defaults.items() if key != "region"}
    assert configure(merge_layers(without, without), environ).region == "us-west-1"


def test_region_is_set_with_c_region() -> None:
    defaults = cdk_json_context()
    config = configure(merge_layers(defaults, {**defaults, "region": "us-east-2"}), {"CDK_DEFAULT_REGION": "eu-west-1"})
    assert config.region == "us-east-2"


def test_malformed_account_is_refused() -> None:
    assert error_for(account="12345") == "config error: account='12345': must be a 12-digit AWS account id"


def test_seed_kubernetes_version_is_past_eks_support() -> None:
    assert error_for(kubernetes_version="1.25") == (
        "config error: kubernetes_version='1.25': Kubernetes 1.25 is past the end of EKS support "
        "(standard and extended); supported: 1.35, 1.36 (default 1.35)"
    )


@pytest.mark.parametrize("version", ["1.33", "1.34"])
def test_extended_support_only_version_is_refused(version: str) -> None:
    """1.34 left EKS standard support on 2026-12-02 (EKS user guide, Kubernetes versions)."""
    assert error_for(kubernetes_version=version) == (
        f"config error: kubernetes_version={version!r}: Kubernetes {version} is only in EKS extended support "
        "(billed at the extended rate); supported: 1.35, 1.36 (default 1.35)"
    )


def test_too_new_version_is_refused() -> None:
    assert "newer than this project's pinned" in error_for(kubernetes_version="1.40")


@pytest.mark.parametrize("version", ["1", "latest", "1.x"])
def test_malformed_version_is_refused(version: str) -> None:
    assert error_for(kubernetes_version=version) == (
        f"config error: kubernetes_version={version!r}: expected a minor version such as 1.35; supported: 1.35, 1.36"
    )


@pytest.mark.parametrize("version", ["1.35", "1.36"])
def test_each_supported_version_resolves_its_packages(version: str) -> None:
    release = config_with(kubernetes_version=version).cluster.kubernetes
    assert release.cdk8s_plus().__name__ == f"cdk8s_plus_{version[2:]}"
    from components.cluster import eks_version, kubectl_layer_class

    assert kubectl_layer_class(release).__name__ == f"KubectlV{version[2:]}Layer"
    assert eks_version(release).version == version


@pytest.mark.parametrize(
    ("node_min", "node_desired", "node_max"),
    [(2, 1, 4), (1, 5, 4), (3, 3, 2)],
)
def test_node_counts_must_be_ordered(node_min: int, node_desired: int, node_max: int) -> None:
    assert error_for(node_min=node_min, node_desired=node_desired, node_max=node_max) == (
        f"config error: node_desired={node_desired}: node counts must satisfy 1 <= node_min ({node_min}) "
        f"<= node_desired ({node_desired}) <= node_max ({node_max})"
    )


def test_zero_nodes_is_refused() -> None:
    assert error_for(node_min=0) == "config error: node_min=0: must be an integer from 1 to 100"


def test_seed_t2_micro_cannot_hold_the_pods() -> None:
    """8 service pods, 2 gateway pods, 3 platform pods and App Mesh's 4 (its controller and, with
    mTLS, cert-manager's three) over 3 nodes, plus 5 DaemonSet pods on each."""
    message = error_for(node_instance_type="t2.micro")
    assert message.startswith(
        "config error: node_instance_type='t2.micro': holds 4 pods per node but 11 are needed with 3 nodes (5 DaemonSet"
    )
    assert "choose a larger type (m5.large holds 29) or raise node_desired" in message


def test_the_capacity_check_counts_the_backends_own_pods() -> None:
    """Istio: istiod at its autoscaler's maximum (5), the metrics server (2), the gateway's
    autoscaler above its 2 replicas (3 more), and istio-cni's DaemonSet pod on every node."""
    message = error_for(node_instance_type="t3.small", mesh_backend="istio", node_desired=1, node_min=1)
    assert message.startswith(
        "config error: node_instance_type='t3.small': holds 11 pods per node but 29 are needed with 1 nodes (6 DaemonSet"
    )


def test_istio_needs_the_private_endpoint_its_metrics_scraper_uses() -> None:
    """AMP's managed scraper discovers pods through the cluster's private endpoint."""
    assert error_for(mesh_backend="istio", endpoint_access="public") == (
        "config error: endpoint_access='public': the Istio backend's metrics scraper (Amazon Managed Service for "
        "Prometheus) needs the cluster's private endpoint; use public_and_private (the default) or private"
    )
    assert config_with(mesh_backend="appmesh", endpoint_access="public").cluster.endpoint_access == "public"
    assert config_with(mesh_backend="istio", endpoint_access="private").cluster.endpoint_access == "private"


def test_unknown_instance_type_needs_its_pod_capacity() -> None:
    assert "set node_max_pods to the type's max pods" in error_for(node_instance_type="z9.huge")
    assert config_with(node_instance_type="z9.huge", node_max_pods=58).cluster.max_pods_per_node == 58


def test_auto_mode_skips_the_instance_pod_check() -> None:
    assert config_with(auto_mode="true", node_instance_type="t2.micro").cluster.auto_mode is True


@pytest.mark.parametrize(("key", "value"), [("cluster_name", "App_Mesh"), ("namespace", "-lab"), ("mesh_name", "mesh.")])
def test_names_must_be_dns_1123_labels(key: str, value: str) -> None:
    assert error_for(**{key: value}) == (
        f"config error: {key}={value!r}: must be a DNS-1123 label: lower-case letters, digits and '-', "
        "starting and ending with a letter or digit (Kubernetes object names)"
    )


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "10.0.0.1/16", "not-a-cidr"])
def test_malformed_cidr_is_refused(cidr: str) -> None:
    assert error_for(vpc_cidr=cidr) == (
        f"config error: vpc_cidr={cidr!r}: must be an IPv4 CIDR block with no host bits set, e.g. 203.0.113.0/24"
    )


def test_vpc_too_small_for_pods_is_refused() -> None:
    assert "use a /16 to /20 block" in error_for(vpc_cidr="10.0.0.0/24")


@pytest.mark.parametrize("domain", ["local", "Appmesh.local", "app_mesh.local", "a..local"])
def test_malformed_domain_is_refused(domain: str) -> None:
    assert error_for(hosted_zone=domain) == (
        f"config error: hosted_zone={domain!r}: must be a lower-case DNS domain name of at least two labels, e.g. appmesh.pvt.local"
    )


def test_more_than_two_zones_needs_them_named() -> None:
    assert error_for(max_azs=3) == (
        "config error: max_azs=3: more than 2 zones needs availability_zones listed explicitly, e.g. [us-west-1a, us-west-1b, us-west-1c]"
    )
    assert config_with(max_azs=3, availability_zones="us-west-1a,us-west-1b,us-west-1c", nat_gateways=3).network.max_azs == 3


def test_zones_must_belong_to_the_region() -> None:
    assert error_for(availability_zones=["eu-west-1a", "eu-west-1b"]) == (
        "config error: availability_zones='eu-west-1a': must be zones of region us-west-1, e.g. us-west-1a"
    )


def test_nat_gateways_bounded_by_zones() -> None:
    assert error_for(nat_gateways=3) == "config error: nat_gateways=3: must be an integer from 0 to 2"
    assert "need a NAT gateway" in error_for(nat_gateways=0)


def test_log_retention_must_be_a_cloudwatch_period() -> None:
    assert error_for(log_retention_days=10).startswith(
        "config error: log_retention_days=10: CloudWatch Logs accepts only 1, 3, 5, 7, 14, 30"
    )


def test_endpoint_access_values() -> None:
    assert error_for(endpoint_access="open") == "config error: endpoint_access='open': must be one of public, private, public_and_private"
    assert "has no effect with endpoint_access=private" in error_for(endpoint_access="private", endpoint_public_cidrs="203.0.113.0/24")


def test_admin_principal_must_be_an_iam_arn() -> None:
    assert "must be an IAM role or user ARN" in error_for(admin_principal_arn="admin")


@pytest.mark.parametrize(
    "arn", ["arn:aws:iam::123456789012:role/Admin", "arn:aws:iam::123456789012:role/teams/Admin", "arn:aws:iam::123456789012:user/jane"]
)
def test_admin_principal_takes_a_role_or_a_user(arn: str) -> None:
    assert config_with(admin_principal_arn=arn).cluster.admin_principal_arn == arn


@pytest.mark.parametrize(
    ("session", "role"),
    [
        ("arn:aws:sts::123456789012:assumed-role/Admin/jane@example.com", "arn:aws:iam::123456789012:role/Admin"),
        (
            "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_AdministratorAccess_0123456789abcdef/jane",
            "arn:aws:iam::123456789012:role/AWSReservedSSO_AdministratorAccess_0123456789abcdef",
        ),
        ("arn:aws-us-gov:sts::123456789012:assumed-role/Admin/jane", "arn:aws-us-gov:iam::123456789012:role/Admin"),
    ],
)
def test_an_sts_session_is_refused_with_the_role_it_came_from(session: str, role: str) -> None:
    """`aws sts get-caller-identity` prints the session, which EKS access entries refuse at deploy."""
    name = role.rsplit("/", 1)[1]
    message = error_for(admin_principal_arn=session)
    assert message.startswith("config error: admin_principal_arn=")
    # The value is shortened past 80 characters (config/errors.py); the advice is whole.
    assert message.endswith(
        ": is an STS session (the Arn `aws sts get-caller-identity` prints "
        f"for an assumed role), which EKS access entries refuse; pass the role's ARN, likely {role} (a session ARN leaves "
        f"out the role's path, if it has one: `aws iam get-role --role-name {name} --query Role.Arn` prints it)"
    )


@pytest.mark.parametrize("arn", ["arn:aws:sts::123456789012:role/Admin", "arn:aws:sts::123456789012:federated-user/jane"])
def test_other_sts_arns_are_not_iam_principals(arn: str) -> None:
    assert error_for(admin_principal_arn=arn) == (
        f"config error: admin_principal_arn={arn!r}: must be an IAM role or user ARN, e.g. arn:aws:iam::123456789012:role/Admin"
    )


def test_command_line_strings_are_parsed() -> None:
    config = config_with(node_desired="2", node_max="6", endpoint_public_cidrs="203.0.113.0/24, 198.51.100.0/24")
    assert config.cluster.desired_nodes == 2
    assert config.cluster.endpoint_public_cidrs == ("203.0.113.0/24", "198.51.100.0/24")


def test_config_file_sits_between_cdk_json_and_command_line(tmp_path: Path) -> None:
    defaults = cdk_json_context()
    (tmp_path / "prod.yaml").write_text("node_desired: 4\nnode_max: 6\nnat_gateways: 2\n")
    context = {**defaults, "config": "prod.yaml", "nat_gateways": "1", "node_max": 8}
    merged = merge_layers(defaults, context, project_root=tmp_path)
    config = configure(merged, {})
    # from the file
    assert config.cluster.desired_nodes == 4
    # -c beats the file
    assert config.cluster.max_nodes == 8
    assert config.network.nat_gateways == 1


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        merge_layers({}, {"config": "nope.yaml"}, project_root=tmp_path)
    assert str(caught.value) == f"config error: config='nope.yaml': file not found (looked for {tmp_path / 'nope.yaml'})"


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("node_max: 6\nnode_desired: 2\nnode_max: 8\n", "node_max", (1, 3)),
        ("topology:\n  services:\n    frontend: {replicas: 3}\n    frontend: {replicas: 1}\n", "frontend", (3, 4)),
    ],
)
def test_a_key_given_twice_in_a_config_file_is_refused_with_its_lines(tmp_path: Path, text: str, key: str, lines: tuple[int, int]) -> None:
    """YAML keeps the last of two equal keys without a word: a value the user wrote would be ignored."""
    (tmp_path / "twice.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        merge_layers({}, {"config": "twice.yaml"}, project_root=tmp_path)
    assert str(caught.value) == (
        f"config error: config='twice.yaml': key {key!r} is given twice in one mapping, on line {lines[0]} and line {lines[1]} "
        "(YAML would keep the last silently); keep one"
    )


def test_the_same_key_in_two_mappings_is_not_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "two.yaml").write_text("topology:\n  services:\n    frontend: {replicas: 3}\n    nodejs: {replicas: 3}\n")
    assert merge_layers({}, {"config": "two.yaml"}, project_root=tmp_path)["topology"]["services"]["nodejs"] == {"replicas": 3}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "node_max: 6\nnode_desired: [2\n",
            "expected ',' or ']', but got '<stream end>' (while parsing a flow sequence) at line 3, column 1",
        ),
        ("a: b: c\n", "mapping values are not allowed here at line 1, column 5"),
        (
            "node_max: 6\n\tnode_min: 1\n",
            "found character '\\t' that cannot start any token (while scanning for the next token) at line 2, column 1",
        ),
    ],
)
def test_invalid_yaml_names_the_line_and_column(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        merge_layers({}, {"config": "bad.yaml"}, project_root=tmp_path)
    assert str(caught.value) == f"config error: config='bad.yaml': is not valid YAML: {problem}"


def test_config_file_must_be_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="the file must hold a YAML mapping"):
        merge_layers({}, {"config": "list.yaml"}, project_root=tmp_path)


def test_config_is_frozen() -> None:
    config = config_with()
    with pytest.raises(AttributeError):
        config.region = "eu-west-1"  # type: ignore[misc]


# -- the topology layers merge key by key -------------------------------------------------------


def test_a_partial_topology_in_a_config_file_is_merged_over_the_default(tmp_path: Path) -> None:
    (tmp_path / "bigger.yaml").write_text("topology:\n  services:\n    frontend:\n      replicas: 3\n")
    defaults = cdk_json_context()
    config = configure(merge_layers(defaults, {**defaults, "config": "bigger.yaml"}, project_root=tmp_path), {})
    topology = config.mesh.topology
    assert topology.service("frontend").replicas == 3
    # Everything the file does not mention is cdk.json's: the backends, the routes, the gateway.
    assert [s.name for s in topology.services] == ["frontend", "nodejs", "nodejsv2", "crystal"]
    assert topology.service("frontend").backends == ("nodejs", "crystal")
    assert topology.weights() == {"nodejs": {"nodejs": 2, "nodejsv2": 1}, "crystal": {"crystal": 1}}
    assert topology.gateway is not None and [r.prefix for r in topology.gateway.routes] == ["/eks/"]


def test_null_removes_a_default_and_lists_replace(tmp_path: Path) -> None:
    (tmp_path / "smaller.yaml").write_text(
        "topology:\n"
        "  gateway: null\n"
        "  services:\n    nodejsv2: null\n    frontend: {backends: [crystal]}\n"
        "  virtual_services:\n    nodejs: {routes: [{prefix: /, targets: {nodejs: 1}}]}\n"
    )
    defaults = cdk_json_context()
    topology = configure(merge_layers(defaults, {**defaults, "config": "smaller.yaml"}, project_root=tmp_path), {}).mesh.topology
    assert [s.name for s in topology.services] == ["frontend", "nodejs", "crystal"]
    assert topology.service("frontend").backends == ("crystal",)
    assert topology.gateway is None


def test_a_removal_that_leaves_a_dangling_reference_names_it(tmp_path: Path) -> None:
    (tmp_path / "dangling.yaml").write_text("topology:\n  services:\n    nodejsv2: null\n")
    defaults = cdk_json_context()
    with pytest.raises(ConfigError) as caught:
        configure(merge_layers(defaults, {**defaults, "config": "dangling.yaml"}, project_root=tmp_path), {})
    assert str(caught.value) == (
        "config error: topology.virtual_services.nodejs.routes[0].targets='nodejsv2': "
        "unknown target service; defined services: crystal, frontend, nodejs"
    )


def test_a_topology_that_is_not_a_mapping_says_how_to_write_it(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("topology: [frontend, nodejs]\n")
    defaults = cdk_json_context()
    with pytest.raises(ConfigError) as caught:
        merge_layers(defaults, {**defaults, "config": "list.yaml"}, project_root=tmp_path)
    assert str(caught.value) == (
        "config error: topology=['frontend', 'nodejs']: must be a mapping; it is merged key by key over cdk.json's topology "
        "(null removes a key), e.g. {services: {frontend: {replicas: 3}}}"
    )


def test_the_settings_replayed_by_the_pipeline_rebuild_the_same_topology(tmp_path: Path) -> None:
    """changed_settings() gives the pipeline's synth `-c` values; topology is a merge patch, so a
    removal (null) survives the replay."""
    from config.settings import changed_settings

    (tmp_path / "smaller.yaml").write_text("topology:\n  gateway: null\n  services:\n    frontend: {replicas: 1}\n")
    defaults = cdk_json_context()
    merged = merge_layers(defaults, {**defaults, "config": "smaller.yaml"}, project_root=tmp_path)
    replay = changed_settings(defaults, merged)
    assert json.loads(replay["topology"]) == {"gateway": None, "services": {"frontend": {"replicas": 1}}}
    again = merge_layers(defaults, {**defaults, **replay}, project_root=tmp_path)
    assert configure(again, {}) == configure(merged, {})


# -- what YAML and JSON do to numbers -----------------------------------------------------------


def test_yaml_keeps_the_kubernetes_version_as_written(tmp_path: Path) -> None:
    """YAML reads 1.30 as the float 1.3: the message must name the version the user wrote."""
    (tmp_path / "old.yaml").write_text("kubernetes_version: 1.30\n")
    defaults = cdk_json_context()
    with pytest.raises(ConfigError) as caught:
        configure(merge_layers(defaults, {**defaults, "config": "old.yaml"}, project_root=tmp_path), {})
    assert str(caught.value).startswith("config error: kubernetes_version='1.30': Kubernetes 1.30 is past the end of EKS support")
    (tmp_path / "new.yaml").write_text("kubernetes_version: 1.36\n")
    config = configure(merge_layers(defaults, {**defaults, "config": "new.yaml"}, project_root=tmp_path), {})
    assert config.cluster.kubernetes.minor == "1.36"


def test_a_json_number_version_is_refused_with_how_to_write_it() -> None:
    assert error_for(kubernetes_version=1.3) == (
        'config error: kubernetes_version=1.3: was read as a number; write the version as a string, e.g. "1.35"'
    )


def test_a_service_source_without_a_dockerfile_is_one_line() -> None:
    import copy

    topology = copy.deepcopy(cdk_json_context()["topology"])
    topology["services"]["nodejs"]["source"] = "services/nodejz"
    message = error_for(topology=topology)
    assert message.startswith("config error: topology.services.nodejs.source='services/nodejz': has no Dockerfile (looked in ")
    assert message.endswith("folders with one: crystal, frontend, nodejs")


# -- EKS standard support ends: a warning at synth, 90 days ahead -----------------------------------


@pytest.mark.parametrize(
    ("today", "warning"),
    [
        ("2026-12-02", None),
        ("2026-12-26", None),  # 91 days before 2027-03-27
        (
            "2026-12-27",
            "Kubernetes 1.35: EKS standard support ends in 90 days (2027-03-27); after it the cluster is billed at the "
            "extended-support rate. Set kubernetes_version to move to 1.36",
        ),
        (
            "2027-03-27",
            "Kubernetes 1.35: EKS standard support ended (2027-03-27); after it the cluster is billed at the "
            "extended-support rate. Set kubernetes_version to move to 1.36",
        ),
    ],
)
def test_a_version_near_the_end_of_standard_support_is_warned_about(today: str, warning: str | None) -> None:
    from datetime import date

    from config.kubernetes import SUPPORTED, support_warning

    assert support_warning(SUPPORTED["1.35"], date.fromisoformat(today)) == warning
    assert support_warning(SUPPORTED["1.35"], None) is None  # no clock read: no warning, same templates


def test_the_newest_version_is_told_to_wait_for_this_project() -> None:
    from datetime import date

    from config.kubernetes import SUPPORTED, support_warning

    assert support_warning(SUPPORTED["1.36"], date(2027, 8, 1)) == (
        "Kubernetes 1.36: EKS standard support ends in 1 days (2027-08-02); after it the cluster is billed at the "
        "extended-support rate. Set kubernetes_version to move to a newer version once this project supports one"
    )
