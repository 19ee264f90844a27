"""Static consistency of the Julia package, checked without Julia.

TayNodeJulia.jl is parsed with tree-sitter-julia; Project.toml and juliapkg.json are read as data.
Each test pins one thing the first real run would otherwise discover: the tables agree with
Python's, every function and keyword Python calls exists, the UUIDs are the registered ones,
compat bounds admit only versions with the API used, and the defects found by reading the code
against its dependencies' sources (unchecked retcodes, Int factorials, integer powers on
Taylor1) do not come back.
"""

import ast
import json
import os
import re

import pytest
import tomllib

from taynode import portable, problems
from taynode.backends import julia_backend
from taynode.models.mlp import ACTIVATIONS as JAX_ACTIVATIONS

ts = pytest.importorskip("tree_sitter", reason="tree-sitter is in the test extra: pip install -e '.[test]'")
tsj = pytest.importorskip("tree_sitter_julia", reason="tree-sitter-julia is in the test extra: pip install -e '.[test]'")

PKG = julia_backend.package_dir()  # the top-level julia/TayNodeJulia in a checkout
SRC = os.path.join(PKG, "src", "TayNodeJulia.jl")
RUNTESTS = os.path.join(PKG, "test", "runtests.jl")

# Registered UUIDs (General registry / the packages' own Project.toml; stdlibs: Julia's).
REGISTERED = {
    "OrdinaryDiffEq": "1dea7af3-3e70-54e6-95c3-0bf5283fa5ed",
    "TaylorSeries": "6aa5eb33-94cf-58f4-a9d0-e4b2c4fc25ea",
    "SciMLBase": "0bca4576-84f4-4d90-8ffe-ffa030f20462",
    "PrecompileTools": "aea7be01-6a6a-4083-8856-8a6e6704d82a",
    "Test": "8dfed614-e22c-5e08-85e1-65c5234f0b40",
    "TOML": "fa267f1f-6049-4f14-aa54-33bafae1ed76",
}


def _parse(path):
    parser = ts.Parser(ts.Language(tsj.language()))
    with open(path, "rb") as fh:
        return parser.parse(fh.read()).root_node


def _walk(node):
    yield node
    for c in node.children:
        yield from _walk(c)


def _text(node) -> str:
    return node.text.decode()


@pytest.fixture(scope="module")
def tree():
    return _parse(SRC)


@pytest.fixture(scope="module")
def project():
    with open(os.path.join(PKG, "Project.toml"), "rb") as fh:
        return tomllib.load(fh)


def _module_items(tree):
    (mod,) = [c for c in tree.children if c.type == "module_definition"]
    return mod.children


def _definitions(tree) -> dict:
    """name → list of signature nodes (call_expression) for every top-level method and struct."""
    defs = {}
    for item in _module_items(tree):
        call = None
        if item.type == "function_definition":
            call = item.child_by_field_name("signature") or next(c for c in item.children if c.type == "signature")
            call = call.children[0]
        elif item.type == "assignment" and item.children[0].type == "call_expression":
            call = item.children[0]
        elif item.type == "struct_definition":
            head = next(c for c in item.children if c.type == "type_head")
            name = next(n for n in _walk(head) if n.type == "identifier")
            defs.setdefault(_text(name), []).append(None)
            continue
        if call is not None and call.children[0].type == "identifier":
            defs.setdefault(_text(call.children[0]), []).append(call)
    return defs


def _table(tree, name) -> set:
    for item in _module_items(tree):
        if item.type == "const_statement" and _text(item).startswith(f"const {name} ="):
            return set(re.findall(r'"([^"]+)"\s*=>', _text(item)))
    raise AssertionError(f"no const {name} in TayNodeJulia.jl")


def _body(tree, name) -> str:
    return "\n".join(
        _text(call.parent if call.parent.type != "signature" else call.parent.parent)
        for call in _definitions(tree)[name]
        if call is not None
    )


def test_sources_parse_without_error_nodes(tree):
    assert not tree.has_error
    assert not _parse(RUNTESTS).has_error


def test_tables_agree_with_python(tree):
    assert _table(tree, "ACTIVATIONS") == set(portable._NP_ACTIVATIONS) == set(JAX_ACTIVATIONS)
    assert _table(tree, "PROBLEMS") == set(problems.PROBLEMS)
    assert _table(tree, "ALGORITHMS") == set(julia_backend.ALGORITHMS)
    from taynode.compare import METHODS

    assert set(METHODS["julia"]) <= set(julia_backend.ALGORITHMS)


def _python_calls():
    """Names Python calls on the Julia module (``jl.X``/``self.jl.X``) and the keywords it passes."""
    with open(julia_backend.__file__) as fh:
        mod = ast.parse(fh.read())

    def on_jl(node):
        v = node.value
        return (isinstance(v, ast.Name) and v.id == "jl") or (isinstance(v, ast.Attribute) and v.attr == "jl")

    names = {n.attr for n in ast.walk(mod) if isinstance(n, ast.Attribute) and on_jl(n)}
    names -= {"seval", "TayNodeJulia"}  # on juliacall's bridge module, not on TayNodeJulia
    keywords = {}
    for call in (n for n in ast.walk(mod) if isinstance(n, ast.Call)):
        target = call.func if isinstance(call.func, ast.Attribute) and on_jl(call.func) else None
        if isinstance(call.func, ast.Name) and call.func.id == "_call" and call.args:
            target = call.args[0] if isinstance(call.args[0], ast.Attribute) and on_jl(call.args[0]) else None
        if target is not None:
            keywords.setdefault(target.attr, set()).update(k.arg for k in call.keywords)
    return names, {k: v for k, v in keywords.items() if k in names}


def test_every_function_and_keyword_python_calls_is_defined(tree):
    names, keywords = _python_calls()
    assert {"MLP", "problem", "taylor_derivatives", "solve_ode", "rk_integral"} <= names
    defs = _definitions(tree)
    for name in names:
        assert name in defs, f"Python calls TayNodeJulia.{name}, which is not defined"
    for name, kws in keywords.items():
        accepted = set()
        for call in (c for c in defs[name] if c is not None):  # None: a struct's own constructor
            args = next(c for c in call.children if c.type == "argument_list")
            accepted |= {_text(a.children[0]) for a in args.children if a.type == "named_argument"}
        assert kws <= accepted, f"{name} is called with keywords {kws - accepted} it does not accept"


def test_dependencies_are_declared_and_uuids_are_the_registered_ones(tree, project):
    used = set()
    for item in _module_items(tree):
        if item.type == "using_statement":
            used |= {m.group(1) for m in re.finditer(r"(?:using|,)\s*(\w+)", _text(item).split(":")[0])}
    assert used == set(project["deps"]), "every package the module uses is a dependency, and vice versa"
    for name, uuid in {**project["deps"], **project.get("extras", {})}.items():
        assert REGISTERED.get(name) == uuid, f"{name}: {uuid} is not its registered UUID"
    with open(os.path.join(os.path.dirname(julia_backend.__file__), os.pardir, "juliapkg.json")) as fh:
        entry = json.load(fh)["packages"]["TayNodeJulia"]
    assert entry["uuid"] == project["uuid"]


def _lower_bounds(spec: str):
    """Lower bounds of a Julia compat spec ("6.59", "0.18 - 0.22", "1.94, 2")."""
    return [tuple(int(x) for x in part.split("-")[0].strip().lstrip("^~=").split(".")) for part in spec.split(",")]


def test_compat_admits_only_versions_with_the_api_used(project):
    compat = project["compat"]
    assert set(project["deps"]) <= set(compat), "every dependency needs a compat bound"
    # sol.stats (not sol.destats) and SciMLBase 2's successful_retcode: OrdinaryDiffEq >= 6.59, < 7.
    assert all((6, 59) <= b < (7,) for b in _lower_bounds(compat["OrdinaryDiffEq"])), compat["OrdinaryDiffEq"]
    assert all(b[0] == 2 for b in _lower_bounds(compat["SciMLBase"]))
    assert compat["julia"] == "1.10"


def test_every_solve_checks_its_retcode(tree):
    defs = _definitions(tree)
    solvers = [n for n in ("solve_ode", "rk_integral") if "solve(" in _body(tree, n)]
    assert solvers == ["solve_ode", "rk_integral"]
    for name in solvers:
        assert "check_retcode(sol" in _body(tree, name), f"{name} returns OrdinaryDiffEq's solution unchecked"
    assert "successful_retcode(sol)" in _body(tree, "check_retcode")
    assert "throw(SolveFailed" in _body(tree, "check_retcode")
    assert "SolveFailed" in defs
    assert "destats" not in _text(tree)


def test_no_int_factorial_and_order_zero_rejected(tree):
    calls = [c for c in _walk(tree) if c.type == "call_expression" and _text(c.children[0]) == "factorial"]
    assert not calls, "factorial(k::Int) overflows for k > 20"
    for name in ("taylor_derivatives", "taylor_coefficients", "rk_integral"):
        assert "check_order(order)" in _body(tree, name)
    assert "order >= 1" in _body(tree, "check_order") and "ArgumentError" in _body(tree, "check_order")


def test_no_integer_powers_on_possible_taylor_values(tree):
    # TaylorSeries evaluates x^n on a Taylor1 by its real-power recurrence, which divides by the
    # leading coefficient: products are exact and cheaper.
    powers = [_text(n.parent) for n in _walk(tree) if n.type == "operator" and _text(n) in ("^", ".^")]
    assert not powers, powers


def test_softplus_exponentiates_only_non_positive_arguments(tree):
    (body,) = [_text(item) for item in _module_items(tree) if _text(item).startswith("softplus(x) =")]
    cond, branches = body.split("?", 1)
    pos, neg = branches.split(":", 1)
    assert "constant_term(x) > 0" in cond
    assert "exp(-x)" in pos and "exp(x)" not in pos  # x > 0: e^{-x} <= 1
    assert "exp(x)" in neg  # x <= 0: e^{x} <= 1
    assert "log(" not in body  # log1p keeps the relative accuracy of tiny values


def test_recurrence_truncates_and_workload_precompiles(tree):
    body = _body(tree, "taylor_coefficients")
    assert re.search(r"Taylor1\(c\[j\]\[1:k\+1\], k\)", body), "step k evaluates f on order-k series"
    workload = next(_text(n) for n in _walk(tree) if n.type == "macrocall_expression" and _text(n).startswith("@setup_workload"))
    for fn in ("MLP(", "taylor_derivatives(", "solve_ode(", "rk_integral("):
        assert fn in workload
