"""The run's log, ``log.jsonl``: one JSON object per line, appended as the run goes, rewritten
atomically (the lines after a resumed checkpoint's step are dropped) and read back leniently
(a line torn by a kill is skipped)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from ..atomic import atomic_file

__all__ = ["LOG", "RunLog", "is_number", "read_log", "scalar", "truncate_log"]

LOG = "log.jsonl"


def scalar(x: Any) -> float | None:
    """``x`` as a float, or ``None`` (JSON ``null``) when it is NaN or inf."""
    x = float(x)
    return x if math.isfinite(x) else None


def is_number(v: object) -> bool:
    """Whether ``v`` is a numeric scalar (a Python or NumPy number, or a 0-d array)."""
    try:
        return np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.number)
    except (TypeError, ValueError):
        return False


def read_log(run_dir: str | os.PathLike[str], kind: str | None = None) -> list[dict]:
    """The log's records (all, or those of one ``kind``); a torn last line is ignored."""
    path = os.path.join(run_dir, LOG)
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and (kind is None or rec.get("kind") == kind):
                out.append(rec)
    return out


def truncate_log(run_dir: str | os.PathLike[str], step: int) -> None:
    """Keep the records up to ``step`` (a resumed run rewrites the rest), atomically."""
    path = os.path.join(run_dir, LOG)
    if not os.path.exists(path):
        return
    keep = [r for r in read_log(run_dir) if isinstance(r.get("step", 0), (int, float)) and r.get("step", 0) <= step]
    with atomic_file(path, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in keep)


class RunLog:
    """Appends records to ``run_dir/log.jsonl``, one flushed line each (``writer=False``: a
    process that does not write, whose records are dropped)."""

    def __init__(self, run_dir, writer: bool = True):
        self._fh = open(os.path.join(run_dir, LOG), "a") if writer else None

    def write(self, rec: dict) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps(rec) + "\n")
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
