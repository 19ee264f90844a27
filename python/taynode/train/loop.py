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
  ``checkpoint.npz.corrupt``); when neither reads, the resume stops with an error naming both,
  unless ``start_over=True`` (:mod:`taynode.train.resume`);
* ``run.lock``: the pid of the process training in the folder (:mod:`taynode.train.lock`): a
  second run into the folder is refused while the first lives; the loop creates this file
  itself and refuses a ``run.lock`` that is a symlink or any other file;
* ``log.jsonl``: one JSON object per line: ``{"kind": "step", "step", "epoch", "time", "loss",
  <aux>...}`` every ``log_every`` steps, ``{"kind": "epoch", ...}`` at each epoch's end with the
  epoch's mean of every step metric (``train_<name>``) and the ``evaluate`` results, and
  ``{"kind": "eval", ...}`` for evaluations off epoch boundaries. ``time`` is the cumulative
  training wall time in seconds (compilation included, evaluation excluded, resumed runs
  included). Non-finite values
  are written as ``null``. On resume, lines after the checkpoint's step are dropped first
  (:mod:`taynode.train.records`).

Checkpoints and log rewrites go through :mod:`taynode.atomic` (a unique temporary file, fsync,
rename), so a kill at any moment loses at most the step in progress.
  With a ``target`` (:class:`~taynode.train.target.LambdaTarget`) every step and epoch record
  has ``lam``, the weight in force, and each update of λ writes ``{"kind": "target", "step",
  "quantity", "measured", "target", "lam_before", "lam"}``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .. import _validate
from .checkpoint import read_meta, save_checkpoint
from .lock import run_lock
from .parallel import DataParallel, DistributedError, is_writer, update
from .records import LOG, RunLog, is_number, read_log, scalar
from .resume import CHECKPOINT, PREVIOUS, RunState, json_config, start
from .target import LambdaTarget, target_step

if TYPE_CHECKING:
    import optax

__all__ = ["CHECKPOINT", "LOG", "PREVIOUS", "NonFiniteLossError", "TrainResult", "read_log", "train"]


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


def train(
    model: Any,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable,
    batches: Callable[[int], object],
    run_dir: str | os.PathLike[str],
    *,
    steps: int,
    seed: int = 0,
    checkpoint_every: int = 100,
    log_every: int = 1,
    evaluate: Callable | None = None,
    eval_every: int | None = None,
    resume: bool = False,
    start_over: bool = False,
    progress: bool = True,
    config: Any = None,
    desc: str | None = None,
    devices: int | DataParallel | None = None,
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
        start_over: with ``resume``, when the folder's checkpoints are all unreadable (so there
            is nothing to resume), set them aside as ``*.corrupt`` and train from step 0
            instead of stopping with an error.
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
            or a solve in the step failed (e.g. an adaptive solve hit ``max_steps``: the compiled
            step returns the failure, :mod:`taynode.ode.failures`, and the loop raises with its
            message after the step; a check it could not return, e.g. inside ``loss_fn``'s own
            ``vmap``, raises an ``equinox.EquinoxRuntimeError`` instead, caught the same way); the
            message starts with "training diverged". The step is discarded and the last checkpoint
            is left as it was.
        CheckpointError: the checkpoint is unreadable (and no readable previous one is there;
            see ``start_over``) or does not fit this model/config.
        RunLockedError: another live process is training in ``run_dir``.
    """
    for name, v, lo in (("steps", steps, 0), ("checkpoint_every", checkpoint_every, 1), ("log_every", log_every, 1)):
        _validate.integer(name, v, lo)
    if eval_every is not None and (not isinstance(eval_every, (int, np.integer)) or eval_every < 1):
        raise ValueError(f"eval_every must be a positive integer or None, got {eval_every!r}")
    if start_over and not resume:
        raise ValueError("start_over=True applies to a resume (resume=True) that finds no usable checkpoint")
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
            start_over=start_over,
            progress=progress,
            config=config,
            desc=desc,
            dp=dp,
            writer=writer,
            target=target,
        )


def _train_locked(model, optimizer, loss_fn, batches, run_dir, *, dp, writer, progress, desc, resume, start_over, **kw):
    """:func:`train` once the folder is locked: the state to start from, then the steps."""
    run = _Run(run_dir, dp, writer, batches, **kw)
    run.state = start(
        run_dir,
        model,
        optimizer,
        config=run.config,
        seed=run.seed,
        steps=run.steps,
        resume=resume,
        start_over=start_over,
        target=run.target,
        writer=writer,
    )
    run.first = run.state.step
    run.compile(loss_fn, optimizer, batches)
    bar = tqdm(total=run.steps, initial=run.first, desc=desc, disable=not (progress and writer), dynamic_ncols=True)
    run.log = RunLog(run_dir, writer)
    try:
        for step in range(run.first, run.steps):
            run.step(step, bar)
        if run.first == run.steps and not os.path.exists(run.ckpt):
            run.checkpoint(run.steps)
    finally:
        bar.close()
        run.log.close()
    state = run.state
    return TrainResult(
        run.local(state.model), run.local(state.opt_state), max(run.first, run.steps), state.train_time, run_dir, run.ckpt, dp
    )


class _Run:
    """One run's fixed settings, its :class:`~taynode.train.resume.RunState`, and the pieces of
    a step: the compiled update, the log and checkpoint writes, evaluation, epoch records."""

    def __init__(
        self,
        run_dir,
        dp,
        writer,
        batches,
        *,
        steps,
        seed,
        checkpoint_every,
        log_every,
        evaluate,
        eval_every,
        config,
        target,
    ):
        self.run_dir, self.dp, self.writer = run_dir, dp, writer
        self.steps, self.seed, self.checkpoint_every, self.log_every = steps, seed, checkpoint_every, log_every
        self.evaluate, self.eval_every, self.target = evaluate, eval_every, target
        self.config = json_config(config)
        self.ckpt = os.path.join(run_dir, CHECKPOINT)
        self.base_key = jax.random.PRNGKey(seed)
        self.spe = getattr(batches, "steps_per_epoch", None)
        self.state: RunState | None = None
        self.first = 0  # the step the run starts from
        self.log: RunLog | None = None

    def compile(self, loss_fn, optimizer, batches) -> None:
        """The step function and its inputs, for one device or data-parallel over several."""
        dp, base_key, state = self.dp, self.base_key, self.state
        if dp.single:

            @eqx.filter_jit
            def step_fn(model, opt_state, batch, key, *lam):
                return update(loss_fn, optimizer, model, opt_state, batch, key, lam)

            self.step_fn = step_fn
            self.step_inputs = lambda step: (batches(step), jax.random.fold_in(base_key, step))
            self.put_lam = jnp.asarray
            self.local = lambda m: m
        else:
            self.step_fn = dp.step(loss_fn, optimizer)
            state.model, state.opt_state = dp.replicate((state.model, state.opt_state))
            self.step_inputs = lambda step: (dp.put_batch(batches(step)), dp.replicate(jax.random.fold_in(base_key, step)))
            self.put_lam = lambda x: dp.replicate(jnp.asarray(x))
            self.local = dp.local_copy
            dp.check_batch(
                batches(state.step if state.step < self.steps else 0)
            )  # a batch that does not split: an error before any work

    def checkpoint(self, step: int) -> None:
        if not self.writer:
            return
        s = self.state
        extra = dict(seed=self.seed, train_time=s.train_time, epoch_sums=s.sums, epoch_count=s.count)
        if self.target is not None:
            extra["lam_target"] = dict(spec=self.target.spec(), state=s.tstate)
        save_checkpoint(
            self.ckpt,
            s.model,
            s.opt_state,
            step=step,
            key=self.base_key,
            config=self.config,
            extra=extra,
            previous=os.path.join(self.run_dir, PREVIOUS),
        )

    def _when(self, step) -> dict:
        return dict(epoch=step / self.spe if self.spe else None, time=self.state.train_time)

    def run_eval(self, step: int, kind: str, rec: dict) -> None:
        if self.evaluate is not None:
            try:
                results = self.evaluate(self.local(self.state.model))
            except eqx.EquinoxRuntimeError as e:  # the model's solve fails (e.g. max_steps): it blew up
                _diverged(f"the evaluation after the step failed ({_equinox_message(e)})", step - 1, self.ckpt)
            rec = rec | {k: (scalar(v) if is_number(v) else v) for k, v in results.items()}
        self.log.write(dict(kind=kind, step=step) | self._when(step) | rec)

    def _update(self, step: int):
        """The compiled step on ``step``'s batch and key: ``(model, opt_state, loss, aux)``, or
        :class:`NonFiniteLossError` / :class:`DistributedError` when it fails."""
        s = self.state
        try:
            # λ as an array of the caller's dtype: a new value is a new input, not a recompile
            lam_in = () if self.target is None else (self.put_lam(np.asarray(s.tstate["lam"], self.target.dtype)),)
            out = self.step_fn(s.model, s.opt_state, *self.step_inputs(step), *lam_in)
            new_model, new_opt_state, loss, aux, finite, failure = out
            failed, loss, finite = failure.message(), float(loss), bool(finite)  # waits for the step to finish
        except eqx.EquinoxRuntimeError as e:  # a check the step could not return (e.g. in a vmap of loss_fn's own)
            _diverged(f"the step failed ({_equinox_message(e)})", step, self.ckpt)
        except (jax.errors.JaxRuntimeError, ValueError) as e:  # gloo's failures arrive as ValueError("UNKNOWN: Gloo ...")
            if jax.process_count() == 1 or not (isinstance(e, jax.errors.JaxRuntimeError) or "Gloo" in str(e)):
                raise
            raise DistributedError(
                f"step {step + 1} failed in process {jax.process_index()} of {jax.process_count()}: a peer "
                f"process died or lost its connection ({str(e).splitlines()[0]}); the last checkpoint is "
                "kept: restart every process with --resume"
            ) from None
        if failed is not None:  # e.g. an adaptive solve past max_steps: the dynamics blew up
            _diverged(f"the step failed ({failed})", step, self.ckpt)
        if not (math.isfinite(loss) and finite):
            _diverged(
                f"loss is {loss}" if not math.isfinite(loss) else f"the update has NaN or inf (loss {loss})", step, self.ckpt
            )
        return new_model, new_opt_state, loss, aux

    def step(self, step: int, bar) -> None:
        """Step ``step`` (0-based), then what follows it: metrics, λ, log, evaluation, checkpoint."""
        s, t0 = self.state, time.perf_counter()
        new_model, new_opt_state, loss, aux = self._update(step)
        s.model, s.opt_state = new_model, new_opt_state
        s.train_time += time.perf_counter() - t0
        done = step + 1
        metrics = {"loss": loss} | {k: scalar(v) for k, v in aux.items()}
        if self.target is not None:
            metrics["lam"] = s.tstate["lam"]
            s.tstate = target_step(
                self.target, s.tstate, metrics, done, lambda: self.local(s.model), self.log.write, self._when(done)
            )
        for k, v in metrics.items():
            if v is not None:
                s.sums[k] = s.sums.get(k, 0.0) + v
        s.count += 1
        if done % self.log_every == 0 or done == self.steps:
            self.log.write(dict(kind="step", step=done) | self._when(done) | metrics)
            bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if v is not None}, refresh=False)
        bar.update(1)
        epoch_end = bool(self.spe) and done % self.spe == 0
        if epoch_end:
            self._end_epoch(done)
        if self.evaluate is not None and (
            (self.eval_every and done % self.eval_every == 0)
            or (done == self.steps and not (epoch_end and self.eval_every is None))
        ):
            self.run_eval(done, "eval", {})
        if done % self.checkpoint_every == 0 or done == self.steps:
            self.checkpoint(done)

    def _end_epoch(self, done: int) -> None:
        """The epoch's record: the mean of each step metric (and λ), with the evaluation by default."""
        s = self.state
        means = {f"train_{k}": v / s.count for k, v in s.sums.items()}
        if self.target is not None:
            means["lam"] = s.tstate["lam"]  # the λ the next epoch starts with
        s.sums, s.count = {}, 0
        if self.eval_every is None:
            self.run_eval(done, "epoch", means)
        else:
            self.log.write(dict(kind="epoch", step=done, epoch=done / self.spe, time=s.train_time) | means)
