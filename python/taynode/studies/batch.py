"""Many training runs of one study, resumable: run specs, run folders, one process per run.

A run spec is ``reg:lam:seed`` or ``reg:lam:seed:quadrature``, quadrature ``integrated`` (the
default), ``sampled`` (the regularizer at one random time per solve) or ``sampled<M>`` (at M
stratified times). Its folder is ``<reg>-lam<λ>-seed<s>[-sampled<M>]``. :func:`run_all` runs
every unfinished spec (no ``results.json`` in its folder) in its own process, side by side or one
after another, and can stop them all at a deadline: the training loop checkpoints atomically, so
a killed run continues from its last checkpoint the next time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple


class Spec(NamedTuple):
    """One run of a batch: regularizer set, λ, seed and quadrature (``integrated``, ``sampled``, ``sampled<M>``)."""

    reg: str
    lam: float
    seed: int
    quadrature: str = "integrated"

    @property
    def name(self) -> str:
        """The run's folder name, ``<reg>-lam<λ>-seed<s>[-sampled<M>]``."""
        return f"{self.reg}-lam{self.lam:g}-seed{self.seed}" + ("" if self.quadrature == "integrated" else f"-{self.quadrature}")

    def quadrature_kwargs(self) -> dict:
        """``sampled4`` → ``quadrature="sampled", samples=4``."""
        if self.quadrature.startswith("sampled"):
            return dict(quadrature="sampled", samples=int(self.quadrature[7:] or 1))
        return dict(quadrature=self.quadrature)


_SPEC = re.compile(r"([A-Za-z0-9+_]+):([-+.0-9eE]+):(\d+)(?::(integrated|sampled\d*))?")
_FOLDER = re.compile(r"(.+?)-lam([-+.0-9eE]+)-seed(\d+)(?:-(sampled\d*))?")


def parse_spec(text: str) -> Spec:
    """``reg:lam:seed[:quadrature]`` → :class:`Spec`."""
    m = _SPEC.fullmatch(text)
    if m is None:
        raise ValueError(f"run spec {text!r}: expected reg:lam:seed or reg:lam:seed:quadrature (e.g. r3:0.1:0:sampled4)")
    return Spec(m.group(1), float(m.group(2)), int(m.group(3)), m.group(4) or "integrated")


def parse_folder(name: str) -> Spec | None:
    """A run folder's name back to its spec (None if it is not one)."""
    m = _FOLDER.fullmatch(name)
    return None if m is None else Spec(m.group(1), float(m.group(2)), int(m.group(3)), m.group(4) or "integrated")


def run_all(
    target: Callable,
    specs: list[Spec],
    out: str,
    *,
    args: tuple = (),
    time_limit: float | None = None,
    sequential: bool = False,
    in_process: bool = False,
) -> list[Spec]:
    """Run ``target(spec, run_dir, *args)`` for every unfinished spec, each in a fresh process whose
    output goes to ``out/<name>.out``; returns the specs whose process failed.

    ``sequential``: one at a time, so each has the machine to itself and training times compare.
    ``time_limit``: seconds after which every run still going is killed (it resumes next time).
    ``in_process``: call ``target`` here, one run after another (for a debugger; exceptions
    propagate, and there is no deadline)."""
    if in_process and time_limit is not None:
        raise ValueError("a time limit needs one process per run: drop in_process or time_limit")
    os.makedirs(out, exist_ok=True)
    todo = []
    for spec in specs:
        if os.path.exists(os.path.join(out, spec.name, "results.json")):
            print(f"{spec.name}: finished", flush=True)
        else:
            todo.append(spec)
    if in_process:
        for s in todo:
            target(s, os.path.join(out, s.name), *args)
        return []
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_redirected, args=(target, s, os.path.join(out, s.name), os.path.join(out, f"{s.name}.out"), args))
        for s in todo
    ]
    deadline = None if time_limit is None else time.monotonic() + time_limit
    for group in [[p] for p in procs] if sequential else [procs]:
        for p in group:
            p.start()
        while any(p.is_alive() for p in group):
            if deadline is not None and time.monotonic() > deadline:
                for p in group:
                    if p.is_alive():
                        p.kill()
                break
            time.sleep(1)
        for p in group:
            p.join()
        if deadline is not None and time.monotonic() > deadline:
            print(f"time limit of {time_limit:g} s reached; runs stopped, continue with the same command", flush=True)
            break
    failed = [s for s, p in zip(todo, procs) if p.exitcode not in (0, -9, None)]
    for s in failed:
        print(f"{s.name}: failed (see {os.path.join(out, s.name + '.out')})", flush=True)
    return failed


def _redirected(target, spec, run_dir, log, args):
    import sys

    sys.stdout = sys.stderr = open(log, "a", buffering=1)
    target(spec, run_dir, *args)


def collect(out: str) -> tuple[dict, list]:
    """The finished runs in ``out`` grouped by (reg, λ, quadrature): ``{key: [dict(seed, results,
    epochs, folder), …]}`` with ``results`` the run's ``results.json`` and ``epochs`` its per-epoch log
    records; and the unfinished runs as ``[dict(run, epoch), …]`` (the epoch they reached)."""
    import glob
    import json

    from ..train import read_log

    groups, unfinished = {}, []
    for d in sorted(glob.glob(os.path.join(out, "*-lam*-seed*"))):
        spec = parse_folder(os.path.basename(d))
        if spec is None or not os.path.isdir(d):
            continue
        epochs = read_log(d, "epoch")
        path = os.path.join(d, "results.json")
        if not os.path.exists(path):
            unfinished.append(dict(run=spec.name, epoch=epochs[-1]["epoch"] if epochs else 0))
            continue
        with open(path) as fh:
            results = json.load(fh)
        groups.setdefault((spec.reg, spec.lam, spec.quadrature), []).append(
            dict(seed=spec.seed, results=results, epochs=epochs, folder=d)
        )
    return groups, unfinished


def unfinished_note(unfinished: list) -> str:
    """The line a table gets for runs :func:`collect` found unfinished ("" if none)."""
    if not unfinished:
        return ""
    return "\nUnfinished (not in the table): " + ", ".join(f"{u['run']} at epoch {u['epoch']:g}" for u in unfinished) + "\n"


def mean_range(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """``mean [min–max]`` over seeds (just the value for one seed)."""
    import numpy as np

    v = np.asarray(values, float)
    s = fmt.format(v.mean())
    return s if len(v) == 1 else f"{s} [{fmt.format(v.min())}–{fmt.format(v.max())}]"
