"""Everything taynode needs from JAX beyond its documented public API, in one place.

The Taylor core interprets jaxprs equation by equation, so it depends on JAX's jaxpr data
structures, on primitive names and on how call-like primitives are re-bound. Public
``jax.extend`` APIs are used where they exist; the rest is here, each item with the JAX
versions it was checked on, so that a new JAX release touches this file only.

Checked on jax 0.10.2 and 0.12.0.1 (Python 3.12):

* jaxpr types: ``jax.extend.core`` (``Literal``, ``DropVar``, ``Jaxpr``, ``ClosedJaxpr``). JAX
  0.11 merged ``ClosedJaxpr`` into ``Jaxpr`` (``ClosedJaxpr is Jaxpr``; a jaxpr carries its
  ``consts`` and ``.jaxpr`` is itself); :func:`jaxpr_parts` reads both layouts.
* re-binding an equation: ``Primitive.get_bind_params`` (0.10.2, 0.12.0.1: custom-JVP/VJP calls
  turn their jaxpr params back into the sub-functions ``bind`` takes, the way
  ``jax.core.eval_jaxpr`` does).
* tracers: ``jax.core.Tracer`` (public in 0.10.2 and 0.12.0.1).
* the current trace, compared by identity: ``jax.extend.core.get_opaque_trace_state`` (public
  ``jax.extend``; checked on 0.10.2): whether code runs under the same transformation as before.
* the XLA backends' state: ``jax._src.xla_bridge.backends_are_initialized`` (0.10.2, 0.12.0.1;
  no public equivalent).
* ``jax.experimental.jet.jet_rules``: the jet rule table, a dict keyed by primitive (0.10.2,
  0.12.0.1), read only.
* primitive names: ``stack``/``unstack`` exist from 0.10.1, ``split`` from 0.4.36;
  ``polynomial`` (0.12) is how ``jnp.sinc`` evaluates its series.
"""

from __future__ import annotations

from typing import Any

import jax
from jax._src import xla_bridge as _xla_bridge
from jax.experimental import jet as _jet
from jax.extend import core as _core

__all__ = [
    "CUSTOM_JVP_CALLS",
    "CUSTOM_VJP_CALLS",
    "DropVar",
    "Literal",
    "backends_are_initialized",
    "bind_equation",
    "custom_jvp_name",
    "is_jaxpr",
    "is_tracer",
    "jaxpr_parts",
    "jet_has_rule",
    "trace_jaxpr",
    "trace_state",
]

Literal = _core.Literal
DropVar = _core.DropVar

# Call primitives whose bodies are user functions with custom derivative rules.
CUSTOM_JVP_CALLS = frozenset({"custom_jvp_call"})
CUSTOM_VJP_CALLS = frozenset({"custom_vjp_call", "custom_vjp_call_jaxpr"})

_JAXPR_TYPES = tuple({_core.Jaxpr, getattr(_core, "ClosedJaxpr", _core.Jaxpr)})


def is_jaxpr(obj: Any) -> bool:
    """Whether ``obj`` is a jaxpr (open or closed; one type from JAX 0.11)."""
    return isinstance(obj, _JAXPR_TYPES)


def jaxpr_parts(obj: Any) -> tuple[Any, tuple]:
    """``(jaxpr, consts)`` of a closed or open jaxpr: ``jaxpr`` has ``constvars``, ``invars``,
    ``outvars`` and ``eqns``, and ``consts`` are the values of its ``constvars``."""
    inner = getattr(obj, "jaxpr", obj)
    return inner, tuple(getattr(obj, "consts", ()))


def trace_jaxpr(fn, *args) -> tuple[Any, tuple]:
    """``jaxpr_parts(jax.make_jaxpr(fn)(*args))``."""
    return jaxpr_parts(jax.make_jaxpr(fn)(*args))


def bind_equation(eqn, *args):
    """Apply the primitive of equation ``eqn`` to ``args`` with its parameters, as
    ``jax.core.eval_jaxpr`` does (custom-derivative calls keep their rules). Returns a list."""
    params = eqn.primitive.get_bind_params(eqn.params)
    out = eqn.primitive.bind(*args, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def custom_jvp_name(eqn) -> str:
    """The name of the function behind a ``custom_jvp_call`` equation (0.12: a ``name``
    parameter; 0.10: the debug info of its ``call_jaxpr``)."""
    if "name" in eqn.params:
        return str(eqn.params["name"])
    info = getattr(jaxpr_parts(eqn.params["call_jaxpr"])[0], "debug_info", None)
    return str(getattr(info, "func_name", "?"))


def is_tracer(x: Any) -> bool:
    """Whether ``x`` is a JAX tracer (an abstract value under ``jit``, ``grad``, ``vmap``, …)."""
    return isinstance(x, jax.core.Tracer)


def trace_state() -> Any:
    """The current trace (``jit``, ``grad``, ``vmap``, … or none): equal only under the same one."""
    return _core.get_opaque_trace_state()


def backends_are_initialized() -> bool:
    """Whether JAX has created its XLA clients (after which XLA_FLAGS no longer take effect)."""

    return _xla_bridge.backends_are_initialized()


def jet_has_rule(primitive) -> bool:
    """Whether ``jax.experimental.jet`` has a Taylor rule for ``primitive``."""
    return primitive in _jet.jet_rules
