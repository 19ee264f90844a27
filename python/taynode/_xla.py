"""A guard against an XLA CPU miscompilation in jaxlib 0.10.x, applied when taynode is imported.

XLA's experimental YNN fusion on CPU returns NaN or inf, differently from run to run, for a
matmul with an all-zero broadcast operand fused into a reduction, e.g. under ``jax.jit``::

    W = jax.random.normal(jax.random.PRNGKey(0), (100, 100)) / 10
    f = lambda x: jnp.sum((x @ W + jnp.tanh(x) @ jnp.zeros((100, 100))) ** 2, axis=1)

(x: (50, 100) float32). ``jax.experimental.jet`` builds exactly such zero series for closed-over
weights, so the ``jet`` Taylor method returned NaN for R_K of an MLP under jit. Turning the
fusion off (``--xla_cpu_experimental_ynn_fusion_type=``) gives the eager values and measured no
slowdown on the MNIST dynamics (benchmarks/taylor_methods.py's model). It must be set before JAX
creates its CPU client; ``TAYNODE_KEEP_XLA_FLAGS=1`` or a user's own setting of the flag leaves
XLA_FLAGS alone. Other jaxlib versions do not get the flag (XLA aborts on flags it lacks).
"""

from __future__ import annotations

import os
import warnings

FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def disable_ynn_fusion() -> bool:
    """Add :data:`FLAG` to XLA_FLAGS if it can still take effect; True if it was added."""
    import jaxlib.version

    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("TAYNODE_KEEP_XLA_FLAGS") or "xla_cpu_experimental_ynn_fusion_type" in flags:
        return False
    if not jaxlib.version.__version__.startswith("0.10."):
        return False
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        warnings.warn(
            "JAX was already running when taynode was imported, so taynode could not turn off "
            "XLA's CPU YNN fusion, which returns NaN for method='jet' under jit on jaxlib 0.10 "
            f"(see taynode._xla). Import taynode first or set XLA_FLAGS={FLAG!r} yourself.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True
