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
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if os.path.exists(os.path.join(ROOT, name)):
            shutil.copy(os.path.join(ROOT, name), src)
    shutil.copytree(os.path.join(ROOT, "python"), src / "python", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
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
