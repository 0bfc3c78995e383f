"""The CRDs the chart tests validate against: taken from the pinned chart only if byte-identical."""

from __future__ import annotations

import io
import tarfile

import pytest

from scripts.fetch_crds import BLOB_ID, SHARED, crds_path, extract_crds, git_blob_id


def _chart_tarball(crds: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("appmesh-controller/crds/crds.yaml")
        info.size = len(crds)
        tar.addfile(info, io.BytesIO(crds))
    return buffer.getvalue()


def test_shared_schemas_are_the_pinned_charts_crds() -> None:
    assert crds_path() == SHARED
    assert git_blob_id(SHARED.read_bytes()) == BLOB_ID


def test_crds_are_extracted_from_the_chart() -> None:
    crds = SHARED.read_bytes()
    assert extract_crds(_chart_tarball(crds)) == crds


def test_different_crds_are_refused() -> None:
    with pytest.raises(ValueError, match="different CRDs than the tests expect"):
        extract_crds(_chart_tarball(SHARED.read_bytes() + b"# tampered\n"))
