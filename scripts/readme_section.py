"""A generated part of the README: the text between its two marker comments."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def section(text: str, begin: str, end: str) -> str:
    """What stands between the markers, stripped."""
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[start:stop].strip()


def write_or_print(argv: list[str], generated: str, begin: str, end: str) -> int:
    """`--write`: put `generated` between the README's markers; otherwise print it."""
    if argv[:1] == ["--write"]:
        text = README.read_text()
        start, stop = text.index(begin) + len(begin), text.index(end)
        README.write_text(text[:start] + "\n" + generated + "\n" + text[stop:])
    else:
        print(generated)
    return 0
