"""taynode turns off XLA's CPU YNN fusion at import (jaxlib 0.10 miscompiles a matmul with a
zero broadcast operand fused into a reduction, which jet's zero weight series trigger)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from taynode._xla import FLAG
from taynode.models.mlp import MLPDynamics
from taynode.regularizers import RK

REPRO = """
import jax, jax.numpy as jnp, numpy as np
{pre}
x = jax.random.uniform(jax.random.PRNGKey(1), (50, 100), jnp.float32)
W = jax.random.normal(jax.random.PRNGKey(0), (100, 100), jnp.float32) / 10
f = lambda x: jnp.sum((x @ W + jnp.tanh(x) @ jnp.zeros((100, 100), jnp.float32)) ** 2, axis=1)
a, b = np.asarray(jax.jit(f)(x)), np.asarray(f(x))
assert np.all(np.isfinite(a)) and np.allclose(a, b, rtol=1e-5), (a[:3], b[:3])
import os; print("XLA_FLAGS=" + os.environ.get("XLA_FLAGS", ""))
"""


def run(code, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TAYNODE_KEEP_XLA_FLAGS")} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


@pytest.mark.skipif(not jax.__version__.startswith("0.10."), reason="the guard is for jaxlib 0.10.x only")
def test_import_taynode_makes_the_miscompiled_pattern_exact():
    out = run(REPRO.format(pre="import taynode"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert FLAG in out.stdout


def test_a_users_own_flags_are_kept():
    out = run("import os, taynode; print(os.environ['XLA_FLAGS'])", XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=ynn")
    assert out.returncode == 0 and out.stdout.strip() == "--xla_cpu_experimental_ynn_fusion_type=ynn"
    out = run("import os, taynode; print(os.environ.get('XLA_FLAGS'))", TAYNODE_KEEP_XLA_FLAGS="1")
    assert out.returncode == 0 and out.stdout.strip() == "None"


@pytest.mark.skipif(not jax.__version__.startswith("0.10."), reason="the guard is for jaxlib 0.10.x only")
def test_too_late_to_set_the_flag_is_a_warning():
    out = run(
        "import warnings, jax; jax.numpy.ones(1).block_until_ready()\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always'); import taynode\n"
        "print([str(x.message) for x in w])"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "could not turn off" in out.stdout


def test_jet_regularizer_under_jit_matches_nested_in_float32():
    # the case that returned NaN before the guard (a float32 sigmoid MLP, batch 50)
    x = jax.random.uniform(jax.random.PRNGKey(1), (50, 100), jnp.float32)
    g = MLPDynamics((100, 100, 100), "sigmoid", key=jax.random.PRNGKey(0), dtype=jnp.float32)
    t = jnp.float32(0.3)
    vals = {
        m: np.asarray(jax.jit(lambda t, z, r=RK(2, m): r.integrand(g, t, z, None, None))(t, x))  # noqa: B008 (one R2 per method)
        for m in ("jet", "nested", "incremental")
    }
    assert np.all(np.isfinite(vals["jet"]))
    np.testing.assert_allclose(vals["jet"], vals["nested"], rtol=1e-4)
    np.testing.assert_allclose(vals["incremental"], vals["nested"], rtol=1e-4)
