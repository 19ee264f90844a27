"""Checkpoints: one ``.npz`` holding the model's and optimizer state's arrays and JSON metadata.

Written atomically (:func:`taynode.atomic.atomic_file`: a uniquely named temporary file in the
same folder, flushed to disk, then ``os.replace``), so a crash leaves either the previous
checkpoint or the new one, never a torn file (a kill mid-write leaves only a ``<name>.*.tmp``
file, which :func:`remove_stale_temporaries` cleans up). With ``previous=`` the checkpoint being
replaced is kept under that name too, so one file that is corrupt on disk later does not cost
the run. On load the metadata's paths, shapes and dtypes are compared with a template (a freshly
built model and optimizer state), and then every stored array's own ``.npy`` header, before it
is read (:class:`taynode.inputs.LazyNpz`), so a file whose arrays disagree with its metadata is
refused too; any difference, like a truncated or foreign file, raises :class:`CheckpointError`
naming the file and the array; nothing on disk is changed by a failed load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from itertools import zip_longest
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..atomic import atomic_file, stale_temporaries
from ..inputs import LazyNpz

__all__ = [
    "CheckpointError",
    "CorruptCheckpointError",
    "load_checkpoint",
    "read_meta",
    "remove_stale_temporaries",
    "save_checkpoint",
]

FORMAT = "taynode-checkpoint-1"
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint cannot be read, or does not fit the model/optimizer it is loaded into."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is missing, truncated or unreadable (as opposed to well-formed but
    written for another model or configuration)."""


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files (``<path>.*.tmp``) that a process killed while writing
    ``path`` left behind; returns their names. Call only while no other process writes there
    (the run folder's lock)."""
    folder = os.path.dirname(os.path.abspath(path))
    stale = stale_temporaries(path)
    for n in stale:
        os.remove(os.path.join(folder, n))
    return stale


def _link_or_copy(src, dst):
    """Make ``dst`` a copy of ``src`` atomically (a hard link where the file system allows)."""
    folder = os.path.dirname(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(dst) + ".", suffix=".tmp")
    os.close(fd)
    try:
        os.remove(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        if os.path.exists(tmp):  # src and dst were already links to one file: rename did nothing
            os.remove(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _arrays(tree):
    """``[(path, array)]`` of the array leaves of ``tree`` and the partition to rebuild it."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    leaves = jax.tree_util.tree_leaves_with_path(arrays)
    return [(jax.tree_util.keystr(p), x) for p, x in leaves], arrays, static


def _key_data(key):
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).tolist()  # a NumPy key stays NumPy: writing a checkpoint needs no JAX device


def save_checkpoint(
    path: str | os.PathLike,
    model: Any,
    opt_state: Any,
    *,
    step: int,
    key: jax.Array,
    config: Any = None,
    extra: dict | None = None,
    previous: str | os.PathLike | None = None,
) -> None:
    """Write ``model``, ``opt_state``, ``step``, the PRNG ``key``, ``config`` (JSON) and ``extra``
    (JSON, e.g. accumulated time) to ``path`` atomically; with ``previous``, the file ``path``
    held until now is kept there (replacing an older one)."""
    entries, meta_leaves = {}, {}
    for prefix, tree in (("model", model), ("opt", opt_state)):
        leaves, _, _ = _arrays(tree)
        meta_leaves[prefix] = []
        for i, (p, x) in enumerate(leaves):
            x = np.asarray(x)
            entries[f"{prefix}{i}"] = x
            meta_leaves[prefix].append([p, list(x.shape), x.dtype.str])
    meta = dict(format=FORMAT, step=int(step), key=_key_data(key), config=config, extra=extra or {}, leaves=meta_leaves)
    entries[_META] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    keep = None if previous is None else (lambda: os.path.isfile(path) and _link_or_copy(path, previous))
    with atomic_file(path, "wb", before_replace=keep) as fh:
        np.savez(fh, **entries)


def _open(path, cap=None) -> tuple[LazyNpz, dict]:
    if not os.path.isfile(path):
        raise CorruptCheckpointError(f"checkpoint {path} does not exist")
    z = None
    try:
        z = LazyNpz(path, cap, error=CorruptCheckpointError)
        meta = json.loads(z.read(_META).tobytes().decode())
        if not isinstance(meta, dict):
            raise ValueError(f"the metadata is a JSON {type(meta).__name__}, not an object")
    except (CorruptCheckpointError, ValueError) as e:
        if z is not None:
            z.close()
        raise CorruptCheckpointError(
            f"checkpoint {path} is unreadable (truncated or not a taynode checkpoint): {type(e).__name__}: {e}"
        ) from None
    if meta.get("format") != FORMAT:
        z.close()
        raise CorruptCheckpointError(f"checkpoint {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    step, extra, leaves = meta.get("step"), meta.get("extra"), meta.get("leaves")
    if not (isinstance(step, int) and step >= 0 and isinstance(extra, dict) and isinstance(leaves, dict) and "key" in meta):
        z.close()
        raise CorruptCheckpointError(
            f"checkpoint {path} has malformed metadata (step, key, extra or leaves missing or of the wrong type)"
        )
    return z, meta


def read_meta(path: str | os.PathLike[str]) -> dict:
    """The checkpoint's metadata: ``step``, ``key``, ``config``, ``extra``, ``leaves``."""
    z, meta = _open(path)
    z.close()
    return meta


def _restore(z: LazyNpz, meta, path, prefix, like):
    leaves, arrays, static = _arrays(like)
    stored = meta.get("leaves", {}).get(prefix) if isinstance(meta.get("leaves"), dict) else None
    want = [[p, list(np.shape(x)), np.dtype(x.dtype).str] for p, x in leaves]
    if stored != want:
        stored = stored if isinstance(stored, list) else []
        diffs = [
            f"{w[0] if w else s[0]}: stored {s[1:] if s else 'nothing'}, expected {w[1:] if w else 'nothing'}"
            for s, w in zip_longest(stored, want)
            if s != w
        ]
        raise CheckpointError(
            f"checkpoint {path} does not fit this {'model' if prefix == 'model' else 'optimizer state'} "
            f"({len(diffs)} difference(s), e.g. {'; '.join(diffs[:3])}); was it written by another model shape "
            f"or configuration?"
        )
    extra = sorted(
        set(n for n in z.files if n.startswith(prefix) and n[len(prefix) :].isdigit())
        - {f"{prefix}{i}" for i in range(len(leaves))}
    )
    if extra:
        raise CheckpointError(
            f"checkpoint {path} holds arrays its metadata does not list ({extra[:5]}); it is not the file it claims to be"
        )
    values = []
    for i, (p, x) in enumerate(leaves):  # each array as stored, not only as the metadata says
        name, shape, dtype = f"{prefix}{i}", tuple(np.shape(x)), np.dtype(x.dtype)
        got_shape, got_dtype = z.info(name)
        if (got_shape, got_dtype) != (shape, dtype):
            raise CheckpointError(
                f"checkpoint {path}: array {name} ({p}) is {got_dtype} {got_shape} in the file but {dtype} {shape} in the "
                f"{'model' if prefix == 'model' else 'optimizer state'} it is loaded into (its metadata says otherwise: "
                "the file is damaged or was edited); use another checkpoint"
            )
        values.append(jnp.asarray(z.read(name)))
    treedef = jax.tree_util.tree_structure(arrays)
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, values), static)


def load_checkpoint(path: str | os.PathLike, model_like: Any, opt_state_like: Any = None) -> tuple[Any, Any, dict]:
    """``(model, opt_state, meta)`` from ``path``; the templates give structure, shapes and dtypes.

    With ``opt_state_like=None`` only the model is restored (``opt_state`` is ``None``).
    """
    z, meta = _open(path)
    with z:
        model = _restore(z, meta, path, "model", model_like)
        opt_state = None if opt_state_like is None else _restore(z, meta, path, "opt", opt_state_like)
    return model, opt_state, meta
