"""Helper of tests/test_kill_writes.py (not a test): forks writers that write a run folder's files
over and over, and SIGKILLs each at a random moment. Usage: ``kill_writer.py FOLDER ROUNDS SEED``:
for each kind (``checkpoint``, ``log``, ``results``) and round, a folder ``FOLDER/<kind>/<round>``
(two writers at once for the results file). Version ``i`` of each file is a known function of
``i`` (see :func:`content`), so the test can tell a complete version from a torn one. No JAX
device is used (NumPy arrays only), so forking is safe and the whole loop takes a second or two
after the imports."""

from __future__ import annotations

import os
import random
import signal
import sys
import time

import numpy as np

from taynode.studies.common import write_json
from taynode.train.checkpoint import save_checkpoint
from taynode.train.records import RunLog, truncate_log


def content(i: int) -> dict:
    """Version ``i``: a model and an optimizer state of a few hundred kB each, and a results dict."""
    rng = np.random.default_rng(i)
    model = {"w": rng.standard_normal((200, 100)), "b": np.full(100, float(i))}
    opt = {"m": rng.standard_normal((200, 100)), "count": np.asarray(i, np.int32)}
    results = {"i": i, "values": rng.standard_normal(2000).round(6).tolist()}
    return {"model": model, "opt": opt, "results": results}


def write_forever(folder: str, kind: str, ready: int) -> None:
    i = 0
    log = RunLog(folder) if kind == "log" else None
    while True:
        i += 1
        if i == 2:
            os.write(ready, b"r")  # one complete version is on disk
        c = content(i)
        if kind == "checkpoint":
            save_checkpoint(
                os.path.join(folder, "checkpoint.npz"),
                c["model"],
                c["opt"],
                step=i,
                key=np.zeros(2, np.uint32),
                extra={"i": i},
                previous=os.path.join(folder, "checkpoint.prev.npz"),
            )
        elif kind == "log":
            log.write({"kind": "step", "step": i, "values": c["results"]["values"][:50]})
            if i % 7 == 0:  # a resume's rewrite: drop the last two records, then write them again
                log.close()
                truncate_log(folder, i - 2)
                log = RunLog(folder)  # the rewrite is a new file: append to it, as a resumed run does
                for j in (i - 1, i):
                    log.write({"kind": "step", "step": j, "values": content(j)["results"]["values"][:50]})
        else:
            write_json(os.path.join(folder, "results.json"), c["results"])


def kill_at_random(folder: str, kind: str, writers: int, rng: random.Random) -> None:
    pids, reads = [], []
    for _ in range(writers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                write_forever(folder, kind, w)
            finally:
                os._exit(1)
        os.close(w)
        pids.append(pid)
        reads.append(r)
    for r in reads:
        assert os.read(r, 1) == b"r"
        os.close(r)
    time.sleep(rng.uniform(0.0, 0.1))
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status  # killed while writing


if __name__ == "__main__":
    root, rounds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    for kind in ("checkpoint", "log", "results"):
        for r in range(rounds):
            folder = os.path.join(root, kind, str(r))
            os.makedirs(folder)
            kill_at_random(folder, kind, 2 if kind == "results" else 1, rng)
    print("done", flush=True)
