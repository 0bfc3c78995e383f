"""The one error type that configuration problems raise.

app.py turns it into a single line on stderr and a non-zero exit, before any construct exists,
so a bad setting never surfaces as a jsii traceback or a half-written cdk.out.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A setting is wrong: names the key, the value, and what would be accepted."""

    def __init__(self, key: str, value: Any, accepted: str) -> None:
        self.key = key
        self.value = value
        self.accepted = accepted
        super().__init__(f"config error: {key}={_show(value)}: {accepted}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
