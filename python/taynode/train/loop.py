r"""The training loop shared by every study: :func:`train`.

Determinism: the step's batch is ``batches(step)`` (a pure function of the step, e.g.
:class:`~taynode.train.ShuffledBatches`) and its PRNG key is ``fold_in(PRNGKey(seed), step)``,
so the whole run is a function of the seed. A checkpoint stores the model, the optimizer state,
the step, the key, the caller's config and the loop's own counters; resuming from it replays
the remaining steps exactly as an uninterrupted run would (the same compiled step on the same
inputs), so the final parameters are bit-identical.

Files in the run folder:

* ``checkpoint.npz``: the latest checkpoint (see :mod:`taynode.train.checkpoint`);
* ``checkpoint.prev.npz``: the one before it; a resume whose latest checkpoint is unreadable
  continues from this one instead (with a message; the bad file is kept as
  ``checkpoint.npz.corrupt``);
* ``run.lock``: the pid of the process training in the folder (:mod:`taynode.train.lock`): a
  second run into the folder is refused while the first lives;
* ``log.jsonl``: one JSON object per line: ``{"kind": "step", "step", "epoch", "time", "loss",
  <aux>...}`` every ``log_every`` steps, ``{"kind": "epoch", ...}`` at each epoch's end with the
  epoch's mean of every step metric (``train_<name>``) and the ``evaluate`` results, and
  ``{"kind": "eval", ...}`` for evaluations off epoch boundaries. ``time`` is the cumulative
  training wall time in seconds (compilation included, evaluation excluded, resumed runs
  included). Non-finite values
  are written as ``null``. On resume, lines after the checkpoint's step are dropped first.
  With a ``target`` (:class:`~taynode.train.target.LambdaTarget`) every step and epoch record
  has ``lam``, the weight in force, and each update of λ writes ``{"kind": "target", "step",
  "quantity", "measured", "target", "lam_before", "lam"}``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .. import _validate
from .checkpoint import (
    CheckpointError,
    CorruptCheckpointError,
    _link_or_copy,
    load_checkpoint,
    read_meta,
    remove_stale_temporaries,
    save_checkpoint,
)
from .lock import run_lock
from .parallel import DataParallel, DistributedError, is_writer
from .target import LambdaTarget

__all__ = ["CHECKPOINT", "LOG", "PREVIOUS", "NonFiniteLossError", "TrainResult", "read_log", "train"]

CHECKPOINT = "checkpoint.npz"
PREVIOUS = "checkpoint.prev.npz"
LOG = "log.jsonl"


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the loss or update became NaN or inf, or the step failed at run time
    (e.g. an adaptive solve hit ``max_steps``); the run stopped and the last good checkpoint was
    kept."""


@dataclass
class TrainResult:
    model: object
    opt_state: object
    step: int
    train_time: float
    run_dir: str
    checkpoint: str
    parallel: DataParallel | None = None


def _scalar(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _is_number(v) -> bool:
    try:
        return np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.number)
    except (TypeError, ValueError):
        return False


def read_log(run_dir, kind: str | None = None) -> list[dict]:
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
            if kind is None or rec.get("kind") == kind:
                out.append(rec)
    return out


def _truncate_log(run_dir, step: int) -> None:
    """Keep the records up to ``step`` (a resumed run rewrites the rest), atomically."""
    path = os.path.join(run_dir, LOG)
    if not os.path.exists(path):
        return
    keep = [r for r in read_log(run_dir) if r.get("step", 0) <= step]
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in keep)
    os.replace(tmp, path)


def _equinox_message(e) -> str:
    """The runtime check's own message (e.g. diffrax's max_steps), without equinox's debugging help."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msgs = [ln.split("EquinoxRuntimeError:", 1)[1].strip() for ln in lines if "EquinoxRuntimeError:" in ln]
    return (msgs or lines or [type(e).__name__])[-1 if msgs else 0]


def _diverged(what: str, step: int, ckpt: str):
    kept = (
        f"the last good checkpoint {ckpt} (step {read_meta(ckpt)['step']}) is kept"
        if os.path.exists(ckpt)
        else "no checkpoint had been written yet"
    )
    raise NonFiniteLossError(
        f"training diverged: {what} at step {step + 1}; training stopped; {kept}. "
        "Lower the learning rate or λ, or check the data."
    ) from None


def _json_config(config):
    try:
        return json.loads(json.dumps(config))
    except (TypeError, ValueError) as e:
        raise TypeError(f"config must be JSON-serialisable (it is stored in checkpoints): {e}") from None


def _recover(run_dir, ckpt) -> None:
    """Before a resume: if the latest checkpoint is missing or unreadable but the previous one
    reads, put the previous one in its place (the bad file is kept beside it) and say so."""
    prev = os.path.join(run_dir, PREVIOUS)
    if not os.path.exists(prev):
        return
    try:
        read_meta(ckpt)
        return
    except CorruptCheckpointError as e:
        problem = str(e)
    try:
        step = read_meta(prev)["step"]
    except CorruptCheckpointError:
        return  # both bad: the error about the latest one is raised as usual
    if os.path.exists(ckpt):
        os.replace(ckpt, ckpt + ".corrupt")
        problem += f" (kept as {ckpt}.corrupt)"
    _link_or_copy(prev, ckpt)
    print(f"taynode: {problem}; resuming from the previous checkpoint {prev} (step {step})", file=sys.stderr)


def _check_target(target, loss_fn):
    if not isinstance(target, LambdaTarget):
        raise TypeError(f"target must be a taynode.train.LambdaTarget, got {type(target).__name__}")
    try:
        inspect.signature(loss_fn).bind(None, None, None, None)
    except TypeError:
        raise TypeError(
            f"with a target, loss_fn is called as loss_fn(model, batch, key, lam) (λ is set by the loop); "
            f"{getattr(loss_fn, '__name__', 'loss_fn')}{inspect.signature(loss_fn)} does not take lam: add it and "
            "weight the regularizer by it"
        ) from None
    except ValueError:  # no signature to inspect (some builtins): find out at the first call
        pass


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


def _target_step(target, tstate, metrics, done, model, write, when):
    """After step ``done``: add its value to the window; every ``target.every`` steps, measure
    and update λ (writing a ``"target"`` record). Returns the new state."""
    q, tstate = target.quantity, dict(tstate)
    if done <= target.warmup:  # λ stays at lam0 and these steps are not measured
        return tstate
    if target.measure is None:
        if q not in metrics or q in ("loss", "lam"):
            have = sorted(k for k in metrics if k not in ("loss", "lam"))
            raise ValueError(
                f"the λ target's quantity {q!r} is not in the loss's aux dict (it has {have}); return it "
                "from loss_fn's aux, or give LambdaTarget a measure= function"
            )
        if metrics[q] is None:
            raise ValueError(f"the λ target's quantity {q!r} is NaN or inf at step {done}")
        tstate["sum"], tstate["count"] = tstate["sum"] + metrics[q], tstate["count"] + 1
    if not target.updates_after(done):
        return tstate
    if target.measure is None:
        measured = tstate["sum"] / tstate["count"]
        tstate["sum"], tstate["count"] = 0.0, 0
    else:
        results = target.measure(model())
        if not isinstance(results, dict) or q not in results:
            raise ValueError(
                f"LambdaTarget's measure must return a dict with {q!r}, got "
                f"{sorted(results) if isinstance(results, dict) else type(results).__name__}"
            )
        measured = float(results[q])
    lam, tstate["error"] = target.update(tstate["lam"], tstate["error"], measured)
    write(
        dict(kind="target", step=done)
        | when
        | dict(quantity=q, measured=measured, target=float(target.target), lam_before=tstate["lam"], lam=lam)
    )
    tstate["lam"] = lam
    return tstate


def train(
    model,
    optimizer,
    loss_fn: Callable,
    batches: Callable[[int], object],
    run_dir,
    *,
    steps: int,
    seed: int = 0,
    checkpoint_every: int = 100,
    log_every: int = 1,
    evaluate: Callable | None = None,
    eval_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    config=None,
    desc: str | None = None,
    devices=None,
    sharding: str = "global",
    target: LambdaTarget | None = None,
) -> TrainResult:
    """Train ``model`` for ``steps`` optimizer steps, logging and checkpointing into ``run_dir``.

    Args:
        model: an equinox module or any pytree; its inexact arrays are the trained parameters.
        optimizer: an optax ``GradientTransformation`` (schedules inside it see the step count
            stored in its state, so they resume exactly too).
        loss_fn: ``(model, batch, key) -> (loss, aux)``, with ``aux`` a dict of scalars that is
            logged; differentiated with respect to ``model``.
        batches: ``step -> batch``, deterministic; if it has ``steps_per_epoch`` the log
            gets per-epoch records and ``evaluate`` runs at each epoch's end by default.
        run_dir: the run's folder (created if needed).
        steps: total number of steps (a resumed run continues up to it).
        seed: seeds the per-step PRNG keys given to ``loss_fn``.
        checkpoint_every: steps between checkpoints (one is also written at the end).
        log_every: steps between ``"step"`` log records.
        evaluate: optional ``model -> dict of scalars`` (e.g. test accuracy, NFE).
        eval_every: steps between evaluations; default: each epoch's end, or only the end.
        resume: continue from ``run_dir/checkpoint.npz`` (a fresh start if there is none);
            without it an existing checkpoint is an error, so no run is overwritten.
        progress: show a tqdm progress bar (on stderr).
        config: JSON-serialisable description of the run; stored in checkpoints and compared on
            resume (a resumed run must have the same config).
        desc: the progress bar's label.
        devices: data parallelism (:mod:`taynode.train.parallel`): ``None`` uses every visible
            device (of every process in a multi-process run), a number N the first N, or a
            :class:`~taynode.train.parallel.DataParallel`. The global batch (``batches(step)``)
            is split along its leading axis and must divide evenly; parameters and optimizer
            state are replicated. With one device the loop is the plain single-device one.
            Checkpoints and logs are written by process 0 only; ``evaluate`` gets a
            process-local copy of the model in every process.
        sharding: ``"global"`` (one adaptive step-size sequence for the whole global batch, the
            single-device semantics) or ``"per-shard"`` (each device its own solve).
        target: a :class:`~taynode.train.target.LambdaTarget` instead of a fixed λ. ``loss_fn``
            then takes λ as a fourth argument, ``(model, batch, key, lam) -> (loss, aux)`` (a
            scalar array, an input of the compiled step, so a new λ does not recompile), and
            the loop sets it every ``target.every`` steps (after ``target.warmup`` steps at λ0) by log λ ← log λ +
            clip(rate · log(m / m*), ±max_step), m the mean of ``aux[target.quantity]`` over
            those steps (or ``target.measure(model)`` on held-out data), m* = ``target.target``.
            λ is in every step and epoch record (``lam``) and in the checkpoint, so a resume is
            exact; a resume with other target settings is an error.

    Raises:
        NonFiniteLossError: training diverged: the loss or the parameter update became NaN/inf,
            or the step raised an ``equinox.EquinoxRuntimeError`` (e.g. an adaptive solve hit
            ``max_steps``); the message starts with "training diverged". The step is discarded
            and the last checkpoint is left as it was.
        CheckpointError: the checkpoint is unreadable (and no readable previous one is there)
            or does not fit this model/config.
        RunLockedError: another live process is training in ``run_dir``.
    """
    for name, v, lo in (("steps", steps, 0), ("checkpoint_every", checkpoint_every, 1), ("log_every", log_every, 1)):
        _validate.integer(name, v, lo)
    if eval_every is not None and (not isinstance(eval_every, (int, np.integer)) or eval_every < 1):
        raise ValueError(f"eval_every must be a positive integer or None, got {eval_every!r}")
    if target is not None:
        _check_target(target, loss_fn)
    dp = devices if isinstance(devices, DataParallel) else DataParallel(devices, sharding)
    writer = is_writer()
    run_dir = os.fspath(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    # Only the writing process (process 0) owns the folder: it holds the lock, cleans and recovers.
    with run_lock(run_dir) if writer else contextlib.nullcontext():
        return _train_locked(
            model,
            optimizer,
            loss_fn,
            batches,
            run_dir,
            steps=steps,
            seed=seed,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            evaluate=evaluate,
            eval_every=eval_every,
            resume=resume,
            progress=progress,
            config=config,
            desc=desc,
            dp=dp,
            writer=writer,
            target=target,
        )


def _train_locked(
    model,
    optimizer,
    loss_fn,
    batches,
    run_dir,
    *,
    steps,
    seed,
    checkpoint_every,
    log_every,
    evaluate,
    eval_every,
    resume,
    progress,
    config,
    desc,
    dp,
    writer,
    target,
):
    ckpt = os.path.join(run_dir, CHECKPOINT)
    if writer:
        # a process killed while writing left these; no one else writes here (we hold the lock)
        for name in (
            remove_stale_temporaries(ckpt)
            + remove_stale_temporaries(os.path.join(run_dir, PREVIOUS))
            + remove_stale_temporaries(os.path.join(run_dir, LOG))
        ):
            print(f"taynode: removed {os.path.join(run_dir, name)}, left by an interrupted write", file=sys.stderr)
        if resume:
            _recover(run_dir, ckpt)
    config = _json_config(config)
    params = eqx.filter(model, eqx.is_inexact_array)
    opt_state = optimizer.init(params)
    base_key = jax.random.PRNGKey(seed)
    spe = getattr(batches, "steps_per_epoch", None)

    start, train_time, sums, count = 0, 0.0, {}, 0
    tstate = target.init_state() if target is not None else None
    if os.path.exists(ckpt):
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a checkpoint; pass resume=True to continue it, or use another folder")
        meta = read_meta(ckpt)
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
        model, opt_state, meta = load_checkpoint(ckpt, model, opt_state)
        start = meta["step"]
        if start > steps:
            raise ValueError(f"checkpoint {ckpt} is at step {start}, beyond steps={steps}")
        train_time = meta["extra"].get("train_time", 0.0)
        sums, count = meta["extra"].get("epoch_sums", {}), meta["extra"].get("epoch_count", 0)
        tstate = _resume_target(ckpt, meta, target)
        if writer:
            _truncate_log(run_dir, start)
    elif os.path.exists(os.path.join(run_dir, LOG)) and not resume:
        raise FileExistsError(f"{run_dir} already holds a log ({LOG}); use another folder or resume=True")
    elif resume and writer:
        _truncate_log(run_dir, 0)

    if dp.single:

        @eqx.filter_jit
        def step_fn(model, opt_state, batch, key, *lam):
            (loss, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(model, batch, key, *lam)
            updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
            finite_updates = jnp.all(jnp.stack([jnp.all(jnp.isfinite(u)) for u in jax.tree_util.tree_leaves(updates)]))
            return eqx.apply_updates(model, updates), opt_state, loss, aux, finite_updates

        step_inputs = lambda step: (batches(step), jax.random.fold_in(base_key, step))  # noqa: E731
        put_lam = jnp.asarray
        local = lambda m: m  # noqa: E731
    else:
        step_fn = dp.step(loss_fn, optimizer)
        model, opt_state = dp.replicate((model, opt_state))
        step_inputs = lambda step: (dp.put_batch(batches(step)), dp.replicate(jax.random.fold_in(base_key, step)))  # noqa: E731
        put_lam = lambda x: dp.replicate(jnp.asarray(x))  # noqa: E731
        local = dp.local_copy
        dp.check_batch(batches(start if start < steps else 0))  # a batch that does not split: an error before any work

    def checkpoint(step):
        if not writer:
            return
        extra = dict(seed=seed, train_time=train_time, epoch_sums=sums, epoch_count=count)
        if target is not None:
            extra["lam_target"] = dict(spec=target.spec(), state=tstate)
        save_checkpoint(
            ckpt, model, opt_state, step=step, key=base_key, config=config, extra=extra, previous=os.path.join(run_dir, PREVIOUS)
        )

    log = open(os.path.join(run_dir, LOG), "a") if writer else None

    def write(rec):
        if log is not None:
            log.write(json.dumps(rec) + "\n")
            log.flush()

    def run_eval(step, kind, rec):
        if evaluate is not None:
            try:
                results = evaluate(local(model))
            except eqx.EquinoxRuntimeError as e:  # the model's solve fails (e.g. max_steps): it blew up
                _diverged(f"the evaluation after the step failed ({_equinox_message(e)})", step - 1, ckpt)
            rec = rec | {k: (_scalar(v) if _is_number(v) else v) for k, v in results.items()}
        write(dict(kind=kind, step=step, epoch=step / spe if spe else None, time=train_time) | rec)

    bar = tqdm(total=steps, initial=start, desc=desc, disable=not (progress and writer), dynamic_ncols=True)
    try:
        for step in range(start, steps):
            t0 = time.perf_counter()
            try:
                # λ as an array of the caller's dtype: a new value is a new input, not a recompile
                lam_in = () if target is None else (put_lam(np.asarray(tstate["lam"], target.dtype)),)
                new_model, new_opt_state, loss, aux, finite = step_fn(model, opt_state, *step_inputs(step), *lam_in)
                loss, finite = float(loss), bool(finite)  # waits for the step to finish
            except eqx.EquinoxRuntimeError as e:  # e.g. an adaptive solve past max_steps: the dynamics blew up
                _diverged(f"the step failed ({_equinox_message(e)})", step, ckpt)
            except (jax.errors.JaxRuntimeError, ValueError) as e:  # gloo's failures arrive as ValueError("UNKNOWN: Gloo ...")
                if jax.process_count() == 1 or not (isinstance(e, jax.errors.JaxRuntimeError) or "Gloo" in str(e)):
                    raise
                raise DistributedError(
                    f"step {step + 1} failed in process {jax.process_index()} of {jax.process_count()}: a peer "
                    f"process died or lost its connection ({str(e).splitlines()[0]}); the last checkpoint is "
                    "kept: restart every process with --resume"
                ) from None
            if not (math.isfinite(loss) and finite):
                _diverged(
                    f"loss is {loss}" if not math.isfinite(loss) else f"the update has NaN or inf (loss {loss})", step, ckpt
                )
            model, opt_state = new_model, new_opt_state
            train_time += time.perf_counter() - t0
            done = step + 1
            metrics = {"loss": loss} | {k: _scalar(v) for k, v in aux.items()}
            if target is not None:
                metrics["lam"] = tstate["lam"]
                tstate = _target_step(
                    target,
                    tstate,
                    metrics,
                    done,
                    lambda: local(model),  # noqa: B023 (called before the loop moves on)
                    write,
                    dict(epoch=done / spe if spe else None, time=train_time),
                )
            for k, v in metrics.items():
                if v is not None:
                    sums[k] = sums.get(k, 0.0) + v
            count += 1
            if done % log_every == 0 or done == steps:
                write(dict(kind="step", step=done, epoch=done / spe if spe else None, time=train_time) | metrics)
                bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if v is not None}, refresh=False)
            bar.update(1)
            epoch_end = bool(spe) and done % spe == 0
            if epoch_end:
                means = {f"train_{k}": v / count for k, v in sums.items()}
                if target is not None:
                    means["lam"] = tstate["lam"]  # the λ the next epoch starts with
                sums, count = {}, 0
                if eval_every is None:
                    run_eval(done, "epoch", means)
                else:
                    write(dict(kind="epoch", step=done, epoch=done / spe, time=train_time) | means)
            if evaluate is not None and (
                (eval_every and done % eval_every == 0) or (done == steps and not (epoch_end and eval_every is None))
            ):
                run_eval(done, "eval", {})
            if done % checkpoint_every == 0 or done == steps:
                checkpoint(done)
        if start == steps and not os.path.exists(ckpt):
            checkpoint(steps)
    finally:
        bar.close()
        if log is not None:
            log.close()
    return TrainResult(local(model), local(opt_state), max(start, steps), train_time, run_dir, ckpt, dp)
