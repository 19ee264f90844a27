"""Checkpoints: one ``.npz`` holding the model's and optimizer state's arrays and JSON metadata.

Written atomically (a temporary file in the same folder, flushed to disk, then ``os.replace``),
so a crash leaves either the previous checkpoint or the new one, never a torn file (a kill
mid-write leaves only a ``<name>.*.tmp`` file, which :func:`remove_stale_temporaries` cleans up).
With ``previous=`` the checkpoint being replaced is kept under that name too, so one file that
is corrupt on disk later does not cost the run. On load the
stored arrays' paths, shapes and dtypes are compared with a template (a freshly built model and
optimizer state), and any difference, like a truncated or foreign file, raises
:class:`CheckpointError` naming the file; nothing on disk is changed by a failed load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from itertools import zip_longest
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

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


def remove_stale_temporaries(path) -> list[str]:
    """Delete the temporary files (``<path>.*.tmp``) that a process killed while writing
    ``path`` left behind; returns their names. Call only while no other process writes there
    (the run folder's lock)."""
    folder, base = os.path.split(os.path.abspath(path))
    stale = [n for n in os.listdir(folder) if n.startswith(base + ".") and n.endswith(".tmp")]
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
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).tolist()


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
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **entries)
            fh.flush()
            os.fsync(fh.fileno())
        if previous is not None and os.path.isfile(path):
            _link_or_copy(path, previous)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _open(path):
    if not os.path.isfile(path):
        raise CorruptCheckpointError(f"checkpoint {path} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
        meta = json.loads(bytes(z[_META]).decode())
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise CorruptCheckpointError(
            f"checkpoint {path} is unreadable (truncated or not a taynode checkpoint): {type(e).__name__}: {e}"
        ) from None
    if meta.get("format") != FORMAT:
        raise CorruptCheckpointError(f"checkpoint {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return z, meta


def read_meta(path) -> dict:
    """The checkpoint's metadata: ``step``, ``key``, ``config``, ``extra``, ``leaves``."""
    z, meta = _open(path)
    z.close()
    return meta


def _restore(z, meta, path, prefix, like):
    leaves, arrays, static = _arrays(like)
    stored = meta["leaves"][prefix]
    want = [[p, list(np.shape(x)), np.dtype(x.dtype).str] for p, x in leaves]
    if stored != want:
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
    try:
        values = [jnp.asarray(z[f"{prefix}{i}"]) for i in range(len(leaves))]
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise CorruptCheckpointError(f"checkpoint {path} is corrupt ({type(e).__name__}: {e})") from None
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
