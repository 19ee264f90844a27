"""taynode turns off XLA's CPU YNN fusion at import (jaxlib 0.10-0.12 miscompile a matmul with a
zero broadcast operand fused into a reduction, which jet's zero weight series trigger)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import jaxlib.version
import numpy as np
import pytest

from taynode._xla import FLAG, needs_guard
from taynode.models.mlp import MLPDynamics
from taynode.regularizers import RK

# The reproducer (taynode._xla's docstring): prints how many of 5 jitted runs differ from the eager values.
REPRO = """
import jax, jax.numpy as jnp, numpy as np
{pre}
x = jax.random.uniform(jax.random.PRNGKey(1), (50, 100), jnp.float32)
W = jax.random.normal(jax.random.PRNGKey(0), (100, 100), jnp.float32) / 10
f = lambda x: jnp.sum((x @ W + jnp.tanh(x) @ jnp.zeros((100, 100), jnp.float32)) ** 2, axis=1)
b, jf = np.asarray(f(x)), jax.jit(f)
bad = sum(not (np.all(np.isfinite(a := np.asarray(jf(x)))) and np.allclose(a, b, rtol=1e-5)) for _ in range(5))
import os; print("XLA_FLAGS=" + os.environ.get("XLA_FLAGS", ""))
print("bad", bad)
"""
JAXLIB = jaxlib.version.__version__


def run(code, **env):
    e = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TAYNODE_KEEP_XLA_FLAGS")} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


def bad_runs(pre):
    out = run(REPRO.format(pre=pre))
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split("bad")[-1]), out.stdout


def test_the_guard_acts_exactly_where_the_reproducer_fails():
    # Run on every supported jaxlib: a release that fixes the fusion should lose the guard (its fusion is
    # faster elsewhere), and one that still miscompiles must have it.
    bare, _ = bad_runs("")
    assert needs_guard(JAXLIB) == (bare > 0), f"jaxlib {JAXLIB}: {bare} of 5 bare jitted runs wrong, guard {needs_guard(JAXLIB)}"
    guarded, stdout = bad_runs("import taynode")
    assert guarded == 0, f"jaxlib {JAXLIB}: {guarded} of 5 jitted runs wrong after importing taynode"
    assert (FLAG in stdout) == needs_guard(JAXLIB)


def test_needs_guard_reads_the_minor_version():
    assert needs_guard("0.10.2") and needs_guard("0.11.0") and needs_guard("0.12.0.1")
    assert not needs_guard("0.9.2") and not needs_guard("0.13.0") and not needs_guard("1.10.0")


def test_a_users_own_flags_are_kept():
    out = run("import os, taynode; print(os.environ['XLA_FLAGS'])", XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=ynn")
    assert out.returncode == 0 and out.stdout.strip() == "--xla_cpu_experimental_ynn_fusion_type=ynn"
    out = run("import os, taynode; print(os.environ.get('XLA_FLAGS'))", TAYNODE_KEEP_XLA_FLAGS="1")
    assert out.returncode == 0 and out.stdout.strip() == "None"


@pytest.mark.skipif(not needs_guard(JAXLIB), reason=f"jaxlib {JAXLIB} does not get the guard (taynode._xla.AFFECTED)")
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
