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
Parsing all of set A takes about 5 s on one core, so there is no cache.
"""

from __future__ import annotations

import math
import os
import re
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..inputs import ENV, max_input_bytes, read_exact
from . import DataError, locate, verify_sha256

__all__ = [
    "ENV_VAR",
    "HORIZON_HOURS",
    "SHA256",
    "STATIC",
    "VARIABLES",
    "PhysioNet",
    "Split",
    "Summary",
    "find_root",
    "load",
    "read_archive",
    "read_outcomes",
]

ENV_VAR = "TAYNODE_PHYSIONET"
HORIZON_HOURS = 48.0

# The 37 time series variables, in the order of Rubanova et al. (2019)'s physionet.py `params`
# (which lists the descriptors Age, Gender, Height, ICUType first; Weight is both).
VARIABLES = (
    "Weight", "Albumin", "ALP", "ALT", "AST", "Bilirubin", "BUN", "Cholesterol", "Creatinine",
    "DiasABP", "FiO2", "GCS", "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "Mg", "MAP",
    "MechVent", "Na", "NIDiasABP", "NIMAP", "NISysABP", "PaCO2", "PaO2", "pH", "Platelets",
    "RespRate", "SaO2", "SysABP", "Temp", "TroponinI", "TroponinT", "Urine", "WBC",
)  # fmt: skip
STATIC = ("Age", "Gender", "Height", "ICUType", "Weight")

SHA256 = {
    "set-a.tar.gz": "7f9555dba99ef556c5b2c492fc44e21c2d666bdb7598d8ff17125bc31aaa44cd",
    "set-b.tar.gz": "31e9055ff5b56b0b8b40c7832a327684b5e285f37d47836d6525f9728f87c421",
    "Outcomes-a.txt": "2613ea60ccda29f87571a7d6b09ad130858a8ccd66325bd073365925026883c2",
    "Outcomes-b.txt": "1305f29734da374a809483229a99f33a9230aa8d4fa74b1a2d6ad788136423d5",
}

_VAR_INDEX = {v: i for i, v in enumerate(VARIABLES)}
_STATIC_INDEX = {v: i for i, v in enumerate(STATIC)}
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_HEADER = "Time,Parameter,Value"
_N_EXAMPLES = 5
MAX_MEMBERS = 20_000  # limits on an archive (see read_archive); the official ones are far below
MAX_RECORD_BYTES = 1 << 20


# ----------------------------------------------------------------------------- files


def find_root(root=None) -> Path:
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


# ----------------------------------------------------------------------------- parsing


@dataclass
class Summary:
    """What parsing found: kept and dropped lines and records, by kind, with a few examples."""

    records: int = 0
    lines: int = 0  # data lines (after each record's header line)
    observations: int = 0  # time-varying observations kept
    dropped_lines: Counter = field(default_factory=Counter)
    dropped_records: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)  # kind -> [(member, line number, text)]

    def _drop(self, counter: Counter, kind: str, member: str, lineno: int, text: str):
        counter[kind] += 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < _N_EXAMPLES:
            ex.append((member, lineno, text))

    def merge(self, other: Summary) -> Summary:
        out = Summary(
            self.records + other.records,
            self.lines + other.lines,
            self.observations + other.observations,
            self.dropped_lines + other.dropped_lines,
            self.dropped_records + other.dropped_records,
            {k: list(v) for k, v in self.examples.items()},
        )
        for k, v in other.examples.items():
            out.examples[k] = (out.examples.get(k, []) + list(v))[:_N_EXAMPLES]
        return out

    def report(self) -> str:
        rows = [f"{self.records} records, {self.lines} data lines, {self.observations} observations kept"]
        for kind, n in sorted(self.dropped_records.items()):
            rows.append(f"  dropped record ({kind}): {n}")
        for kind, n in sorted(self.dropped_lines.items()):
            ex = "; ".join(f"{m}:{i} {t!r}" for m, i, t in self.examples.get(kind, [])[:2])
            rows.append(f"  dropped line ({kind}): {n}   e.g. {ex}")
        return "\n".join(rows)


@dataclass
class _Archive:
    """One archive in long format: observation k is (record[k], minute[k], var[k], value[k])."""

    record_ids: np.ndarray
    static: np.ndarray
    record: np.ndarray
    minute: np.ndarray
    var: np.ndarray
    value: np.ndarray
    summary: Summary


def _parse_record(text: str, member: str, summary: Summary, obs: list):
    """Parse one record; returns (record_id, static row) or None if the record is dropped."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != _HEADER:
        summary._drop(summary.dropped_records, "no 'Time,Parameter,Value' header", member, 1, lines[0] if lines else "")
        summary.lines += max(len(lines) - 1, 0)
        return None
    static = np.full(len(STATIC), np.nan)
    seen_static = set()
    record_id = None
    kept = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        summary.lines += 1
        parts = line.strip().split(",")
        if len(parts) != 3:
            summary._drop(summary.dropped_lines, "not 3 fields", member, lineno, line)
            continue
        time_s, param, value_s = parts
        m = _TIME.fullmatch(time_s)
        if m is None or int(m.group(2)) >= 60:
            summary._drop(summary.dropped_lines, "bad time", member, lineno, line)
            continue
        minute = 60 * int(m.group(1)) + int(m.group(2))
        if minute > 60 * HORIZON_HOURS:
            summary._drop(summary.dropped_lines, "time after 48:00", member, lineno, line)
            continue
        try:
            value = float(value_s)
        except ValueError:
            value = np.nan
        if not math.isfinite(value):
            summary._drop(summary.dropped_lines, "value not a finite number", member, lineno, line)
            continue
        if minute == 0 and (param == "RecordID" or (param in _STATIC_INDEX and param not in seen_static)):
            if param == "RecordID":
                if record_id is not None or value != int(value):
                    summary._drop(summary.dropped_lines, "bad or repeated RecordID", member, lineno, line)
                else:
                    record_id = int(value)
                continue
            seen_static.add(param)
            if value == -1:
                continue  # -1 marks a missing descriptor
            if value < 0:
                summary._drop(summary.dropped_lines, "negative descriptor", member, lineno, line)
                continue
            static[_STATIC_INDEX[param]] = value
            continue
        if param in _VAR_INDEX:
            if value < 0:
                summary._drop(summary.dropped_lines, "negative value", member, lineno, line)
                continue
            kept.append((minute, _VAR_INDEX[param], value))
        elif param in _STATIC_INDEX or param == "RecordID":
            summary._drop(summary.dropped_lines, "descriptor repeated or after 00:00", member, lineno, line)
        else:
            summary._drop(summary.dropped_lines, "unknown parameter", member, lineno, line)
    if record_id is None:
        summary._drop(summary.dropped_records, "no RecordID", member, 0, "")
        return None
    summary.observations += len(kept)
    obs.append(kept)
    return record_id, static


def read_archive(
    path,
    expected_sha256: str | None = None,
    *,
    max_bytes: int | None = None,
    max_members: int = MAX_MEMBERS,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> _Archive:
    """Parse every ``*.txt`` record of a set-X.tar.gz without extracting it.

    The archive is streamed within limits, each checked before the data is read: at most
    ``max_members`` members, each record at most ``max_record_bytes``, and all members together
    at most ``max_bytes`` decompressed (default ``$TAYNODE_MAX_INPUT_BYTES``, else 1 GiB; see
    :mod:`taynode.inputs`). The official set A has 4,001 members, the largest record 24 kB,
    27.6 MB in all."""
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256, skip="pass verify=False to physionet.load")
    cap = max_input_bytes(max_bytes)
    summary = Summary()
    ids, statics, obs = [], [], []
    try:
        tf = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable tar archive ({' '.join(str(e).split())})") from None
    members, total = 0, 0
    with tf:
        try:
            for member in tf:
                members, total = members + 1, total + max(member.size, 0)
                if members > max_members:
                    raise DataError(f"{path}: more than max_members={max_members} members (the official archives have 4,001)")
                if total > cap:
                    raise DataError(
                        f"{path}: its members declare more than the input size cap of {cap} bytes (raise it with "
                        f"max_bytes= or ${ENV} if the archive is genuine)"
                    )
                if not (member.isfile() and member.name.endswith(".txt")):
                    continue
                if member.size > max_record_bytes:
                    raise DataError(
                        f"{path}: record {member.name} declares {member.size} bytes, over max_record_bytes={max_record_bytes} "
                        "(official records are under 24 kB)"
                    )
                raw = read_exact(tf.extractfile(member), member.size, cap, f"{path}: record {member.name}", DataError)
                got = _parse_record(raw.tobytes().decode("utf-8", errors="replace"), member.name, summary, obs)
                if got is not None:
                    ids.append(got[0])
                    statics.append(got[1])
        except (EOFError, OSError, tarfile.TarError, zlib.error) as e:  # a truncated or damaged archive
            why = " ".join(str(e).split())  # one line, as the CLI prints it
            raise DataError(f"{path}: the archive is truncated or corrupt ({type(e).__name__}: {why}); re-download it") from None
    summary.records = len(ids)
    if not ids:
        raise DataError(f"{path}: no readable records (*.txt with a Time,Parameter,Value header and a RecordID)")
    if len(set(ids)) != len(ids):
        dup = [k for k, c in Counter(ids).items() if c > 1]
        raise DataError(f"{path}: RecordIDs appear in more than one record: {dup[:10]}")
    counts = np.array([len(o) for o in obs])
    flat = [x for o in obs for x in o]
    arr = np.array(flat, dtype=np.float64).reshape(-1, 3)
    return _Archive(
        record_ids=np.array(ids, dtype=np.int64),
        static=np.array(statics).reshape(-1, len(STATIC)),
        record=np.repeat(np.arange(len(ids)), counts),
        minute=arr[:, 0].astype(np.int64),
        var=arr[:, 1].astype(np.int64),
        value=arr[:, 2],
        summary=summary,
    )


def read_outcomes(path, expected_sha256: str | None = None, *, max_bytes: int | None = None) -> dict:
    """``{RecordID: in-hospital death (0/1)}`` from an Outcomes-X.txt file; a RecordID listed
    twice is an error (naming it and both lines). The file must fit the input size cap."""
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256, skip="pass verify=False to physionet.load")
    cap = max_input_bytes(max_bytes)
    if os.path.getsize(path) > cap:
        raise DataError(
            f"{path}: {os.path.getsize(path)} bytes, over the input size cap of {cap} bytes (raise it with max_bytes= or ${ENV})"
        )
    with open(path) as fh:
        header = fh.readline().strip().split(",")
        if "RecordID" not in header or "In-hospital_death" not in header:
            raise DataError(f"{path}: expected a CSV header with RecordID and In-hospital_death, got {header}")
        i_id, i_death = header.index("RecordID"), header.index("In-hospital_death")
        out, where = {}, {}
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            parts = line.strip().split(",")
            try:
                rid, death = int(parts[i_id]), int(parts[i_death])
            except (ValueError, IndexError):
                raise DataError(f"{path}:{lineno}: cannot read RecordID and In-hospital_death from {line.strip()!r}") from None
            if death not in (0, 1):
                raise DataError(f"{path}:{lineno}: In-hospital_death must be 0 or 1, got {death}")
            if rid in out:
                raise DataError(
                    f"{path}:{lineno}: RecordID {rid} is listed again (first on line {where[rid]}); "
                    "an outcome file has one row per record"
                )
            out[rid], where[rid] = death, lineno
    return out


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
    root=None,
    *,
    sets=("a",),
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
