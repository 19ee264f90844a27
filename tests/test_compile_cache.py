"""The command line's persistent compilation cache (taynode.compile_cache): where it goes, that a
second process loads what the first compiled, and the opt-out. Each case is a fresh process, since
the cache is a process-wide JAX setting that must be made before anything compiles."""

import os
import subprocess
import sys

from taynode.compile_cache import OFF, default_dir

# A stand-in for `taynode demo` (the real one takes minutes): what main() set up, then one compile.
FAKE_DEMO = """
import dataclasses, sys, jax, jax.numpy as jnp
import taynode.cli as cli
from taynode.studies import commands

def fake(ns, given):
    print("DIR", jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    jax.config.update("jax_log_compiles", True)  # logs cache hits as warnings, on stderr
    print("VALUE", round(float(jax.jit(lambda x: jnp.sin(x) ** 2 + jnp.cos(x) ** 2)(0.3)), 12))
    return 0

# the demo's entry in the command registry runs the stand-in
commands.COMMANDS[:] = [dataclasses.replace(c, run=fake) if c.path == ("demo",) else c for c in commands.COMMANDS]
sys.exit(cli.main(["demo", "--out", sys.argv[1]]))
"""


def fake_demo(tmp_path, **env):
    e = {k: v for k, v in os.environ.items() if k not in (OFF, "JAX_COMPILATION_CACHE_DIR")}
    e |= {"XDG_CACHE_HOME": str(tmp_path / "xdg")} | env
    out = subprocess.run(
        [sys.executable, "-c", FAKE_DEMO, str(tmp_path / "out")], capture_output=True, text=True, env=e, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_second_run_loads_what_the_first_compiled(tmp_path):
    folder = tmp_path / "xdg" / "taynode" / "jax"
    first = fake_demo(tmp_path)
    assert f"DIR {folder} 0.0" in first.stdout and "VALUE 1.0" in first.stdout
    written = files(folder)
    assert written, "the first run wrote nothing to the cache"
    assert "Persistent compilation cache hit" not in first.stderr
    second = fake_demo(tmp_path)
    assert "VALUE 1.0" in second.stdout
    assert "Persistent compilation cache hit" in second.stderr, second.stderr[-2000:]
    assert files(folder) == written  # loaded, not compiled and written again


def test_the_opt_out_and_a_users_own_folder(tmp_path):
    off = fake_demo(tmp_path, **{OFF: "1"})
    assert "DIR None" in off.stdout and "VALUE 1.0" in off.stdout and not files(tmp_path / "xdg")
    own = tmp_path / "own"  # a folder the user gave JAX is kept; OFF="0" means on, as unset does
    mine = fake_demo(tmp_path, JAX_COMPILATION_CACHE_DIR=str(own), **{OFF: "0"})
    assert f"DIR {own} 0.0" in mine.stdout and files(own) and not files(tmp_path / "xdg")


def test_the_default_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_dir() == tmp_path / "taynode" / "jax"
    for unset in ("", None):
        if unset is None:
            monkeypatch.delenv("XDG_CACHE_HOME")
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", unset)
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert default_dir() == tmp_path / "home" / ".cache" / "taynode" / "jax"


def test_an_unwritable_folder_is_a_warning_not_a_failure(tmp_path):
    (tmp_path / "xdg").write_text("a file where the cache folder would go")
    out = fake_demo(tmp_path)
    assert "DIR None" in out.stdout and "no compilation cache" in out.stderr and "VALUE 1.0" in out.stdout
