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
        # Names echoed from the input may hold control characters: escape them, one line always.
        printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in accepted)
        super().__init__(f"config error: {_key(key)}={_show(value)}: {printable}")


def _key(key: str) -> str:
    # A key with spaces or control characters (a typo in a YAML file) is quoted, keeping the
    # message on one line.
    return key if key and key.isprintable() and " " not in key else repr(key)


def _show(value: Any) -> str:
    text = repr(value)  # repr escapes newlines: the message stays one line
    return text if len(text) <= 80 else text[:77] + "..."
