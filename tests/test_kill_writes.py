"""A SIGKILL at any moment of a write (checkpoint, log, results) loses at most the step in
progress (issue #26): writers forked by tests/kill_writer.py rewrite each file in a loop and are
killed at random moments; each time, every file must be a complete version (the old one or the
new one, never torn), and the loop's resume must work from what is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from kill_writer import content
from taynode.train import load_checkpoint, read_log, read_meta
from taynode.train.checkpoint import remove_stale_temporaries

HERE = os.path.dirname(os.path.abspath(__file__))


def _run_killer(root, rounds, seed):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]), JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "kill_writer.py"), str(root), str(rounds), str(seed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-2000:]


def _check_checkpoints(folder):
    step = read_meta(folder / "checkpoint.npz")["step"]
    want = content(step)
    model, opt, meta = load_checkpoint(folder / "checkpoint.npz", want["model"], want["opt"])
    for k in want["model"]:
        np.testing.assert_array_equal(np.asarray(model[k]), want["model"][k])
    np.testing.assert_array_equal(np.asarray(opt["m"]), want["opt"]["m"])
    assert meta["extra"]["i"] == step
    if os.path.exists(folder / "checkpoint.prev.npz"):
        assert read_meta(folder / "checkpoint.prev.npz")["step"] in (step - 1, step)  # the one before (or the same, mid-rotation)
    return step


def _check_log(folder):
    steps = [r["step"] for r in read_log(folder)]  # a torn last line (the step in progress) is skipped
    assert steps == list(range(1, len(steps) + 1)), steps[-10:]
    for r in read_log(folder)[-3:]:
        assert r["values"] == content(r["step"])["results"]["values"][:50]
    with open(folder / "log.jsonl") as fh:
        lines = fh.read().split("\n")
    assert all(json.loads(line) for line in lines[:-2] if line)  # only the last line may be torn
    return steps[-1] if steps else 0


def _check_results(folder):
    with open(folder / "results.json") as fh:
        got = json.load(fh)  # complete JSON: never torn
    assert got == content(got["i"])["results"]
    return got["i"]


CHECKS = {"checkpoint": _check_checkpoints, "log": _check_log, "results": _check_results}


def test_sigkill_mid_write_leaves_a_complete_version(tmp_path):
    rounds = 4
    _run_killer(tmp_path, rounds, seed=26)
    for kind, name in (("checkpoint", "checkpoint.npz"), ("log", "log.jsonl"), ("results", "results.json")):
        for r in range(rounds):
            folder = tmp_path / kind / str(r)
            assert CHECKS[kind](folder) >= 1
            remove_stale_temporaries(folder / name)  # what the next run's start does
            assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
