r"""λ set by a target: the training loop adjusts the regularizer's weight λ so that a measured
quantity (a regularizer's value, the training NFE, ...) settles at a value the user gives.

The rule (dual ascent on the constraint log m = log m*, in log λ)::

    every `every` steps:   m  = the quantity measured over the last `every` steps
                           e  = log(m / m*)
                           Δ  = clip(rate · e + damping · (e − e_prev), −max_step, +max_step)
                           λ ← clip(λ · exp(Δ), lam_min, lam_max)

(e_prev = 0 at the first update.) With ``damping = 0`` this is plain dual ascent.

Why this form:

* **log λ, not λ.** Useful λ span decades (6e-5 for MNIST to 1e-2 for the Latent ODE in the
  paper); a multiplicative step covers a decade in a few updates from any start, and λ stays > 0.
* **log(m / m*), not m / m* − 1.** The quantities also span decades. The log ratio is symmetric
  (being 4× above the target moves λ as far up as being 4× below moves it down), while
  m / m* − 1 is bounded by −1 below and unbounded above. It is the gradient of the Lagrangian
  λ·(log m − log m*) with respect to log λ: ascent on the dual variable.
* **The damping term** (the velocity form of a PI controller, as in adaptive step-size
  control): the model needs tens of steps to follow a new λ, so pure dual ascent keeps pushing
  λ while the quantity is already moving towards the target, overshoots and oscillates (on the
  toy: λ swinging over two decades). Adding damping · (e − e_prev) pushes less while e
  is shrinking and more while it grows; it sums to damping · e over time, so the fixed point
  is unchanged.
* **The clip** bounds one update to a factor e^max_step, so one noisy window (a batch with a
  large R, an NFE jump) cannot throw λ decades away.
* **The warm-up** (``warmup`` steps at λ0 before the first window; default 0). What a
  young model measures says little about the trained one: on the Fig. 1 toy R₂ starts at 0.03,
  falls to ~0.004 by step 150 and only then rises as the model curves towards z + z³, at every
  fixed λ from 0.03 to 0.3 (measured). Updating from the start, λ follows that transient: from
  λ0 = 0.012, 400 steps, λ fell to 0.006 and then chased the rising R₂ too slowly (end λ 0.071,
  held-out R₂ 2.5× the target 0.01). Measured on the toy at 600 steps (cosine learning rate),
  from λ0 = 0.025 / 0.25 / 2.5: without warm-up the held-out R₂ lands at +11 % / −7 % / −8 %
  (λ dips to 0.0075 from 0.025 first); with warmup = 200 at +0 % / −14 % / −17 % (no dip); these
  runs are ``benchmarks/lambda_target.py``'s (``benchmarks/results/lambda_target.json``). So
  the longer run is what the toy needed and its test uses no warm-up; the option stays for
  problems whose transient is longer than the run can absorb. Rejected: holding λ while m
  rises towards the target from below (it also holds λ on a problem that is just converging,
  e.g. the ridge test's far-off targets, and reacts to noise) and a constant learning rate
  (measured, with warm-up: worse; λ drifted to 0.04-0.07 while the noisier model's R₂ stayed
  at 0.005).
* **The sign:** a larger λ makes the quantity smaller, so λ rises while m > m* and falls while
  m < m*. The fixed point is m = m*. If even λ = lam_min leaves m below the target (the
  unregularized model is already that cheap), λ sinks to lam_min and stays there.

What is measured: by default the mean of the loss's own ``aux[quantity]`` over the `every`
training steps since the last update, all taken at the same λ. This costs nothing (the training
step computes it anyway) and the mean over `every` batches smooths the noise of one batch. A
regularizer's value does not overfit the training data the way the loss does, so the training
mean and a held-out value agree in expectation. Where they do not (e.g. a target for the *test*
NFE at a tighter tolerance than training's), pass ``measure``: a deterministic
``model -> {quantity: value}`` on held-out data, called every `every` steps instead.

The controller's state (λ and the running window) is plain Python floats, stored in the
checkpoint's JSON, so a resumed run takes the same λ sequence bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import _validate

__all__ = ["LambdaTarget", "target_step"]


def _positive(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not (math.isfinite(v) and v > 0):
        raise ValueError(f"LambdaTarget: {name} must be a finite number > 0, got {v!r}")


@dataclass(frozen=True)
class LambdaTarget:
    """Adjust λ during :func:`taynode.train.train` so that ``quantity`` lands at ``target``.

    Args:
        quantity: the name of the measured value: a key of ``loss_fn``'s aux dict (e.g.
            ``"R2"``, ``"nfe"``), or of ``measure``'s result when that is given. It must
            decrease as λ grows and be ≥ 0.
        target: the value m* wanted for it (> 0).
        lam0: the starting λ (> 0); a guess within a decade or two is enough.
        rate: η in Δ = η · log(m / m*) (> 0). Larger reacts faster but overshoots more, since
            the model needs some steps to follow a new λ.
        every: steps between updates (the measurement window), ≥ 1.
        damping: the weight of the change of e since the last update (≥ 0; 0: plain dual ascent).
        warmup: training steps at λ = lam0 before the first measurement window (≥ 0); the updates
            come after steps warmup + every, warmup + 2·every, ... Use it when the young model's
            quantity says nothing about the trained model's (see the module docstring).
        max_step: the largest |Δ log λ| of one update (> 0; default log 2: at most ×2 or ÷2).
        lam_min, lam_max: bounds on λ.
        measure: optional ``model -> dict`` evaluated on held-out data every ``every`` steps;
            must be deterministic (a fixed key) for exact resume. Default: the training aux.
        dtype: the dtype of the λ array handed to ``loss_fn`` (the model's float dtype).
    """

    quantity: str
    target: float
    lam0: float
    rate: float = 0.3
    every: int = 20
    damping: float = 0.5
    warmup: int = 0
    max_step: float = math.log(2.0)
    lam_min: float = 1e-10
    lam_max: float = 1e6
    measure: Callable | None = field(default=None, compare=False)
    dtype: object = np.float32

    def __post_init__(self):
        if not isinstance(self.quantity, str) or not self.quantity:
            raise ValueError(
                f"LambdaTarget: quantity must be the name of a value in the loss's aux dict (e.g. 'R2', 'nfe'), got {self.quantity!r}"
            )
        for name in ("target", "lam0", "rate", "max_step", "lam_min", "lam_max"):
            _positive(name, getattr(self, name))
        _validate.integer("LambdaTarget: every", self.every, 1, hint=" (steps between updates of λ)")
        _validate.integer("LambdaTarget: warmup", self.warmup, 0, hint=" (steps at lam0 before the first update of λ)")
        if not (
            isinstance(self.damping, (int, float, np.integer, np.floating)) and math.isfinite(self.damping) and self.damping >= 0
        ):
            raise ValueError(f"LambdaTarget: damping must be a finite number >= 0, got {self.damping!r}")
        if not self.lam_min <= self.lam0 <= self.lam_max:
            raise ValueError(
                f"LambdaTarget: need lam_min <= lam0 <= lam_max, got {self.lam_min} <= {self.lam0} <= {self.lam_max}"
            )
        if not np.issubdtype(np.dtype(self.dtype), np.floating):
            raise ValueError(f"LambdaTarget: dtype must be a float dtype (the model's), got {self.dtype!r}")
        if self.measure is not None and not callable(self.measure):
            raise TypeError(f"LambdaTarget: measure must be a callable model -> dict, got {type(self.measure).__name__}")

    def spec(self) -> dict:
        """The settings as JSON (checkpoints compare them on resume)."""
        spec = dict(
            quantity=self.quantity,
            target=float(self.target),
            lam0=float(self.lam0),
            rate=float(self.rate),
            every=int(self.every),
            damping=float(self.damping),
            max_step=float(self.max_step),
            lam_min=float(self.lam_min),
            lam_max=float(self.lam_max),
            held_out=self.measure is not None,
            dtype=np.dtype(self.dtype).name,
        )
        # warmup was added later: absent at its default 0, so checkpoints written before it resume
        return spec | ({"warmup": int(self.warmup)} if self.warmup else {})

    def updates_after(self, step: int) -> bool:
        """Whether λ is updated after training step ``step`` (1-based): at warmup + k·every, k ≥ 1."""
        return step > self.warmup and (step - self.warmup) % self.every == 0

    def init_state(self) -> dict:
        """``lam``: the current λ; ``sum``/``count``: the running window of training values;
        ``error``: e of the last update."""
        return dict(lam=float(self.lam0), sum=0.0, count=0, error=0.0)

    def update(self, lam: float, error: float, measured: float) -> tuple[float, float]:
        """``(λ, e)`` after one measurement, from λ and the previous e (the module docstring's rule)."""
        if not math.isfinite(measured) or measured < 0:
            raise ValueError(
                f"LambdaTarget: the measured {self.quantity} is {measured}; a target needs a finite value >= 0 "
                "that falls as λ grows (a regularizer's value, an NFE)"
            )
        e = math.log(max(measured, 1e-300) / self.target)
        delta = min(max(self.rate * e + self.damping * (e - error), -self.max_step), self.max_step)
        return min(max(lam * math.exp(delta), self.lam_min), self.lam_max), e


def target_step(
    target: LambdaTarget,
    tstate: dict,
    metrics: dict,
    done: int,
    model: Callable[[], object],
    write: Callable[[dict], object],
    when: dict,
) -> dict:
    """The loop's λ bookkeeping after step ``done``: add its value to the window; every ``target.every`` steps, measure
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
