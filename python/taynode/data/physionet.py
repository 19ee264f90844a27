r"""PhysioNet/CinC Challenge 2012 (in-hospital mortality), read straight from the official archives.

Files (the layout physionet.org distributes, challenge-2012/1.0.0)::

    set-a.tar.gz     set-a/<RecordID>.txt, one ICU stay each (4,000 stays)
    set-b.tar.gz     set-b/<RecordID>.txt (4,000 stays)
    Outcomes-a.txt   RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death
    Outcomes-b.txt

Each record is a CSV ``Time,Parameter,Value`` with ``HH:MM`` times since ICU admission.
It opens with the general descriptors at 00:00 (RecordID, Age, Gender, Height, ICUType,
Weight; -1 means missing), then the time series of up to 37 variables (:data:`VARIABLES`)
over the first 48 hours. The folder is found, in this order, from the ``root`` argument, the
environment variable ``TAYNODE_PHYSIONET``, or ``physionet2012`` in the project's data folder
(``$TAYNODE_DATA``, else ``../shared/data`` from the repository root; see
:func:`taynode.data.data_root`). Every file's SHA-256 is checked against :data:`SHA256`.

What :func:`load` returns (a :class:`Split` of two :class:`PhysioNet` sets):

* ``values`` (n, L, 37) and ``mask`` (n, L, 37): the observations at each record's times
  (``mask`` 1 where observed; unobserved entries are 0), ``times`` (n, L) in hours, ``lengths``.
* the general descriptors apart, in ``static`` (n, 5) = Age, Gender, Height, ICUType, Weight
  (NaN where the record has -1), and ``death`` (n,) from the outcomes file.
* The descriptors are the first RecordID, Age, Gender, Height, ICUType and Weight lines at
  00:00 (they may be interleaved with 00:00 measurements). Time-varying Weight is one of the
  37 variables: a record's first Weight at 00:00 is the static admission weight, any later
  Weight line is an observation.

Binning (``bin_hours``, default 1 h, as the hourly quantization of Rubanova et al.'s code):
an observation at t hours goes to bin ``round(t / bin_hours)``, rounded half to even as
Python's ``round`` does in that code (so 00:30 → 0 h, 01:30 → 2 h, 02:30 → 2 h), and several
observations of one variable in one bin are averaged (their ``reduce='average'``). Binned
data share one grid ``0, b, 2b, ..., 48`` (49 times for hourly bins): ``times`` is that grid
for every record, and a bin without observations has an all-zero mask row. With
``bin_hours=None`` each record keeps its distinct minute-resolution times, padded to the
longest record (padding rows are masked out and repeat the last time).

Train/test split: a random 80/20 permutation of the records by ``seed``. Normalization
(``normalize=True``): min/max per variable over the *observed training* values,
:math:`(x - \min) / (\max - \min)`, applied to both splits (a constant variable is only
shifted). (Rubanova et al.'s ``normalize_masked_data`` divides by the max instead of the
range; we use the range.)

Malformed lines are dropped and counted by kind in :class:`Summary` (never silently kept):
a line without three fields, a time that is not ``HH:MM`` (minutes < 60), a time after 48:00,
an unknown parameter, a value that is not a finite number, a negative value of a time-varying
variable (all 37 are non-negative quantities; set A has 24 such Temp lines, e.g. -17.8 °C),
a negative descriptor other than -1, and a repeated descriptor or one after 00:00. A record
without the ``Time,Parameter,Value`` header or without a RecordID is dropped whole and counted.
Parsing all of set A takes about 5 s on one core, so there is no cache. The files are read by
:mod:`taynode.data.physionet_files`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import DataError, locate, verify_sha256
from .physionet_files import HORIZON_HOURS, STATIC, VARIABLES, Summary, _Archive, read_archive, read_outcomes

__all__ = [
    "ENV_VAR",
    "HORIZON_HOURS",
    "SHA256",
    "STATIC",
    "VARIABLES",
    "DataError",
    "PhysioNet",
    "Split",
    "Summary",
    "find_root",
    "load",
    "read_archive",
    "read_outcomes",
    "verify_sha256",
]

ENV_VAR = "TAYNODE_PHYSIONET"

SHA256 = {
    "set-a.tar.gz": "7f9555dba99ef556c5b2c492fc44e21c2d666bdb7598d8ff17125bc31aaa44cd",
    "set-b.tar.gz": "31e9055ff5b56b0b8b40c7832a327684b5e285f37d47836d6525f9728f87c421",
    "Outcomes-a.txt": "2613ea60ccda29f87571a7d6b09ad130858a8ccd66325bd073365925026883c2",
    "Outcomes-b.txt": "1305f29734da374a809483229a99f33a9230aa8d4fa74b1a2d6ad788136423d5",
}


# ----------------------------------------------------------------------------- files


def find_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``root``, else ``$TAYNODE_PHYSIONET``, else ``physionet2012`` in the
    project's data folder (:func:`taynode.data.data_root`: ``$TAYNODE_DATA`` or ../shared/data)."""
    return locate(
        root,
        ENV_VAR,
        "physionet2012",
        f"PhysioNet 2012 data folder not found: pass root=..., or set ${ENV_VAR}, or put the "
        f"official files (set-a.tar.gz, Outcomes-a.txt, ...) in ../shared/data/physionet2012 "
        f"next to the repository",
    )[0]


def _file(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (expected the official PhysioNet 2012 file {name!r} in {root})")
    return path


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class PhysioNet:
    """Records on a time grid (see the module docstring); all arrays have the records first."""

    record_ids: np.ndarray  # (n,) int
    sets: np.ndarray  # (n,) "a" / "b"
    times: np.ndarray  # (n, L) hours
    values: np.ndarray  # (n, L, 37); 0 where unobserved
    mask: np.ndarray  # (n, L, 37) float 0/1
    lengths: np.ndarray  # (n,) valid times per record
    static: np.ndarray  # (n, 5) Age, Gender, Height, ICUType, Weight; NaN = missing
    death: np.ndarray  # (n,) 0/1, -1 = unknown
    grid: np.ndarray | None  # (L,) the shared grid in hours when binned, else None

    def __len__(self):
        return len(self.record_ids)

    def subset(self, idx) -> PhysioNet:
        idx = np.asarray(idx)
        return replace(
            self,
            **{k: getattr(self, k)[idx] for k in ("record_ids", "sets", "times", "values", "mask", "lengths", "static", "death")},
        )


@dataclass(frozen=True)
class Split:
    """Train and test sets, the normalization (per-variable min and max over observed training
    values; ``values`` are normalized when ``normalized``), and the parse summary."""

    train: PhysioNet
    test: PhysioNet
    vmin: np.ndarray
    vmax: np.ndarray
    normalized: bool
    summary: Summary

    def denormalize(self, values):
        if not self.normalized:
            return values
        return values * _scale(self.vmin, self.vmax) + self.vmin


def _scale(vmin, vmax):
    rng = vmax - vmin
    return np.where(rng > 0, rng, 1.0)


def _to_grid(arch: _Archive, bin_hours: float | None):
    """Dense (n, L, 37) values and masks, averaging observations that share a time."""
    n, d = len(arch.record_ids), len(VARIABLES)
    hours = arch.minute / 60.0
    if bin_hours is not None:
        slot = np.round(hours / bin_hours).astype(np.int64)  # half to even, like Python's round
        n_slots = int(np.round(HORIZON_HOURS / bin_hours)) + 1
        grid = np.arange(n_slots) * bin_hours
        times = np.broadcast_to(grid, (n, n_slots)).copy()
        lengths = np.full(n, n_slots)
    else:
        # each record's distinct times, numbered in order
        key = arch.record * 10_000 + arch.minute
        uniq, slot = np.unique(key, return_inverse=True)
        urec, umin = uniq // 10_000, uniq % 10_000
        first = np.searchsorted(urec, np.arange(n))
        lengths = np.bincount(urec, minlength=n)
        slot = slot - first[arch.record]
        n_slots = max(int(lengths.max()), 1)
        times = np.zeros((n, n_slots))
        times[urec, np.arange(len(uniq)) - first[urec]] = umin / 60.0
        for i in np.nonzero(lengths)[0]:  # padding repeats the last time
            times[i, lengths[i] :] = times[i, lengths[i] - 1]
        grid = None
    flat = (arch.record * n_slots + slot) * d + arch.var
    total = np.bincount(flat, weights=arch.value, minlength=n * n_slots * d).reshape(n, n_slots, d)
    count = np.bincount(flat, minlength=n * n_slots * d).reshape(n, n_slots, d)
    mask = (count > 0).astype(np.float64)
    values = np.where(count > 0, total / np.maximum(count, 1.0), 0.0)
    return times, values, mask, lengths, grid


def load(
    root: str | os.PathLike[str] | None = None,
    *,
    sets: Sequence[str] = ("a",),
    bin_hours: float | None = 1.0,
    test_fraction: float = 0.2,
    seed: int = 0,
    normalize: bool = True,
    outcomes: bool = True,
    verify: bool = True,
    max_records: int | None = None,
    max_bytes: int | None = None,
) -> Split:
    """Read the archives of ``sets`` (``"a"``, ``"b"``), split 80/20 by ``seed``, and normalize.

    Args:
        root: the folder with the official files (see :func:`find_root` for the default).
        sets: which archives to read, e.g. ``("a",)`` or ``("a", "b")``.
        bin_hours: bin width in hours (default 1, the hourly grid 0..48); None keeps minutes.
        test_fraction: fraction of records held out for testing.
        seed: seed of the random split (and of the ``max_records`` subsample).
        normalize: min/max-normalize with the training split's observed values.
        outcomes: read Outcomes-X.txt for the mortality labels (``death``; else -1).
        verify: check the SHA-256 of every file read against :data:`SHA256`.
        max_records: keep a random subset of this many records (before the split), for quick runs.
        max_bytes: the input size cap per file, decompressed (default ``$TAYNODE_MAX_INPUT_BYTES``,
            else 1 GiB; see :func:`read_archive`).
    """
    if bin_hours is not None and not (np.isfinite(bin_hours) and 0 < bin_hours <= HORIZON_HOURS):
        raise ValueError(f"bin_hours must be in (0, 48] hours or None, got {bin_hours}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    sets = tuple(str(s).lower() for s in ((sets,) if isinstance(sets, str) else sets))
    if not sets or any(s not in ("a", "b") for s in sets) or len(set(sets)) != len(sets):
        raise ValueError(f"sets must be distinct names among 'a' and 'b', got {sets}")
    root = find_root(root)
    if not root.is_dir():
        raise FileNotFoundError(f"PhysioNet 2012 data folder {root} does not exist")
    parts, summary = [], Summary()
    for s in sets:
        name = f"set-{s}.tar.gz"
        arch = read_archive(_file(root, name), SHA256[name] if verify else None, max_bytes=max_bytes)
        summary = summary.merge(arch.summary)
        times, values, mask, lengths, grid = _to_grid(arch, bin_hours)
        death = np.full(len(arch.record_ids), -1, dtype=np.int64)
        if outcomes:
            oname = f"Outcomes-{s}.txt"
            table = read_outcomes(_file(root, oname), SHA256[oname] if verify else None, max_bytes=max_bytes)
            missing = [r for r in arch.record_ids if r not in table]
            if missing:
                raise DataError(f"{root / oname}: no outcome for {len(missing)} records of {name}, e.g. {missing[:5]}")
            death = np.array([table[r] for r in arch.record_ids], dtype=np.int64)
        parts.append((arch, times, values, mask, lengths, grid, death, s))
    width = max(p[1].shape[1] for p in parts)

    def pad(x, fill_last=False):
        extra = width - x.shape[1]
        if extra == 0:
            return x
        spec = [(0, 0), (0, extra)] + [(0, 0)] * (x.ndim - 2)
        return np.pad(x, spec, mode="edge" if fill_last else "constant")

    data = PhysioNet(
        record_ids=np.concatenate([p[0].record_ids for p in parts]),
        sets=np.concatenate([np.full(len(p[0].record_ids), p[7]) for p in parts]),
        times=np.concatenate([pad(p[1], True) for p in parts]),
        values=np.concatenate([pad(p[2]) for p in parts]),
        mask=np.concatenate([pad(p[3]) for p in parts]),
        lengths=np.concatenate([p[4] for p in parts]),
        static=np.concatenate([p[0].static for p in parts]),
        death=np.concatenate([p[6] for p in parts]),
        grid=parts[0][5],
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    if max_records is not None:
        if max_records < 2:
            raise ValueError(f"max_records must be at least 2, got {max_records}")
        order = order[:max_records]
    n_test = int(round(test_fraction * len(order)))
    if n_test == 0 or n_test == len(order):
        raise ValueError(f"test_fraction={test_fraction} of {len(order)} records leaves an empty split")
    train, test = data.subset(np.sort(order[n_test:])), data.subset(np.sort(order[:n_test]))
    observed = train.mask > 0
    vmin = np.array([train.values[..., j][observed[..., j]].min(initial=np.inf) for j in range(len(VARIABLES))])
    vmax = np.array([train.values[..., j][observed[..., j]].max(initial=-np.inf) for j in range(len(VARIABLES))])
    never = ~np.isfinite(vmin)
    vmin[never], vmax[never] = 0.0, 1.0  # a variable never observed in training: leave as is
    if normalize:
        scale = _scale(vmin, vmax)
        train = replace(train, values=np.where(train.mask > 0, (train.values - vmin) / scale, 0.0))
        test = replace(test, values=np.where(test.mask > 0, (test.values - vmin) / scale, 0.0))
    return Split(train=train, test=test, vmin=vmin, vmax=vmax, normalized=normalize, summary=summary)
