"""A SIGKILL at any moment of a write (checkpoint, log, results) loses at most the step in
progress (issue #26): writers forked by tests/kill_writer.py rewrite each file in a loop and are
killed at random moments; each time, every file must be a complete version (the old one or the
new one, never torn), and the loop's resume must work from what is left."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kill_writer import content
from taynode.train import load_checkpoint, read_log, read_meta
from taynode.train.checkpoint import remove_stale_temporaries
from taynode.train.resume import clean

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
    mid_write = 0  # kills that left a temporary file: the kill landed inside a write
    for kind in CHECKS:
        for r in range(rounds):
            folder = tmp_path / kind / str(r)
            assert CHECKS[kind](folder) >= 1
            mid_write += any(n.endswith(".tmp") for n in os.listdir(folder))
            clean(str(folder))  # what the next run's start does
            remove_stale_temporaries(folder / "results.json")
            assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
    print(f"{mid_write} of {3 * rounds} kills landed inside a write")


@pytest.mark.slow
def test_train_killed_at_random_moments_resumes_bit_identically(tmp_path):
    """The real loop, checkpointing every step, SIGKILLed at random moments (mostly inside a
    checkpoint or log write: each step is mostly writing); every resume continues to the same
    parameters and log as a run never interrupted."""
    from test_train import SCRIPT

    script = tmp_path / "run.py"
    slow = SCRIPT.replace("checkpoint_every=4", "checkpoint_every=1").replace(
        "        return inner(step)", "        time.sleep(0.02)\n        return inner(step)"
    )
    script.write_text(slow.replace("import os, signal, sys", "import os, signal, sys, time"))
    env = dict(os.environ, JAX_PLATFORMS="cpu")

    def run(run_dir, kill_after=None):
        p = subprocess.Popen([sys.executable, str(script), str(run_dir), "-1"], env=env, stderr=subprocess.PIPE, text=True)
        if kill_after is not None:
            deadline = time.time() + 120
            while len(read_log(run_dir, "step")) < kill_after and p.poll() is None and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.02))
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=180)
        return p.returncode

    rng = random.Random(26)
    assert run(tmp_path / "full") == 0
    killed = tmp_path / "killed"
    kills = 0
    for _ in range(3):
        done = len(read_log(killed, "step"))
        if done < 24 and run(killed, kill_after=done + rng.randint(2, 6)) == -signal.SIGKILL:
            kills += 1
    assert kills >= 1
    assert run(killed) == 0  # the last resume finishes
    with np.load(tmp_path / "full" / "checkpoint.npz") as a, np.load(killed / "checkpoint.npz") as b:
        for k in a.files:
            if k != "__meta__":
                assert a[k].tobytes() == b[k].tobytes(), k
    strip = lambda recs: [{k: v for k, v in r.items() if k != "time"} for r in recs]  # noqa: E731
    assert strip(read_log(tmp_path / "full")) == strip(read_log(killed))
