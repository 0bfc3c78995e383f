"""Make the App Mesh controller's CRDs available to the chart tests.

Locally and in CI they come from ../shared/schemas. Where that folder is absent (the pipeline's
CodeBuild synth), this takes the same file out of the pinned chart's tarball, checks it is
byte-identical to the one the tests were written against (its git blob id), and writes it to
.cache/schemas/. Nothing is committed: the file is data from aws/eks-charts.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from app import use_venv_node  # noqa: E402

use_venv_node()
from components.appmesh_controller import CHART, CHART_REPOSITORY, CHART_VERSION  # noqa: E402

FILE = "appmesh-controller-crds.yaml"
SHARED = PROJECT_ROOT.parent / "shared" / "schemas" / FILE
CACHED = PROJECT_ROOT / ".cache" / "schemas" / FILE
# git blob id of stable/appmesh-controller/crds/crds.yaml as shipped with chart 1.13.3.
BLOB_ID = "90537e3204d242bd72386e15b2f9297f92111f2b"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def crds_path() -> Path:
    """Where the tests read the CRDs from."""
    return SHARED if SHARED.exists() else CACHED


def extract_crds(archive: bytes) -> bytes:
    """The CRDs file out of the chart's tarball, refused unless it is the expected one."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        member = tar.extractfile(f"{CHART}/crds/crds.yaml")
        if member is None:
            raise ValueError(f"{CHART}/crds/crds.yaml is not a file in the chart")
        data = member.read()
    if git_blob_id(data) != BLOB_ID:
        raise ValueError(f"the chart holds different CRDs than the tests expect (blob {git_blob_id(data)}, expected {BLOB_ID})")
    return data


def main() -> int:
    if SHARED.exists() or CACHED.exists():
        return 0
    url = f"{CHART_REPOSITORY}/{CHART}-{CHART_VERSION}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        try:
            data = extract_crds(response.read())
        except (ValueError, KeyError, tarfile.TarError) as error:
            print(f"fetch_crds: {url}: {error}", file=sys.stderr)
            return 1
    CACHED.parent.mkdir(parents=True, exist_ok=True)
    CACHED.write_bytes(data)
    print(f"fetch_crds: wrote {CACHED.relative_to(PROJECT_ROOT)} from {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
