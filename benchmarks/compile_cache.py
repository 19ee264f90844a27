"""`taynode demo` with an empty persistent compilation cache (cold) and again with the cache it left (warm).

    python benchmarks/compile_cache.py --demo-args "--iters 2" --rounds 3   # writes benchmarks/results/compile_cache.json
    python benchmarks/compile_cache.py --rounds 1 --out benchmarks/results/compile_cache_default.json   # the full demo
    python benchmarks/compile_cache.py --rounds 1 --baseline --out /tmp/cc.json   # also a run with the cache off

Each run is a fresh process (`python -m taynode.cli demo --no-progress`, its own output folder, so
no trained model is reused) with XDG_CACHE_HOME set to a folder of its round: a round is a cold run
into an empty cache, then a warm run that loads what the cold one left (taynode.compile_cache).
Rounds alternate cold and warm, so a change in the machine's load falls on both. Each run's
wall-clock and CPU seconds (of the child process: user + system) go to the JSON file;
benchmarks/tables.py makes the README's table from it. On a shared machine CPU time is the steadier
figure; the ratio within a round is what compares.

``--env K=V`` sets a variable for every run, e.g. ``EQX_ON_ERROR=off`` (a diagnosis only: errors
unchecked).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def demo(out: Path, cache: Path, args: list[str], env: dict[str, str]) -> dict:
    """Wall-clock and CPU seconds of one demo in a fresh process."""
    cmd = [sys.executable, "-m", "taynode.cli", "demo", "--no-progress", "--out", str(out), *args]
    e = os.environ | {"XDG_CACHE_HOME": str(cache), "TAYNODE_NO_COMPILE_CACHE": ""} | env
    e.pop("JAX_COMPILATION_CACHE_DIR", None)  # the command line's own folder, not a user's
    t, c = time.perf_counter(), cpu_of_children()
    subprocess.run(cmd, env=e, check=True, stdout=subprocess.DEVNULL)
    return dict(wall_s=time.perf_counter() - t, cpu_s=cpu_of_children() - c)


def folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def one_round(tmp: Path, i: int, args: list[str], env: dict[str, str]) -> dict:
    cache = tmp / f"cache{i}"
    cold = demo(tmp / f"cold{i}", cache, args, env)
    n_files, n_bytes = folder_size(cache / "taynode" / "jax")
    warm = demo(tmp / f"warm{i}", cache, args, env)
    return dict(cold=cold, warm=warm, cache_files=n_files, cache_bytes=n_bytes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="cold + warm pairs, each with its own empty cache (default 3)")
    ap.add_argument("--demo-args", default="", help='extra arguments of taynode demo, e.g. "--iters 2"')
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="an environment variable of the runs (repeatable)")
    ap.add_argument("--baseline", action="store_true", help="also one run with the cache off (TAYNODE_NO_COMPILE_CACHE=1)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "compile_cache.json"))
    args = ap.parse_args(argv)
    import jax

    demo_args, env = shlex.split(args.demo_args), dict(kv.split("=", 1) for kv in args.env)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rounds = [one_round(tmp, i, demo_args, env) for i in range(args.rounds)]
        off = demo(tmp / "off", tmp / "unused", demo_args, env | {"TAYNODE_NO_COMPILE_CACHE": "1"}) if args.baseline else None
    result = dict(
        command="python benchmarks/compile_cache.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        date=datetime.date.today().isoformat(),
        jax=jax.__version__,
        python=platform.python_version(),
        cpus=os.cpu_count(),
        load_average=[round(load_before, 1), round(os.getloadavg()[0], 1)],
        demo_args=demo_args,
        env=env,
        rounds=rounds,
        no_cache=off,
    )
    text = json.dumps(result, indent=1) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
