"""Checks shared by every part of the configuration, below all of them (no imports from config/).

Each raises ConfigError naming the key, the value and what would be accepted.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError

# DNS-1123 label: what Kubernetes accepts for Service names and label-derived object names.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_dns_label(key: str, value: Any, max_length: int = 63) -> str:
    if not isinstance(value, str) or not _DNS1123_LABEL.match(value):
        raise ConfigError(
            key,
            value,
            "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending "
            "with a letter or digit (Kubernetes object names)",
        )
    if len(value) > max_length:
        raise ConfigError(key, value, f"is {len(value)} characters; at most {max_length} are allowed here")
    return value


def check_int(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, value, f"must be an integer from {low} to {high}")
    return value


def check_cidr(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, value, "must be an IPv4 CIDR block with no host bits set, e.g. 203.0.113.0/24")
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except (ValueError, TypeError):
        raise ConfigError(key, value, "must be an IPv4 CIDR block with no host bits set, e.g. 203.0.113.0/24") from None


def check_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(key, value, "must be true or false")


def as_list(key: str, value: Any) -> list[Any]:
    """A YAML list, or the command-line form `a,b,c`."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(key, value, "must be a list (or a comma-separated string)")


def as_mapping(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "must be a mapping")
    return value


def reject_unknown(key: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    for name in given:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", given[name], f"unknown key{suggest(name, allowed)}; accepted: {', '.join(sorted(allowed))}")


def fields(key: str, raw: Any, allowed: set[str]) -> Mapping[str, Any]:
    """A mapping whose keys must all be among `allowed` (a policy block, say)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, f"must be a mapping with keys {', '.join(sorted(allowed))}")
    reject_unknown(key, raw, allowed)
    return raw


def no_duplicates(key: str, names: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(key, name, f"duplicate {what}; each must be unique")
        seen.add(name)
