"""Rewrite a function's jaxpr into primitives that ``jax.experimental.jet`` has rules for.

``jet`` (jax 0.10) cannot trace ``custom_jvp`` functions nested in ``jit`` (``jax.nn.relu``,
``jax.nn.softplus``), has no rule for ``tan`` or ``atan``, and its ``max``/``min`` rules fail
when one operand is a rank-0 constant (``jnp.clip`` with scalar bounds). Re-evaluating the
jaxpr equation by equation fixes all three without touching jax's global rule registry:

* call-like equations (``jit``, ``custom_jvp_call``, ``custom_vjp_call``, ``remat``,
  ``closed_call``) are inlined; custom derivative rules are traced through their primal,
  which is what a Taylor series of the function needs;
* primitives without a rule are rewritten in terms of ones with a rule (``_REWRITES``);
* rank-0 operands of elementwise primitives are broadcast to the output shape.

Anything else without a rule raises :class:`UnsupportedPrimitiveError`, naming it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import _jax

__all__ = ["UnsupportedPrimitiveError", "inline"]


class UnsupportedPrimitiveError(NotImplementedError):
    """The Taylor core met an operation it cannot expand in a Taylor series."""

    def __init__(self, primitive: str, method: str, alternative: str, reason: str = ""):
        self.primitive = primitive
        self.method = method
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"Taylor method {method!r} has no rule for the primitive {primitive!r} used in the "
            f"dynamics{why}; use method={alternative!r}, which differentiates any JAX operation, or "
            f"rewrite that operation."
        )


_INLINE = {
    "jit",
    "pjit",
    "closed_call",
    "core_call",
    "custom_vjp_call",
    "custom_vjp_call_jaxpr",
    "remat",
    "remat2",
    "checkpoint",
    "custom_lin",
}

# One rewrite per primitive jet lacks, in terms of primitives it has.
_REWRITES = {
    "tan": lambda x: lax.sin(x) / lax.cos(x),
    "atan": lambda x: lax.atan2(x, jnp.ones_like(x)),
    "asin": lambda x: lax.atan2(x, lax.sqrt((1 - x) * (1 + x))),
    "acos": lambda x: lax.atan2(lax.sqrt((1 - x) * (1 + x)), x),
}

# custom_jvp functions whose implementation is a faithful Taylor expansion of the function
# (max and log1p/exp pieces), so their primal is inlined; any other custom_jvp function (jnp.sinc
# and xlogy patch a point with ``where``) follows its JVP rule in the incremental method
# (:mod:`.control`) and is refused by jet, which traces the primal.
FAITHFUL_CUSTOM_JVP = {"relu", "relu6", "logaddexp"}

# Effects with no outputs (a counter or print inside f) say nothing about derivatives.
_DROP = {"debug_callback", "debug_print"}

_ELEMENTWISE = {"add", "sub", "mul", "div", "max", "min", "pow", "atan2", "rem", "select_n"}


def _subjaxpr(eqn):
    """The inner (jaxpr, consts) of a call-like equation, or None."""
    if eqn.primitive.name not in _INLINE:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = eqn.params.get(key)
        if _jax.is_jaxpr(inner):
            return _jax.jaxpr_parts(inner)
    return None


def _custom_jvp(eqn, invals, method, alternative, rewrite):
    """Outputs of a custom_jvp call: inlined when faithful, kept for incremental, else refused."""
    fname = _jax.custom_jvp_name(eqn)
    if fname in FAITHFUL_CUSTOM_JVP:
        inner, consts = _jax.jaxpr_parts(eqn.params["call_jaxpr"])
        return eval_jaxpr(inner, consts, *invals, method=method, alternative=alternative, rewrite=rewrite)
    if method == "jet":
        raise UnsupportedPrimitiveError(
            f"custom_jvp_call ({fname})",
            "jet",
            "incremental",
            "jet expands a custom_jvp function's implementation, not its JVP rule, and this one may patch points with where",
        )
    return _jax.bind_equation(eqn, *invals)


def _integer_exponents(p):
    if _jax.is_tracer(p):
        return None
    p = np.asarray(p)
    if p.size == 0 or not np.all(np.isfinite(p)) or not np.all(p == np.round(p)) or np.max(np.abs(p)) > 64:
        return None
    return sorted({int(v) for v in p.ravel()})


def _pow_for_jet(x, p):
    """``x ** p`` with a concrete integer-valued exponent as integer powers: jet's pow rule
    divides by x (NaN at 0) and takes log x (NaN for x < 0)."""
    ints = _integer_exponents(p)
    if ints is None:
        return lax.pow(x, p)
    if len(ints) == 1:
        return lax.integer_pow(x, ints[0]) if ints[0] != 0 else jnp.ones_like(x)
    out = jnp.zeros(jnp.broadcast_shapes(jnp.shape(x), jnp.shape(p)), x.dtype)
    for n in ints:
        out = out + jnp.where(np.asarray(p) == n, lax.integer_pow(x, n) if n != 0 else jnp.ones_like(x), 0)
    return out


def _broadcast_scalars(eqn, invals, rewrite=True):
    if eqn.primitive.name not in _ELEMENTWISE or len(eqn.outvars) != 1:
        return invals
    if not rewrite and eqn.primitive.name == "pow":
        return invals  # the incremental pow rule reads a concrete exponent
    shape = eqn.outvars[0].aval.shape
    if shape == ():
        return invals
    return [lax.broadcast_in_dim(x, shape, ()) if jnp.ndim(x) == 0 else x for x in invals]


def eval_jaxpr(jaxpr, consts, *args, method: str = "jet", alternative: str = "nested", rewrite: bool = True):
    """Evaluate ``jaxpr`` with calls inlined and (``rewrite=True``) jet-unsupported primitives
    rewritten."""
    env = {}

    def read(v):
        return v.val if isinstance(v, _jax.Literal) else env[v]

    def write(v, val):
        if not isinstance(v, _jax.DropVar):
            env[v] = val

    for v, val in zip(jaxpr.constvars, consts):
        write(v, val)
    for v, val in zip(jaxpr.invars, args):
        write(v, val)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        sub = _subjaxpr(eqn)
        if name in _DROP and not eqn.outvars:
            continue
        if name in _jax.CUSTOM_JVP_CALLS:
            outvals = _custom_jvp(eqn, invals, method, alternative, rewrite)
        elif sub is not None:
            inner, inner_consts = sub
            outvals = eval_jaxpr(inner, inner_consts, *invals, method=method, alternative=alternative, rewrite=rewrite)
        elif rewrite and name in _REWRITES:
            outvals = [_REWRITES[name](*invals)]
        elif rewrite and name == "pow":
            outvals = [_pow_for_jet(*invals)]
        elif rewrite and name == "abs" and jnp.iscomplexobj(invals[0]):
            raise UnsupportedPrimitiveError(
                "abs (of a complex value)", method, "incremental", "jet's abs rule assumes a real input"
            )
        else:
            invals = _broadcast_scalars(eqn, invals, rewrite)
            try:
                outvals = eqn.primitive.bind(*invals, **eqn.params)
            except KeyError as e:
                # jet's trace looks primitives up in its rule table; only a miss lands here.
                if e.args and e.args[0] is eqn.primitive:
                    raise UnsupportedPrimitiveError(name, method, alternative) from None
                raise
            if not eqn.primitive.multiple_results:
                outvals = [outvals]
        for v, val in zip(eqn.outvars, outvals):
            write(v, val)
    return [read(v) for v in jaxpr.outvars]


def inline(fn, *example_args):
    """Return ``(g, consts)``: ``g(consts, *args)`` computes ``fn(*args)`` (flat outputs) using
    only primitives with jet rules. ``consts`` holds any tracers ``fn`` closes over, so that
    derivatives with respect to closed-over parameters flow through."""
    jaxpr, consts = _jax.trace_jaxpr(fn, *example_args)

    def g(consts, *args):
        flat = jax.tree_util.tree_leaves(args)
        return eval_jaxpr(jaxpr, consts, *flat)

    return g, consts


def flatten(fn, *example_args):
    """``fn`` as one flat jaxpr with every call (``jit``, faithful ``custom_jvp``, …) inlined,
    rank-0 elementwise operands broadcast, and ``fn``'s closed-over values (possibly tracers of
    an outer transformation) moved to the front of its inputs. Returns ``((jaxpr,
    jaxpr_consts), consts)``: evaluate ``jaxpr`` with ``consts`` followed by ``example_args``'
    leaves."""
    jaxpr, consts = _jax.trace_jaxpr(fn, *example_args)

    def flat(consts_, *args):
        return eval_jaxpr(jaxpr, consts_, *args, method="incremental", rewrite=False)

    leaves = jax.tree_util.tree_leaves(example_args)
    return _jax.trace_jaxpr(flat, consts, *leaves), consts
