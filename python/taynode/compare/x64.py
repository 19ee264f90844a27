"""JAX float64 for the harness's own computations, without changing the caller's process.

The comparison's numbers are float64 (errors down to 1e-10 against a 1e-13 reference), but a
library must not flip ``jax_enable_x64`` for the whole process: ``jax.enable_x64(True)`` is a
thread-local context that ends with the call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable


def float64(fn: Callable) -> Callable:
    """Run ``fn`` with JAX's 64-bit types enabled, restoring the caller's setting afterwards."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        import jax

        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return wrapped
