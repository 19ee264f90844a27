"""A solve's run-time failures as values, raised on the host after the computation.

Why: JAX never writes a program with host callbacks to its persistent compilation cache, and
equinox's run-time errors (``eqx.error_if``) are host callbacks. So the integrators return a
:class:`Failure` (an integer code and its messages) instead of raising inside the compiled
program, and whoever runs the program raises:

* a solve of concrete inputs raises at once on the host (:meth:`Failure.raise_if_failed`);
* a solve traced inside :func:`collect` (the training loop's step) adds its failure to the ones
  collected, which the compiled step returns: the loop raises after the step;
* :func:`filter_jit` does the same for any jitted function of solves (a study's evaluation);
* any other traced solve (a caller's own ``jit``, ``grad``, ``vmap``) keeps equinox's run-time error
  (:func:`check`), so it still raises when the computation runs.

A failure is collected only at the trace level :func:`collect` was entered at (the same
transformation): one inside a nested ``vmap``, ``scan`` or ``jit`` cannot leave it as a value, and
falls back to equinox's error.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._jax import is_tracer, trace_state

__all__ = ["Failure", "SolveError", "check", "collect", "collecting", "first", "filter_jit", "when"]


class SolveError(eqx.EquinoxRuntimeError):
    """A solve failed when it ran (e.g. it reached ``max_steps``). A subclass of equinox's error,
    which the same failure raises from inside a caller's own ``jit``."""


class Failure(eqx.Module):
    """What went wrong in a computation: ``code`` 0 is nothing, ``code`` i is ``messages[i - 1]``."""

    code: jax.Array  # an int32 scalar
    messages: tuple[str, ...] = eqx.field(static=True)

    def message(self) -> str | None:
        """The failure's message, or None (on the host: waits for the computation)."""
        code = int(self.code)
        return self.messages[code - 1] if code else None

    def raise_if_failed(self, error: type[Exception] = SolveError) -> None:
        """Raise ``error`` with the message if there was a failure (on the host)."""
        message = self.message()
        if message is not None:
            raise error(message)


def when(pred: Any, message: str) -> Failure:
    """A failure with ``message`` where ``pred`` holds."""
    return Failure(jnp.where(pred, 1, 0).astype(jnp.int32), (message,))


def first(failures: Sequence[Failure]) -> Failure:
    """One failure: the first of ``failures`` that failed (an earlier cause hides its consequences)."""
    code, messages = jnp.zeros((), jnp.int32), ()
    for f in failures:
        code = jnp.where(code != 0, code, jnp.where(f.code != 0, f.code + len(messages), 0)).astype(jnp.int32)
        messages += f.messages
    return Failure(code, messages)


class _Collected:
    def __init__(self):
        self.level = trace_state()
        self.failures: list[Failure] = []


_ACTIVE: contextvars.ContextVar[_Collected | None] = contextvars.ContextVar("taynode_failures", default=None)


@contextlib.contextmanager
def collecting():
    """Within it, failures checked at the current trace level are collected (``.failures``) instead
    of raised by host callbacks; the caller returns :func:`first` of them from its computation."""
    box = _Collected()
    token = _ACTIVE.set(box)
    try:
        yield box
    finally:
        _ACTIVE.reset(token)


def collect(fn: Callable) -> Callable:
    """``fn`` returning ``(fn(...), failure)``: the failures of the solves it traces, as a value."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with collecting() as box:
            out = fn(*args, **kwargs)
        return out, first(box.failures)

    return wrapped


def check(x: Any, failure: Failure) -> Any:
    """``x``, with ``failure`` raised: now (concrete), by the enclosing :func:`collecting` (traced at
    its level), or else when the computation runs (``eqx.branched_error_if``)."""
    if not is_tracer(failure.code):
        failure.raise_if_failed()
        return x
    box = _ACTIVE.get()
    if box is not None and box.level == trace_state():
        box.failures.append(failure)
        return x
    return eqx.branched_error_if(x, failure.code != 0, failure.code, ("", *failure.messages))


def filter_jit(fn: Callable) -> Callable:
    """``eqx.filter_jit(fn)`` whose solves' failures the compiled program returns, raised after it
    ran (:func:`check`): a program without host callbacks, which JAX's persistent cache keeps."""
    compiled = eqx.filter_jit(collect(fn))

    @functools.wraps(fn)
    def run(*args, **kwargs):
        out, failure = compiled(*args, **kwargs)
        return check(out, failure)

    return run
