"""Every public module, function and class of taynode has a docstring (the API reference is built from them).

Public: every module of the package whose dotted name has no part starting with ``_``, and in each
the names of its ``__all__`` (or, without one, the functions and classes it defines whose names do
not start with ``_``). ``UNDOCUMENTED`` is empty: a public object without a docstring fails (write one rather than
listing it here), and so does a listed entry that has gained one or is gone.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import taynode

UNDOCUMENTED: set[str] = set()  # everything public has a docstring (issue #28); keep it empty


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
