"""The shared training loop: exact resume after SIGKILL, checkpoint errors, NaN stop, logs, batches."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from taynode.train import (
    CHECKPOINT,
    PREVIOUS,
    CheckpointError,
    NonFiniteLossError,
    ShuffledBatches,
    load_checkpoint,
    read_log,
    read_meta,
    train,
)

# A tiny regression run; the loss uses the per-step key (input noise) and the optimizer has
# momentum and a step schedule, so exact resume needs the batches, keys and optimizer state.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import equinox as eqx, jax, jax.numpy as jnp, numpy as np, optax
    from taynode.train import ShuffledBatches, train

    run_dir, kill_at = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    y = np.sin(x[:, :1]) + x[:, 1:] ** 2
    inner = ShuffledBatches((x, y), batch_size=8, seed=3)

    def batches(step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return inner(step)
    batches.steps_per_epoch = inner.steps_per_epoch

    def loss_fn(model, batch, key):
        xb, yb = batch
        xb = xb + 0.01 * jax.random.normal(key, xb.shape, xb.dtype)
        err = jax.vmap(model)(xb) - yb
        return jnp.mean(err**2), {"max_err": jnp.max(jnp.abs(err))}

    model = eqx.nn.MLP(2, 1, 16, 2, key=jax.random.PRNGKey(1))
    sched = optax.piecewise_constant_schedule(0.05, {10: 0.1, 20: 0.1})
    opt = optax.sgd(sched, momentum=0.9)
    train(model, opt, loss_fn, batches, run_dir, steps=30, seed=7, checkpoint_every=4,
          resume=True, progress=False, config={"lr": 0.05},
          evaluate=lambda m: {"n_params": sum(p.size for p in jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array)))})
    """
)


def run_script(tmp_path, run_dir, kill_at):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, str(script), str(run_dir), str(kill_at)], env=env, capture_output=True, text=True, timeout=120
    )


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    r = run_script(tmp_path, full, -1)
    assert r.returncode == 0, r.stderr
    r = run_script(tmp_path, killed, 17)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert read_meta(killed / CHECKPOINT)["step"] == 16  # the last checkpoint before the kill
    r = run_script(tmp_path, killed, -1)  # resume
    assert r.returncode == 0, r.stderr
    with np.load(full / CHECKPOINT) as a, np.load(killed / CHECKPOINT) as b:
        assert sorted(a.files) == sorted(b.files) and len(a.files) > 8
        for k in a.files:
            if k != "__meta__":
                assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
    ma, mb = read_meta(full / CHECKPOINT), read_meta(killed / CHECKPOINT)
    assert ma["step"] == mb["step"] == 30 and ma["key"] == mb["key"]
    # The resumed log equals the uninterrupted one, apart from wall times.
    strip = lambda recs: [{k: v for k, v in r.items() if k != "time"} for r in recs]  # noqa: E731
    la, lb = read_log(full), read_log(killed)
    assert strip(la) == strip(lb)
    assert [r["step"] for r in la if r["kind"] == "step"] == list(range(1, 31))
    epochs = [r for r in la if r["kind"] == "epoch"]
    assert [r["step"] for r in epochs] == [5, 10, 15, 20, 25, 30] and all("n_params" in r for r in epochs)
    steps = [r for r in la if r["kind"] == "step"]
    np.testing.assert_allclose(epochs[1]["train_loss"], np.mean([r["loss"] for r in steps[5:10]]), rtol=1e-12)


def tiny_setup(width=4):
    model = {"w": jnp.ones((3, width)), "b": jnp.zeros(width)}
    x = np.random.default_rng(0).normal(size=(12, 3))
    y = x.sum(1, keepdims=True) * np.ones((1, width))

    def loss_fn(m, batch, key):
        xb, yb = batch
        return jnp.mean((xb @ m["w"] + m["b"] - yb) ** 2), {}

    return model, loss_fn, ShuffledBatches((x, y), 4, seed=0)


def test_truncated_or_mismatched_checkpoint(tmp_path):
    model, loss_fn, batches = tiny_setup()
    opt = optax.adam(1e-2)
    train(model, opt, loss_fn, batches, tmp_path, steps=6, checkpoint_every=3, progress=False)
    ckpt = tmp_path / CHECKPOINT
    good = ckpt.read_bytes()
    # Another model shape: a clear error, and the checkpoint stays as it was.
    wide, loss_wide, _ = tiny_setup(width=5)
    with pytest.raises(CheckpointError, match=r"does not fit this model .*\['w'\]: stored \[\[3, 4\].*expected \[\[3, 5\]"):
        train(wide, opt, loss_wide, batches, tmp_path, steps=9, progress=False, resume=True)
    assert ckpt.read_bytes() == good
    # Another optimizer (different state layout) is refused too.
    with pytest.raises(CheckpointError, match="does not fit this optimizer state"):
        train(model, optax.sgd(1e-2, momentum=0.9), loss_fn, batches, tmp_path, steps=9, progress=False, resume=True)
    with pytest.raises(CheckpointError, match=r"another config \(differs in \['lr'\]\)"):
        train(model, opt, loss_fn, batches, tmp_path, steps=9, progress=False, resume=True, config={"lr": 1})
    with pytest.raises(FileExistsError, match="resume=True"):
        train(model, opt, loss_fn, batches, tmp_path, steps=9, progress=False)
    # Without a previous checkpoint to fall back to (tests/test_bad_input.py covers the fallback):
    (tmp_path / PREVIOUS).unlink()
    ckpt.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint\.npz is unreadable \(truncated"):
        train(model, opt, loss_fn, batches, tmp_path, steps=9, progress=False, resume=True)
    assert ckpt.read_bytes() == good[: len(good) // 2]
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz", model)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_resume_continues_to_more_steps_and_restores_model(tmp_path):
    model, loss_fn, batches = tiny_setup()
    opt = optax.adam(1e-2)
    once = train(model, opt, loss_fn, batches, tmp_path / "a", steps=8, checkpoint_every=100, progress=False)
    train(model, opt, loss_fn, batches, tmp_path / "b", steps=5, checkpoint_every=100, progress=False)
    twice = train(model, opt, loss_fn, batches, tmp_path / "b", steps=8, progress=False, resume=True)
    for k in ("w", "b"):
        assert np.array_equal(once.model[k], twice.model[k])
    restored, _, meta = load_checkpoint(tmp_path / "b" / CHECKPOINT, model)
    assert meta["step"] == 8 and np.array_equal(restored["w"], once.model["w"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, loss_fn, inner = tiny_setup()

    def batches(step):
        x, y = inner(step)
        return (x * np.nan if step == 5 else x), y

    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 6.*checkpoint .* \(step 4\) is kept"):
        train(model, optax.sgd(1e-2), loss_fn, batches, tmp_path, steps=10, checkpoint_every=2, progress=False)
    restored, _, meta = load_checkpoint(tmp_path / CHECKPOINT, model)
    assert meta["step"] == 4 and np.all(np.isfinite(restored["w"]))
    assert [r["step"] for r in read_log(tmp_path, "step")] == [1, 2, 3, 4, 5]


def test_shuffled_batches():
    x = np.arange(10)
    b = ShuffledBatches({"x": x, "y": -x}, batch_size=3, seed=1)
    assert b.steps_per_epoch == 3
    epoch0 = np.concatenate([b(s)["x"] for s in range(3)])
    epoch1 = np.concatenate([b(s)["x"] for s in range(3, 6)])
    assert len(set(epoch0.tolist())) == 9 and len(set(epoch1.tolist())) == 9
    assert not np.array_equal(epoch0, epoch1)
    assert np.array_equal(b(4)["x"], ShuffledBatches({"x": x, "y": -x}, 3, seed=1)(4)["x"])
    assert np.array_equal(b(4)["y"], -b(4)["x"])
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 10\]"):
        ShuffledBatches(x, 11)
    with pytest.raises(ValueError, match="same leading"):
        ShuffledBatches((x, x[:5]), 2)


def test_equinox_model_and_log_file(tmp_path):
    model = eqx.nn.Linear(3, 1, key=jax.random.PRNGKey(0))
    x = np.random.default_rng(1).normal(size=(8, 3))

    def loss_fn(m, xb, key):
        out = jax.vmap(m)(xb)
        return jnp.mean(out**2), {"mean_out": jnp.mean(out), "nan_metric": jnp.nan}

    res = train(
        model,
        optax.sgd(0.1),
        loss_fn,
        ShuffledBatches(x, 4),
        tmp_path,
        steps=4,
        log_every=2,
        progress=False,
        evaluate=lambda m: {"w_norm": jnp.linalg.norm(m.weight)},
    )
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["kind"] for r in recs] == ["step", "epoch", "step", "epoch"]
    assert recs[0]["nan_metric"] is None and "mean_out" in recs[0]
    np.testing.assert_allclose(recs[-1]["w_norm"], float(jnp.linalg.norm(res.model.weight)))
    assert isinstance(res.model, eqx.nn.Linear) and res.step == 4


def test_nan_gradient_with_finite_loss_is_caught(tmp_path):
    model = {"w": jnp.ones(3)}

    def loss_fn(m, batch, key):
        # sqrt at 0 has an infinite derivative: a finite loss with a non-finite gradient at step 3
        return jnp.sum(jnp.sqrt(jnp.abs(m["w"] * batch))), {}

    def batches(step):
        return jnp.full(3, 0.0 if step == 2 else 1.0)

    with pytest.raises(NonFiniteLossError, match=r"update has NaN or inf \(loss 0.0\) at step 3.*\(step 2\) is kept"):
        train(model, optax.sgd(1e-3), loss_fn, batches, tmp_path, steps=5, checkpoint_every=1, progress=False)
    restored, _, meta = load_checkpoint(tmp_path / CHECKPOINT, model)
    assert meta["step"] == 2 and np.all(np.isfinite(restored["w"]))
