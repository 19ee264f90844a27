"""The solving layer's contracts (issue #23, #25): options checked before any work, the explicit
protocol of fields that share a stage's work with the regularizers, compiled solves reused, and a
solve's bits the same under a user's jit."""

import importlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import taynode as tn
from taynode.models.mlp import MLPDynamics
from taynode.ode.checks import validate
from taynode.regularizers import Evaluation, StageSharingField

Z = jnp.array([[0.3, -0.2, 0.5]])
solve_module = importlib.import_module("taynode.ode.solve")  # the module (taynode.ode.solve is the function)


def decay(t, z, args):
    return -z


def test_a_typo_in_adjoint_raises_before_any_work_even_on_an_empty_interval():
    with pytest.raises(ValueError, match="unknown adjoint 'typo'; valid: backprop, adjoint"):
        tn.solve(decay, Z, ts=(0.0, 0.0), adjoint="typo")


def test_quadrature_is_validated_before_the_step_regularizers_read_it():
    with pytest.raises(ValueError, match="unknown quadrature 'sample'; valid: integrated, sampled"):
        tn.solve(decay, Z, regularizers=["ernode"], adjoint="adjoint", quadrature="sample")


class _Model(eqx.Module):
    """A user's model with an unrelated ``evaluate`` method (e.g. a metric): a plain field."""

    w: jax.Array

    def __call__(self, t, z, args):
        return -self.w * z

    def evaluate(self, *args):
        raise AssertionError("solve must not call a plain field's evaluate")


class _Sharing(StageSharingField):
    """A field that shares its evaluation: 𝒦 reads fz from it (here doubled, to see it is used)."""

    def evaluate(self, t, z, args, noise=None):
        fz = -z
        return fz, Evaluation(decay, t, z, args, noise, fz=2 * fz)


def test_a_model_with_an_unrelated_evaluate_method_is_called_as_a_plain_field():
    sol = tn.solve(_Model(jnp.array(1.0)), Z, (0.0, 1.0), regularizers=["kinetic"])
    ref = tn.solve(decay, Z, (0.0, 1.0), regularizers=["kinetic"])
    assert jnp.allclose(sol.z1, ref.z1, rtol=1e-12) and jnp.allclose(sol.integrals["kinetic"], ref.integrals["kinetic"])


def test_a_stage_sharing_field_hands_its_evaluation_to_the_regularizers():
    sol = tn.solve(_Sharing(), Z, (0.0, 1.0), regularizers=["kinetic"])
    ref = tn.solve(decay, Z, (0.0, 1.0), regularizers=["kinetic"])
    assert jnp.allclose(sol.z1, ref.z1, rtol=1e-12)
    # its fz (twice f) is what 𝒦 integrated: four times the plain ∫‖f‖²
    assert jnp.allclose(sol.integrals["kinetic"], 4 * ref.integrals["kinetic"], rtol=1e-6)


def _counting_traces(monkeypatch):
    traces = [0]
    original = solve_module._run

    def counted(spec, problem):
        traces[0] += 1
        return original(spec, problem)

    monkeypatch.setattr(solve_module, "_run_cached", eqx.filter_jit(counted))
    monkeypatch.setattr(solve_module, "_run", counted)
    return traces


def test_a_second_identical_solve_reuses_the_compiled_program(monkeypatch):
    traces = _counting_traces(monkeypatch)
    model = _Model(jnp.array(1.0))
    a = tn.solve(model, Z, (0.0, 1.0), regularizers=["r2"], rtol=1e-6, atol=1e-6)
    b = tn.solve(_Model(jnp.array(1.5)), 2 * Z, (0.0, 1.0), regularizers=["r2"], rtol=1e-6, atol=1e-6)
    assert traces[0] == 1  # same dynamics (new weights), options and shapes: compiled once
    assert not jnp.allclose(a.z1, b.z1)  # the new weights and state were used
    tn.solve(decay, Z, (0.0, 1.0), rtol=1e-6, atol=1e-6)
    tn.solve(decay, Z + 1, (0.0, 2.0), rtol=1e-6, atol=1e-6)
    assert traces[0] == 2  # a plain function without arrays: also compiled once
    tn.solve(decay, Z, (0.0, 1.0), rtol=1e-5, atol=1e-5)
    assert traces[0] == 3  # another tolerance is another program


def test_a_function_closing_over_an_array_is_not_reused_stale(monkeypatch):
    traces = _counting_traces(monkeypatch)
    w = [jnp.array(1.0)]

    def f(t, z, args, w=w):  # reads a changing array: a reused program would keep the old one
        return -w[0] * z

    first = tn.solve(f, Z, (0.0, 1.0))
    w[0] = jnp.array(2.0)
    second = tn.solve(f, Z, (0.0, 1.0))
    assert traces[0] == 2
    assert jnp.allclose(second.z1, Z * jnp.exp(-2.0), rtol=1e-6) and not jnp.allclose(first.z1, second.z1)


def _direction_of(ts):
    return validate(decay, Z, ts, None, solver="dopri5", steps=None, rtol=None, atol=None, regularizers=(), key=None,
                    quadrature="integrated", samples=1, error_control="all", adjoint="backprop", checkpoints=16,
                    max_steps=16, save_steps=False)[2].direction  # fmt: skip


def test_known_times_make_the_direction_a_constant_of_the_program_also_under_a_users_jit():
    # sign(t1 - t0) is a Python float whenever the times are known at the call, as it was a
    # constant before #23: XLA then folds the integrands' multiply by it and stores the same bits
    # (a traced direction reorders dt * (sum / n) * direction: 1 ulp, measured on the MNIST checkpoint)
    seen = {}

    @jax.jit
    def jitted(z, t_end):
        seen["known"], seen["backward"] = _direction_of((0.0, 1.0)), _direction_of(np.array([1.0, 0.5, 0.0]))
        seen["empty"], seen["traced"] = _direction_of((0.0, 0.0)), _direction_of(jnp.stack([0.0, t_end]))
        return tn.solve(decay, z, (0.0, 0.0), regularizers=["r2"]).integrals["R2"]

    empty = jitted(Z, 1.0)
    assert seen == {"known": 1.0, "backward": -1.0, "empty": 0.0, "traced": None}
    assert all(type(v) is float for k, v in seen.items() if k != "traced")
    assert jnp.array_equal(empty, jnp.zeros(1))  # t0 = t1 known under the jit: the empty solve


def test_a_jitted_solve_with_known_times_is_bitwise_the_eager_solve():
    # at MNIST's width (784: XLA splits the integrand's sum into blocks) a direction handled
    # differently under a user's jit than eagerly changes R2 in the last bit (checked by making it traced)
    f = MLPDynamics((784, 16, 784), "sigmoid", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    z = jax.random.uniform(jax.random.PRNGKey(1), (8, 784), jnp.float64)
    kw = dict(regularizers=["r2"], rtol=1e-8, atol=1e-8)
    eager = tn.solve(f, z, (0.0, 1.0), **kw)
    jitted = eqx.filter_jit(lambda f, z: tn.solve(f, z, (0.0, 1.0), **kw))(f, z)
    assert np.array_equal(eager.integrals["R2"], jitted.integrals["R2"]) and np.array_equal(eager.z1, jitted.z1)
    assert int(eager.stats["nfe"]) == int(jitted.stats["nfe"])
    traced = eqx.filter_jit(lambda f, z, ts: tn.solve(f, z, ts, **kw))(f, z, jnp.array([0.0, 1.0]))
    assert np.allclose(traced.integrals["R2"], eager.integrals["R2"], rtol=1e-14, atol=0)
