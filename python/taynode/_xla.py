"""A guard against an XLA CPU miscompilation in jaxlib 0.10-0.12, applied when taynode is imported.

XLA's experimental YNN fusion on CPU returns NaN or inf, differently from run to run, for a
matmul with an all-zero broadcast operand fused into a reduction, e.g. under ``jax.jit``::

    W = jax.random.normal(jax.random.PRNGKey(0), (100, 100)) / 10
    f = lambda x: jnp.sum((x @ W + jnp.tanh(x) @ jnp.zeros((100, 100))) ** 2, axis=1)

(x: (50, 100) float32). ``jax.experimental.jet`` builds exactly such zero series for closed-over
weights, so the ``jet`` Taylor method returned NaN for R_K of an MLP under jit. Turning the
fusion off (``--xla_cpu_experimental_ynn_fusion_type=``) gives the eager values and measured no
slowdown on the MNIST dynamics (benchmarks/taylor_methods.py's model). It must be set before JAX
creates its CPU client; ``TAYNODE_KEEP_XLA_FLAGS=1`` or a user's own setting of the flag leaves
XLA_FLAGS alone.

The guard acts on the jaxlib minors in :data:`AFFECTED`, each checked with the reproducer above
(tests/test_xla_guard.py runs it on every supported jaxlib): without the flag 5 of 5 jitted runs
were non-finite on jaxlib 0.10.2, 0.11.2 and 0.12.0.1, with it 0 of 5. Other jaxlib versions do not
get the flag: XLA aborts on flags it lacks, and a fixed jaxlib should keep its fusion.
"""

from __future__ import annotations

import os
import warnings

import jaxlib.version

from ._jax import backends_are_initialized

FLAG = "--xla_cpu_experimental_ynn_fusion_type="

# (major, minor) of the jaxlib releases whose CPU YNN fusion miscompiles the reproducer.
AFFECTED = ((0, 10), (0, 11), (0, 12))


def jaxlib_minor(version: str) -> tuple[int, int]:
    """(major, minor) of a jaxlib version string such as ``"0.12.0.1"``."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def needs_guard(version: str) -> bool:
    """True if the jaxlib ``version`` is one whose YNN fusion miscompiles (see :data:`AFFECTED`)."""
    return jaxlib_minor(version) in AFFECTED


def _backends_started() -> bool:
    # JAX has no public "has the CPU client been created" query: taynode._jax wraps the private one.
    return backends_are_initialized()


def disable_ynn_fusion() -> bool:
    """Add :data:`FLAG` to XLA_FLAGS if it can still take effect; True if it was added."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("TAYNODE_KEEP_XLA_FLAGS") or "xla_cpu_experimental_ynn_fusion_type" in flags:
        return False
    if not needs_guard(jaxlib.version.__version__):
        return False
    if _backends_started():
        warnings.warn(
            "JAX was already running when taynode was imported, so taynode could not turn off "
            f"XLA's CPU YNN fusion, which returns NaN for method='jet' under jit on jaxlib {jaxlib.version.__version__} "
            f"(see taynode._xla). Import taynode first or set XLA_FLAGS={FLAG!r} yourself.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True
