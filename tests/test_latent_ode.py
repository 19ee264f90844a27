"""Latent ODE: the ELBO's pieces against independent formulas, the encoder's masking, shapes, and
the regularizer integrated over the whole trajectory in the same solve."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import taynode as tn
from taynode.models import MLPDynamics
from taynode.models.latent_ode import (
    LatentODE,
    gaussian_kl,
    kl_coefficient,
    latent_ode_loss,
    masked_gaussian_loglik,
    masked_mse,
)
from taynode.regularizers import RK, Kinetic

D, LATENT, T, B = 5, 3, 7, 4

# compiled once per signature: much faster than eager dispatch through diffrax
loss_fn = eqx.filter_jit(latent_ode_loss)
decode = eqx.filter_jit(lambda m, z0, ts, **kw: m.decode(z0, ts, **kw))


def data(seed=0, p=0.4):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(B, T, D))
    mask = (rng.uniform(size=(B, T, D)) < p).astype(float)
    mask[:, 0, 0] = 1  # every record observed somewhere
    x = np.where(mask > 0, x, 0.0)
    return jnp.asarray(x), jnp.asarray(mask), jnp.linspace(0.0, 1.0, T)


@pytest.fixture(scope="module")
def model():
    return LatentODE(D, LATENT, rec_hidden=6, rec_units=8, dyn_hidden=(8, 8), key=jax.random.PRNGKey(0), dtype=jnp.float64)


def test_masked_loglik_matches_scipy_and_ignores_missing_values():
    x, mask, _ = data(1)
    mean = jnp.asarray(np.random.default_rng(2).uniform(size=x.shape))
    std = 0.3
    got = np.asarray(masked_gaussian_loglik(x, mean, mask, std))
    # independent: loop over records and variables with scipy's log-density
    want = np.zeros(B)
    for b in range(B):
        per_var = []
        for j in range(D):
            obs = np.asarray(mask[b, :, j]) > 0
            lp = stats.norm.logpdf(np.asarray(x[b, obs, j]), np.asarray(mean[b, obs, j]), std)
            per_var.append(lp.mean() if obs.any() else 0.0)
        want[b] = np.mean(per_var)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # values and predictions where mask = 0 do not matter, even inf / NaN
    junk = jnp.where(mask > 0, x, jnp.array([1e6, jnp.nan, jnp.inf, -3.0, 7.0])[None, None, :])
    junk_mean = jnp.where(mask > 0, mean, 1e9)
    np.testing.assert_array_equal(np.asarray(masked_gaussian_loglik(junk, junk_mean, mask, std)), got)
    np.testing.assert_array_equal(masked_mse(junk, junk_mean, mask), masked_mse(x, mean, mask))
    g = jax.grad(lambda m: masked_gaussian_loglik(junk, m, mask, std).sum())(mean)
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[np.asarray(mask) == 0] == 0)
    # and masked MSE is the plain mean over observed entries
    obs = np.asarray(mask) > 0
    assert float(masked_mse(x, mean, mask)) == pytest.approx(np.mean((np.asarray(x - mean)[obs]) ** 2), rel=1e-12)


@pytest.mark.parametrize("mu,log_s", [(0.0, 0.0), (1.3, -0.7), (-0.4, 0.9)])
def test_kl_matches_numerical_integral(mu, log_s):
    s = np.exp(log_s)
    q, p = stats.norm(mu, s), stats.norm(0, 1)
    want, _ = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), mu - 12 * s, mu + 12 * s, epsabs=1e-13)
    assert float(gaussian_kl(jnp.array(mu), jnp.array(log_s))) == pytest.approx(want, abs=1e-10)
    # and a Monte Carlo estimate agrees within its standard error
    z = np.random.default_rng(0).normal(mu, s, 200_000)
    terms = q.logpdf(z) - p.logpdf(z)
    assert abs(terms.mean() - want) < 5 * terms.std() / np.sqrt(len(z)) + 1e-12


def test_kl_annealing_schedule():
    got = [float(kl_coefficient(e, wait_epochs=2, rate=0.9)) for e in (0, 1.9, 2, 3.5, 4)]
    np.testing.assert_allclose(got, [0, 0, 0, 1 - 0.9, 1 - 0.81])


def test_shapes_and_loss(model):
    x, mask, ts = data()
    mean, log_std = model.encode(x, mask, ts)
    assert mean.shape == log_std.shape == (B, LATENT)
    xhat, sol = decode(model, mean, ts)
    assert xhat.shape == (T, B, D) and sol.ys.shape == (T, B, LATENT)
    loss, parts = loss_fn(model, x, mask, ts, jax.random.PRNGKey(1), n_samples=2, regularizers=["kinetic"], lam=[0.1])
    assert np.isfinite(loss) and set(parts) == {"kinetic", "elbo", "loglik", "kl", "mse", "nfe"}
    assert float(loss) == pytest.approx(-float(parts["elbo"]) + 0.1 * float(parts["kinetic"]), rel=1e-12)
    # gradients flow through the encoder, the solve (with a regularizer) and the decoder
    grads = eqx.filter_jit(
        eqx.filter_grad(
            lambda m: latent_ode_loss(
                m, x, mask, ts, jax.random.PRNGKey(1), regularizers=["kinetic"], lam=[0.1], solver="rk4", steps=4
            )[0]
        )
    )(model)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves) and all(np.any(g != 0) for g in leaves)
    with pytest.raises(ValueError, match="one weight"):
        latent_ode_loss(model, x, mask, ts, jax.random.PRNGKey(1), regularizers=["r3"])
    with pytest.raises(ValueError, match=r"shape \(batch, T, 5\)"):
        model.encode(x[..., :4], mask[..., :4], ts)


def test_multi_sample_objective_is_at_least_the_elbo(model):
    x, mask, ts = data()
    kw = dict(n_samples=4, kl_coef=1.0, obs_std=0.1)
    _, plain = loss_fn(model, x, mask, ts, jax.random.PRNGKey(3), **kw)
    _, iwae = loss_fn(model, x, mask, ts, jax.random.PRNGKey(3), iwae=True, **kw)
    assert float(iwae["elbo"]) >= float(plain["elbo"])  # Jensen, with the same samples
    assert float(iwae["loglik"]) == float(plain["loglik"])


def test_encoder_ignores_missing_values_and_empty_times(model):
    x, mask, ts = data(4)
    mean, log_std = model.encode(x, mask, ts)
    junk = jnp.where(mask > 0, x, 123.0)
    m2, s2 = model.encode(junk, mask, ts)
    np.testing.assert_array_equal(mean, m2)
    # an extra time with nothing observed leaves q(z0) unchanged
    ts3 = jnp.concatenate([ts[:3], jnp.array([0.4]), ts[3:]])
    ins = lambda a, v: jnp.concatenate([a[:, :3], jnp.full((B, 1, D), v), a[:, 3:]], axis=1)  # noqa: E731
    m3, s3 = model.encode(ins(x, 5.0), ins(mask, 0.0), ts3)
    np.testing.assert_allclose(m3, mean, rtol=1e-14)
    np.testing.assert_allclose(s3, log_std, rtol=1e-14)
    # but an observed value does change it
    m4, _ = model.encode(ins(x, 5.0), ins(mask, 1.0), ts3)
    assert not np.allclose(m4, mean)
    # and so does when the same values were observed (the gaps Δt are an input)
    m5, _ = model.encode(x, mask, ts * 0.5)
    assert not np.allclose(m5, mean)


def test_regularizers_integrate_over_the_whole_trajectory(model):
    x, mask, ts = data()
    z0, _ = model.encode(x, mask, ts)
    tol = dict(rtol=1e-10, atol=1e-10)
    regs = [RK(3), Kinetic()]
    _, sol = decode(model, z0, ts, regularizers=regs, **tol)  # every observation time in one solve
    alone = tn.solve(model.dynamics, z0, (ts[0], ts[-1]), regularizers=regs, **tol)  # endpoints only
    for r in regs:
        np.testing.assert_allclose(sol.integrals[r.name], alone.integrals[r.name], rtol=1e-7)
    # and both equal a quadrature of the integrand along the trajectory (Simpson, 201 points)
    dense = jnp.linspace(ts[0], ts[-1], 201)
    zs = tn.solve(model.dynamics, z0, dense, **tol).ys
    for r in regs:
        vals = jax.vmap(lambda t, z, r=r: r.integrand(model.dynamics, t, z, None, None))(dense, zs)
        want = integrate.simpson(np.asarray(vals), x=np.asarray(dense), axis=0)
        np.testing.assert_allclose(sol.integrals[r.name], want, rtol=1e-7)
    # the trajectory at the observation times is the same as without regularizers
    plain = tn.solve(model.dynamics, z0, ts, **tol)
    np.testing.assert_allclose(sol.ys, plain.ys, rtol=1e-8, atol=1e-10)


def test_per_sample_nfe_under_vmap_matches_separate_solves():
    # the study's per-sample NFE vmaps batch-1 solves; each element must keep its own count
    f = MLPDynamics((3, 16, 3), "tanh", key=jax.random.PRNGKey(0), dtype=jnp.float64)
    z0 = jax.random.normal(jax.random.PRNGKey(1), (5, 3)) * jnp.array([[0.1], [1.0], [3.0], [6.0], [10.0]])
    ts = jnp.linspace(0.0, 1.0, 5)
    nfe = eqx.filter_jit(jax.vmap(lambda z: tn.solve(f, z[None], ts).stats["nfe"]))(z0)
    one = eqx.filter_jit(lambda z: tn.solve(f, z, ts).stats["nfe"])
    alone = [int(one(z0[i : i + 1])) for i in range(5)]
    assert nfe.tolist() == alone and len(set(alone)) > 1


def test_sampled_regularizers_over_the_observation_times(model):
    """quadrature="sampled" with every observation time as an output: the outputs are those of
    the plain solve, and the estimate averages to the integrated value."""
    x, mask, ts = data()
    z0, _ = model.encode(x, mask, ts)
    tol = dict(rtol=1e-10, atol=1e-10)
    ref = tn.solve(model.dynamics, z0, ts, regularizers=[RK(3)], **tol)
    run = jax.jit(
        jax.vmap(lambda k: decode(model, z0, ts, regularizers=[RK(3)], key=k, quadrature="sampled", samples=2, **tol)[1])
    )
    sols = run(jax.random.split(jax.random.PRNGKey(0), 200))
    np.testing.assert_allclose(sols.ys[0], ref.ys, rtol=1e-8, atol=1e-10)
    v = np.asarray(sols.integrals["R3"])
    se = v.std(axis=0, ddof=1) / np.sqrt(len(v))
    assert np.all(np.abs(v.mean(axis=0) - np.asarray(ref.integrals["R3"])) < 4 * se)
