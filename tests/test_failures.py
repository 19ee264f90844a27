"""A solve's run-time failures as values (taynode.ode.failures): the training step and the
command line's jitted solves compile without host callbacks (so JAX's persistent cache keeps them),
and every failure still raises with its message: after the step, on the host, or under a caller's
own jit when the computation runs."""

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import taynode as tn
from taynode.ode import failures
from taynode.studies import toy
from taynode.train import NonFiniteLossError, read_meta, train
from taynode.train.parallel import update

Z = jnp.ones((4, 1))


def callbacks(closed_jaxpr) -> list[str]:
    """The host-callback primitives anywhere in a jaxpr (what keeps JAX from caching a program)."""
    found = []

    def walk(jaxpr):
        for e in jaxpr.eqns:
            if "callback" in e.primitive.name:
                found.append(e.primitive.name)
            for p in e.params.values():
                for sub in p if isinstance(p, (list, tuple)) else [p]:
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        walk(inner)

    walk(closed_jaxpr.jaxpr)
    return found


def blow_up(t, z, a):
    """dz/dt = w c z: c = 1 takes a few steps, c = 200 more than max_steps = 12."""
    w, c = a
    return w * c * z


def test_the_demos_training_steps_have_no_host_callbacks():
    cfg = toy.ToyConfig(hidden=4, depth=1)
    model = toy.make_model(cfg, jax.random.PRNGKey(0))
    opt = optax.adam(1e-2)
    arrays, static = eqx.partition(model, eqx.is_array)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    for regs in ([], [tn.RK(3)]):

        def loss_fn(m, z0, key, regs=regs):
            sol = tn.solve(m, z0, (0.0, 1.0), rtol=1e-6, atol=1e-6, regularizers=regs, key=key)
            return jnp.mean((sol.z1 - toy.target(z0)) ** 2), {}

        step = jax.make_jaxpr(lambda a, s, b, k, f=loss_fn: update(f, opt, eqx.combine(a, static), s, b, k))
        assert callbacks(step(arrays, state, Z, jax.random.PRNGKey(1))) == [], regs
        # the same step with equinox's checks in it (a solve under the caller's own jit) has them
        own_jit = jax.make_jaxpr(lambda a, z, f=loss_fn: f(eqx.combine(a, static), z, jax.random.PRNGKey(1))[0])
        assert callbacks(own_jit(arrays, Z)) != []


def test_a_failing_solve_in_the_step_raises_after_it_and_keeps_the_checkpoint(tmp_path):
    def loss_fn(m, c, key):
        sol = tn.solve(blow_up, Z, (0.0, 1.0), args=(m["w"], c), rtol=1e-6, atol=1e-6, max_steps=12)
        return jnp.mean(sol.z1**2), {}

    batches = lambda step: jnp.asarray(200.0 if step == 3 else 1.0)  # noqa: E731
    with pytest.raises(NonFiniteLossError) as err:
        train({"w": jnp.asarray(1.0)}, optax.sgd(1e-3), loss_fn, batches, tmp_path, steps=6, checkpoint_every=1, progress=False)
    msg = str(err.value)
    assert msg.startswith("training diverged: the step failed (The maximum number of solver steps was reached before t1")
    assert "max_steps=12" in msg and "at step 4" in msg and "(step 3) is kept" in msg
    assert read_meta(str(tmp_path / "checkpoint.npz"))["step"] == 3


def test_a_solve_under_a_vmap_of_the_loss_keeps_equinoxs_check(tmp_path):
    # a failure inside a transformation of the loss's own cannot be returned as a value: it raises as before
    def loss_fn(m, cs, key):
        one = lambda c: tn.solve(blow_up, Z, (0.0, 1.0), args=(m["w"], c), rtol=1e-6, atol=1e-6, max_steps=12).z1  # noqa: E731
        return jnp.mean(jax.vmap(one)(cs) ** 2), {}

    batches = lambda step: jnp.asarray([1.0, 200.0 if step == 1 else 1.0])  # noqa: E731
    with pytest.raises(NonFiniteLossError, match=r"the step failed \(The maximum number of solver steps.*at step 2"):
        train({"w": jnp.asarray(1.0)}, optax.sgd(1e-3), loss_fn, batches, tmp_path, steps=3, progress=False)


def test_a_concrete_solve_raises_a_solve_error_with_the_message_alone():
    with pytest.raises(tn.SolveError) as err:
        tn.solve(blow_up, Z, (0.0, 1.0), args=(1.0, 200.0), max_steps=12)
    assert isinstance(err.value, eqx.EquinoxRuntimeError)  # what callers catching equinox's error catch
    assert str(err.value).startswith("The maximum number of solver steps was reached before t1 (raise max_steps=12)")
    assert "EQX_ON_ERROR" not in str(err.value)


def test_filter_jit_returns_the_failure_and_raises_on_the_host():
    before = eqxi.error_if  # diffrax's input checks are skipped only while a solve is traced
    run = failures.filter_jit(lambda c: tn.solve(blow_up, Z, (0.0, 1.0), args=(1.0, c), max_steps=12).z1)
    np.testing.assert_allclose(run(jnp.asarray(1.0)), np.exp(1.0) * np.ones((4, 1)), rtol=1e-6)
    with pytest.raises(tn.SolveError, match=r"maximum number of solver steps.*max_steps=12"):
        run(jnp.asarray(200.0))
    inner = jax.make_jaxpr(failures.collect(lambda c: tn.solve(blow_up, Z, (0.0, 1.0), args=(1.0, c), max_steps=12).z1))
    assert callbacks(inner(jnp.asarray(1.0))) == []
    assert eqxi.error_if is before


def test_traced_times_are_checked_when_the_computation_runs():
    run = jax.jit(lambda ts: tn.solve(lambda t, z, a: -z, Z, ts).z1)
    np.testing.assert_allclose(run(jnp.array([0.0, 0.5, 1.0])), np.exp(-1.0) * np.ones((4, 1)), rtol=1e-6)
    with pytest.raises(Exception, match=r"ts must be strictly increasing \(or strictly decreasing"):
        jax.block_until_ready(run(jnp.array([0.0, 1.0, 0.5])))
    with pytest.raises(Exception, match="ts contains NaN or inf"):
        jax.block_until_ready(run(jnp.array([0.0, jnp.nan, 1.0])))
    # backwards, and the empty interval (t0, t0), are fine
    np.testing.assert_allclose(run(jnp.array([1.0, 0.0, -1.0])), np.exp(2.0) * np.ones((4, 1)), rtol=1e-6)
    np.testing.assert_array_equal(jax.jit(lambda ts: tn.solve(lambda t, z, a: -z, Z, ts).z1)(jnp.array([0.5, 0.5])), Z)


def test_the_first_failure_hides_the_later_ones():
    none = failures.when(False, "not this")
    a, b = failures.when(True, "cause"), failures.when(True, "consequence")
    assert failures.first([none, a, b]).message() == "cause"
    assert failures.first([none, b]).message() == "consequence"
    assert failures.first([none]).message() is None and failures.first([]).message() is None
