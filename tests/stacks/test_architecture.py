"""The README's architecture pictures are the ones scripts/architecture.py draws from the app as
synthesized for each backend, and they show what the templates hold."""

from __future__ import annotations

from typing import Any

from backends import backend_for
from mesh.summary import summarize_config
from scripts.architecture import SETTINGS, diagram, pictures, readme_pictures
from tests.conftest import BACKEND_OVERRIDES, PROJECT_ROOT
from tests.unit.test_settings import backend_config


def _assemblies(synths: Any) -> dict[str, Any]:
    found = {}
    for backend in SETTINGS:
        config = backend_config(backend)
        found[backend] = (synths[backend].outdir, backend_for(config).title, summarize_config(config))
    return found


def test_the_pictures_are_drawn_as_the_tests_synthesize_each_backend() -> None:
    assert SETTINGS == BACKEND_OVERRIDES


def test_the_readme_holds_the_generated_pictures(synths: Any) -> None:
    """Regenerate with `python scripts/architecture.py --write`."""
    assert readme_pictures((PROJECT_ROOT / "README.md").read_text()) == pictures(_assemblies(synths))


def test_a_picture_shows_the_stacks_in_deploy_order_their_releases_and_the_canary(synths: Any) -> None:
    outdir, title, summary = _assemblies(synths)["istio"]
    picture = diagram(outdir, title, summary).splitlines()
    # Deploy order, without the arrows another path implies (Network -> MeshPlatform).
    assert [line.strip() for line in picture if " --> AppMesh_" in line] == [
        "AppMesh_Network --> AppMesh_Cluster",
        "AppMesh_Cluster --> AppMesh_MeshPlatform",
        "AppMesh_MeshPlatform --> AppMesh_MeshServices",
        "AppMesh_MeshServices --> AppMesh_MeshRouting",
    ]
    (platform,) = [line for line in picture if line.strip().startswith("AppMesh_MeshPlatform_has")]
    for release in ("Helm base: base 1.31", "Helm istiod: istiod 1.31", "Helm cni: cni 1.31"):
        assert release in platform
    assert 'vs_nodejs -- "/ 2/3" --> svc_nodejs' in [line.strip() for line in picture]
    assert 'vs_nodejs -- "/ 1/3" --> svc_nodejsv2' in [line.strip() for line in picture]
    assert 'gw -- "/eks/ (rewritten to /)" --> vs_nodejs' in [line.strip() for line in picture]
