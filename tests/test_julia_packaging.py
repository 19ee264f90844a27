"""A non-editable install must not put a broken path into juliapkg's resolution.

juliapkg collects every ``juliapkg.json`` it finds at ``<p>/`` and ``<p>/*/`` for each ``p`` on
``sys.path`` and resolves a package's ``path`` relative to that json file. The old
``"../../julia/TayNodeJulia"`` pointed outside site-packages in a wheel install, which breaks
juliacall for every package in that environment. Here a wheel is built from a copy of the
sources, installed (``--no-deps``) into a fresh venv, and juliapkg's discovery is run there: with
juliapkg itself where it is installed, else with the same rule written out.
"""

import os
import shutil
import subprocess
import sys
import venv
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# juliapkg's discovery (juliapkg.deps.deps_files + the path rule of find_requirements).
DISCOVER = r"""
import json, os, sys
try:
    from juliapkg.deps import find_requirements
    _, pkgs = find_requirements()
    found = {p.name: (p.path, p.uuid) for p in pkgs}
    how = "juliapkg"
except ImportError:
    found, how = {}, "rule"
    for p in sys.path:
        p = p or os.getcwd()
        if not os.path.isdir(p):
            continue
        for fn in [os.path.join(p, "juliapkg.json")] + [os.path.join(p, s, "juliapkg.json") for s in os.listdir(p)]:
            if os.path.isfile(fn):
                for name, kv in json.load(open(fn)).get("packages", {}).items():
                    path = kv.get("path")
                    found[name] = (path and os.path.normpath(os.path.join(os.path.dirname(fn), path)), kv["uuid"])
print(json.dumps({"how": how, "found": found}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE"):
        if os.path.exists(os.path.join(ROOT, name)):
            shutil.copy(os.path.join(ROOT, name), src)
    for folder in ("python", "julia"):  # the Julia package sits at the top; the build copies it into the wheel
        shutil.copytree(os.path.join(ROOT, folder), src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("taynode-*.whl")
    return whl


def test_wheel_ships_the_julia_package_where_juliapkg_json_points(wheel):
    import json
    import posixpath

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry = json.loads(zf.read("taynode/juliapkg.json"))["packages"]["TayNodeJulia"]
        target = posixpath.normpath(posixpath.join("taynode", entry["path"]))
        assert target.startswith("taynode/"), f"juliapkg.json points outside the package: {entry['path']}"
        assert {f"{target}/Project.toml", f"{target}/src/TayNodeJulia.jl"} <= names
        assert f'uuid = "{entry["uuid"]}"' in zf.read(f"{target}/Project.toml").decode()


def test_fresh_venv_install_resolves_to_an_existing_package(wheel, tmp_path):
    import json

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = str(env_dir / "bin" / "python")
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, timeout=300
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run([py, "-c", DISCOVER], check=True, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    found = json.loads(out.stdout.strip().splitlines()[-1])["found"]
    path, uuid = found["TayNodeJulia"]
    assert path.startswith(str(env_dir)), f"resolves outside the venv: {path}"
    with open(os.path.join(path, "Project.toml")) as fh:
        assert f'uuid = "{uuid}"' in fh.read()
    assert os.path.isfile(os.path.join(path, "src", "TayNodeJulia.jl"))


def test_checkout_resolves_to_the_top_level_julia_folder():
    """In the source tree (and an editable install) juliapkg.json points at the top-level julia/,
    and the backend finds the package there by the same rule juliapkg uses."""
    from taynode.backends import julia_backend

    want = os.path.join(ROOT, "julia", "TayNodeJulia")
    assert os.path.samefile(julia_backend.package_dir(), want)
    assert os.path.isfile(os.path.join(want, "src", "TayNodeJulia.jl"))
    assert not os.path.exists(os.path.join(ROOT, "python", "taynode", "julia"))  # one copy, at the top
