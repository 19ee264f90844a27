"""MNIST classifier: the loss against an independent SciPy solve, bad input, the CLI end to end."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import simpson, solve_ivp

from taynode.cli import main
from taynode.models.classifier import ODEClassifier, check_lam, classifier_loss, parse_regularizers
from taynode.regularizers import RK, JacobianFrobenius, Kinetic
from taynode.solve import solve
from taynode.studies import mnist
from taynode.taylor import derivatives
from test_mnist_data import tiny, write_idx_set


def small_model(activation="sigmoid"):
    return ODEClassifier(dim=6, hidden=5, classes=3, activation=activation, key=jax.random.PRNGKey(0), dtype=jnp.float64)


def scipy_z1(model, x):
    """z(1) of dz/dt = W2 σ(W1 [z, t] + b1) + b2 (time appended again), by SciPy at tight tolerance."""
    (l1, l2), act = model.dynamics.layers, jax.nn.sigmoid
    w1, b1, w2, b2 = (np.asarray(a) for a in (l1.weight, l1.bias, l2.weight, l2.bias))

    def f(t, z):
        h = np.asarray(act(w1 @ np.append(z, t) + b1))
        return w2 @ np.append(h, t) + b2

    return np.stack([solve_ivp(f, (0, 1), xi, rtol=1e-12, atol=1e-12, method="DOP853").y[:, -1] for xi in x])


@pytest.mark.parametrize("reg", ["none", "r2"])
def test_loss_is_cross_entropy_plus_lambda_times_mean_integral(reg):
    model = small_model()
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 6), jnp.float64)
    y = jnp.array([0, 2, 1, 2])
    regs = parse_regularizers(reg)
    lam = 0.0 if reg == "none" else 0.7
    loss, aux = eqx.filter_jit(lambda m, x, y: classifier_loss(m, x, y, regularizers=regs, lam=lam, rtol=1e-10, atol=1e-10))(
        model, x, y
    )
    logits = scipy_z1(model, np.asarray(x)) @ np.asarray(model.head.weight).T + np.asarray(model.head.bias)
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    ce = -np.mean(logp[np.arange(4), np.asarray(y)])
    np.testing.assert_allclose(aux["ce"], ce, rtol=1e-8)
    np.testing.assert_allclose(aux["acc"], np.mean(np.argmax(logits, 1) == np.asarray(y)))
    if reg == "none":
        assert float(loss) == float(aux["ce"]) and set(aux) == {"ce", "acc", "nfe"}
    else:
        # R2 = ∫ mean_i (d²z_i/dt²)² dt: the trajectory on a grid, d²z/dt² by nested JVPs, Simpson's rule.
        ts = np.linspace(0, 1, 401)
        zs = eqx.filter_jit(lambda f, x: solve(f, x, ts, rtol=1e-11, atol=1e-11).ys)(model.dynamics, x)
        d2 = jax.vmap(lambda t, z: derivatives(model.dynamics, t, z, None, 2, method="nested")[-1])(jnp.asarray(ts), zs)
        r2 = np.mean(simpson(np.mean(np.asarray(d2) ** 2, axis=2), x=ts, axis=0))
        np.testing.assert_allclose(aux["R2"], r2, rtol=1e-6)
        np.testing.assert_allclose(loss, aux["ce"] + lam * aux["R2"], rtol=1e-12)


def test_regularizer_names_and_lambda():
    assert parse_regularizers("none") == ()
    (r,) = parse_regularizers("R3")
    assert isinstance(r, RK) and r.order == 3 and r.method == "incremental"
    assert parse_regularizers("r3", taylor_method="nested")[0].method == "nested"
    assert parse_regularizers("r5")[0].order == 5
    for spec in ("rnode", "kinetic+jacobian"):
        assert [type(r) for r in parse_regularizers(spec)] == [Kinetic, JacobianFrobenius]
    with pytest.raises(ValueError, match="unknown regularizer 'bogus'"):
        parse_regularizers("bogus")
    with pytest.raises(ValueError, match="twice"):
        parse_regularizers("r2+r2")
    with pytest.raises(ValueError, match="λ must be >= 0, got -1"):
        check_lam(-1.0, parse_regularizers("r2"))
    with pytest.raises(ValueError, match="λ must be >= 0, got nan"):
        check_lam(float("nan"), parse_regularizers("r2"))
    with pytest.raises(ValueError, match="no regularizer"):
        check_lam(0.1, ())
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; valid: \['fig', 'full', 'long', 'paper', 'small'\]"):
        mnist.config("huge")
    with pytest.raises(ValueError, match="λ must be >= 0"):
        mnist.config("small", reg="r3", lam=-6e-5)
    with pytest.raises(ValueError, match="unknown regularizer"):
        mnist.config("small", reg="r3x", lam=1.0)
    with pytest.raises(ValueError, match="unknown MNIST settings"):
        mnist.config("small", colour="blue")
    with pytest.raises(ValueError, match="activation"):
        ODEClassifier(dim=4, hidden=3, activation="relu", key=jax.random.PRNGKey(0))
    assert mnist.config("paper").epochs == 160 and mnist.config("paper").dtype == "float64"


@pytest.mark.parametrize("activation", ["sigmoid", "softplus"])
def test_incremental_and_nested_rk_agree_on_the_classifier(activation):
    """The default Taylor method ("incremental") gives the same R_K integrands and parameter
    gradients as nested JVPs (an independent implementation) on the classifier's dynamics,
    float64, K = 1…4. The solve integrates the integrand along a trajectory that does not depend
    on it, so equal integrands give equal R_K (a full solve per method would cost ~25 s of
    compilation here)."""
    model = small_model(activation)
    z = jax.random.normal(jax.random.PRNGKey(1), (4, 6), jnp.float64)

    def integrand(dyn, z, method, k):
        return jnp.sum(RK(k, method).integrand(dyn, jnp.float64(0.3), z, None, None))

    for k in range(1, 5):  # gradients with respect to the parameters and the state (backprop through the solve needs both)
        (v_i, g_i), (v_n, g_n) = (
            jax.value_and_grad(integrand, argnums=(0, 1))(model.dynamics, z, m, k) for m in ("incremental", "nested")
        )
        assert float(v_n) > 0
        np.testing.assert_allclose(v_i, v_n, rtol=1e-10)
        for a, b in zip(jax.tree_util.tree_leaves(g_i), jax.tree_util.tree_leaves(g_n)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(b))))


def test_rnode_loss_runs_with_key():
    model = small_model("softplus")
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, 6), jnp.float64)
    regs = parse_regularizers("rnode")
    loss, aux = eqx.filter_jit(lambda m, x, y, k: classifier_loss(m, x, y, regularizers=regs, lam=0.5, key=k))(
        model, x, jnp.array([0, 1, 2]), jax.random.PRNGKey(2)
    )
    assert aux["kinetic"] > 0 and aux["jacobian"] > 0
    np.testing.assert_allclose(loss, aux["ce"] + 0.5 * (aux["kinetic"] + aux["jacobian"]), rtol=1e-12)


def test_cli_train_eval_resume_on_tiny_data(tmp_path, capsys):
    data = tmp_path / "idx"
    write_idx_set(data, tiny(0, n_train=40, n_test=20), gz=True)
    out = tmp_path / "run"
    args = [
        "train",
        "mnist",
        "--reg",
        "r2",
        "--lam",
        "0.1",
        "--epochs",
        "1",
        "--batch",
        "20",
        "--train-examples",
        "40",
        "--train-tol",
        "1e-3",
        "--data",
        str(data),
        "--eval-train-examples",
        "20",
        "--eval-reg-examples",
        "5",
        "--epoch-eval-examples",
        "10",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "test" in printed and "NFE" in printed and "R2" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["steps"] == 2 and res["test_examples"] == 20 and res["train_examples"] == 20
    assert res["test_nfe"] >= 9 and (res["test_nfe"] - 3) % 6 == 0  # dopri5: 3 + 6 per attempted step (one batch)
    epochs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert any(r["kind"] == "epoch" and "test_nfe_subset" in r for r in epochs)
    # eval of the saved checkpoint reproduces the run's final numbers
    assert main(["eval", str(out), "--data", str(data), "--eval-train-examples", "20", "--eval-reg-examples", "5"]) == 0
    ev = json.loads((out / "eval.json").read_text())
    for k in ("test_acc", "test_nfe", "train_acc", "test_R2", "train_R3"):
        assert ev[k] == res[k], k
    with pytest.raises(FileExistsError):
        main(args + ["--debug"])  # --debug: the exception itself, not the one-line message
    with pytest.raises(ValueError, match="unknown preset"):
        main(args[:2] + ["--preset", "medium", "--data", str(data), "--out", str(tmp_path / "x"), "--debug"])
    assert main(args) == 2 and "taynode: error:" in capsys.readouterr().err


def test_fig3_reuses_finished_runs_and_plots(tmp_path, capsys):
    """Finished runs (results.json with the same config) are reused, not retrained; the figure is drawn."""
    from taynode.studies import stored_config

    for reg, lam, name, nfes in (("none", 0.0, "none", [21, 27]), ("r3", 5.0, "r3-lam5", [15, 15])):
        d = tmp_path / name
        d.mkdir()
        cfg = mnist.config("small", reg=reg, lam=lam, epochs=2)
        res = dict(config=stored_config(cfg) | {"data": None}, test_acc=0.9, test_nfe=float(nfes[-1]), train_seconds=60.0)
        (d / "results.json").write_text(json.dumps(res))
        recs = [
            dict(
                kind="epoch", step=100 * (e + 1), epoch=e + 1.0, time=30.0 * (e + 1), train_acc=0.8 + 0.05 * e, test_nfe_subset=n
            )
            for e, n in enumerate(nfes)
        ]
        (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(["study", "mnist-fig3", "--out", str(tmp_path), "--lam", "5", "--epochs", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "R3, λ=5" in printed and "figure:" in printed
    assert (tmp_path / "fig3.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "fig3.json").read_text())
    assert summary["curves"]["unregularized"]["test_nfe"] == [21, 27]
    np.testing.assert_allclose(summary["curves"]["R3, λ=5"]["train_error"], [0.2, 0.15])


def test_steer_draws_the_end_time_per_step_within_its_band():
    from taynode.models.classifier import steer_end_time

    t1 = jax.vmap(lambda k: steer_end_time(k, 0.25))(jax.random.split(jax.random.PRNGKey(0), 2000))
    assert float(t1.min()) >= 0.75 and float(t1.max()) <= 1.25 and abs(float(t1.mean()) - 1.0) < 0.01
    assert float(jnp.std(t1)) == pytest.approx(0.5 / np.sqrt(12), rel=0.05)  # uniform on [0.75, 1.25]
    model = ODEClassifier(key=jax.random.PRNGKey(0), dtype=jnp.float64)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 784), jnp.float64)
    t = steer_end_time(jax.random.PRNGKey(3), 0.25)
    np.testing.assert_allclose(
        model.flow(x, t1=t, rtol=1e-9, atol=1e-9).z1,
        solve(model.dynamics, x, (0.0, float(t)), rtol=1e-9, atol=1e-9).z1,
        rtol=1e-8,
    )
    with pytest.raises(ValueError, match=r"STEER's half-width b must be in \[0, t1\)"):
        steer_end_time(jax.random.PRNGKey(0), 1.0)
    with pytest.raises(ValueError, match=r"steer .* must be in \[0, 1\)"):
        mnist.config("small", steer=-0.1)
