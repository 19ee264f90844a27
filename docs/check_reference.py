"""After ``mkdocs build``: every public module, function and class of taynode has an entry in the
generated API reference (an HTML anchor with its dotted name), so nothing public is left out.

Public means what ``tests/test_docstrings.py`` checks for docstrings: modules with no ``_`` part,
and each module's ``__all__`` (or its own public functions and classes)::

    mkdocs build --strict --site-dir SITE && python docs/check_reference.py SITE
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import sys

import taynode


def public() -> list[str]:
    out = []
    mods = ["taynode"] + [m.name for m in pkgutil.walk_packages(taynode.__path__, "taynode.")]
    for name in mods:
        if any(p.startswith("_") for p in name.split(".")):
            continue
        module = importlib.import_module(name)
        out.append(name)
        names = getattr(module, "__all__", None)
        if names is None:
            names = [
                n
                for n, o in vars(module).items()
                if not n.startswith("_") and (inspect.isfunction(o) or inspect.isclass(o)) and o.__module__ == name
            ]
        out += [f"{name}.{n}" for n in names if inspect.isfunction(getattr(module, n)) or inspect.isclass(getattr(module, n))]
    return out


def anchors(site: str) -> set[str]:
    found = set()
    for folder, _, files in os.walk(os.path.join(site, "reference")):
        for f in files:
            if f.endswith(".html"):
                with open(os.path.join(folder, f), encoding="utf-8") as fh:
                    found |= set(re.findall(r'id="(taynode[\w.]*)"', fh.read()))
    return found


def main(site: str) -> int:
    names = set(public())
    missing = sorted(names - anchors(site))
    for m in missing:
        print(f"not in the API reference: {m}")
    print(f"{len(names) - len(missing)} of {len(names)} public modules, functions and classes in the API reference")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "site"))
