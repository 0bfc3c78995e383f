"""The upstream files the tests read: from ../shared when it is beside the checkout, else from a
cache that `fetch` fills from the pinned commits, verified by git blob id; one line when neither."""

from __future__ import annotations

import contextlib
import http.server
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import upstream
from tests.conftest import PROJECT_ROOT
from tests.loopback import serving

# Two made-up upstream files, so these tests need neither ../shared nor the network.
_ONE = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n"
_TWO = b"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\n"


def _artifact(name: str = "demo.yaml") -> upstream.Artifact:
    return upstream.Artifact(
        name,
        "schemas",
        (
            upstream.Part("example/repo", "0" * 40, "crds/one.yaml", upstream.git_blob_id(_ONE)),
            upstream.Part("example/repo", "0" * 40, "crds/two.yaml", upstream.git_blob_id(_TWO)),
        ),
        "a demo artifact",
    )


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> upstream.Artifact:
    """An empty cache, no shared folder, and the demo artifact registered."""
    monkeypatch.setattr(upstream, "CACHE", tmp_path / "cache")
    monkeypatch.setenv("SHARED_DIR", str(tmp_path / "no-shared"))
    artifact = _artifact()
    monkeypatch.setitem(upstream.ARTIFACTS, artifact.name, artifact)
    return artifact


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """A loopback HTTP server laid out like raw.githubusercontent.com (<repo>/<commit>/<path>)
    under `root`; yields its base URL."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "upstream-site"
    root.mkdir()
    with serve(root) as base:
        yield base, root


def publish(root: Path, part: upstream.Part, data: bytes) -> None:
    target = root / part.repo / part.commit / part.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def test_fetch_writes_verified_files_that_the_tests_then_read(isolated: upstream.Artifact, server: tuple[str, Path]) -> None:
    base, root = server
    for part, data in zip(isolated.parts, (_ONE, _TWO), strict=True):
        publish(root, part, data)
    with pytest.raises(upstream.Missing, match=r"demo.yaml \(a demo artifact\) is needed by the tests"):
        upstream.documents("demo.yaml")
    written = upstream.fetch(base, [isolated])
    assert written == list(isolated.parts)
    assert [d["metadata"]["name"] for d in upstream.documents("demo.yaml")] == ["one", "two"]
    assert upstream.fetch(base, [isolated]) == []  # cached: nothing fetched twice


def test_fetch_refuses_a_file_that_is_not_the_pinned_one(isolated: upstream.Artifact, server: tuple[str, Path]) -> None:
    base, root = server
    publish(root, isolated.parts[0], _ONE)
    publish(root, isolated.parts[1], _TWO + b"# tampered\n")
    with pytest.raises(upstream.Mismatch, match=r"crds/two.yaml is not the pinned file .* nothing written"):
        upstream.fetch(base, [isolated])
    assert not isolated.parts[1].cached.exists()


def test_a_cached_file_edited_afterwards_is_refused(isolated: upstream.Artifact, server: tuple[str, Path]) -> None:
    base, root = server
    for part, data in zip(isolated.parts, (_ONE, _TWO), strict=True):
        publish(root, part, data)
    upstream.fetch(base, [isolated])
    isolated.parts[0].cached.write_bytes(_ONE + b"extra: 1\n")
    with pytest.raises(upstream.Mismatch, match="`make upstream` fetches it again"):
        upstream.documents("demo.yaml")


def test_fetch_replaces_a_cached_file_that_is_not_the_pinned_one(isolated: upstream.Artifact, server: tuple[str, Path]) -> None:
    """A write cut short or an edit in the cache is repaired by the next fetch, not kept."""
    base, root = server
    for part, data in zip(isolated.parts, (_ONE, _TWO), strict=True):
        publish(root, part, data)
    upstream.fetch(base, [isolated])
    isolated.parts[1].cached.write_bytes(_TWO[:10])
    assert upstream.fetch(base, [isolated]) == [isolated.parts[1]]
    assert [p.cached.read_bytes() for p in isolated.parts] == [_ONE, _TWO]
    assert [d["metadata"]["name"] for d in upstream.documents("demo.yaml")] == ["one", "two"]


def test_a_single_file_in_shared_is_checked_against_its_blob(
    isolated: upstream.Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-file artifact in ../shared is used only when it is the pinned file."""
    single = upstream.Artifact("one.yaml", "schemas", isolated.parts[:1], "a one-file artifact")
    shared = tmp_path / "no-shared" / "schemas" / "one.yaml"
    shared.parent.mkdir(parents=True)
    shared.write_bytes(_ONE)
    monkeypatch.setitem(upstream.ARTIFACTS, single.name, single)
    assert upstream.part_files("one.yaml") == [_ONE]
    shared.write_bytes(_ONE.replace(b"one", b"eno"))
    with pytest.raises(upstream.Mismatch, match=r"^one\.yaml: the copy is not the pinned file \(blob [0-9a-f]{40}, pinned "):
        upstream.part_files("one.yaml")
    with pytest.raises(upstream.Mismatch, match=r"^one\.yaml: the copy is not the pinned file"):
        upstream.fetch("http://127.0.0.1:9", [single])


def test_a_shared_concatenation_is_split_into_the_pinned_files(isolated: upstream.Artifact, tmp_path: Path) -> None:
    # Our separator `---` before the first file; the second file starts with its own `---`.
    shared = b"# demo bundle\n# ---- file: crds/one.yaml\n---\n" + _ONE + b"# ---- file: crds/two.yaml\n" + _TWO
    assert upstream.split_shared(isolated, shared) == [_ONE, _TWO]
    with pytest.raises(upstream.Mismatch, match=r"crds/two\.yaml is not the pinned file"):
        upstream.split_shared(isolated, shared.replace(b"name: two", b"name: 2"))
    with pytest.raises(upstream.Mismatch, match=r"\(missing crds/two\.yaml\)$"):
        upstream.split_shared(isolated, b"# ---- file: crds/one.yaml\n---\n" + _ONE)


def test_a_shared_concatenation_must_name_each_pinned_path_once(isolated: upstream.Artifact) -> None:
    """As many markers as files is not enough: one file copied twice must not stand in for a
    missing one (both copies have the pinned blob of the first file)."""
    one_twice = b"# ---- file: crds/one.yaml\n---\n" + _ONE + b"# ---- file: crds/one.yaml\n---\n" + _ONE
    with pytest.raises(upstream.Mismatch, match=r"\(missing crds/two\.yaml; more than once: crds/one\.yaml\)$"):
        upstream.split_shared(isolated, one_twice)
    # A marker names a path exactly: a longer path that contains a pinned one is not it.
    lookalike = b"# ---- file: crds/one.yaml\n---\n" + _ONE + b"# ---- file: old/crds/two.yaml.orig\n" + _TWO
    with pytest.raises(upstream.Mismatch, match=r"\(missing crds/two\.yaml\)$"):
        upstream.split_shared(isolated, lookalike)


def test_seed_fills_the_cache_as_fetch_would(isolated: upstream.Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared-copy"
    (shared / "schemas").mkdir(parents=True)
    (shared / "schemas" / "demo.yaml").write_bytes(b"# ---- file: crds/one.yaml\n---\n" + _ONE + b"# ---- file: crds/two.yaml\n" + _TWO)
    monkeypatch.setattr(upstream, "ARTIFACTS", {"demo.yaml": isolated})
    assert upstream.seed(shared) == list(isolated.parts)
    assert [p.cached.read_bytes() for p in isolated.parts] == [_ONE, _TWO]


def test_offline_without_shared_is_one_line_and_a_failure(tmp_path: Path) -> None:
    """No ../shared, an empty cache, and no server: `make upstream` stops in one line."""
    env = {"PATH": "/usr/bin:/bin", "SHARED_DIR": str(tmp_path / "none"), "UPSTREAM_BASE_URL": "http://127.0.0.1:9"}
    script = (
        "import sys, pathlib; sys.path.insert(0, sys.argv[1]); import upstream, upstream.__main__ as cli; "
        "upstream.CACHE = pathlib.Path(sys.argv[2]); sys.exit(cli.main(['fetch']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(PROJECT_ROOT), str(tmp_path / "cache")], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith("upstream: cannot fetch appmesh-controller-crds.yaml from http://127.0.0.1:9/aws/eks-charts/")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_every_artifact_resolves_here() -> None:
    """From ../shared (verified part by part) or from the cache: the whole suite depends on it."""
    for name in upstream.ARTIFACTS:
        assert upstream.part_files(name), name
