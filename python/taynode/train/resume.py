"""A run folder's state at the start of :func:`~taynode.train.train`: a fresh start, or the
checkpoint it resumes from (after cleaning what a killed run left and falling back to the
previous checkpoint when the latest is unreadable).

Nothing the user made is lost: a resume that finds no usable checkpoint (the latest missing or
unreadable and the previous one unreadable too) stops with an error naming both files, unless
``start_over=True``; then the unreadable files are set aside (``<name>.corrupt``, never
overwritten) and the run starts from step 0.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx

from .checkpoint import (
    CheckpointError,
    CorruptCheckpointError,
    _link_or_copy,
    load_checkpoint,
    read_meta,
    remove_stale_temporaries,
)
from .records import LOG, truncate_log

__all__ = ["CHECKPOINT", "PREVIOUS", "RunState", "json_config", "start"]

CHECKPOINT = "checkpoint.npz"
PREVIOUS = "checkpoint.prev.npz"


@dataclass
class RunState:
    """What changes as the run goes: the model and optimizer state, the steps done, the training
    time, the running sums of the epoch's step metrics, and the λ target's state."""

    model: object
    opt_state: object
    step: int = 0
    train_time: float = 0.0
    sums: dict = field(default_factory=dict)
    count: int = 0
    tstate: dict | None = None


def json_config(config: Any) -> Any:
    """``config`` through JSON (as a checkpoint stores it), or a TypeError saying why it cannot be."""
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError) as e:
        raise TypeError(f"config must be JSON-serialisable (it is stored in checkpoints): {e}") from None


def _set_aside(path: str) -> str:
    """Rename ``path`` to ``path.corrupt`` (``.corrupt.1``, ... if taken); returns the new name."""
    dst, n = path + ".corrupt", 0
    while os.path.lexists(dst):
        n += 1
        dst = f"{path}.corrupt.{n}"
    os.replace(path, dst)
    return dst


def _problem(path: str) -> str | None:
    """Why ``path`` is not a usable checkpoint (missing, unreadable), or None if it reads."""
    try:
        read_meta(path)
    except CorruptCheckpointError as e:
        return str(e)
    return None


def _recover(run_dir: str, ckpt: str, start_over: bool) -> None:
    """Before a resume: if the latest checkpoint is missing or unreadable but the previous one
    reads, put the previous one in its place (the bad file is kept beside it) and say so. If
    neither reads (and there is something to resume), stop, or with ``start_over`` set both aside."""
    prev = os.path.join(run_dir, PREVIOUS)
    latest_problem = _problem(ckpt)
    if latest_problem is None or not (os.path.exists(ckpt) or os.path.exists(prev)):
        return  # a readable checkpoint, or a run that never wrote one
    prev_problem = _problem(prev) if os.path.exists(prev) else f"checkpoint {prev} does not exist"
    if prev_problem is None:
        if os.path.exists(ckpt):
            latest_problem += f" (kept as {_set_aside(ckpt)})"
        _link_or_copy(prev, ckpt)
        print(
            f"taynode: {latest_problem}; resuming from the previous checkpoint {prev} (step {read_meta(prev)['step']})",
            file=sys.stderr,
        )
        return
    if not start_over:
        raise CorruptCheckpointError(
            f"no usable checkpoint to resume in {run_dir}: {latest_problem}; and {prev_problem}. Nothing was changed: "
            "pass start_over=True to train again from step 0 (the unreadable files are kept as *.corrupt), "
            "or resume into another folder"
        )
    kept = [_set_aside(p) for p in (ckpt, prev) if os.path.exists(p)]
    print(f"taynode: no usable checkpoint in {run_dir}; starting over from step 0 (kept {', '.join(kept)})", file=sys.stderr)


def clean(run_dir: str) -> None:
    """Delete the temporary files a process killed mid-write left (we hold the folder's lock)."""
    for base in (CHECKPOINT, PREVIOUS, LOG):
        for name in remove_stale_temporaries(os.path.join(run_dir, base)):
            print(f"taynode: removed {os.path.join(run_dir, name)}, left by an interrupted write", file=sys.stderr)


def _resume_target(ckpt, meta, target):
    """The controller's state from a checkpoint; its settings must be this run's."""
    stored = meta["extra"].get("lam_target")
    if target is None and stored is None:
        return None
    if target is None or stored is None:
        raise CheckpointError(
            f"checkpoint {ckpt} was written {'with' if stored else 'without'} a λ target and this run "
            f"is {'without' if stored else 'with'} one; resume needs the same target (or none)"
        )
    if stored["spec"] != target.spec():
        keys = sorted(k for k in stored["spec"] if stored["spec"][k] != target.spec().get(k))
        raise CheckpointError(
            f"checkpoint {ckpt} was written with other λ-target settings (differs in {keys}); resume needs the same target"
        )
    return dict(stored["state"])


def _check_same_run(ckpt: str, meta: dict, config, seed: int) -> None:
    if meta["config"] != config:
        old, new = meta["config"] or {}, config or {}
        keys = (
            sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if isinstance(old, dict) and isinstance(new, dict)
            else ["config"]
        )
        raise CheckpointError(
            f"checkpoint {ckpt} was written with another config (differs in {keys}); resume needs the same config"
        )
    if meta["extra"].get("seed") != seed:
        raise CheckpointError(f"checkpoint {ckpt} was written with seed {meta['extra'].get('seed')}, not {seed}")


def start(
    run_dir: str,
    model: Any,
    optimizer: Any,
    *,
    config: Any,
    seed: int,
    steps: int,
    resume: bool,
    start_over: bool,
    target: Any,
    writer: bool,
) -> RunState:
    """The run's :class:`RunState` at its first step: fresh, or restored from ``run_dir``'s
    checkpoint (checked against this run's model, optimizer, config, seed and λ target)."""
    ckpt = os.path.join(run_dir, CHECKPOINT)
    if writer:
        clean(run_dir)
        if resume:
            _recover(run_dir, ckpt, start_over)
    params = eqx.filter(model, eqx.is_inexact_array)
    state = RunState(model, optimizer.init(params), tstate=target.init_state() if target is not None else None)
    if os.path.exists(ckpt):
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a checkpoint; pass resume=True to continue it, or use another folder")
        meta = read_meta(ckpt)
        _check_same_run(ckpt, meta, config, seed)
        state.model, state.opt_state, meta = load_checkpoint(ckpt, model, state.opt_state)
        state.step = meta["step"]
        if state.step > steps:
            raise ValueError(f"checkpoint {ckpt} is at step {state.step}, beyond steps={steps}")
        state.train_time = meta["extra"].get("train_time", 0.0)
        state.sums, state.count = meta["extra"].get("epoch_sums", {}), meta["extra"].get("epoch_count", 0)
        state.tstate = _resume_target(ckpt, meta, target)
        if writer:
            truncate_log(run_dir, state.step)
    elif not resume and (os.path.exists(os.path.join(run_dir, LOG)) or os.path.exists(os.path.join(run_dir, PREVIOUS))):
        held = LOG if os.path.exists(os.path.join(run_dir, LOG)) else PREVIOUS
        raise FileExistsError(
            f"{run_dir} already holds a {'log' if held == LOG else 'checkpoint'} ({held}); use another folder or resume=True"
        )
    elif resume and writer:
        truncate_log(run_dir, 0)
    return state
