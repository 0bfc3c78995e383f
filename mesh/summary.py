"""A plain, JSON-serialisable summary of the mesh a topology describes.

The app writes one to `cdk.out/mesh-topology.json` on every synth; `python -m meshdiff` compares
it with the mesh the current configuration would build. The summary is deterministic: lists of
named things are sorted by name, lists of strings are sorted, and the JSON file has sorted keys.

Fields are read generically from the topology dataclasses, so a field added to the model (a retry
policy, a timeout, outlier detection, mTLS) appears in the summary, and so in the diff, without a
change here. Two rules keep the summary stable and readable:

* a field typed as pairs, `tuple[tuple[str, X], ...]` (build_args, a route's targets), becomes a
  mapping `{key: value}`;
* a field whose value is None is left out when None is also its default (an optional field left
  unset), so adding such a field to the model does not change the summary of a topology that does
  not use it; when the default is set (a policy on unless turned off: a route's retry, a service's
  outlier detection) None is the policy turned off, and the summary says so: `"retry": "off"`,
  the word the configuration uses (`retry: off`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.settings import AppConfig
    from config.topology import Topology

SUMMARY_VERSION = 1
# Where the app writes the summary of the synthesized mesh, inside the CDK output directory.
SUMMARY_FILE = "mesh-topology.json"

# Topology fields with a section of their own in the summary; every other field is top-level.
_SECTIONS = ("services", "virtual_services", "gateway")


class SummaryError(ValueError):
    """A summary file that this version of meshdiff cannot read."""


def summarize(topology: Topology, *, hosted_zone: str, mesh_name: str, namespace: str, mesh_backend: str = "appmesh") -> dict[str, Any]:
    """What the mesh looks like, as plain data (see the module docstring)."""
    summary: dict[str, Any] = {}
    # Mesh-wide settings (discovery, egress_filter and any added later).
    for field in dataclasses.fields(topology):
        if field.name not in _SECTIONS:
            _put(summary, field, getattr(topology, field.name), type(topology))
    summary["services"] = _plain(topology.services, _hint(type(topology), "services"))
    virtual_services = _plain(topology.virtual_services, _hint(type(topology), "virtual_services"))
    for virtual_service in virtual_services:
        virtual_service["awsName"] = f"{virtual_service['name']}.{hosted_zone}"
    summary["virtual_services"] = virtual_services
    summary["gateway"] = None if topology.gateway is None else _plain(topology.gateway, _hint(type(topology), "gateway"))
    # The backend is one line of the diff: the mesh-level changes read the same whichever renders them.
    summary.update({"mesh": mesh_name, "namespace": namespace, "mesh_backend": mesh_backend, "version": SUMMARY_VERSION})
    return summary


def summarize_config(config: AppConfig) -> dict[str, Any]:
    """The summary of an app configuration's mesh: what app.py writes to cdk.out."""
    return summarize(
        config.mesh.topology,
        hosted_zone=config.discovery.hosted_zone,
        mesh_name=config.mesh.mesh_name,
        namespace=config.mesh.namespace,
        mesh_backend=config.mesh.backend,
    )


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    path.write_text(dumps(summary))


def dumps(summary: Mapping[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load_summary(path: Path) -> dict[str, Any]:
    """Read a summary file. FileNotFoundError when it is missing; SummaryError when unreadable."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SummaryError(f"{path} is not a mesh summary: invalid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict):
        raise SummaryError(f"{path} is not a mesh summary: expected a JSON object")
    if data.get("version") != SUMMARY_VERSION:
        raise SummaryError(
            f"{path} is a mesh summary of version {data.get('version')!r}; this meshdiff reads version {SUMMARY_VERSION}"
            " (run `make synth` to write a current one)"
        )
    for key in ("services", "virtual_services"):
        if not isinstance(data.get(key), list):
            raise SummaryError(f"{path} is not a mesh summary: {key!r} must be a list")
    return data


# --------------------------------------------------------------------------------------------
# Dataclasses to plain data


def _hint(cls: type, name: str) -> Any:
    return _type_hints(cls).get(name, Any)


_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        try:
            _HINTS[cls] = typing.get_type_hints(cls)
        except (NameError, TypeError):  # an annotation we cannot resolve: fall back to the values
            _HINTS[cls] = {}
    return _HINTS[cls]


# How the summary shows a field that is None although its default is not: a policy turned off.
OFF = "off"


def _put(plain: dict[str, Any], field: dataclasses.Field[Any], value: Any, owner: type) -> None:
    """Add one dataclass field to `plain` (see the module docstring for None)."""
    if value is not None:
        plain[field.name] = _plain(value, _hint(owner, field.name))
    elif _has_default(field):
        plain[field.name] = OFF


def _has_default(field: dataclasses.Field[Any]) -> bool:
    """Whether the field defaults to something other than None."""
    if field.default_factory is not dataclasses.MISSING:
        return True
    return field.default is not dataclasses.MISSING and field.default is not None


def _is_pairs(hint: Any) -> bool:
    """`tuple[tuple[str, X], ...]`, possibly optional."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_pairs(arg) for arg in typing.get_args(hint) if arg is not type(None))
    args = typing.get_args(hint)
    if typing.get_origin(hint) is not tuple or len(args) != 2 or args[1] is not Ellipsis:
        return False
    inner = typing.get_args(args[0])
    return typing.get_origin(args[0]) is tuple and len(inner) == 2 and inner[0] is str


def _plain(value: Any, hint: Any = Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        plain: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            _put(plain, field, getattr(value, field.name), type(value))
        return plain
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, set | frozenset):
        return sorted((_plain(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, tuple | list):
        if _is_pairs(hint):
            return {str(key): _plain(item) for key, item in sorted(value, key=lambda kv: str(kv[0]))}
        items = [_plain(item) for item in value]
        if items and all(isinstance(item, str) for item in items):
            return sorted(items)
        if items and all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in items):
            return sorted(items, key=lambda item: item["name"])
        return items
    return str(value)
