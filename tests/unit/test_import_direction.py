"""The package's folders are layers, and imports go one way: down.

    files < method < models < embedding < report < stages < cli

A module may import from its own folder and from any folder to its left, never to its right.
`virnucpro` itself (`__version__`), `errors`, `defaults` and `progress` are leaves: any module may
import them, and they import no other module of ours. `__main__` only calls the CLI, so it counts
as part of `cli`. There are no other exceptions.

Every import counts, also those inside functions and under `TYPE_CHECKING`: an import deferred to a
function still makes the importing module depend on the imported one. Besides the direction, the
graph of imports between modules must have no cycle.

The imports are read with `ast`, nothing is imported, so a broken module cannot hide an import.
`VIRNUCPRO_SOURCE` may name another `python/` folder to check (for example an older checkout).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

PACKAGE = "virnucpro"
LAYERS = ("files", "method", "models", "embedding", "report", "stages", "cli")
LEAVES = frozenset({PACKAGE, f"{PACKAGE}.errors", f"{PACKAGE}.defaults", f"{PACKAGE}.progress"})
LEAF_LAYER = -1


def source_root() -> Path:
    return Path(os.environ.get("VIRNUCPRO_SOURCE", Path(__file__).resolve().parents[2] / "python"))


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its __init__)."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `name` imports anywhere in its text."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports the module; `from module import name`, the module.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` where c is a name: its module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer_of(name: str) -> int | None:
    if name in LEAVES:
        return LEAF_LAYER
    if name == f"{PACKAGE}.__main__":
        return LAYERS.index("cli")
    parts = name.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = package_modules(root)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def direction_problems(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, targets in sorted(graph.items()):
        layer = layer_of(name)
        if layer is None:
            problems.append(f"{name}: in no layer (a module belongs in one of {', '.join(LAYERS)})")
            continue
        for target in sorted(targets):
            target_layer = layer_of(target)
            if layer == LEAF_LAYER and target_layer != LEAF_LAYER:
                problems.append(f"{name} is a leaf but imports {target}")
            elif target_layer is not None and target_layer > layer:
                problems.append(
                    f"{name} ({LAYERS[layer]}) imports {target} ({LAYERS[target_layer]}), a layer above"
                )
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_imports_go_down_the_layers():
    problems = direction_problems(import_graph(source_root()))
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_no_import_cycle():
    found = cycles(import_graph(source_root()))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(component) for component in found)


def test_the_checks_see_a_wrong_import(tmp_path):
    """The checks themselves: an upward import and a cycle in a made-up package are both found."""
    package = tmp_path / PACKAGE
    for folder in ("files", "stages"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "files" / "a.py").write_text("from virnucpro.stages.b import x\n")
    (package / "stages" / "b.py").write_text("def f():\n    from ..files import a\n")
    graph = import_graph(tmp_path)
    assert direction_problems(graph) == [
        "virnucpro.files.a (files) imports virnucpro.stages.b (stages), a layer above"
    ]
    assert cycles(graph) == [["virnucpro.files.a", "virnucpro.stages.b"]]
