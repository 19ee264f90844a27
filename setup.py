"""The build step pyproject.toml cannot say: the Julia package travels inside the wheel.

``julia/TayNodeJulia`` lives at the top of the repository (the design card's layout). In the
source tree ``python/taynode/juliapkg.json`` points at it as ``../../julia/TayNodeJulia``, which is
right for a checkout and an editable install; a wheel gets a copy of the package as
``taynode/julia/`` and a ``juliapkg.json`` pointing there, so juliapkg never resolves a path
outside site-packages (tests/test_julia_packaging.py).
"""

import json
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
JULIA = os.path.join(ROOT, "julia")
SHIPPED = ("README.md", "TayNodeJulia/Project.toml", "TayNodeJulia/src/*.jl", "TayNodeJulia/test/*.jl")


class BuildPyWithJulia(build_py):
    """``build_py``, then the Julia package copied into the built ``taynode`` and its
    ``juliapkg.json`` pointed at the copy."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install uses the source tree, where juliapkg.json's path is right
        import glob

        dest = os.path.join(self.build_lib, "taynode", "julia")
        files = sorted({f for pattern in SHIPPED for f in glob.glob(os.path.join(JULIA, pattern))})
        if not any(f.endswith("TayNodeJulia.jl") for f in files):
            raise FileNotFoundError(f"the Julia package is missing: no {JULIA}/TayNodeJulia/src/TayNodeJulia.jl")
        for f in files:
            target = os.path.join(dest, os.path.relpath(f, JULIA))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(f, target)
        path = os.path.join(self.build_lib, "taynode", "juliapkg.json")
        with open(path) as fh:
            spec = json.load(fh)
        spec["packages"]["TayNodeJulia"]["path"] = "julia/TayNodeJulia"
        with open(path, "w") as fh:
            json.dump(spec, fh, indent=2)
            fh.write("\n")


setup(cmdclass={"build_py": BuildPyWithJulia})
