"""The Julia bridge without Julia: a fake ``juliacall`` (tests/fake_juliacall) stands in for it.

Checks the plumbing that the first real run would otherwise find broken: the executable gate,
skip-versus-fail, column-major views in and out, tuple unpacking, Julia errors mapped to Python
ones, and the import order against torch. Numbers from the fake come from the JAX backend and
SciPy; Julia's own numerics are checked by tests/test_julia_golden.py and runtests.jl.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from julia_support import julia_backend_or_skip
from taynode import portable
from taynode.backends import get_backend
from taynode.backends import julia_backend as jb

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_juliacall")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _exe(directory, name):
    path = directory / name
    path.write_text("#!/bin/sh\necho 'julia version 1.10.5'\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean slate: no Julia anywhere, no juliacall imported, the fake importable; all undone
    afterwards (set-then-delete makes monkeypatch restore the variables and the module entry even
    when the bridge sets them during the test)."""
    for var in (
        "PYTHON_JULIACALL_EXE",
        "PYTHON_JULIACALL_PROJECT",
        "PYTHON_JULIAPKG_EXE",
        "TAYNODE_JULIA_DOWNLOAD",
        "TAYNODE_REQUIRE_JULIA",
        "FAKE_JULIACALL_MODE",
    ):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setitem(sys.modules, "juliacall", None)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(jb, "_MODULE", None)
    monkeypatch.delitem(sys.modules, "juliacall", raising=False)
    monkeypatch.syspath_prepend(FAKE)
    return bindir


def _with_julia(env, monkeypatch, mode="ok"):
    monkeypatch.setenv("FAKE_JULIACALL_MODE", mode)
    return _exe(env, "julia")


# ---- the gate: absent, misconfigured, present -------------------------------------------------


def test_no_julia_is_unavailable_and_never_imports_juliacall(env):
    with pytest.raises(jb.JuliaUnavailableError, match="no Julia executable"):
        get_backend("julia")
    assert "juliacall" not in sys.modules


def test_juliaup_alone_is_not_a_julia(env):
    # juliapkg would install a Julia through juliaup (a download) if we went ahead.
    _exe(env, "juliaup")
    with pytest.raises(jb.JuliaUnavailableError):
        get_backend("julia")
    assert "juliacall" not in sys.modules


def test_julia_on_path_is_pinned_for_juliapkg(env, monkeypatch):
    exe = _with_julia(env, monkeypatch)
    get_backend("julia")
    assert sys.modules["juliacall"].JULIAPKG_EXE == exe  # juliapkg then never asks juliaup


def test_download_opt_in_leaves_juliapkg_free(env, monkeypatch):
    monkeypatch.setenv("FAKE_JULIACALL_MODE", "ok")
    monkeypatch.setenv("TAYNODE_JULIA_DOWNLOAD", "1")
    get_backend("julia")
    assert sys.modules["juliacall"].JULIAPKG_EXE is None


def test_juliacall_exe_without_project_is_an_error_not_a_skip(env, monkeypatch):
    monkeypatch.setenv("PYTHON_JULIACALL_EXE", _exe(env, "julia"))
    with pytest.raises(jb.JuliaBackendError, match="PYTHON_JULIACALL_PROJECT"):
        get_backend("julia")
    assert "juliacall" not in sys.modules


def test_juliapkg_exe_that_does_not_exist_is_an_error(env, monkeypatch):
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", "/nonexistent/julia")
    with pytest.raises(jb.JuliaBackendError, match="not an executable"):
        get_backend("julia")


@pytest.mark.parametrize(
    "mode,match",
    [
        ("load_error", "Failed to precompile TayNodeJulia"),
        ("pkg_error", "PYTHON_JULIAPKG_OFFLINE=yes"),
        ("exception", "must be set together"),
    ],
)
def test_broken_julia_fails_naming_the_julia_error(env, monkeypatch, mode, match):
    _with_julia(env, monkeypatch, mode)
    with pytest.raises(jb.JuliaBackendError, match=match):
        get_backend("julia")


# ---- skip versus fail in the tests themselves -------------------------------------------------


def test_absent_julia_skips(env):
    with pytest.raises(pytest.skip.Exception, match="no Julia executable"):
        julia_backend_or_skip()


def test_require_julia_turns_the_skip_into_a_failure(env, monkeypatch):
    monkeypatch.setenv("TAYNODE_REQUIRE_JULIA", "1")
    with pytest.raises(pytest.fail.Exception, match="TAYNODE_REQUIRE_JULIA=1"):
        julia_backend_or_skip()


def test_broken_julia_is_not_skipped(env, monkeypatch):
    _with_julia(env, monkeypatch, "load_error")
    with pytest.raises(jb.JuliaBackendError):
        julia_backend_or_skip()


# ---- arrays and results through the bridge ----------------------------------------------------


@pytest.fixture
def fake(env, monkeypatch):
    _with_julia(env, monkeypatch)
    backend = get_backend("julia")
    return backend, sys.modules["juliacall"]


def test_states_go_over_as_column_major_views(fake):
    backend, jc = fake
    z = np.array([[0.3, -0.5], [0.7, 0.2], [0.1, 0.4]])
    backend.derivatives(portable.problem("quadratic"), z, 0.0, 2)
    Z = jc.CALLS[-1][1][1]
    assert Z.shape == (2, 3) and Z.flags.f_contiguous and np.shares_memory(Z, z)


def test_derivatives_come_back_as_views_in_python_layout(fake):
    backend, _ = fake
    z = np.array([[0.3, -0.5], [0.7, 0.2], [0.1, 0.4]])
    d = backend.derivatives(portable.problem("quadratic"), z, 0.0, 4)
    assert d.shape == (4, 3, 2)
    assert np.shares_memory(d, backend.jl.last_result)  # no copy on the way back
    for k in range(1, 5):  # closed form: dᵏz/dtᵏ = k! z^{k+1}
        np.testing.assert_allclose(d[k - 1], np.prod(np.arange(1, k + 1)) * z ** (k + 1), rtol=1e-12)


def test_solve_unpacks_the_tuple(fake):
    backend, _ = fake
    ts = np.linspace(0.0, 1.0, 5)
    z0 = np.array([[1.0, 1.0], [0.5, 2.0]])
    res = backend.solve(portable.problem("lotka_volterra"), z0, ts, "dopri5", rtol=1e-9, atol=1e-9)
    assert res.ys.shape == (5, 2, 2) and np.shares_memory(res.ys, backend.jl.last_result)
    np.testing.assert_array_equal(res.ys[0], z0)
    assert isinstance(res.nfe, int) and res.nfe > 0 and res.accepted == 5 and res.rejected == 0


def test_mlp_weights_go_over_one_array_per_argument(fake):
    import jax
    import jax.numpy as jnp

    from taynode.models import MLPDynamics

    backend, jc = fake
    spec = portable.from_model(MLPDynamics((2, 5, 2), "tanh", key=jax.random.PRNGKey(1), dtype=jnp.float64))
    r = backend.rk_integral(spec, np.array([[0.1, 0.2]]), 0.0, 0.5, 2)
    name, (act, *arrays) = jc.CALLS[-2]
    assert name == "MLP" and act == "tanh" and len(arrays) == 4
    assert [a.shape for a in arrays] == [(5, 3), (5,), (2, 6), (2,)]
    assert all(a.dtype == np.float64 and a.flags.c_contiguous for a in arrays)
    np.testing.assert_allclose(r, get_backend("jax").rk_integral(spec, np.array([[0.1, 0.2]]), 0.0, 0.5, 2), rtol=1e-12)


def test_failed_solve_raises_instead_of_returning_a_partial_solution(fake):
    backend, _ = fake
    with pytest.raises(jb.JuliaSolveError, match="retcode"):
        backend.solve(portable.problem("quadratic"), np.array([[1.0]]), np.array([0.0, 2.0]))


def test_julia_argument_errors_become_value_errors(fake, monkeypatch):
    backend, _ = fake
    monkeypatch.setattr(backend.jl, "PROBLEMS", ())
    with pytest.raises(ValueError, match="ArgumentError: unknown problem"):
        backend.derivatives(portable.problem("quadratic"), np.ones((1, 1)), 0.0, 1)


def test_bad_order_and_method_are_caught_before_julia(fake):
    backend, jc = fake
    n = len(jc.CALLS)
    for K in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="order K must be an integer >= 1"):
            backend.derivatives(portable.problem("quadratic"), np.ones((1, 1)), 0.0, K)
    with pytest.raises(ValueError, match="unknown Julia method 'rk4'"):
        backend.solve(portable.problem("quadratic"), np.ones((1, 1)), np.array([0.0, 0.1]), "rk4")
    assert len(jc.CALLS) == n


# ---- import order: juliacall before torch (juliacall warns the other order may segfault) -----


def test_compare_starts_julia_before_torch(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed, so it cannot be imported first")
    code = (
        "from taynode.compare import availability, IMPLEMENTATIONS\n"
        "runners, skipped = availability(IMPLEMENTATIONS)\n"
        "import juliacall, sys\n"
        "assert 'julia' in runners, skipped\n"
        "print('torch_before=%s torch_now=%s' % (juliacall.TORCH_BEFORE, 'torch' in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON_JULIA", "TAYNODE_JULIA"))}
    env.update(
        PYTHONPATH=os.pathsep.join([FAKE, os.path.join(ROOT, "python")]),
        FAKE_JULIACALL_MODE="ok",
        PYTHON_JULIAPKG_EXE=_exe(tmp_path, "julia"),
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch_before=False" in out.stdout, out.stdout
