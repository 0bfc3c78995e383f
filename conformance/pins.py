"""The one place the conformance layer reads the project's upstream pins (CRDs, chart values),
from the `upstream` package: which file each URL is, and its verified bytes."""

from __future__ import annotations

import upstream as _upstream

Missing = _upstream.Missing
Mismatch = _upstream.Mismatch
DEFAULT_BASE_URL = _upstream.DEFAULT_BASE_URL
ARTIFACTS = _upstream.ARTIFACTS
git_blob_id = _upstream.git_blob_id
documents = _upstream.documents


def files_by_url() -> dict[str, tuple[str, str]]:
    """URL on raw.githubusercontent.com -> (artifact name, git blob id), for every pinned part."""
    return {part.url(DEFAULT_BASE_URL): (artifact.name, part.blob) for artifact in ARTIFACTS.values() for part in artifact.parts}


def part_bytes(artifact: str, blob: str) -> bytes:
    """The verified bytes of one pinned file (from ../shared or the cache; Missing otherwise)."""
    parts = _upstream.ARTIFACTS[artifact].parts
    for part, data in zip(parts, _upstream.part_files(artifact), strict=True):
        if part.blob == blob:
            return data
    raise Missing(f"upstream: {artifact} has no part with blob {blob}")


def pinned_paths(artifact: str) -> list[tuple[str, str]]:
    """(path in its repository, git blob id) of each part of an artifact."""
    return [(part.path, part.blob) for part in _upstream.ARTIFACTS[artifact].parts]
