"""`taynode demo` with an empty persistent compilation cache (cold) and again with the cache it left (warm).

    python benchmarks/compile_cache.py                     # writes benchmarks/results/compile_cache.md
    python benchmarks/compile_cache.py --runs 3 --out /tmp/cc.md
    python benchmarks/compile_cache.py --demo-args "--iters 2" --env EQX_ON_ERROR=off --no-baseline   # a diagnosis

Each run is a fresh process (`python -m taynode.cli demo --no-progress`) with XDG_CACHE_HOME set to
a new temporary folder, so the cache is the one the command line keeps (taynode.compile_cache) and
nothing from an earlier session is reused; the first run fills it, the later ones load from it.
A last run with TAYNODE_NO_COMPILE_CACHE=1 is the no-cache baseline. Wall-clock seconds on a shared
machine: the ratio warm/cold is what the script reports, measured in one invocation.

JAX never writes a program with host callbacks to the cache, and equinox's runtime errors
(``eqx.error_if``, also inside diffrax with ``throw=True``) are host callbacks; ``--env
EQX_ON_ERROR=off`` (errors unchecked: a diagnosis only, never a setting to run with) shows what the
cache would save if those checks were callback-free.
"""

from __future__ import annotations

import argparse
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


def demo(tmp: Path, name: str, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one demo in a fresh process."""
    cmd = [sys.executable, "-m", "taynode.cli", "demo", "--no-progress", "--out", str(tmp / name), *args]
    e = os.environ | {"XDG_CACHE_HOME": str(tmp / "cache"), "TAYNODE_NO_COMPILE_CACHE": ""} | env
    e.pop("JAX_COMPILATION_CACHE_DIR", None)  # the command line's own folder, not a user's
    t, c = time.perf_counter(), cpu_of_children()
    subprocess.run(cmd, env=e, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t, cpu_of_children() - c


def folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="runs with the cache: the first cold, the rest warm (default 2)")
    ap.add_argument("--demo-args", default="", help='extra arguments of taynode demo, e.g. "--iters 2"')
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="an environment variable of the runs (repeatable)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the last run without the cache")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "compile_cache.md"))
    args = ap.parse_args(argv)
    import jax

    demo_args, env = shlex.split(args.demo_args), dict(kv.split("=", 1) for kv in args.env)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        times = [demo(tmp, f"run{i}", demo_args, env) for i in range(args.runs)]
        n_files, n_bytes = folder_size(tmp / "cache" / "taynode" / "jax")
        off = None if args.no_baseline else demo(tmp, "off", demo_args, env | {"TAYNODE_NO_COMPILE_CACHE": "1"})
    warm = min(times[1:]) if len(times) > 1 else (float("nan"), float("nan"))
    lines = [
        "# `taynode demo`: cold vs warm persistent compilation cache",
        "",
        f"`python benchmarks/compile_cache.py {shlex.join(argv if argv is not None else sys.argv[1:])}` (jax {jax.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, shared machine: wall-clock seconds as measured; "
        f"os.getloadavg() at the end: {os.getloadavg()[0]:.1f}).",
        "",
        "| run | wall-clock s | CPU s |",
        "|---|---|---|",
        *(f"| {'cold (empty cache)' if i == 0 else f'warm {i}'} | {w:.1f} | {c:.1f} |" for i, (w, c) in enumerate(times)),
        *([] if off is None else [f"| no cache (TAYNODE_NO_COMPILE_CACHE=1) | {off[0]:.1f} | {off[1]:.1f} |"]),
        "",
        f"Cold / warm: **{times[0][0] / warm[0]:.2f}x** wall-clock, {times[0][1] / warm[1]:.2f}x CPU time (CPU time is "
        f"the steadier figure on a loaded machine). The cache held {n_files} files, {n_bytes / 1e6:.1f} MB.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
