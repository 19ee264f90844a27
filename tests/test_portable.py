"""The portable description, its file format, the NumPy reference, and the Julia marshalling
layer (no Julia needed)."""

import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from taynode import portable
from taynode.backends import get_backend
from taynode.backends.julia_backend import JuliaUnavailableError, from_julia_columns, to_julia_columns
from taynode.models import MLPDynamics


@pytest.mark.parametrize("act", sorted(portable._NP_ACTIVATIONS))
def test_numpy_reference_matches_jax_model(act):
    model = MLPDynamics((3, 8, 8, 3), act, key=jax.random.PRNGKey(1), dtype=jnp.float64)
    spec = portable.from_model(model)
    z = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(portable.numpy_field(spec)(0.3, z), model(0.3, jnp.asarray(z)), rtol=1e-12, atol=1e-14)
    rebuilt = portable.jax_field(spec)
    np.testing.assert_array_equal(rebuilt(0.3, jnp.asarray(z)), model(0.3, jnp.asarray(z)))


def test_save_load_roundtrip_is_exact_and_atomic(tmp_path):
    model = MLPDynamics((2, 5, 2), "tanh", key=jax.random.PRNGKey(2), dtype=jnp.float64)
    spec = portable.from_model(model)
    path = str(tmp_path / "model.npz")
    portable.save(spec, path)
    back = portable.load(path)
    assert back["activation"] == "tanh"
    for a, b in zip(spec["weights"] + spec["biases"], back["weights"] + back["biases"]):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary left behind
    portable.save(portable.problem("van_der_pol"), path)
    assert portable.load(path)["name"] == "van_der_pol"


def test_invalid_descriptions_are_named():
    good = portable.from_model(MLPDynamics((2, 4, 2), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64))
    with pytest.raises(ValueError, match="unknown activation"):
        portable.validate(good | {"activation": "mish"})
    with pytest.raises(ValueError, match="layer 1"):
        portable.validate(good | {"weights": [good["weights"][0], np.ones((2, 7))]})
    with pytest.raises(ValueError, match="NaN or inf"):
        portable.validate(good | {"biases": [good["biases"][0], np.array([np.nan, 0.0])]})
    with pytest.raises(ValueError, match="unknown problem"):
        portable.problem("lorenz96")
    with pytest.raises(ValueError, match="not a portable description"):
        portable.validate({"kind": "mlp"})


def test_marshalling_is_zero_copy_and_round_trips():
    z = np.arange(12.0).reshape(4, 3)  # (batch, d), C order
    cols = to_julia_columns(z)
    assert cols.shape == (3, 4) and cols.flags.f_contiguous and np.shares_memory(cols, z)
    # a Julia d × batch × n result arrives as a Fortran-ordered array: read back as (n, batch, d)
    jl_like = np.asfortranarray(np.random.default_rng(0).normal(size=(3, 4, 5)))
    out = from_julia_columns(jl_like)
    assert out.shape == (5, 4, 3) and out.flags.c_contiguous and np.shares_memory(out, jl_like)
    assert out[2, 1, 0] == jl_like[0, 1, 2]
    with pytest.raises(ValueError, match="NaN or inf"):
        to_julia_columns(np.array([[np.nan]]))
    with pytest.raises(ValueError, match=r"\(batch, d\)"):
        to_julia_columns(np.ones(3))


def test_import_taynode_never_starts_julia():
    code = "import sys, taynode, taynode.backends, taynode.portable; print('juliacall' in sys.modules, 'juliapkg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_missing_julia_is_reported_quickly(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "TAYNODE_JULIA_DOWNLOAD"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with pytest.raises(JuliaUnavailableError, match=r"no Julia executable found.*JAX backend"):
        get_backend("julia")
    assert time.perf_counter() - start < 5.0


def test_unknown_backend():
    with pytest.raises(ValueError, match="valid: jax, julia"):
        get_backend("fortran")
