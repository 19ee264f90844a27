"""One run cache and one divergence handling for every study.

A run is a folder. It is *finished* when it holds a record (``results.json``, or the record a
diverged run leaves) whose ``config`` matches the run's configuration; a finished run is read
back, never trained again (:func:`reuse_or_train`).

Training is deterministic (same seed, same batches), so a run that diverged (the training loop's
:class:`~taynode.train.NonFiniteLossError`) would diverge again at the same step: the divergence
is recorded (:func:`attempt` catches it, :class:`Divergence` says where it happened; the last good
checkpoint stays in the folder) and the run is not retried.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import NamedTuple

from ..train import CHECKPOINT, NonFiniteLossError, read_log, read_meta
from .common import write_json

__all__ = ["DIVERGENCE", "Divergence", "attempt", "divergence", "read_record", "reuse_or_train"]

# The errors that mean "training diverged" (a study may add its own, e.g. equinox's runtime errors).
DIVERGENCE: tuple[type[BaseException], ...] = (NonFiniteLossError,)


class Divergence(NamedTuple):
    """Where and how a run diverged."""

    error: str  # the message's first line, at most 300 characters
    message: str  # the whole message
    checkpoint_step: int  # the step of the last good checkpoint (0: none was written)
    logged_step: int  # the last step in the run's log (0: none logged)
    logged_time: float | None  # the training time of that log record (None: none logged)


def divergence(run_dir: str, error: BaseException) -> Divergence:
    """The :class:`Divergence` of the run in ``run_dir`` that stopped with ``error``."""
    ckpt = os.path.join(run_dir, CHECKPOINT)
    log = read_log(run_dir, "step")
    return Divergence(
        error=str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__,
        message=str(error),
        checkpoint_step=read_meta(ckpt)["step"] if os.path.exists(ckpt) else 0,
        logged_step=log[-1]["step"] if log else 0,
        logged_time=log[-1]["time"] if log else None,
    )


def attempt(train: Callable[[], object], run_dir: str, *, catch: tuple = DIVERGENCE) -> tuple[object, Divergence | None]:
    """``(train(), None)``, or ``(None, divergence)`` when ``train`` raised one of ``catch``."""
    try:
        return train(), None
    except catch as e:
        return None, divergence(run_dir, e)


def read_record(path: str, config: dict | None = None) -> dict | None:
    """The JSON record at ``path`` if the file exists and (``config`` given) its ``config`` equals
    ``config``; else ``None``."""
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        rec = json.load(fh)
    return rec if config is None or rec.get("config") == config else None


def reuse_or_train(
    run_dir: str,
    config: dict | None,
    train: Callable[[], dict],
    *,
    diverged: Callable[[Divergence], dict] | None = None,
    diverged_file: str = "diverged.json",
    catch: tuple = DIVERGENCE,
) -> dict:
    """The run's record: read from ``run_dir`` when it is finished, else ``train()`` (which writes
    ``results.json`` and returns its record).

    ``config``: the run's stored configuration (``None``: any record counts). ``diverged``: how a
    divergence is recorded: its record (written atomically to ``run_dir/diverged_file`` and
    returned, so the run is not retried); ``None``: divergences propagate."""
    for name in dict.fromkeys([diverged_file, "results.json"] if diverged else ["results.json"]):
        rec = read_record(os.path.join(run_dir, name), config)
        if rec is not None:
            return rec
    result, div = attempt(train, run_dir, catch=catch if diverged else ())
    if div is None:
        return result
    rec = diverged(div)
    write_json(os.path.join(run_dir, diverged_file), rec)
    return rec
