"""One model's regularizers and their weights λ, parsed once (:class:`RegularizerSet`): the only
parser of regularizer names, for both families (the integrands and the step heuristics)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .heuristics import StepRegularizer
from .heuristics import parse as parse_step
from .integrands import RK, Regularizer
from .integrands import parse as parse_integrand

__all__ = ["NO_REGULARIZERS", "RNODE", "RegularizerSet"]


RNODE = ("kinetic", "jacobian")  # Finlay et al.'s pair, the alias "rnode"
NO_REGULARIZERS = ("none", "")


def _parse_one(spec: Any, taylor_method: str | None) -> Regularizer | StepRegularizer:
    """An integrand :class:`Regularizer` or a solver-heuristic one (ERNODE/SRNODE) from a name or
    instance; R_K named by a string gets ``taylor_method`` when one is given."""
    step = parse_step(spec)
    if step is not None:
        return step
    r = parse_integrand(spec)
    if taylor_method is not None and isinstance(spec, str) and isinstance(r, RK):
        r = RK(r.order, taylor_method)
    return r


def _check_sign(w: float, of: str) -> None:
    if not w >= 0:  # also catches NaN
        raise ValueError(f"the regularization weight λ{of} must be >= 0, got {w}")
    if not math.isfinite(w):
        raise ValueError(f"the regularization weight λ{of} must be finite, got {w}")


def _check_weight(name: str, w) -> float:
    try:
        w = float(w)
    except (TypeError, ValueError):
        raise ValueError(f"the weight λ of {name} must be a number, got {w!r}") from None
    _check_sign(w, f" of {name}")
    if w == 0:
        # the regularizer would be integrated at every step and then multiplied by 0
        raise ValueError(
            f"regularizer {name} is chosen but its weight λ is 0; pass λ > 0 (--lam), or reg 'none' to train unregularized"
        )
    return w


@dataclass(frozen=True)
class RegularizerSet:
    r"""The regularizers of one model, parsed once, with their weights λ.

    :meth:`parse` reads ``"none"``, ``"r3"``, ``"rnode"`` (= ``"kinetic+jacobian"``: RNODE's 𝒦 + ℬ),
    ``"kinetic+jacobian"``, ``"ernode"``, a list of names or :class:`Regularizer` instances. λ
    is one number shared by all (:math:`\lambda \sum_i R_i`, the MNIST and FFJORD studies'
    convention), or one per regularizer (a sequence in order, or ``{name: λ}``:
    :math:`\sum_i \lambda_i R_i`, the Latent ODE's), or ``None`` (a set to measure, no penalty).

    Attributes:
        regularizers: the parsed instances in the order of ``Solution.integrals``: the
            :mod:`taynode.regularizers.integrands`, then the :mod:`taynode.regularizers.heuristics`
            step regularizers, each in the order given.
        lam: the shared λ (a float), the per-regularizer λ (a tuple), or ``None``.
    """

    regularizers: tuple = ()
    lam: float | tuple | None = None

    @classmethod
    def parse(cls, spec: Any = (), lam: Any = None, *, taylor_method: str | None = None) -> RegularizerSet:
        """Parse ``spec`` and check ``lam`` against it (see the class docstring).

        ``taylor_method`` is the Taylor-mode method of R_K named by a string (default: R_K's own).
        Errors: unknown names, a name given twice, λ < 0, NaN or inf, λ = 0 with a regularizer,
        λ > 0 with none, per-regularizer λ of the wrong length or names.
        """
        if isinstance(spec, RegularizerSet):
            return spec if lam is None else cls(spec.regularizers, cls._weights(spec.regularizers, lam))
        if isinstance(spec, (str, Regularizer)):
            s = spec.strip().lower() if isinstance(spec, str) else None
            if s in NO_REGULARIZERS:
                names = []
            elif s == "rnode":
                names = list(RNODE)
            elif s is not None:
                names = s.split("+")
            else:
                names = [spec]
        else:
            names = list(spec)
        regs = [_parse_one(n, taylor_method) for n in names]
        # integrands first, then step regularizers: the order of Solution.integrals
        regs = tuple(r for r in regs if isinstance(r, Regularizer)) + tuple(r for r in regs if not isinstance(r, Regularizer))
        seen = [r.name for r in regs]
        if len(set(seen)) != len(seen):
            raise ValueError(f"regularizers must have distinct names: {spec!r} names one regularizer twice ({seen})")
        return cls(regs, cls._weights(regs, lam))

    @staticmethod
    def _weights(regs, lam):
        if lam is None:
            return None
        names = [r.name for r in regs]
        if isinstance(lam, dict):
            given = {
                parse_integrand(k).name if isinstance(k, str) and not _is_step_name(k) else str(k).lower(): v
                for k, v in lam.items()
            }
            if sorted(given) != sorted(names):
                raise ValueError(f"λ per regularizer must name exactly the regularizers {names}, got {list(lam)}")
            return tuple(_check_weight(n, given[n]) for n in names)
        if isinstance(lam, (list, tuple)):
            if len(lam) != len(regs):
                raise ValueError(f"give one weight λ per regularizer: {len(regs)} regularizers {names}, {len(lam)} weights")
            return tuple(_check_weight(n, w) for n, w in zip(names, lam))
        try:
            w = float(lam)
        except (TypeError, ValueError):
            raise ValueError(f"λ must be a number, one per regularizer, or {{name: λ}}, got {lam!r}") from None
        _check_sign(w, "")
        if w > 0 and not regs:
            raise ValueError(f"λ = {w} > 0 but no regularizer is chosen (reg 'none')")
        if w == 0 and regs:
            raise ValueError(
                "a regularizer is chosen but its weight λ is 0; pass λ > 0 (--lam), or reg 'none' to train unregularized"
            )
        return w

    def with_lam(self, lam: Any) -> RegularizerSet:
        """The same regularizers with weights ``lam`` taken as given (a shared λ or one per
        regularizer, e.g. traced by an adaptive λ inside a jitted loss): only their count is checked."""
        if isinstance(lam, (list, tuple)) and len(lam) != len(self.regularizers):
            raise ValueError(
                f"give one weight λ per regularizer: {len(self.regularizers)} regularizers {list(self.names)}, {len(lam)} weights"
            )
        return replace(self, lam=tuple(lam) if isinstance(lam, list) else lam)

    @property
    def names(self) -> tuple:
        """The regularizers' names, in the order of ``Solution.integrals``."""
        return tuple(r.name for r in self.regularizers)

    @property
    def integrands(self) -> tuple:
        """The regularizers integrated (or sampled) along the trajectory."""
        return tuple(r for r in self.regularizers if isinstance(r, Regularizer))

    @property
    def step_regularizers(self) -> tuple:
        """ERNODE/SRNODE: summed over the solver's accepted steps."""
        return tuple(r for r in self.regularizers if not isinstance(r, Regularizer))

    def __iter__(self) -> Any:
        return iter(self.regularizers)

    def __len__(self) -> int:
        return len(self.regularizers)

    def penalty(self, values: dict) -> Any:
        r"""Σ λ_i·R_i from ``values = {name: R_i}`` (e.g. batch means of ``Solution.integrals``).

        A shared λ is applied as :math:`\lambda \sum_i R_i`, per-regularizer ones as
        :math:`\sum_i \lambda_i R_i` (each the same arithmetic the studies used, so losses are
        unchanged to the last bit). 0 without regularizers.
        """
        if self.lam is None:
            raise ValueError("this regularizer set has no weights λ: parse it with lam=")
        if not self.regularizers:
            return 0.0
        if isinstance(self.lam, tuple):
            return sum((w * values[n] for w, n in zip(self.lam, self.names)), 0.0)
        return self.lam * sum(values[n] for n in self.names)


def _is_step_name(name: str) -> bool:
    return parse_step(name) is not None
