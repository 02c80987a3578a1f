"""The house's structure as docs/architecture.md states it: no import cycle between modules,
none between packages either, but for the one composition root (the `glucover` command and
`glucover up`), which stands above the stages and starts them."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actuary", "bench", "care", "cli", "dashboard", "devices", "glucover", "ingest",
            "kernel", "nightscout", "policies", "pricing", "privacy", "records")
COMPOSITION_ROOT = "cli"  # the glucover command and glucover up


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each module of ours and the modules of ours it imports (at any depth of its code)."""
    modules = {_module(p): p for pkg in PACKAGES if (ROOT / pkg).is_dir()
               for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_round_a_cycle() -> None:
    assert cycles(imports()) == []


def test_packages_depend_one_way_below_the_composition_root() -> None:
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports().items():
        if module.split(".")[0] == COMPOSITION_ROOT:
            continue
        for target in targets:
            a, b = module.split(".")[0], target.split(".")[0]
            if a != b:
                packages[a].add(b)
    assert cycles(dict(packages)) == []
    assert not packages["kernel"], "the kernel imports nothing of ours"
    assert not [p for p, targets in packages.items() if COMPOSITION_ROOT in targets], \
        "nothing below the composition root imports it"


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_image_and_the_package_hold_every_package() -> None:
    """Every top-level package is installed by pyproject.toml and copied into the image (the
    Dockerfile once left care/ and records/ out, which pyproject.toml names: `pip install .`
    in the image could not find them)."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = {p.split(".")[0] for p in project["tool"]["setuptools"]["packages"]}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    ours = {p for p in PACKAGES if (ROOT / p / "__init__.py").exists()}
    assert installed == ours
    assert copied == ours
