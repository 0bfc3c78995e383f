"""The one typed, frozen, validated configuration of the app.

Built once, in app.py, from three layers (later wins): cdk.json's context (the defaults, i.e.
the seed's final state), an optional YAML file given with `-c config=FILE.yaml`, and `-c key=value`
overrides. Every check runs here, before any construct exists; each failure is a ConfigError that
names the key, the bad value and what is accepted.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml

from . import instances
from .canary import CanaryState, parse_canary_state
from .errors import ConfigError
from .kubernetes import KubernetesRelease, release_for
from .regions import REGIONS, SUPPORTED_PARTITION, partition_of
from .topology import Topology, parse_topology, parse_weights
from .validate import as_list, check_bool, check_cidr, check_dns_label, check_int, suggest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REGION = "us-west-1"

_ACCOUNT = re.compile(r"^\d{12}$")
_DOMAIN_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
# What `aws sts get-caller-identity` prints as Arn for a role's session; EKS access entries take
# IAM principals only (a session is not one).
_SESSION_ARN = re.compile(r"^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/[^/]+$")
_STACK_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,39}$")
# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
ENDPOINT_ACCESS = ("public", "private", "public_and_private")
# appmesh: the workshop as written (AWS shut App Mesh down on 2026-09-30: its deploy stops at a
# preflight); istio: the mesh to deploy today; lattice: Amazon VPC Lattice, AWS's managed path.
MESH_BACKENDS = ("appmesh", "istio", "lattice")


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str
    max_azs: int
    availability_zones: tuple[str, ...]
    nat_gateways: int
    flow_log_retention_days: int


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    kubernetes: KubernetesRelease
    auto_mode: bool
    instance_type: str
    max_pods_per_node: int
    desired_nodes: int
    min_nodes: int
    max_nodes: int
    endpoint_access: Literal["public", "private", "public_and_private"]
    endpoint_public_cidrs: tuple[str, ...]
    admin_principal_arn: str | None
    log_retention_days: int
    # One deploy of a stack set made before the service-named log groups became custom resources
    # keeps their old CloudFormation resources, now retained, so that the next deploy removes them
    # without deleting the groups (components/log_groups.py, ServiceLogGroup).
    retain_legacy_log_groups: bool = False


@dataclass(frozen=True)
class DiscoveryConfig:
    hosted_zone: str
    cloud_map_namespace: str


@dataclass(frozen=True)
class MeshConfig:
    mesh_name: str
    namespace: str
    topology: Topology
    services_per_stack: int
    # Which service mesh renders the topology (backends/): see MESH_BACKENDS.
    backend: str = "appmesh"
    # How the canary got to the weights it has (verdict, reason), which the frontend shows
    # (`canary_verdict`; the pipeline's canary steps set it when they promote or roll back).
    canary_verdict: tuple[str, str] = ("deployed", "deployed with these weights")


@dataclass(frozen=True)
class PipelineConfig:
    """CDK Pipelines promotion; absent unless `pipeline_connection_arn` is set."""

    connection_arn: str
    repository: str
    branch: str
    stages: tuple[str, ...]
    approval_stages: tuple[str, ...]
    protected_stages: tuple[str, ...]
    # Stages that shift the topology's canary step by step after their deploy, each step judged
    # by its metrics (README "Metric-gated canary"); empty without a canary.
    canary_stages: tuple[str, ...] = ()
    # What each canary stage's last canary step stored (`canary_state.<stage>`, which the pipeline's
    # synth reads from SSM at each run): (stage, state) pairs.
    canary_states: tuple[tuple[str, CanaryState], ...] = ()
    # A Secrets Manager secret (name) with Docker Hub `username` and `secret` keys: the asset builds
    # pull their base images and Istio's from docker.io, which allows an anonymous address 10 pulls
    # an hour, and CodeBuild's addresses are shared. None: anonymous pulls.
    docker_hub_secret: str | None = None

    def canary_state(self, stage: str) -> CanaryState | None:
        return dict(self.canary_states).get(stage)


@dataclass(frozen=True)
class AppConfig:
    account: str | None
    region: str
    stack_prefix: str
    network: NetworkConfig
    cluster: ClusterConfig
    discovery: DiscoveryConfig
    mesh: MeshConfig
    termination_protection: bool = False
    pipeline: PipelineConfig | None = None
    # Synth warnings the user has read and accepts, by id (`appmesh-eks:open-to-internet-frontend`).
    acknowledged_warnings: tuple[str, ...] = ()
    # The day of the synth, for warnings only (a Kubernetes version near the end of support);
    # None where no clock is read (tests), so that the templates never depend on it.
    today: date | None = None


# Keys accepted at the top level of the context, the config file and `-c`.
KNOWN_KEYS = {
    "config",
    "account",
    "region",
    "stack_prefix",
    "vpc_cidr",
    "max_azs",
    "availability_zones",
    "nat_gateways",
    "flow_log_retention_days",
    "cluster_name",
    "kubernetes_version",
    "auto_mode",
    "node_instance_type",
    "node_max_pods",
    "node_desired",
    "node_min",
    "node_max",
    "endpoint_access",
    "endpoint_public_cidrs",
    "admin_principal_arn",
    "log_retention_days",
    "retain_legacy_log_groups",
    "hosted_zone",
    "cloud_map_namespace",
    "mesh_name",
    "mesh_backend",
    "namespace",
    "services_per_stack",
    "topology",
    "termination_protection",
    "acknowledge_warnings",
    "pipeline_connection_arn",
    "pipeline_repository",
    "pipeline_branch",
    "pipeline_stages",
    "pipeline_approval_stages",
    "pipeline_protected_stages",
    "pipeline_canary_stages",
    "pipeline_docker_hub_secret",
    "canary_verdict",
}
# `-c weights.<virtual service>=svc:w,svc:w` shifts a canary without editing the topology.
WEIGHTS_PREFIX = "weights."
# `-c canary_state.<stage>=JSON`: what the stage's canary step stored; the pipeline's synth reads it
# from SSM at each run and passes it, so it is never replayed (changed_settings leaves it out).
CANARY_STATE_PREFIX = "canary_state."


def is_cdk_internal(key: str) -> bool:
    """Feature flags (`@aws-cdk/...`) and toolkit keys (`aws:cdk:...`) are not ours to check."""
    return key.startswith("@") or ":" in key


def merge_layers(
    defaults: Mapping[str, Any],
    context: Mapping[str, Any],
    project_root: Path = PROJECT_ROOT,
) -> dict[str, Any]:
    """cdk.json defaults < config file < `-c` overrides.

    CDK hands the app one merged context; a key counts as a `-c` override when its value differs
    from cdk.json's, which is what lets a config file sit between the two. A later layer replaces
    a setting, except `topology`, which it merges key by key (JSON Merge Patch, RFC 7386: mappings
    merge, lists and scalars replace, null removes), so a file that says only
    `topology: {services: {frontend: {replicas: 3}}}` keeps every other service, route and the
    gateway.
    """
    defaults = {k: v for k, v in defaults.items() if not is_cdk_internal(k)}
    context = {k: v for k, v in context.items() if not is_cdk_internal(k)}
    overrides = {k: v for k, v in context.items() if k not in defaults or defaults[k] != v}
    merged = dict(defaults)
    layers = [overrides]
    config_file = context.get("config")
    if config_file:
        layers.insert(0, load_config_file(config_file, project_root))
    for layer in layers:
        for key, value in layer.items():
            if key == "topology" and isinstance(merged.get(key), Mapping):
                merged[key] = merge_patch(merged[key], _topology_patch(value))
            else:
                merged[key] = value
    merged.pop("config", None)
    return merged


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: apply `patch` to `target` (neither is modified)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def patch_between(old: Any, new: Any) -> Any:
    """The merge patch that turns `old` into `new` (so that merge_patch(old, it) == new)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return copy.deepcopy(new)
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        elif old[key] != value:
            patch[key] = patch_between(old[key], value)
    return patch


def _topology_patch(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError("topology", value, "must be a mapping (in cdk.json or a config file) or a JSON object") from None
    if not isinstance(value, Mapping):
        raise ConfigError(
            "topology",
            value,
            "must be a mapping; it is merged key by key over cdk.json's topology (null removes a key), "
            "e.g. {services: {frontend: {replicas: 3}}}",
        )
    return value


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first_line: int, line: int) -> None:
        super().__init__(key)
        self.key, self.first_line, self.line = key, first_line, line


class _TextFloatLoader(yaml.SafeLoader):
    """YAML reads `kubernetes_version: 1.30` as the float 1.3; no setting is a float, so a number
    with a fraction keeps the text the user wrote ("1.30"), and the message names that.

    A key given twice in one mapping is refused: YAML keeps the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, bool)) and key in seen:
                raise _DuplicateKey(key, seen[key], line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_TextFloatLoader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: str(node.value))


def load_config_file(path_value: Any, project_root: Path = PROJECT_ROOT) -> dict[str, Any]:
    path = Path(str(path_value))
    # Relative paths are relative to the project (where cdk.json is), not the shell's cwd.
    if not path.is_absolute():
        path = project_root / path
    try:
        data = yaml.load(path.read_text(), Loader=_TextFloatLoader)
    except FileNotFoundError:
        raise ConfigError("config", str(path_value), f"file not found (looked for {path})") from None
    except _DuplicateKey as duplicate:
        raise ConfigError(
            "config",
            str(path_value),
            f"key {duplicate.key!r} is given twice in one mapping, on line {duplicate.first_line} and line {duplicate.line} "
            "(YAML would keep the last silently); keep one",
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError("config", str(path_value), f"is not valid YAML: {_yaml_problem(error)}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", str(path_value), "the file must hold a YAML mapping of setting: value")
    return data


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What PyYAML found and where (line and column from 1), on one line."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        context = f" ({error.context})" if error.context else ""
        return f"{error.problem}{context} at line {mark.line + 1}, column {mark.column + 1}"
    return str(error).splitlines()[0]


def build_config(values: Mapping[str, Any], environ: Mapping[str, str], today: date | None = None) -> AppConfig:
    """Validate the merged settings into an AppConfig. Raises ConfigError on the first problem."""
    for key, value in values.items():
        if key.startswith((WEIGHTS_PREFIX, CANARY_STATE_PREFIX)):
            continue
        if key not in KNOWN_KEYS:
            raise ConfigError(key, value, f"unknown setting{suggest(key, KNOWN_KEYS)}; see the configuration table in README.md")

    account = values.get("account") or environ.get("CDK_DEFAULT_ACCOUNT") or None
    if account is not None and not _ACCOUNT.match(str(account)):
        raise ConfigError("account", account, "must be a 12-digit AWS account id")
    # Not CDK_DEFAULT_REGION: the CDK CLI always sets it (us-east-1 when the profile names no
    # region), so it would silently override the documented default. cdk.json says us-west-1.
    region = values.get("region") or DEFAULT_REGION
    partition = partition_of(region) if isinstance(region, str) else None
    if partition is None:
        raise ConfigError(
            "region",
            region,
            f"is not an AWS region{suggest(str(region), REGIONS[SUPPORTED_PARTITION])}; "
            f"the {SUPPORTED_PARTITION} partition's regions are listed in config/regions.py, e.g. {DEFAULT_REGION}",
        )
    if partition != SUPPORTED_PARTITION:
        raise ConfigError(
            "region",
            region,
            f"is in the {partition} partition; this app is built and tested for the {SUPPORTED_PARTITION} partition only "
            f"(config/regions.py): choose a region such as {DEFAULT_REGION}",
        )
    stack_prefix = values.get("stack_prefix", "AppMesh")
    if not isinstance(stack_prefix, str) or not _STACK_PREFIX.match(stack_prefix):
        raise ConfigError(
            "stack_prefix", stack_prefix, "must start with a letter and hold only letters, digits and '-', up to 40 characters"
        )

    topology = _topology_with_weights(values)
    network = _network(values, region)
    cluster = _cluster(values)
    discovery = DiscoveryConfig(
        hosted_zone=_domain("hosted_zone", values.get("hosted_zone", "appmeshworkshop.hosted.local")),
        cloud_map_namespace=_domain("cloud_map_namespace", values.get("cloud_map_namespace", "appmesh.pvt.local")),
    )
    if discovery.hosted_zone == discovery.cloud_map_namespace:
        raise ConfigError(
            "cloud_map_namespace", discovery.cloud_map_namespace, "must differ from hosted_zone (both create a private zone for the name)"
        )
    backend = values.get("mesh_backend", "appmesh")
    if backend not in MESH_BACKENDS:
        raise ConfigError("mesh_backend", backend, f"must be one of {', '.join(MESH_BACKENDS)}{suggest(str(backend), MESH_BACKENDS)}")
    mesh = MeshConfig(
        mesh_name=check_dns_label("mesh_name", values.get("mesh_name", "app-mesh")),
        namespace=check_dns_label("namespace", values.get("namespace", "lab-appmesh")),
        topology=topology,
        services_per_stack=check_int("services_per_stack", values.get("services_per_stack", 40), 1, 80),
        backend=backend,
        canary_verdict=_canary_verdict(values.get("canary_verdict"), has_canary=any(vs.canary for vs in topology.virtual_services)),
    )
    config = AppConfig(
        account,
        region,
        stack_prefix,
        network,
        cluster,
        discovery,
        mesh,
        termination_protection=check_bool("termination_protection", values.get("termination_protection", False)),
        pipeline=_pipeline(values, has_canary=any(vs.canary for vs in topology.virtual_services)),
        acknowledged_warnings=_warning_ids(values.get("acknowledge_warnings")),
        today=today,
    )
    # Whether the chosen mesh can express this topology is checked where both are known, at the
    # app's entry (backends.configure), not here: config/ knows no backend.
    return config


_CONNECTION_ARN = re.compile(r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
# Secrets Manager's name characters; an ARN is refused (its ':' is not among them).
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")


def _pipeline(values: Mapping[str, Any], *, has_canary: bool) -> PipelineConfig | None:
    arn = values.get("pipeline_connection_arn") or None
    states = {key: value for key, value in values.items() if key.startswith(CANARY_STATE_PREFIX)}
    if arn is None:
        for key in ("pipeline_repository", "pipeline_stages", "pipeline_canary_stages", "pipeline_docker_hub_secret", *sorted(states)):
            if values.get(key):
                raise ConfigError(
                    key,
                    values[key],
                    "has no effect without pipeline_connection_arn (the CodeConnections connection the pipeline reads)",
                )
        return None
    if not isinstance(arn, str) or not _CONNECTION_ARN.match(arn):
        raise ConfigError(
            "pipeline_connection_arn",
            arn,
            "must be a CodeConnections connection ARN, e.g. arn:aws:codeconnections:us-west-1:123456789012:connection/<uuid>",
        )
    repository = values.get("pipeline_repository")
    if not isinstance(repository, str) or not _REPOSITORY.match(repository):
        raise ConfigError("pipeline_repository", repository, "must be owner/name of the repository, e.g. my-org/appmesh-eks")
    branch = values.get("pipeline_branch", "main")
    if not isinstance(branch, str) or not branch or any(c in branch for c in " ~^:?*[\\"):
        raise ConfigError("pipeline_branch", branch, "must be a git branch name")
    stages = tuple(str(s) for s in as_list("pipeline_stages", values.get("pipeline_stages", ["dev", "prod"])))
    if not stages:
        raise ConfigError("pipeline_stages", [], "list at least one stage, e.g. dev,prod")
    for stage in stages:
        if not _STAGE.match(stage):
            raise ConfigError("pipeline_stages", stage, "stage names are lower-case letters, digits and '-', up to 20 characters")
    if len(set(stages)) != len(stages):
        raise ConfigError("pipeline_stages", list(stages), "lists a stage twice")
    subsets = {}
    for key, default in (("pipeline_approval_stages", ["prod"]), ("pipeline_protected_stages", ["prod"])):
        chosen = tuple(str(s) for s in as_list(key, values.get(key, [s for s in default if s in stages])))
        for stage in chosen:
            if stage not in stages:
                raise ConfigError(key, stage, f"is not one of pipeline_stages ({', '.join(stages)})")
        subsets[key] = chosen
    # A canary shifts in the last stage by default (production, after its approval).
    canary = tuple(
        str(s) for s in as_list("pipeline_canary_stages", values.get("pipeline_canary_stages", stages[-1:] if has_canary else []))
    )
    for stage in canary:
        if stage not in stages:
            raise ConfigError("pipeline_canary_stages", stage, f"is not one of pipeline_stages ({', '.join(stages)})")
    if canary and not has_canary:
        raise ConfigError(
            "pipeline_canary_stages", list(canary), "has no effect: no virtual service declares canary steps (topology...canary)"
        )
    canary_states = []
    for key, value in sorted(states.items()):
        stage = key[len(CANARY_STATE_PREFIX) :]
        if stage not in canary:
            raise ConfigError(key, value, f"names no canary stage; the pipeline_canary_stages are: {', '.join(canary) or '(none)'}")
        canary_states.append((stage, parse_canary_state(key, value)))
    docker_hub_secret = values.get("pipeline_docker_hub_secret") or None
    if docker_hub_secret is not None and (not isinstance(docker_hub_secret, str) or not _SECRET_NAME.match(docker_hub_secret)):
        raise ConfigError(
            "pipeline_docker_hub_secret",
            docker_hub_secret,
            "must be the name of a Secrets Manager secret (letters, digits and /_+=.@-; not its ARN), e.g. dockerhub/appmesh-eks",
        )
    return PipelineConfig(
        arn,
        repository,
        branch,
        stages,
        subsets["pipeline_approval_stages"],
        subsets["pipeline_protected_stages"],
        canary,
        tuple(canary_states),
        docker_hub_secret,
    )


def _topology_with_weights(values: Mapping[str, Any]) -> Topology:
    raw = _topology_patch(values.get("topology"))
    raw = json.loads(json.dumps(raw, default=str))  # a private deep copy we may edit
    for key, value in values.items():
        if not key.startswith(WEIGHTS_PREFIX):
            continue
        name = key[len(WEIGHTS_PREFIX) :]
        virtual_services = raw.get("virtual_services")
        spec = virtual_services.get(name) if isinstance(virtual_services, Mapping) else None
        if not isinstance(spec, Mapping):
            defined = ", ".join(sorted(str(k) for k in virtual_services)) if isinstance(virtual_services, Mapping) else ""
            raise ConfigError(key, value, f"no virtual service {name!r}; defined: {defined or '(none)'}")
        routes = spec.get("routes")
        if not isinstance(routes, list) or len(routes) != 1 or not isinstance(routes[0], dict):
            count = len(routes) if isinstance(routes, list) else 0
            raise ConfigError(key, value, f"virtual service {name!r} has {count} routes; set their weights in the topology instead")
        routes[0]["targets"] = dict(parse_weights(key, value))
    return parse_topology(raw)


CANARY_VERDICTS = ("deployed", "promote", "roll back")


def _canary_verdict(value: Any, *, has_canary: bool) -> tuple[str, str]:
    """`promote: step 1 (2:1) was promoted by its analysis` -> ("promote", "step 1 ..."): what the
    frontend shows next to the canary's weights."""
    if value is None:
        return ("deployed", "deployed with these weights")
    if not has_canary:
        raise ConfigError("canary_verdict", value, "has no effect: no virtual service declares canary steps (topology...canary)")
    verdict, _, reason = str(value).partition(":")
    verdict, reason = verdict.strip(), reason.strip() or "set with canary_verdict"
    if verdict not in CANARY_VERDICTS or len(reason) > 200 or not reason.isprintable():
        raise ConfigError(
            "canary_verdict",
            value,
            f"write '<verdict>: <reason>' with a verdict of {', '.join(CANARY_VERDICTS)} and up to 200 characters of reason",
        )
    return (verdict, reason)


_WARNING_ID = re.compile(r"^appmesh-eks:[a-z0-9-]+$")


def _warning_ids(value: Any) -> tuple[str, ...]:
    ids = tuple(str(v) for v in as_list("acknowledge_warnings", value))
    for warning in ids:
        if not _WARNING_ID.match(warning):
            raise ConfigError(
                "acknowledge_warnings", warning, "list warning ids as synth prints them, e.g. appmesh-eks:open-to-internet-frontend"
            )
    return ids


def _network(values: Mapping[str, Any], region: str) -> NetworkConfig:
    vpc_cidr = check_cidr("vpc_cidr", values.get("vpc_cidr", "10.0.0.0/16"))
    prefix = int(vpc_cidr.split("/")[1])
    if not 16 <= prefix <= 20:
        raise ConfigError("vpc_cidr", vpc_cidr, "use a /16 to /20 block: EKS needs room for pod IPs in every subnet")
    zones = tuple(str(z) for z in as_list("availability_zones", values.get("availability_zones")))
    for zone in zones:
        if not re.match(rf"^{re.escape(region)}[a-z]$", zone):
            raise ConfigError("availability_zones", zone, f"must be zones of region {region}, e.g. {region}a")
    max_azs = check_int("max_azs", values.get("max_azs", len(zones) or 2), 2, 6)
    if zones and len(zones) != max_azs:
        raise ConfigError("max_azs", max_azs, f"must equal the number of availability_zones given ({len(zones)})")
    if not zones and max_azs > 2:
        # Synth never looks zones up (that needs credentials, and a pipeline's synth may not
        # assume the lookup role): unnamed, the VPC spans the two zones Fn::GetAZs selects at
        # deploy time (stacks/network.py); naming the zones keeps more than two offline.
        raise ConfigError(
            "max_azs", max_azs, f"more than 2 zones needs availability_zones listed explicitly, e.g. [{region}a, {region}b, {region}c]"
        )
    nat = check_int("nat_gateways", values.get("nat_gateways", 1), 0, max_azs)
    if nat == 0:
        raise ConfigError("nat_gateways", nat, f"nodes in private subnets need a NAT gateway to pull images; use 1 to {max_azs}")
    return NetworkConfig(vpc_cidr, max_azs, zones, nat, _retention("flow_log_retention_days", values.get("flow_log_retention_days", 30)))


def _cluster(values: Mapping[str, Any]) -> ClusterConfig:
    version = values.get("kubernetes_version", "1.35")
    if isinstance(version, float):
        # JSON (cdk.json) has no way to keep "1.30" apart from 1.3: only a string is unambiguous.
        raise ConfigError("kubernetes_version", version, 'was read as a number; write the version as a string, e.g. "1.35"')
    release = release_for(str(version))
    auto_mode = check_bool("auto_mode", values.get("auto_mode", False))
    desired = check_int("node_desired", values.get("node_desired", 3), 1, 100)
    minimum = check_int("node_min", values.get("node_min", 1), 1, 100)
    maximum = check_int("node_max", values.get("node_max", 4), 1, 100)
    if not minimum <= desired <= maximum:
        raise ConfigError(
            "node_desired",
            desired,
            f"node counts must satisfy 1 <= node_min ({minimum}) <= node_desired ({desired}) <= node_max ({maximum})",
        )
    instance_type = values.get("node_instance_type", "m5.large")
    if not isinstance(instance_type, str) or not re.match(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$", instance_type):
        raise ConfigError("node_instance_type", instance_type, "must be an EC2 instance type such as m5.large")
    max_pods_raw = values.get("node_max_pods")
    if max_pods_raw is not None:
        max_pods = check_int("node_max_pods", max_pods_raw, 1, 737)
    elif instance_type in instances.MAX_PODS:
        max_pods = instances.MAX_PODS[instance_type]
    elif auto_mode:
        max_pods = 110  # Auto Mode picks the instances; the pod check does not apply.
    else:
        raise ConfigError(
            "node_instance_type",
            instance_type,
            "its pod capacity is not in config/instances.py; set node_max_pods to the type's max pods, "
            f"or use one of {', '.join(sorted(instances.MAX_PODS))}",
        )
    endpoint_access = values.get("endpoint_access", "public_and_private")
    if endpoint_access not in ENDPOINT_ACCESS:
        raise ConfigError("endpoint_access", endpoint_access, f"must be one of {', '.join(ENDPOINT_ACCESS)}")
    public_cidrs = tuple(
        check_cidr("endpoint_public_cidrs", c) for c in as_list("endpoint_public_cidrs", values.get("endpoint_public_cidrs"))
    )
    if public_cidrs and endpoint_access == "private":
        raise ConfigError(
            "endpoint_public_cidrs", list(public_cidrs), "has no effect with endpoint_access=private; remove it or allow public access"
        )
    admin = values.get("admin_principal_arn") or None
    session = _SESSION_ARN.match(str(admin)) if admin is not None else None
    if session:
        partition, account, role = session.groups()
        raise ConfigError(
            "admin_principal_arn",
            admin,
            "is an STS session (the Arn `aws sts get-caller-identity` prints for an assumed role), which EKS access "
            f"entries refuse; pass the role's ARN, likely arn:{partition}:iam::{account}:role/{role} (a session ARN "
            f"leaves out the role's path, if it has one: `aws iam get-role --role-name {role} --query Role.Arn` prints it)",
        )
    if admin is not None and not _ROLE_ARN.match(str(admin)):
        raise ConfigError("admin_principal_arn", admin, "must be an IAM role or user ARN, e.g. arn:aws:iam::123456789012:role/Admin")
    return ClusterConfig(
        name=check_dns_label("cluster_name", values.get("cluster_name", "app-mesh"), 100),
        kubernetes=release,
        auto_mode=auto_mode,
        instance_type=instance_type,
        max_pods_per_node=max_pods,
        desired_nodes=desired,
        min_nodes=minimum,
        max_nodes=maximum,
        endpoint_access=endpoint_access,
        endpoint_public_cidrs=public_cidrs,
        admin_principal_arn=admin,
        log_retention_days=_retention("log_retention_days", values.get("log_retention_days", 30)),
        retain_legacy_log_groups=check_bool("retain_legacy_log_groups", values.get("retain_legacy_log_groups", False)),
    )


def pods_per_node(topology: Topology, nodes: int, *, mesh_pods: int, mesh_daemonsets: int) -> int:
    """Pods the busiest node must hold when the scheduler spreads the workload evenly; the mesh
    backend says how many pods its control plane adds (mesh_pods) and how many per node."""
    spread = sum(s.replicas for s in topology.services) + instances.PLATFORM_PODS + mesh_pods
    if topology.gateway:
        spread += topology.gateway.replicas
    return math.ceil(spread / nodes) + instances.DAEMONSET_PODS_PER_NODE + mesh_daemonsets


def check_node_capacity(config: AppConfig, *, mesh_pods: int, mesh_daemonsets: int) -> None:
    cluster = config.cluster
    if cluster.auto_mode:
        return  # Auto Mode picks the instances
    needed = pods_per_node(config.mesh.topology, cluster.desired_nodes, mesh_pods=mesh_pods, mesh_daemonsets=mesh_daemonsets)
    if needed > cluster.max_pods_per_node:
        raise ConfigError(
            "node_instance_type",
            cluster.instance_type,
            f"holds {cluster.max_pods_per_node} pods per node but {needed} are needed with {cluster.desired_nodes} nodes "
            f"({instances.DAEMONSET_PODS_PER_NODE + mesh_daemonsets} DaemonSet pods per node plus the workload and platform pods "
            "spread over the nodes); choose a larger type (m5.large holds 29) or raise node_desired",
        )


def _domain(key: str, value: Any) -> str:
    labels = value.split(".") if isinstance(value, str) else []
    if len(labels) < 2 or len(value) > 253 or not all(_DOMAIN_LABEL.match(label) and len(label) <= 63 for label in labels):
        raise ConfigError(key, value, "must be a lower-case DNS domain name of at least two labels, e.g. appmesh.pvt.local")
    return str(value)


def _retention(key: str, value: Any) -> int:
    days = check_int(key, value, 1, 3653)
    if days not in LOG_RETENTION_DAYS:
        raise ConfigError(key, value, f"CloudWatch Logs accepts only {', '.join(map(str, LOG_RETENTION_DAYS))} days")
    return days


def changed_settings(defaults: Mapping[str, Any], merged: Mapping[str, Any]) -> dict[str, str]:
    """The settings that differ from cdk.json, as `-c key=value` strings that build the same
    config again (the pipeline replays them in its synth step). Not a stored canary state: the
    pipeline's synth reads that afresh at each run."""
    changed = {}
    for key, value in merged.items():
        if is_cdk_internal(key) or defaults.get(key) == value or key.startswith(CANARY_STATE_PREFIX):
            continue
        if key == "topology" and isinstance(defaults.get(key), Mapping):
            # Replayed as a merge patch over cdk.json's topology, as merge_layers applies it.
            changed[key] = json.dumps(patch_between(defaults[key], value), sort_keys=True, separators=(",", ":"))
        elif isinstance(value, bool):
            changed[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) for v in value):
            changed[key] = ",".join(str(v) for v in value)
        elif isinstance(value, (dict, list, tuple)):
            changed[key] = json.dumps(value, sort_keys=True, separators=(",", ":"))
        else:
            changed[key] = str(value)
    return changed
