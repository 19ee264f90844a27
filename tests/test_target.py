"""λ set by a target (taynode.train.LambdaTarget): the rule, the loop's use of it (logging, exact
resume, errors), and landing at the target on a ridge problem (closed form), the Fig. 1 toy and a
2-D FFJORD model (slow)."""

import math
import os
import signal
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from taynode.train import CHECKPOINT, LambdaTarget, load_checkpoint, read_log, read_meta, train

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import lambda_target  # noqa: E402  (benchmarks/: the acceptance runs, shared with the docs' table)

# --- the rule alone -------------------------------------------------------------------------


def test_rule_raises_lambda_above_target_and_lowers_it_below():
    t = LambdaTarget("R2", target=1.0, lam0=0.1, rate=0.3, damping=0.5, max_step=math.log(2))
    up, e = t.update(0.1, 0.0, 1.5)
    assert up > 0.1 and e == pytest.approx(math.log(1.5))
    np.testing.assert_allclose(up, 0.1 * math.exp(0.8 * math.log(1.5)), rtol=1e-14)  # (rate + damping)·e
    down, _ = t.update(0.1, 0.0, 0.7)
    assert down < 0.1
    same, _ = t.update(0.1, 0.0, 1.0)
    assert same == 0.1
    # far off: one update moves at most a factor 2, whatever the ratio (0 included)
    assert t.update(0.1, 0.0, 1e9)[0] == pytest.approx(0.2) and t.update(0.1, 0.0, 0.0)[0] == pytest.approx(0.05)
    # damping: the same e as last time moves λ by rate·e only
    np.testing.assert_allclose(t.update(0.1, math.log(1.5), 1.5)[0], 0.1 * 1.5**0.3, rtol=1e-14)
    # bounds
    assert LambdaTarget("R2", 1.0, 1.0, lam_max=1.5).update(1.0, 0.0, 10.0)[0] == 1.5


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(target=0.0), "target must be a finite number > 0"),
        (dict(target=-1.0), "target must be a finite number > 0"),
        (dict(target=float("nan")), "target must be a finite number > 0"),
        (dict(lam0=0.0), "lam0 must be"),
        (dict(rate=-0.1), "rate must be"),
        (dict(every=0), "every must be an integer >= 1"),
        (dict(damping=-1.0), "damping must be"),
        (dict(warmup=-1), "warmup must be an integer >= 0"),
        (dict(warmup=2.5), "warmup must be an integer >= 0"),
        (dict(lam0=10.0, lam_max=1.0), "lam_min <= lam0 <= lam_max"),
        (dict(quantity=""), "quantity must be the name"),
        (dict(dtype=np.int32), "dtype must be a float dtype"),
    ],
)
def test_bad_settings_are_named(kw, match):
    args = dict(quantity="R2", target=1.0, lam0=0.1) | kw
    with pytest.raises(ValueError, match=match):
        LambdaTarget(**args)


def test_measured_value_must_be_finite_and_nonnegative():
    with pytest.raises(ValueError, match="measured nll is -3.0"):
        LambdaTarget("nll", 1.0, 0.1).update(0.1, 0.0, -3.0)


# --- in the loop: ridge regression, where ‖w(λ)‖² has a closed form --------------------------

RIDGE = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    from taynode.train import LambdaTarget, train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5))
    Y = X @ np.array([1.0, -2.0, 0.5, 3.0, -1.0]) + 0.1 * rng.normal(size=64)
    X, Y = jnp.asarray(X), jnp.asarray(Y)

    def ridge_norm(lam):  # ‖w(λ)‖² of the minimizer of mean((Xw − y)²) + λ‖w‖²
        w = np.linalg.solve(np.asarray(X.T @ X) / 64 + lam * np.eye(5), np.asarray(X.T @ Y) / 64)
        return float(w @ w)

    def loss_fn(params, batch, key, lam):
        x, y = batch
        w = params["w"]
        return jnp.mean((x @ w - y) ** 2) + lam * jnp.sum(w**2), {"wnorm": jnp.sum(w**2)}

    def batches(step):
        return X, Y
    batches.steps_per_epoch = 25
    params = {"w": jnp.zeros(5)}
    """
)
exec(RIDGE)  # noqa: S102 (the same definitions serve the in-process tests and the resume script)


def _ridge(tmp_path, name, target, **kw):
    return train(
        params,
        optax.adam(0.05),
        loss_fn,
        batches,
        tmp_path / name,
        steps=kw.pop("steps", 400),
        progress=False,  # noqa: F821
        target=target,
        **kw,
    )


@pytest.mark.parametrize("lam0", [0.03, 3.0])
def test_ridge_lands_on_target_from_a_decade_either_side(tmp_path, lam0):
    """Target ‖w‖² = ‖w(0.3)‖² (closed form); from λ0 a decade below and above, λ ends within
    10 % of 0.3 and ‖w‖² within 2 % of the target; λ is in every step and epoch record."""
    goal = ridge_norm(0.3)  # noqa: F821
    assert ridge_norm(0.03) > 1.2 * goal and ridge_norm(3.0) < 0.5 * goal  # noqa: F821 (a decade matters)
    t = LambdaTarget("wnorm", goal, lam0, every=5, dtype=np.float64)
    res = _ridge(tmp_path, "r", t)
    lam = read_log(tmp_path / "r", "target")[-1]["lam"]
    assert lam == pytest.approx(0.3, rel=0.10), lam
    assert float(jnp.sum(res.model["w"] ** 2)) == pytest.approx(goal, rel=0.02)
    steps, epochs, updates = (read_log(tmp_path / "r", k) for k in ("step", "epoch", "target"))
    assert len(steps) == 400 and len(epochs) == 16 and len(updates) == 80
    assert steps[0]["lam"] == lam0 and all("lam" in r and "train_lam" in r for r in epochs)
    # the λ a step used is the one the last update set
    by_step = {r["step"]: r["lam"] for r in updates}
    assert all(steps[s]["lam"] == by_step[s] for s in range(5, 400, 5))


def test_lambda_rises_above_target_and_falls_below(tmp_path):
    """A target far below what the model reaches drives λ up at every update (×2 per update, the
    clip); one far above drives it down."""
    high = _ridge(tmp_path, "h", LambdaTarget("wnorm", 1e-6, 0.1, every=5, dtype=np.float64), steps=30)
    low = _ridge(tmp_path, "l", LambdaTarget("wnorm", 1e6, 0.1, every=5, dtype=np.float64), steps=30)
    up = [r["lam"] for r in read_log(high.run_dir, "target")]
    down = [r["lam"] for r in read_log(low.run_dir, "target")]
    np.testing.assert_allclose(up, 0.1 * 2.0 ** np.arange(1, 7), rtol=1e-12)
    np.testing.assert_allclose(down, 0.1 * 0.5 ** np.arange(1, 7), rtol=1e-12)


def test_warmup_holds_lambda_and_skips_those_steps_in_the_measurement(tmp_path):
    """warmup=12, every=5: λ = λ0 for steps 1-17, updates after steps 17, 22, 27, each measuring
    the mean over its own 5 steps only (the warm-up steps are not in the first window)."""
    t = LambdaTarget("wnorm", 1e-6, 0.1, every=5, warmup=12, dtype=np.float64)
    _ridge(tmp_path, "w", t, steps=30)
    steps, updates = read_log(tmp_path / "w", "step"), read_log(tmp_path / "w", "target")
    assert [r["step"] for r in updates] == [17, 22, 27]
    assert all(r["lam"] == 0.1 for r in steps[:17]) and steps[17]["lam"] == pytest.approx(0.2)
    wnorm = np.array([r["wnorm"] for r in steps])
    np.testing.assert_allclose(
        [r["measured"] for r in updates], [wnorm[12:17].mean(), wnorm[17:22].mean(), wnorm[22:27].mean()], rtol=1e-12
    )
    # a setting added later is left out of the checkpoint's spec at its default, so older checkpoints resume
    assert "warmup" not in LambdaTarget("wnorm", 1.0, 0.1).spec() and t.spec()["warmup"] == 12


def test_bad_use_in_the_loop_is_named(tmp_path):
    t = LambdaTarget("R3", 1.0, 0.1, dtype=np.float64)
    with pytest.raises(ValueError, match=r"quantity 'R3' is not in the loss's aux dict \(it has \['wnorm'\]\)"):
        _ridge(tmp_path, "a", t, steps=3)
    with pytest.raises(TypeError, match="does not take lam"):
        train(
            params,
            optax.adam(0.05),
            lambda p, b, k: (0.0, {}),
            batches,
            tmp_path / "b",
            steps=1,
            progress=False,  # noqa: F821
            target=LambdaTarget("wnorm", 1.0, 0.1),
        )
    with pytest.raises(TypeError, match="must be a taynode.train.LambdaTarget"):
        _ridge(tmp_path, "c", 0.1, steps=1)
    with pytest.raises(ValueError, match="measure must return a dict with 'wnorm'"):
        _ridge(tmp_path, "d", LambdaTarget("wnorm", 1.0, 0.1, every=1, measure=lambda m: {"x": 1.0}, dtype=np.float64), steps=2)


def test_held_out_measure_is_used(tmp_path):
    """With measure=, the update uses its value (here a constant 4× the target: λ doubles)."""
    t = LambdaTarget("q", 1.0, 0.1, every=5, rate=0.5, damping=0.0, measure=lambda m: {"q": 4.0}, dtype=np.float64)
    _ridge(tmp_path, "m", t, steps=10)
    np.testing.assert_allclose([r["lam"] for r in read_log(tmp_path / "m", "target")], [0.2, 0.4], rtol=1e-12)


def test_resume_with_other_target_settings_is_an_error(tmp_path):
    from taynode.train import CheckpointError

    _ridge(tmp_path, "x", LambdaTarget("wnorm", 1.0, 0.1, dtype=np.float64), steps=5)
    with pytest.raises(CheckpointError, match=r"other λ-target settings \(differs in \['target'\]\)"):
        _ridge(tmp_path, "x", LambdaTarget("wnorm", 2.0, 0.1, dtype=np.float64), steps=10, resume=True)
    with pytest.raises(CheckpointError, match="written with a λ target and this run is without one"):
        train(
            params,
            optax.adam(0.05),
            lambda p, b, k: (jnp.sum(p["w"] ** 2), {}),
            batches,
            tmp_path / "x",
            steps=10,  # noqa: F821
            progress=False,
            resume=True,
        )


def test_sigkill_then_resume_with_target_is_bit_identical(tmp_path):
    """Killed at step 23 (checkpoints every 10, λ updates every 7: the checkpoint at 20 holds a
    part-filled window), resumed: the same parameters, λ state and log as an uninterrupted run."""
    script = tmp_path / "run.py"
    script.write_text(
        RIDGE
        + textwrap.dedent(
            """
        import os, signal, sys
        run_dir, kill_at = sys.argv[1], int(sys.argv[2])
        def killing(step):
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return batches(step)
        killing.steps_per_epoch = 25
        train(params, optax.adam(0.05), loss_fn, killing, run_dir, steps=60, checkpoint_every=10, resume=True,
              progress=False, target=LambdaTarget("wnorm", 5.0, 0.05, every=7, dtype=np.float64))
        """
        )
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="1")
    run = lambda d, k: subprocess.run(  # noqa: E731
        [sys.executable, str(script), str(d), str(k)],
        env=env,
        capture_output=True,  # noqa: E731
        text=True,
        timeout=120,
    )
    r = run(tmp_path / "full", -1)
    assert r.returncode == 0, r.stderr
    r = run(tmp_path / "killed", 23)
    assert r.returncode == -signal.SIGKILL, r.stderr
    meta = read_meta(tmp_path / "killed" / CHECKPOINT)
    assert meta["step"] == 20 and meta["extra"]["lam_target"]["state"]["count"] == 6
    r = run(tmp_path / "killed", -1)
    assert r.returncode == 0, r.stderr
    a, _, ma = load_checkpoint(tmp_path / "full" / CHECKPOINT, params)  # noqa: F821
    b, _, mb = load_checkpoint(tmp_path / "killed" / CHECKPOINT, params)  # noqa: F821
    assert np.array_equal(np.asarray(a["w"]), np.asarray(b["w"]))
    assert ma["extra"]["lam_target"] == mb["extra"]["lam_target"]
    strip = lambda recs: [{k: v for k, v in r.items() if k != "time"} for r in recs]  # noqa: E731
    assert strip(read_log(tmp_path / "full")) == strip(read_log(tmp_path / "killed"))
    assert len(read_log(tmp_path / "full", "target")) == 8


# --- acceptance: the Fig. 1 toy and a 2-D FFJORD model (slow: minutes on 2 cores) -------------
# The runs are benchmarks/lambda_target.py's, whose output file is the docs' table of them.


@pytest.mark.slow
@pytest.mark.parametrize("lam0", [0.025, 0.25, 2.5])
def test_toy_lands_within_band_from_a_decade_either_side(tmp_path, lam0):
    """The held-out R₂ (recomputed with a separate, tighter solve) ends within ±25 % of the target
    0.01, from λ0 a decade below, at and a decade above the λ it settles at (0.15-0.3)."""
    run = lambda_target.toy(tmp_path / "toy", lam0)
    print(f"toy: {run}")
    assert run["updates"] == 30
    assert abs(run["heldout"] / 0.01 - 1) < 0.25, run


@pytest.mark.slow
def test_ffjord_lands_within_band_from_a_decade_either_side(tmp_path):
    """The held-out R₂ (recomputed with a separate, tighter solve) ends within ±25 % of the target
    0.03, starting from λ0 a decade below, at and a decade above the λ it settles at."""
    for lam0 in (0.5, 5.0, 50.0):
        run = lambda_target.ffjord(tmp_path / f"ffjord{lam0}", lam0)
        print(f"ffjord: {run}")
        assert abs(run["heldout"] / 0.03 - 1) < 0.25, run
