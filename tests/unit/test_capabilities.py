"""The capability tables: complete, enforced before anything is built, and what the README says."""

from __future__ import annotations

import pytest

from backends import backend_named
from config import ConfigError
from config.settings import MESH_BACKENDS
from mesh.capabilities import Feature, check_table, unsupported, yes
from scripts.parity_table import readme_table, table
from tests.conftest import PROJECT_ROOT
from tests.unit.test_settings import backend_config, config_with


@pytest.mark.parametrize("name", MESH_BACKENDS)
def test_every_backend_answers_for_every_feature(name: str) -> None:
    """backend_named checks the table; here, that the check refuses an incomplete one."""
    backend = backend_named(name)
    assert backend.pod_security in ("privileged", "baseline", "restricted")
    incomplete = {feature: capability for feature, capability in backend.capabilities.items() if feature is not Feature.TRACING}
    with pytest.raises(ValueError, match=f"backend {name} has no capability for TRACING"):
        check_table(name, incomplete)
    with pytest.raises(ValueError, match="a capability needs a support level and a description"):
        yes("")


def test_app_mesh_and_istio_express_the_default_topology() -> None:
    for name in ("appmesh", "istio"):
        backend = backend_named(name)
        assert unsupported(backend.capabilities, backend_config(name).mesh.topology) == []


def test_the_backend_check_happens_at_the_entry_not_in_config() -> None:
    """config/ knows no backend: build_config takes any topology; backends.configure, which the
    app's entry, the tools and the tests call, refuses what the backend cannot express."""
    from backends import configure
    from config import build_config, merge_layers
    from tests.conftest import cdk_json_context

    merged = merge_layers(cdk_json_context(), {**cdk_json_context(), "mesh_backend": "lattice"})
    assert build_config(merged, {}).mesh.backend == "lattice"
    with pytest.raises(ConfigError, match=r"^config error: mesh_backend='lattice': cannot express 19 setting"):
        configure(merged, {})


def test_lattice_refuses_the_default_topology_listing_every_setting_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(mesh_backend="lattice")
    message = str(caught.value)
    assert message.startswith("config error: mesh_backend='lattice': cannot express 19 setting(s) of this topology: ")
    assert "\n" not in message
    for key in (
        "topology.virtual_services.nodejs.routes[0].timeout_ms",
        "topology.virtual_services.crystal.routes[0].retry",
        "topology.services.frontend.timeout_ms",
        "topology.services.crystal.outlier_detection",
        "topology.services.nodejsv2.connection_pool",
        "topology.mtls",
        "topology.egress_filter",
        "topology.tracing",
    ):
        assert key in message, key
    assert "set retry: off" in message and "set egress_filter: ALLOW_ALL" in message
    assert message.endswith("Drop these settings (config/examples/lattice.yaml does), or use mesh_backend=istio")


def test_one_unsupported_setting_is_named_alone() -> None:
    """Starting from the Lattice example, turning one thing back on names exactly that thing."""
    with pytest.raises(ConfigError) as caught:
        backend_config("lattice", **{"topology": {"services": {"crystal": {"outlier_detection": {"max_server_errors": 3}}}}})
    assert str(caught.value) == (
        "config error: mesh_backend='lattice': cannot express 1 setting(s) of this topology: outlier detection at "
        "topology.services.crystal.outlier_detection (VPC Lattice has active health checks only, no passive outlier detection; "
        "set outlier_detection: off). Drop these settings (config/examples/lattice.yaml does), or use mesh_backend=istio"
    )


def test_the_lattice_example_is_within_what_lattice_expresses() -> None:
    config = backend_config("lattice")
    assert config.mesh.backend == "lattice"
    assert unsupported(backend_named("lattice").capabilities, config.mesh.topology) == []


def test_the_readme_parity_table_is_the_generated_one() -> None:
    """scripts/parity_table.py --write regenerates it from the capability tables."""
    assert readme_table((PROJECT_ROOT / "README.md").read_text()) == table()


def test_the_readmes_parity_command_runs_from_a_python_without_the_venv() -> None:
    """The README says `python scripts/parity_table.py`; a Python outside the venv lacks aws_cdk."""
    import subprocess
    import sys
    from pathlib import Path

    base_python = Path(sys.base_prefix) / "bin" / "python3"
    assert subprocess.run([str(base_python), "-c", "import aws_cdk"], capture_output=True, check=False).returncode != 0
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [str(base_python), "scripts/parity_table.py"], cwd=root, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == table()
