"""Every public module, function and class of taynode has a docstring (the API reference is built from them).

Public: every module of the package whose dotted name has no part starting with ``_``, and in each
the names of its ``__all__`` (or, without one, the functions and classes it defines whose names do
not start with ``_``). ``UNDOCUMENTED`` lists what lacked a docstring when this test was written;
it may only shrink: a new public object without a docstring fails, and so does an entry that has
gained one (remove it from the list).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import taynode

UNDOCUMENTED = {
    "taynode.array_problems.lotka_volterra",
    "taynode.backends.get_backend",
    "taynode.backends.jax_backend.JaxBackend",
    "taynode.backends.julia_backend.JuliaBackend",
    "taynode.backends.julia_backend.julia_dynamics",
    "taynode.cli.main",
    "taynode.compare.csv_text",
    "taynode.compare.harness.load_problems",
    "taynode.compare.load_problems",
    "taynode.compare.lotka_volterra",
    "taynode.compare.plot",
    "taynode.compare.problems.standard_problems",
    "taynode.compare.report.csv_text",
    "taynode.compare.report.plot",
    "taynode.compare.report.write_text",
    "taynode.compare.run_julia",
    "taynode.compare.run_scipy",
    "taynode.compare.run_taynode",
    "taynode.compare.run_torchdiffeq",
    "taynode.compare.runners.check_implementation",
    "taynode.compare.runners.run_julia",
    "taynode.compare.runners.run_scipy",
    "taynode.compare.runners.run_taynode",
    "taynode.compare.runners.run_torchdiffeq",
    "taynode.compare.standard_problems",
    "taynode.models.mlp.activation",
    "taynode.portable.problem",
    "taynode.portable.validate",
    "taynode.problems.get",
    "taynode.problems.lotka_volterra",
    "taynode.problems.quadratic",
    "taynode.problems.time_linear",
    "taynode.problems.van_der_pol",
    "taynode.studies.ffjord.markdown_table",
    "taynode.studies.latent.load_data",
    "taynode.studies.latent.markdown_table",
    "taynode.studies.latent.plot",
    "taynode.studies.order.csv_text",
    "taynode.studies.order.get_solver",
    "taynode.studies.order.markdown_table",
    "taynode.studies.order.plot",
    "taynode.studies.toy.evaluate",
    "taynode.studies.toy.make_model",
    "taynode.studies.toy.plot",
    "taynode.studies.toy.target",
    "taynode.taylor.incremental.incremental_derivatives",
    "taynode.taylor.jet.jet_derivatives",
    "taynode.taylor.nested.nested_derivatives",
}


def public_modules() -> list[str]:
    names = ["taynode"] + [m.name for m in pkgutil.walk_packages(taynode.__path__, "taynode.")]
    return [n for n in names if not any(p.startswith("_") for p in n.split("."))]


def public_objects(module) -> dict[str, object]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, o in vars(module).items()
            if not n.startswith("_") and (inspect.isfunction(o) or inspect.isclass(o)) and o.__module__ == module.__name__
        ]
    return {f"{module.__name__}.{n}": getattr(module, n) for n in names}


def undocumented(modules) -> set[str]:
    missing = set()
    for module in modules:
        if not inspect.getdoc(module):
            missing.add(module.__name__)
        for full, obj in public_objects(module).items():
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
                missing.add(full)
    return missing


def test_every_public_object_has_a_docstring():
    # an import error is a failure: the reference could not document that module
    missing = undocumented(importlib.import_module(n) for n in public_modules())
    new = sorted(missing - UNDOCUMENTED)
    assert not new, f"public objects without a docstring (write one): {new}"
    fixed = sorted(UNDOCUMENTED - missing)
    assert not fixed, f"these have a docstring now or are gone: remove them from UNDOCUMENTED: {fixed}"


def test_the_walk_finds_the_package():
    """The check above is only as good as its walk: it must see the modules the reference documents."""
    mods = public_modules()
    assert {"taynode", "taynode.solve", "taynode.taylor", "taynode.train.loop", "taynode.studies.common"} <= set(mods)
    assert not any("._" in m for m in mods)
    assert "taynode.solve" in public_objects(taynode)


def test_the_check_finds_a_missing_docstring():
    module = types.ModuleType("fake", "A module with a docstring.")

    def documented():
        """Has one."""

    def bare():
        pass

    class Bare:
        pass

    for obj in (documented, bare, Bare):
        obj.__module__ = "fake"
        setattr(module, obj.__name__, obj)
    module._private = bare
    assert undocumented([module]) == {"fake.bare", "fake.Bare"}
    module.__all__ = ["documented"]  # __all__ decides what is public
    assert undocumented([module]) == set()
    assert undocumented([types.ModuleType("empty")]) == {"empty"}
