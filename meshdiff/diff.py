"""Compare two mesh summaries (see summary.py) as lines a reviewer of a canary shift can read.

    Mesh app-mesh (namespace lab-appmesh)
    ~ route nodejs/route-to-nodejs-app (prefix /):
        nodejs      2 -> 1   (66.7% -> 50.0%)
        nodejsv2    1 -> 1   (33.3% -> 50.0%)
    ~ service frontend: replicas 2 -> 3
    + service nodejsv3 (port 3000, 2 replicas)
    - gateway route gateway-route-old /old/ -> nodejs

`+` added, `-` removed, `~` changed. Sections come in a fixed order (mesh-wide settings, virtual
services and their routes, services, the gateway and its routes), and within a section things
come in name order, so the same two summaries always give the same lines. Any field the
summary holds is compared, including fields added to the model later; a field that is absent and
a field that is null are the same (unset). Nested settings (a route's retry policy, a service's
outlier detection) are compared key by key (`retry.max_retries: 2 -> 3`); a policy turned off or
back on is one line with the whole policy (`retry: {max_retries: 2, ...} -> off`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

NO_CHANGES = "No mesh changes."
_INDENT = "    "
_SECTIONS = {"services", "virtual_services", "gateway", "version"}
_UNSET = "(unset)"


def diff_summaries(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """A header naming the mesh, then one line per change, or NO_CHANGES."""
    header = f"Mesh {new.get('mesh', old.get('mesh', '?'))} (namespace {new.get('namespace', old.get('namespace', '?'))})"
    return [header, *(_changes(old, new) or [NO_CHANGES])]


def has_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return bool(_changes(old, new))


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for path, before, after in _field_changes(old, new, exclude=_SECTIONS):
        lines.append(f"~ {path}: {_show(before)} -> {_show(after)}")
    lines += _virtual_services(old.get("virtual_services") or [], new.get("virtual_services") or [])
    lines += _services(old.get("services") or [], new.get("services") or [])
    lines += _gateway(old.get("gateway"), new.get("gateway"))
    return lines


# --------------------------------------------------------------------------------------------
# Sections


def _virtual_services(old: list[Any], new: list[Any]) -> list[str]:
    lines: list[str] = []
    for name, before, after in _pair_by_name(old, new):
        if before is None:
            lines.append(f"+ virtual service {name} ({after.get('awsName', name)})")
            lines += [_route_line("+", name, route) for route in _sorted_by_name(after.get("routes"))]
        elif after is None:
            lines.append(f"- virtual service {name} ({before.get('awsName', name)})")
            lines += [_route_line("-", name, route) for route in _sorted_by_name(before.get("routes"))]
        else:
            for path, was, now in _field_changes(before, after, exclude={"name", "routes"}):
                lines.append(f"~ virtual service {name}: {path} {_show(was)} -> {_show(now)}")
            lines += _routes(name, before.get("routes") or [], after.get("routes") or [])
    return lines


def _routes(virtual_service: str, old: list[Any], new: list[Any]) -> list[str]:
    lines: list[str] = []
    for name, before, after in _pair_by_name(old, new):
        if before is None:
            lines.append(_route_line("+", virtual_service, after))
        elif after is None:
            lines.append(_route_line("-", virtual_service, before))
        else:
            details = [
                f"{_INDENT}{path}: {_show(was)} -> {_show(now)}"
                for path, was, now in _field_changes(before, after, exclude={"name", "prefix", "targets"})
            ]
            old_targets, new_targets = before.get("targets") or {}, after.get("targets") or {}
            if old_targets != new_targets:
                details += _target_table(old_targets, new_targets)
            prefix = _change(before.get("prefix"), after.get("prefix"))
            if details or before.get("prefix") != after.get("prefix"):
                lines.append(f"~ route {virtual_service}/{name} (prefix {prefix})" + (":" if details else ""))
                lines += details
    return lines


def _services(old: list[Any], new: list[Any]) -> list[str]:
    lines: list[str] = []
    for name, before, after in _pair_by_name(old, new):
        if before is None:
            lines.append(f"+ service {name} ({_describe_service(after)})")
        elif after is None:
            lines.append(f"- service {name} ({_describe_service(before)})")
        else:
            for path, was, now in _field_changes(before, after, exclude={"name"}):
                lines.append(f"~ service {name}: {path} {_show(was)} -> {_show(now)}")
    return lines


def _gateway(old: Any, new: Any) -> list[str]:
    if old is None and new is None:
        return []
    if old is None or new is None:
        sign, gateway = ("+", new) if old is None else ("-", old)
        lines = [f"{sign} gateway {gateway.get('name', '?')} ({_describe_gateway(gateway)})"]
        return lines + [_gateway_route_line(sign, route) for route in _sorted_by_name(gateway.get("routes"))]
    lines = [
        f"~ gateway {new.get('name', '?')}: {path} {_show(was)} -> {_show(now)}"
        for path, was, now in _field_changes(old, new, exclude={"routes"})
    ]
    for name, before, after in _pair_by_name(old.get("routes") or [], new.get("routes") or []):
        if before is None:
            lines.append(_gateway_route_line("+", after))
        elif after is None:
            lines.append(_gateway_route_line("-", before))
        else:
            for path, was, now in _field_changes(before, after, exclude={"name"}):
                lines.append(f"~ gateway route {name}: {path} {_show(was)} -> {_show(now)}")
    return lines


# --------------------------------------------------------------------------------------------
# Lines


def _route_line(sign: str, virtual_service: str, route: Mapping[str, Any]) -> str:
    targets = route.get("targets") or {}
    shares = _shares(targets)
    listed = ", ".join(f"{target} {_show(targets[target])} ({shares[target]})" for target in sorted(targets))
    return f"{sign} route {virtual_service}/{route.get('name', '?')} (prefix {route.get('prefix', '?')}): {listed or 'no targets'}"


def _target_table(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One row per target: weight before -> after, and the share of the route's traffic."""
    names = sorted(set(old) | set(new))
    old_shares, new_shares = _shares(old), _shares(new)
    rows = [
        (
            name,
            _show(old[name]) if name in old else "-",
            _show(new[name]) if name in new else "-",
            old_shares.get(name, "0.0%"),
            new_shares.get(name, "0.0%"),
        )
        for name in names
    ]
    name_width = max(len(name) for name in names) + 4
    old_width = max(len(row[1]) for row in rows)
    new_width = max(len(row[2]) for row in rows)
    share_width = max(len(row[3]) for row in rows) + 1  # with its "("
    return [
        f"{_INDENT}{name:<{name_width}}{was:>{old_width}} -> {now:<{new_width}}   {'(' + was_share:>{share_width}} -> {now_share})"
        for name, was, now, was_share, now_share in rows
    ]


def _shares(targets: Mapping[str, Any]) -> dict[str, str]:
    weights = {name: weight for name, weight in targets.items() if isinstance(weight, int | float) and not isinstance(weight, bool)}
    total = sum(weights.values())
    return {name: f"{100 * weights[name] / total:.1f}%" if name in weights and total > 0 else "?" for name in targets}


def _describe_service(service: Mapping[str, Any]) -> str:
    parts = [f"port {_show(service.get('port'))}", _replicas(service.get("replicas"))]
    exposure = service.get("exposure")
    if exposure not in (None, "none"):
        parts.append(f"exposure {exposure} from {', '.join(service.get('source_cidrs') or []) or 'nowhere'}")
    if service.get("backends"):
        parts.append(f"backends {', '.join(service['backends'])}")
    return ", ".join(parts)


def _describe_gateway(gateway: Mapping[str, Any]) -> str:
    return f"port {_show(gateway.get('port'))}, {_replicas(gateway.get('replicas'))}, scheme {_show(gateway.get('scheme'))}"


def _gateway_route_line(sign: str, route: Mapping[str, Any]) -> str:
    return f"{sign} gateway route {route.get('name', '?')} {route.get('prefix', '?')} -> {route.get('virtual_service', '?')}"


def _replicas(count: Any) -> str:
    return f"{_show(count)} replica" + ("" if count == 1 else "s")


# --------------------------------------------------------------------------------------------
# Generic comparison


def _pair_by_name(old: Iterable[Any], new: Iterable[Any]) -> list[tuple[str, Any, Any]]:
    """(name, old item or None, new item or None) for every name on either side, in name order."""
    before = {str(item.get("name", "?")): item for item in old if isinstance(item, Mapping)}
    after = {str(item.get("name", "?")): item for item in new if isinstance(item, Mapping)}
    return [(name, before.get(name), after.get(name)) for name in sorted(set(before) | set(after))]


def _sorted_by_name(items: Any) -> list[Mapping[str, Any]]:
    return sorted((item for item in items or [] if isinstance(item, Mapping)), key=lambda item: str(item.get("name", "")))


def _field_changes(old: Mapping[str, Any], new: Mapping[str, Any], *, exclude: set[str]) -> list[tuple[str, Any, Any]]:
    """(dotted path, old, new) for every leaf that differs; nested mappings are compared key by key.

    A mapping on one side and a value on the other (a policy turned off: `{max_retries: 2, ...}`
    -> `off`) is one change of the whole field, not one `(unset)` per key of the mapping.
    """
    before = {k: v for k, v in old.items() if k not in exclude}
    after = {k: v for k, v in new.items() if k not in exclude}
    return sorted(_compare(before, after, ""), key=lambda change: change[0])


def _compare(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str) -> list[tuple[str, Any, Any]]:
    changes: list[tuple[str, Any, Any]] = []
    for key in set(old) | set(new):
        path, before, after = f"{prefix}{key}", old.get(key), new.get(key)
        if isinstance(before, Mapping | None) and isinstance(after, Mapping | None):
            # Both mappings, or one unset (absent and null are the same): compare key by key.
            changes += _compare(before or {}, after or {}, f"{path}.")
        elif before != after:
            changes.append((path, before, after))
    return changes


def _change(old: Any, new: Any) -> str:
    return _show(new) if old == new else f"{_show(old)} -> {_show(new)}"


def _show(value: Any) -> str:
    if value is None:
        return _UNSET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {_show(value[key])}" for key in sorted(value, key=str)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    return str(value)
