"""Bad input, table-driven (issue #14): every row is bad or unusual input that must raise an error
whose message names the problem.

A row is ``(id, call, exception, regex)``: ``call(tmp)`` gets a fresh temporary folder (a
``pathlib.Path``) and must raise ``exception`` with a message matching ``regex``
(``pytest.raises(..., match=regex)``, i.e. ``re.search``). Append rows to :data:`ROWS`; ids
starting with ``silent:`` were silent wrong answers before #14 (each has a test here that fails
on the old code). Behaviour that is not an error (a fallback, a takeover, a correct value where
the old code gave a wrong one) is tested by the functions after the table.
"""

from __future__ import annotations

import io
import math
import os
import re
import tarfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import taynode as tn
from taynode import portable
from taynode.cli import main
from taynode.taylor import MAX_ORDER, UnsupportedPrimitiveError, derivatives, max_derivative_order
from taynode.train import (
    CHECKPOINT,
    PREVIOUS,
    CheckpointError,
    RunLockedError,
    ShuffledBatches,
    load_checkpoint,
    read_log,
    read_meta,
    train,
)
from taynode.train.lock import run_lock

Z = jnp.array([[0.3, -0.2, 0.5]])  # one example, three features (float64: tests/conftest.py)


def decay(t, z, args):
    return -z


# ---- dynamics that the incremental Taylor method used to expand as constants (all zeros) ------


def f_fori(t, z, args):  # z / 8, by a loop: every derivative is z / 8^k
    return lax.fori_loop(0, 3, lambda i, y: 0.5 * y, z)


def f_while(t, z, args):
    return lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, 0.5 * c[1]), (0, z))[1]


def f_top_k(t, z, args):
    values, _ = lax.top_k(z, 2)
    return jnp.concatenate([values, z[:, :1]], axis=1) ** 2


def f_cond_int(t, z, args):  # a cond with an integer output next to the float one
    return lax.cond(t > -1.0, lambda: (-z, 1), lambda: (z, 2))[0]


def f_cond(t, z, args):
    return lax.cond(t > -1.0, lambda: -z, lambda: z)


# ---- helpers for the rows ---------------------------------------------------------------------


def _cli(argv):
    """Run the CLI; raise SystemExit(status) so that a row can check it, with stderr as message."""
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(argv)
    raise CliExit(f"status {status}: {err.getvalue()}")


class CliExit(Exception):
    pass


def _tiny_train(run_dir, steps=6, **kw):
    x = np.linspace(-1, 1, 24).reshape(8, 3)
    y = x.sum(1, keepdims=True)
    model = {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}

    def loss_fn(m, batch, key):
        xb, yb = batch
        return jnp.mean((xb @ m["w"] + m["b"] - yb) ** 2), {}

    return train(
        model,
        optax.adam(1e-2),
        loss_fn,
        ShuffledBatches((x, y), 4, seed=0),
        run_dir,
        steps=steps,
        checkpoint_every=3,
        progress=False,
        **kw,
    )


def _locked_train(tmp):
    with run_lock(tmp):  # another training process holds the folder
        _tiny_train(tmp)


def _truncated_checkpoint_without_previous(tmp):
    _tiny_train(tmp)
    os.remove(tmp / PREVIOUS)
    (tmp / CHECKPOINT).write_bytes((tmp / CHECKPOINT).read_bytes()[:200])
    _tiny_train(tmp, steps=9, resume=True)


def _write_physionet(tmp, truncate=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for rid in range(1000, 1040):
            text = f"Time,Parameter,Value\n00:00,RecordID,{rid}\n00:00,Age,60\n01:00,HR,{rid % 90}\n"
            data = (text + "".join(f"{h:02d}:00,HR,{70 + h}\n" for h in range(48))).encode()
            info = tarfile.TarInfo(f"set-a/{rid}.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    (tmp / "set-a.tar.gz").write_bytes(raw[: len(raw) // 2] if truncate else raw)
    rows = ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"] + [f"{r},1,1,1,1,0" for r in range(1000, 1040)]
    (tmp / "Outcomes-a.txt").write_text("\n".join(rows) + "\n")
    return tmp


def _physionet(tmp, **kw):
    from taynode.data import physionet

    return physionet.load(tmp, **kw)


def _corrupt_model(tmp):
    path = tmp / "model.npz"
    path.write_bytes(b"PK\x03\x04 this is not a whole zip archive")
    return path


def _compare_load(path):
    from taynode import compare

    return compare.load_problems(compare.CompareConfig(problems=("neural_ode",), model=str(path)), "unused", log=lambda *a: None)


def _julia():
    from taynode.backends import get_backend, julia_backend

    julia_backend._MODULE = None
    return get_backend("julia")


def _mnist(path, **kw):
    from taynode.data import mnist

    return mnist.load(path, **kw)


def _float32_z():
    return Z.astype(jnp.float32)


W_NAN = jnp.eye(3).at[1, 2].set(jnp.nan)


def _van_der_pol_1000(t, z, args):  # stiff: mu = 1000
    x, v = z[..., 0], z[..., 1]
    return jnp.stack([v, 1000.0 * (1 - x**2) * v - x], -1)


# ---- the table --------------------------------------------------------------------------------


class _NaNIntegrand(tn.Regularizer):
    """An integrand that is NaN wherever z has a negative entry (as a Taylor rule's NaN at 0 was)."""

    name = "nan"

    def integrand(self, f, t, z, args, noise):
        return jnp.sum(jnp.where(z < 0, jnp.nan, z), axis=1)


ROWS: list[tuple] = [
    # -- silent wrong answers before #14 (loops, top_k and cond now have Taylor rules: tested below) --
    (
        "silent: integer z",
        lambda tmp: derivatives(lambda t, z, a: z**2, 0.0, jnp.array([[2, 3]]), None, 2),
        TypeError,
        r"state z must be floating point, got dtype int.*jnp.asarray\(z, dtype=jnp.float64\)",
    ),
    (
        "silent: float32 K = 34",
        lambda tmp: derivatives(decay, 0.0, _float32_z(), None, 34),
        ValueError,
        r"order K = 34 is above the largest order method 'incremental' supports, 32",
    ),
    (
        "silent: float16 K = 8 (8! overflows float16)",
        lambda tmp: derivatives(decay, 0.0, Z.astype(jnp.float16), None, 8, "nested"),
        ValueError,
        r"order K = 8 is above 7, the largest order whose factorial K! fits float16",
    ),
    (
        "silent: jet K = 21",
        lambda tmp: derivatives(decay, 0.0, Z, None, 21, "jet"),
        ValueError,
        r"above the largest order method 'jet' supports, 20",
    ),
    (
        "silent: nested K = 11",
        lambda tmp: derivatives(decay, 0.0, Z, None, 11, "nested"),
        ValueError,
        r"above the largest order method 'nested' supports, 10",
    ),
    (
        "silent: regularizer r99",
        lambda tmp: tn.solve(decay, Z, regularizers=["r99"]),
        ValueError,
        r"order K = 99 is above the largest order",
    ),
    (
        "silent: solver taylor100",
        lambda tmp: tn.solve(decay, Z, solver="taylor100"),
        ValueError,
        r"order must be an integer >= 2 and <= 30.*got 100",
    ),
    (
        "silent: Taylor solver at tolerance 1e-30",
        lambda tmp: tn.solve(decay, Z, solver="taylor", rtol=1e-30, atol=1e-30),
        ValueError,
        r"tolerance .* 1e-30 asks for Jorba & Zou's Taylor order 36, above the supported maximum 30",
    ),
    (
        "silent: mnist --train-examples 0",
        lambda tmp: _cli(["train", "mnist", "--train-examples", "0", "--out", str(tmp)]),
        CliExit,
        r"status 2: taynode: error: train_examples must be >= 1",
    ),
    (
        "silent: mnist --reg r3 without --lam",
        lambda tmp: _cli(["train", "mnist", "--reg", "r3", "--out", str(tmp)]),
        CliExit,
        r"status 2: taynode: error: a regularizer is chosen but its weight λ is 0; pass λ > 0 \(--lam\)",
    ),
    (
        "silent: demo --lam -1",
        lambda tmp: _cli(["demo", "--lam", "-1", "--out", str(tmp)]),
        CliExit,
        r"status 2: taynode: error: the demo's weight λ of R3 must be > 0.*got -1",
    ),
    (
        "silent: latent-ode --lam 0",
        lambda tmp: __import__("taynode.studies.latent", fromlist=["x"]).preset("cpu", lam=0.0),
        ValueError,
        r"weight λ of R3 must be > 0",
    ),
    (
        "silent: second run into a locked folder",
        _locked_train,
        RunLockedError,
        rf"run folder .* is in use by process {os.getpid()} \(lock file .*run\.lock\)",
    ),
    (
        "Taylor solver: a loop in f needs nested, which stops at order 10",
        lambda tmp: tn.solve(f_fori, Z, solver="taylor10"),
        ValueError,
        r"order 1[12] is above 10, the largest order for which the Taylor core expands 'scan'.*use a lower order",
    ),
    (
        "silent: NaN in weights a plain function closes over (was reported as max_steps)",
        lambda tmp: tn.solve(lambda t, z, a: z @ W_NAN, Z),
        ValueError,
        r"f\(t0, z0, args\) contains NaN or inf although z0 and args are finite: check the arrays f closes over",
    ),
    (
        "silent: the same under jax.jit",
        lambda tmp: jax.block_until_ready(jax.jit(lambda z: tn.solve(lambda t, y, a: y @ W_NAN, z).z1)(Z)),
        Exception,
        r"f\(t0, z0, args\) contains NaN or inf",
    ),
    (
        "silent: NaN as a Python float in args",
        lambda tmp: tn.solve(lambda t, z, a: a * z, Z, args=float("nan")),
        ValueError,
        r"args is nan",
    ),
    # -- unclear errors before #14 --
    ("max_steps = 0", lambda tmp: tn.solve(decay, Z, max_steps=0), ValueError, r"max_steps must be an integer >= 1, got 0"),
    (
        "stiff problem: the step size collapses",
        lambda tmp: tn.solve(_van_der_pol_1000, jnp.array([[2.0, 0.0]]), (0.0, 1.0), max_steps=300),
        Exception,
        r"maximum number of solver steps was reached before t1 \(raise max_steps=300\): the step size collapsed.*stiff",
    ),
    (
        "physionet truncated archive, verify=False",
        lambda tmp: _physionet(_write_physionet(tmp, truncate=True), verify=False),
        ValueError,
        r"set-a\.tar\.gz: the archive is truncated or corrupt",
    ),
    (
        "physionet checksum names its own switch",
        lambda tmp: _physionet(_write_physionet(tmp)),
        ValueError,
        r"set-a\.tar\.gz: SHA-256 is [0-9a-f]{64}.*pass verify=False to physionet\.load",
    ),
    (
        "compare-solvers --model corrupt",
        lambda tmp: _compare_load(_corrupt_model(tmp)),
        ValueError,
        r"model\.npz is not a readable portable model",
    ),
    (
        "portable model missing",
        lambda tmp: portable.load(str(tmp / "none.npz")),
        FileNotFoundError,
        r"portable model .*none\.npz does not exist",
    ),
    (
        "CLI error is one line",
        lambda tmp: _cli(
            ["compare-solvers", "--problems", "neural_ode", "--model", str(_corrupt_model(tmp)), "--out", str(tmp / "o")]
        ),
        CliExit,
        r"^status 2: taynode: error: .*model\.npz is not a readable portable model[^\n]*\n$",
    ),
    # -- errors that already held --
    ("NaN in z0", lambda tmp: tn.solve(decay, Z.at[0, 0].set(jnp.nan)), ValueError, r"z0 contains NaN or inf"),
    ("inf in z0", lambda tmp: tn.solve(decay, Z.at[0, 1].set(jnp.inf)), ValueError, r"z0 contains NaN or inf"),
    (
        "NaN in args",
        lambda tmp: tn.solve(lambda t, z, a: a * z, Z, args=jnp.array(jnp.nan)),
        ValueError,
        r"args contains NaN or inf",
    ),
    (
        "non-monotone ts",
        lambda tmp: tn.solve(decay, Z, jnp.array([0.0, 1.0, 0.5])),
        ValueError,
        r"ts must be strictly increasing",
    ),
    ("rtol = 0", lambda tmp: tn.solve(decay, Z, rtol=0.0), ValueError, r"rtol and atol must be > 0"),
    ("atol < 0", lambda tmp: tn.solve(decay, Z, atol=-1.0), ValueError, r"rtol and atol must be > 0"),
    ("K = 0", lambda tmp: derivatives(decay, 0.0, Z, None, 0), ValueError, r"order K must be an integer >= 1, got 0"),
    ("K = 1.5", lambda tmp: derivatives(decay, 0.0, Z, None, 1.5), TypeError, r"order K must be an integer >= 1, got 1\.5"),
    ("regularizer r0", lambda tmp: tn.solve(decay, Z, regularizers=["r0"]), ValueError, r"order K must be an integer >= 1"),
    ("unknown regularizer", lambda tmp: tn.solve(decay, Z, regularizers=["foo"]), ValueError, r"unknown regularizer 'foo'"),
    ("unknown solver", lambda tmp: tn.solve(decay, Z, solver="rk99"), ValueError, r"unknown solver 'rk99'; valid solvers"),
    (
        "unknown Taylor method",
        lambda tmp: derivatives(decay, 0.0, Z, None, 2, "fast"),
        ValueError,
        r"unknown Taylor method 'fast'",
    ),
    (
        "f returns the wrong shape",
        lambda tmp: tn.solve(lambda t, z, a: z[:, :1], Z),
        ValueError,
        r"returned shape \(1, 1\) for a state of shape \(1, 3\)",
    ),
    ("state without a batch axis", lambda tmp: tn.solve(decay, jnp.ones(())), ValueError, r"leading batch axis"),
    (
        "cond with jet",
        lambda tmp: derivatives(f_cond, 0.0, Z, None, 2, "jet"),
        UnsupportedPrimitiveError,
        r"'jet' has no rule for the primitive 'cond'",
    ),
    (
        "max_steps exceeded",
        lambda tmp: tn.solve(lambda t, z, a: 100 * z, Z, (0.0, 1.0), max_steps=3),
        Exception,
        r"maximum number of solver steps",
    ),
    ("Taylor solver order 1", lambda tmp: tn.solve(decay, Z, solver="taylor1"), ValueError, r"order must be an integer >= 2"),
    (
        "MNIST npz fails its checksum",
        lambda tmp: (tmp / "m.npz").write_bytes(b"x") and _mnist(tmp / "m.npz"),
        ValueError,
        r"m\.npz: SHA-256 is [0-9a-f]{64}, expected .*pass sha256=None",
    ),
    ("MNIST file missing", lambda tmp: _mnist(tmp / "absent.npz"), Exception, r"absent\.npz"),
    (
        "truncated checkpoint, no previous one",
        _truncated_checkpoint_without_previous,
        CheckpointError,
        r"checkpoint\.npz is unreadable \(truncated",
    ),
    (
        "checkpoint missing",
        lambda tmp: load_checkpoint(tmp / "nope.npz", {"w": jnp.zeros(1)}),
        CheckpointError,
        r"nope\.npz does not exist",
    ),
    ("Julia absent", lambda tmp: _julia(), RuntimeError, r"Julia backend unavailable: no Julia executable found"),
    # -- solve's edge cases (issues #23, #26): the solving layer's one place of checks --
    (
        "adjoint typo, even on an empty interval",
        lambda tmp: tn.solve(decay, Z, ts=(0.0, 0.0), adjoint="typo"),
        ValueError,
        r"unknown adjoint 'typo'; valid: backprop, adjoint",
    ),
    (
        "silent: float32 times that collapse (returned z0 with 0 NFE)",
        lambda tmp: tn.solve(decay, jnp.asarray(Z, jnp.float32), ts=(1e8, 1e8 + 1)),
        ValueError,
        r"ts \[100000000\.0, 100000001\.0\] are distinct, but equal in float32.*float64 state",
    ),
    (
        "silent: NaN in ts under jax.jit (returned inf)",
        lambda tmp: jax.block_until_ready(jax.jit(lambda t1: tn.solve(decay, Z, ts=jnp.stack([0.0, t1])).z1)(jnp.nan)),
        Exception,
        r"ts contains NaN or inf",
    ),
    (
        "silent: pytree state whose leaves have different batch sizes (broadcast)",
        lambda tmp: tn.solve(lambda t, z, a: {"a": -z["a"], "b": -z["b"]}, {"a": jnp.ones((2, 3)), "b": jnp.ones((3, 3))}),
        ValueError,
        r"every leaf of z0 must have the same batch size \(leading axis\), got z0\['a'\]: 2, z0\['b'\]: 3",
    ),
    (
        "NaN in a regularizer's integrand (was: step size collapsed ... stiff)",
        lambda tmp: tn.solve(decay, Z, regularizers=[_NaNIntegrand()]),
        ValueError,
        r"regularizer's integrand is NaN or inf at \(t0, z0\) although f is finite.*not stiffness.*\['nan'\]",
    ),
    # -- issue #26: derivatives() at one point --
    (
        "derivatives: an array of times",
        lambda tmp: derivatives(lambda t, z, a: t * z, jnp.array([0.5, 1.0]), jnp.ones((2, 2)), None, 2),
        ValueError,
        r"t must be a scalar time .*got shape \(2,\).*jax.vmap",
    ),
    (
        "derivatives: f returns float32 for a float64 state",
        lambda tmp: derivatives(lambda t, z, a: (2 * z).astype(jnp.float32), 0.0, Z, None, 2),
        TypeError,
        r"returned dtype float32 for a state of dtype float64.*mix precisions",
    ),
    (
        "derivatives: f returns int32 for a float64 state",
        lambda tmp: derivatives(lambda t, z, a: (2 * z).astype(jnp.int32), 0.0, Z, None, 2),
        TypeError,
        r"returned dtype int32 for a state of dtype float64",
    ),
]


# ---- issue #26: run folders, checkpoints and file inputs (the reliability slice) ----------------


def _symlinked_lock(tmp):
    notes = tmp / "notes.txt"
    notes.write_text("my notes\n")
    run = tmp / "run"
    run.mkdir()
    (run / "run.lock").symlink_to(notes)
    _tiny_train(run)


def _foreign_lock(tmp):
    (tmp / "run.lock").write_text("secret notes, not a pid\n")
    _tiny_train(tmp)


def _forged_checkpoint(tmp):
    """A checkpoint whose __meta__ still fits the model but whose bias array is (5,)."""
    _tiny_train(tmp)
    with np.load(tmp / CHECKPOINT) as z:
        entries = {k: z[k] for k in z.files}
    meta = __import__("json").loads(bytes(entries["__meta__"]).decode())
    i = [p for p, _, _ in meta["leaves"]["model"]].index("['b']")
    entries[f"model{i}"] = np.zeros(5)
    np.savez(tmp / CHECKPOINT, **entries)
    _tiny_train(tmp, steps=9, resume=True)


def _no_latest_and_corrupt_previous(tmp):
    _tiny_train(tmp)
    os.remove(tmp / CHECKPOINT)
    (tmp / PREVIOUS).write_bytes((tmp / PREVIOUS).read_bytes()[:300])
    _tiny_train(tmp, steps=9, resume=True)


def _both_checkpoints_corrupt(tmp):
    _tiny_train(tmp)
    for name in (CHECKPOINT, PREVIOUS):
        (tmp / name).write_bytes(b"PK\x03\x04 torn")
    _tiny_train(tmp, steps=9, resume=True)


def _fresh_run_over_a_previous_checkpoint(tmp):
    _tiny_train(tmp)
    os.remove(tmp / CHECKPOINT)
    os.remove(tmp / "log.jsonl")
    _tiny_train(tmp)  # not a resume: checkpoint.prev.npz would be overwritten by its second checkpoint


def _idx(stem_path, shape, data=b"", gz=True):
    import gzip

    head = bytes([0, 0, 8, len(shape)]) + b"".join(int(d).to_bytes(4, "big") for d in shape)
    opener = gzip.open if gz else open
    with opener(str(stem_path) + (".gz" if gz else ""), "wb") as fh:
        fh.write(head + data)


def _idx_folder(tmp, images=(3, 28, 28), labels=(3,), image_data=None, label_data=b"\x01\x02\x03"):
    from taynode.data import mnist

    for split in ("train", "test"):
        _idx(tmp / mnist.IDX_FILES[f"x_{split}"], images, bytes(3 * 784) if image_data is None else image_data)
        _idx(tmp / mnist.IDX_FILES[f"y_{split}"], labels, label_data)
    return tmp


def _npz_declaring(path, name, shape, dtype="<u1", others=None):
    """An npz whose member ``name`` declares ``shape`` in its .npy header but holds 16 bytes."""
    import zipfile

    header = {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in (others or {}).items():
            b = io.BytesIO()
            np.lib.format.write_array(b, np.asarray(v))
            zf.writestr(k + ".npy", b.getvalue())
        zf.writestr(name + ".npy", buf.getvalue() + bytes(16))
    return path


def _portable_file(tmp, header, arrays=()):
    path = tmp / "model.npz"
    np.savez(path, header=np.frombuffer(__import__("json").dumps(header).encode(), np.uint8), **dict(arrays))
    return path


MLP_HEADER = {"format": portable.FORMAT, "kind": "mlp", "activation": "tanh"}


def _compare_cli(tmp, path):
    return _cli(["compare-solvers", "--problems", "neural_ode", "--model", str(path), "--out", str(tmp / "o")])


def _tar(tmp, members: dict, outcomes: str | None = None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (tmp / "set-a.tar.gz").write_bytes(buf.getvalue())
    (tmp / "Outcomes-a.txt").write_text(outcomes or "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n")
    return tmp


def _outcomes(rids, again):
    rows = [f"{r},1,1,1,1,{r % 2}" for r in [*rids, again]]
    return "\n".join(["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death", *rows]) + "\n"


def _rec(rid):
    return f"Time,Parameter,Value\n00:00,RecordID,{rid}\n01:00,HR,80\n".encode()


ROWS += [
    (
        "lost: run.lock a symlink to the user's file (was truncated)",
        _symlinked_lock,
        RunLockedError,
        r"run\.lock is a symbolic link; taynode creates and owns run\.lock .* will not write to another file",
    ),
    (
        "lost: run.lock a foreign file (its content was shown as a pid, then truncated)",
        _foreign_lock,
        RunLockedError,
        r"run\.lock is not a taynode lock file(?!.*secret)",
    ),
    (
        "silent: checkpoint array replaced, __meta__ intact",
        _forged_checkpoint,
        CheckpointError,
        r"checkpoint .*checkpoint\.npz: array model\d \(\['b'\]\) is float64 \(5,\) in the file but float64 \(1,\)",
    ),
    (
        "silent: resume with checkpoint.npz missing and checkpoint.prev.npz corrupt (restarted from 0)",
        _no_latest_and_corrupt_previous,
        CheckpointError,
        r"no usable checkpoint to resume .*checkpoint\.npz does not exist; and .*checkpoint\.prev\.npz is unreadable.*"
        r"Nothing was changed: pass start_over=True",
    ),
    (
        "both checkpoints corrupt: the error names both",
        _both_checkpoints_corrupt,
        CheckpointError,
        r"checkpoint\.npz is unreadable.*; and .*checkpoint\.prev\.npz is unreadable",
    ),
    (
        "lost: a fresh run into a folder with checkpoint.prev.npz overwrote it",
        _fresh_run_over_a_previous_checkpoint,
        FileExistsError,
        r"already holds a checkpoint \(checkpoint\.prev\.npz\); use another folder or resume=True",
    ),
    (
        "IDX images declaring 2^32-1 cubed (np.prod overflowed)",
        lambda tmp: _mnist(_idx_folder(tmp, images=(2**32 - 1,) * 3)),
        ValueError,
        r"train-images-idx3-ubyte\.gz: IDX images of 4294967295x4294967295 pixels, expected 28x28",
    ),
    (
        "IDX labels declaring 4 GB: refused before reading, naming the cap",
        lambda tmp: _mnist(_idx_folder(tmp, labels=(2**32 - 1,)), max_bytes=10**6),
        ValueError,
        r"train-labels-idx1-ubyte\.gz: header says shape \(4294967295,\) but the data is 4294967295 bytes, over the input "
        r"size cap of 1000000 bytes \(raise it with max_bytes= or \$TAYNODE_MAX_INPUT_BYTES",
    ),
    (
        "IDX gzip bomb: more data than the header declares (was read whole)",
        lambda tmp: _mnist(_idx_folder(tmp, image_data=bytes(4 * 10**6))),
        ValueError,
        r"train-images-idx3-ubyte\.gz: more data than its header's shape \(3, 28, 28\)",
    ),
    (
        "MNIST npz member declaring a huge array (was allocated)",
        lambda tmp: _mnist(
            _npz_declaring(
                tmp / "m.npz", "x_train", (10**9, 28, 28), others={k: np.zeros(1) for k in ("y_train", "x_test", "y_test")}
            ),
            sha256=None,
        ),
        ValueError,
        r"m\.npz: array 'x_train' of shape \(1000000000, 28, 28\) uint8.* over the input size cap of 1073741824 bytes",
    ),
    (
        "the cap comes from $TAYNODE_MAX_INPUT_BYTES",
        lambda tmp: _with_env_cap(lambda: _mnist(_idx_folder(tmp)), "1000"),
        ValueError,
        r"over the input size cap of 1000 bytes",
    ),
    (
        "PhysioNet record declaring 2 MiB (records were read whole)",
        lambda tmp: _physionet(_tar(tmp, {"set-a/1.txt": bytes(2 << 20)}), verify=False),
        ValueError,
        r"set-a\.tar\.gz: record set-a/1\.txt declares 2097152 bytes, over max_record_bytes=1048576",
    ),
    (
        "PhysioNet archive over the cap (members' declared sizes)",
        lambda tmp: _physionet(_tar(tmp, {f"set-a/{r}.txt": _rec(r) for r in range(20)}), verify=False, max_bytes=500),
        ValueError,
        r"set-a\.tar\.gz: its members declare more than the input size cap of 500 bytes",
    ),
    (
        "PhysioNet archive with too many members",
        lambda tmp: __import__("taynode.data.physionet", fromlist=["x"]).read_archive(
            _tar(tmp, {f"set-a/{r}.txt": _rec(r) for r in range(12)}) / "set-a.tar.gz", max_members=10
        ),
        ValueError,
        r"set-a\.tar\.gz: more than max_members=10 members",
    ),
    (
        "silent: PhysioNet outcome listed twice (the last won)",
        lambda tmp: _physionet(
            _tar(tmp, {f"set-a/{r}.txt": _rec(r) for r in range(1, 11)}, _outcomes(range(1, 11), 7)), verify=False
        ),
        ValueError,
        r"Outcomes-a\.txt:12: RecordID 7 is listed again \(first on line 8\)",
    ),
    (
        "crash: portable header a JSON list (AttributeError), via the CLI",
        lambda tmp: _compare_cli(tmp, _portable_file(tmp, [1, 2])),
        CliExit,
        r"^status 2: taynode: error: .*model\.npz is not a readable portable model.*header is a JSON list[^\n]*\n$",
    ),
    (
        "crash: portable 0-d weights (IndexError), via the CLI",
        lambda tmp: _compare_cli(tmp, _portable_file(tmp, MLP_HEADER, {"weight_0": np.float64(1.0), "bias_0": np.zeros(1)})),
        CliExit,
        r"^status 2: taynode: error: .*model\.npz: layer 0's weight must be a 2-d floating-point array, got float64 "
        r"array of shape \(\)[^\n]*\n$",
    ),
    (
        "crash: portable header missing a field (KeyError)",
        lambda tmp: portable.load(str(_portable_file(tmp, {"format": portable.FORMAT, "kind": "mlp"}))),
        ValueError,
        r"model\.npz: unknown activation None",
    ),
    (
        "crash: portable 1-d weights (IndexError)",
        lambda tmp: portable.load(str(_portable_file(tmp, MLP_HEADER, {"weight_0": np.zeros(3), "bias_0": np.zeros(3)}))),
        ValueError,
        r"layer 0's weight must be a 2-d floating-point array, got float64 array of shape \(3,\)",
    ),
    (
        "crash: portable weights without their biases (KeyError)",
        lambda tmp: portable.load(str(_portable_file(tmp, MLP_HEADER, {"weight_0": np.zeros((1, 2))}))),
        ValueError,
        r"has 1 weight arrays but lacks \['bias_0'\]",
    ),
    (
        "portable weights declaring 8 TB (was allocated)",
        lambda tmp: portable.load(
            str(
                _npz_declaring(
                    tmp / "big.npz",
                    "weight_0",
                    (10**6, 10**6),
                    "<f8",
                    {"header": _portable_header_bytes(), "bias_0": np.zeros(1)},
                )
            )
        ),
        ValueError,
        r"big\.npz is not a readable portable model.*array 'weight_0' of shape \(1000000, 1000000\) float64.*over the input size cap",
    ),
    (
        "MINIBOONE .npy declaring a huge array (was allocated)",
        lambda tmp: __import__("taynode.data.miniboone", fromlist=["x"]).load(_npy_declaring(tmp / "data.npy", (10**8, 43))),
        ValueError,
        r"data\.npy: array of shape \(100000000, 43\) float64 is 34400000000 bytes, over the input size cap",
    ),
]


def _with_env_cap(call, cap: str):
    old = os.environ.get("TAYNODE_MAX_INPUT_BYTES")
    os.environ["TAYNODE_MAX_INPUT_BYTES"] = cap
    try:
        return call()
    finally:
        if old is None:
            del os.environ["TAYNODE_MAX_INPUT_BYTES"]
        else:
            os.environ["TAYNODE_MAX_INPUT_BYTES"] = old


def _portable_header_bytes():
    return np.frombuffer(__import__("json").dumps(MLP_HEADER).encode(), np.uint8)


def _npy_declaring(path, shape):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": tuple(shape)})
    path.write_bytes(buf.getvalue() + bytes(64))
    return path


@pytest.fixture
def no_julia(monkeypatch):
    for var in ("PYTHON_JULIACALL_EXE", "PYTHON_JULIAPKG_EXE", "TAYNODE_JULIA_DOWNLOAD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")


@pytest.mark.parametrize("case", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_names_the_problem(case, tmp_path, no_julia):
    _, call, exc, regex = case
    with pytest.raises(exc, match=re.compile(regex, re.S)):
        call(tmp_path)


# ---- behaviour that is not an error -------------------------------------------------------------


@pytest.mark.parametrize("f", [f_fori, f_while, f_top_k, f_cond_int, f_cond], ids=["fori", "while", "top_k", "cond_int", "cond"])
def test_formerly_refused_primitives_match_nested(f):
    """Refused before #29 (which #14 had turned from silent zeros into errors); now incremental
    mode has their rules and must give nested JVPs' derivatives."""
    got = derivatives(f, 0.0, Z, None, 3)
    want = derivatives(f, 0.0, Z, None, 3, "nested")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_r2_in_solve_with_a_loop_in_f_is_the_closed_form():
    # dz/dt = z/8: z(t) = z0 e^{t/8}, z'' = z/64; R2 = ∫ mean_features(z''²) dt over (0, 1)
    sol = tn.solve(f_fori, Z, regularizers=["r2"], rtol=1e-10, atol=1e-10)
    want = np.mean(np.asarray(Z) ** 2, axis=1) / 64**2 * (np.exp(2 / 8) - 1) / (2 / 8)
    np.testing.assert_allclose(sol.integrals["R2"], want, rtol=1e-7)


@pytest.mark.parametrize("f", [f_fori, f_while])
def test_loops_under_nested_match_the_closed_form(f):
    # dz/dt = z/8  ⇒  dᵏz/dtᵏ = z/8ᵏ; nested is the method the error message points to
    got = derivatives(f, 0.0, Z, None, 3, "nested")
    for k, d in enumerate(got, 1):
        np.testing.assert_allclose(d, Z / 8.0**k, rtol=1e-14)


def test_integer_outputs_that_only_index_stay_supported():
    # argsort (sort with an unused float output) and argmax only pick elements: the series
    # flows through the gather, as nested differentiates it
    def f(t, z, a):
        return jnp.sin(z[:, jnp.argsort(z[0])]) + z[:, jnp.argmax(z[0])][:, None]

    for a, b in zip(derivatives(f, 0.0, Z, None, 4), derivatives(f, 0.0, Z, None, 4, "nested")):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_highest_supported_orders_are_right_in_float32():
    # dz/dt = z: every derivative is z. Before #14 incremental float32 gave 0 at K = 34 (1/34!
    # underflows) and NaN at K = 35; now K <= 32 is supported and exact to float32 rounding.
    z = Z.astype(jnp.float32)
    ds = derivatives(lambda t, z, a: z, 0.0, z, None, MAX_ORDER["incremental"])
    assert ds[-1].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(ds[-1]), np.asarray(z), rtol=1e-5)
    assert max_derivative_order(jnp.float32) == 33 and 1 / math.factorial(33) > np.finfo(np.float32).tiny
    assert 1 / math.factorial(34) < np.finfo(np.float32).tiny  # the first order whose 1/K! is subnormal


def test_equal_times_return_the_initial_state():
    sol = tn.solve(decay, Z, (0.5, 0.5))
    np.testing.assert_array_equal(sol.z1, Z)


def test_cli_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="train_examples must be >= 1"):
        main(["--debug", "train", "mnist", "--train-examples", "0", "--out", str(tmp_path)])


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capfd):
    (tmp_path / "run.lock").write_text("999999999\n")  # no such process holds it
    _tiny_train(tmp_path)
    assert re.search(r"taking over the stale lock .*run\.lock of process 999999999", capfd.readouterr().err)
    assert (tmp_path / "run.lock").read_text() == ""  # released


def test_kill_mid_write_leftovers_are_cleaned_and_corrupt_latest_falls_back(tmp_path, capfd):
    whole = _tiny_train(tmp_path / "whole", steps=9)
    run = tmp_path / "run"
    _tiny_train(run)  # checkpoints at steps 3 (kept as checkpoint.prev.npz) and 6
    assert read_meta(run / PREVIOUS)["step"] == 3 and read_meta(run / CHECKPOINT)["step"] == 6
    (run / "checkpoint.npz.x1y2.tmp").write_bytes(b"")  # a kill during a checkpoint write
    (run / CHECKPOINT).write_bytes((run / CHECKPOINT).read_bytes()[:100])  # then the latest file got damaged
    res = _tiny_train(run, steps=9, resume=True)
    err = capfd.readouterr().err
    assert "checkpoint.npz.x1y2.tmp, left by an interrupted write" in err
    assert re.search(
        r"checkpoint\.npz is unreadable.*resuming from the previous checkpoint .*checkpoint\.prev\.npz \(step 3\)", err
    )
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]
    assert (run / (CHECKPOINT + ".corrupt")).exists()
    # bit-exact: the same parameters as a run never interrupted, and the log replayed from step 3
    for k in ("w", "b"):
        np.testing.assert_array_equal(np.asarray(res.model[k]), np.asarray(whole.model[k]))
    assert [r["step"] for r in read_log(run, "step")] == list(range(1, 10))


def test_nested_list_state_is_one_array():
    sol = tn.solve(decay, [[1.0, 2.0]], (0.0, 1.0))
    np.testing.assert_allclose(sol.z1, np.exp(-1.0) * np.array([[1.0, 2.0]]), rtol=1e-6)


def test_float32_tolerance_below_resolution_warns():
    with pytest.warns(UserWarning, match=r"below what float32 resolves"):
        tn.solve(decay, Z.astype(jnp.float32), rtol=1e-10, atol=1e-10)


# ---- issue #26: what a refused or failed run leaves behind ----------------------------------------


def test_symlinked_lock_leaves_its_target_untouched(tmp_path):
    with pytest.raises(RunLockedError):
        _symlinked_lock(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"  # was truncated to nothing
    assert (tmp_path / "run" / "run.lock").is_symlink()
    assert sorted(os.listdir(tmp_path / "run")) == ["run.lock"]  # nothing trained, nothing written


def test_foreign_lock_is_neither_shown_nor_changed(tmp_path):
    with pytest.raises(RunLockedError) as err:
        _foreign_lock(tmp_path)
    assert "secret" not in str(err.value)
    assert (tmp_path / "run.lock").read_text() == "secret notes, not a pid\n"


def test_forged_checkpoint_is_left_as_it_was(tmp_path):
    with pytest.raises(CheckpointError):
        _forged_checkpoint(tmp_path)
    with np.load(tmp_path / CHECKPOINT) as z:
        assert any(z[k].shape == (5,) for k in z.files if k.startswith("model"))  # the file the user has, unchanged


def test_failed_resume_changes_nothing_and_start_over_keeps_the_bad_files(tmp_path, capfd):
    _tiny_train(tmp_path)
    os.remove(tmp_path / CHECKPOINT)
    bad = (tmp_path / PREVIOUS).read_bytes()[:300]
    (tmp_path / PREVIOUS).write_bytes(bad)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        _tiny_train(tmp_path, steps=9, resume=True)
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)} == before  # the log too
    with pytest.raises(ValueError, match=r"start_over=True applies to a resume \(resume=True\)"):
        _tiny_train(tmp_path, steps=9, start_over=True)
    res = _tiny_train(tmp_path, steps=9, resume=True, start_over=True)
    assert re.search(
        r"no usable checkpoint in .*starting over from step 0 \(kept .*checkpoint\.prev\.npz\.corrupt\)", capfd.readouterr().err
    )
    assert (tmp_path / (PREVIOUS + ".corrupt")).read_bytes() == bad
    assert [r["step"] for r in read_log(tmp_path, "step")] == list(range(1, 10))
    fresh = _tiny_train(tmp_path / "fresh", steps=9)
    for k in ("w", "b"):  # the same run as one started in an empty folder
        np.testing.assert_array_equal(np.asarray(res.model[k]), np.asarray(fresh.model[k]))


def test_float16_states_get_a_tolerance_float16_can_meet():
    """The default rtol = atol for float16 is 1e-2 (about ten times its epsilon), not float64's
    1.4e-8 (which failed as a "stiff problem"): z' = −z solves to e^{-1} within that tolerance."""
    sol = tn.solve(decay, jnp.asarray(Z, jnp.float16), (0.0, 1.0))
    assert sol.z1.dtype == jnp.float16
    assert np.allclose(np.asarray(sol.z1, np.float64), np.asarray(Z) * math.exp(-1.0), rtol=2e-2, atol=2e-3)
