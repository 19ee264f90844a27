"""The code's shape (issue #23): the import graph of python/taynode has no cycle, imports inside
functions included."""

from __future__ import annotations

import ast
import pathlib

import taynode

ROOT = pathlib.Path(taynode.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` inside ``module``."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of taynode it imports}``, every import statement anywhere in the file
    (functions and conditionals included); ``from pkg import sub`` counts as importing ``pkg.sub``
    when ``sub`` is a module."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(mod, is_package, node.level, node.module) if node.level else (node.module or "")
                subs = [f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in mods]
                targets = subs if subs and len(subs) == len(node.names) else [src, *subs]
            for t in targets:
                while t and t not in mods and "." in t:  # `import taynode.ode.rk` → the module itself
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_graph_sees_imports_inside_functions_and_relative_imports():
    g = import_graph()
    assert "taynode.ode.registry" in g["taynode.ode.rk"]  # `from .registry import SolverSpec`
    assert "taynode.taylor" in g["taynode.regularizers.integrands"]  # `from ..taylor import ...`
    # a synthetic cycle through a function-local import is found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_local_imports_are_counted(tmp_path):
    src = "def f():\n    from .registry import get\n    return get\n"
    tree = ast.parse(src)
    found = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert _resolve("taynode.ode.rk", False, found[0].level, found[0].module) == "taynode.ode.registry"


def test_no_import_cycle_in_taynode():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_solving_layer_is_a_stack():
    """Each module of taynode.ode imports only those below it, and the regularizers none of it."""
    order = [
        "failures",
        "problem",
        "steps",
        "tableaux",
        "registry",
        "term",
        "heuristics",
        "rk",
        "taylor_method",
        "checks",
        "solve",
    ]
    g = import_graph()
    for i, name in enumerate(order):
        deps = {d.rsplit(".", 1)[1] for d in g[f"taynode.ode.{name}"] if d.startswith("taynode.ode.")}
        assert deps <= set(order[:i]), (name, deps - set(order[:i]))
    for mod, deps in g.items():
        if mod in ("taynode.regularizers", "taynode.taylor") or mod.startswith(("taynode.regularizers.", "taynode.taylor.")):
            assert not any(d.startswith("taynode.ode") for d in deps), (mod, deps)
