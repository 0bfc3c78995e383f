"""The layers of the product code, held to the imports: data flows one way, from the app down.

    app.py -> stacks -> backends -> components -> charts, envoyconfig -> mesh -> config, upstream

A module may import its own package and any package on a lower floor, nothing else: not a higher
floor, not a neighbour on its own floor. The tools beside the product (localmesh, meshdiff,
scripts, conformance) may import any product code and are imported by none. The floors up to the
renderers are pure: no module there imports aws_cdk. Every import counts, those inside functions
and under `if TYPE_CHECKING:` included, because each says where a type or a name lives.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Bottom floor first.
FLOORS: tuple[frozenset[str], ...] = (
    frozenset({"config", "upstream"}),
    frozenset({"mesh"}),
    frozenset({"charts", "envoyconfig"}),
    frozenset({"components"}),
    frozenset({"backends"}),
    frozenset({"stacks"}),
    frozenset({"app"}),
)
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}
TOOLS = frozenset({"localmesh", "meshdiff", "scripts", "conformance"})
# Shipped alone (the pipeline's canary analysis runs this folder by itself): imports nothing of the
# project, and nothing of the product imports it (the app ships it as an asset, by path).
APART = frozenset({"canary"})
# The floors that must not import aws_cdk: everything up to the renderers.
PURE = frozenset(package for package, level in FLOOR.items() if level <= FLOOR["charts"])
# The Lambda handlers (the preflight, the service log groups) run in AWS with their own runtime, not part of the app.
NOT_APP_CODE = ("components/preflight/", "components/service_log_group/")


def product_sources(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Module name -> source of every product module (app.py and the packages of FLOORS) and of
    the packages that stand apart."""
    sources = {"app": (root / "app.py").read_text()}
    for package in sorted(FLOOR.keys() | APART):
        if package == "app":
            continue
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(NOT_APP_CODE):
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            sources[".".join(parts)] = path.read_text()
    return sources


def imports_of(module: str, source: str, is_package: bool) -> set[tuple[str, tuple[str, ...]]]:
    """Every import anywhere in the source as (module, names taken from it), relative imports
    resolved; `import a.b` is ("a.b", ())."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            found.add((base, tuple(alias.name for alias in node.names)))
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def violations(sources: Mapping[str, str], packages: Iterable[str] = ()) -> list[str]:
    """What runs the wrong way: upward or sideways imports, product -> tool, aws_cdk in a pure
    floor, and import circles between product modules. `packages`: module names that are
    packages (their relative imports resolve inside them)."""
    package_modules = set(packages)
    problems = []
    graph: dict[str, set[str]] = {}
    for module, source in sorted(sources.items()):
        here = top(module)
        statements = imports_of(module, source, module in package_modules)
        # `from package import module` depends on the module, not on the package's __init__.
        edges = {
            f"{base}.{name}" if name and f"{base}.{name}" in sources else base for base, taken in statements for name in taken or (None,)
        }
        graph[module] = {name for name in edges if name in sources and name != module}
        names = {base for base, _ in statements}
        if here in APART:
            problems += [
                f"{module} imports {name}: {here} is shipped alone and imports nothing of the project"
                for name in sorted(names)
                if top(name) in FLOOR.keys() | TOOLS | (APART - {here})
            ]
            continue
        if here not in FLOOR:
            continue  # a tool: it may import anything
        reported = set()
        for name in sorted(names):
            target = top(name)
            if target in reported:
                continue
            reported.add(target)
            if target in TOOLS | APART:
                problems.append(f"{module} imports the tool {name}: tools import product code, never the reverse")
            elif target == "aws_cdk" and here in PURE:
                problems.append(f"{module} imports {name}: the floors up to the renderers ({', '.join(sorted(PURE))}) are pure")
            elif target in FLOOR and target != here and FLOOR[target] >= FLOOR[here]:
                way = "up" if FLOOR[target] > FLOOR[here] else "sideways"
                problems.append(
                    f"{module} imports {name}: {way} from floor {FLOOR[here] + 1} ({here}) to floor {FLOOR[target] + 1} ({target})"
                )
    problems += [f"import circle: {' -> '.join(circle)}" for circle in circles(graph)]
    return problems


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _packages(root: Path = PROJECT_ROOT) -> set[str]:
    return {module for module in product_sources(root) if (root / module.replace(".", "/") / "__init__.py").is_file()}


def test_every_import_of_the_product_runs_down_the_floors() -> None:
    assert violations(product_sources(), _packages()) == []


def test_every_product_package_says_in_its_docstring_what_it_is() -> None:
    for package in sorted(FLOOR.keys() - {"app"}):
        docstring = ast.get_docstring(ast.parse((PROJECT_ROOT / package / "__init__.py").read_text()))
        assert docstring and len(docstring) > 40, f"{package}/__init__.py: say what the package is and which floor it stands on"


def test_the_readme_layout_names_every_floor() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 4)]
    for package in sorted(FLOOR.keys() | APART | {tool for tool in TOOLS if (PROJECT_ROOT / tool).is_dir()}):
        name = "app.py" if package == "app" else f"{package}/"
        assert f"`{name}`" in layout, f"README's layout does not describe {name}"


# -- the checker itself: each rule on a house that breaks only it ------------------------------


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        (
            {"config.settings": "from backends import check_backend", "backends": ""},
            "config.settings imports backends: up from floor 1 (config) to floor 5 (backends)",
        ),
        (
            # Under TYPE_CHECKING, inside a function: still an import that says where a type lives.
            {"charts.istio": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from backends.base import Manifest\n"},
            "charts.istio imports backends.base: up from floor 3 (charts) to floor 5 (backends)",
        ),
        (
            {"components.lattice": "def f():\n    from scripts.upstream import ARTIFACTS\n"},
            "components.lattice imports the tool scripts.upstream: tools import product code, never the reverse",
        ),
        (
            {"charts.workloads": "from envoyconfig.render import duration"},
            "charts.workloads imports envoyconfig.render: sideways from floor 3 (charts) to floor 3 (envoyconfig)",
        ),
        (
            {"mesh.names": "from aws_cdk import aws_iam as iam"},
            "mesh.names imports aws_cdk: the floors up to the renderers (charts, config, envoyconfig, mesh, upstream) are pure",
        ),
        (
            {"stacks.a": "from stacks import b", "stacks.b": "from .a import x"},
            "import circle: stacks.a -> stacks.b",
        ),
        (
            {"canary.spec": "from config.topology import Topology"},
            "canary.spec imports config.topology: canary is shipped alone and imports nothing of the project",
        ),
    ],
    ids=["upward", "type-checking-upward", "product-imports-tool", "sideways", "aws-cdk-in-pure-floor", "circle", "apart-imports-product"],
)
def test_the_checker_finds_each_wrong_way(sources: dict[str, str], expected: str) -> None:
    assert violations(sources) == [expected]


def test_the_checker_lets_an_import_run_down_or_stay_home() -> None:
    sources = {
        "stacks.application": "from backends import backend_for\nfrom . import entry\nimport aws_cdk",
        "stacks.entry": "from config.settings import AppConfig",
        "charts.istio": "from mesh.names import Manifest\nimport cdk8s",
        "localmesh.runner": "from backends import configure",
    }
    assert violations(sources, packages={"stacks"}) == []
