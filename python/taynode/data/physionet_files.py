"""Reading the PhysioNet/CinC Challenge 2012 files: the records inside a set-X.tar.gz (streamed,
never extracted, within size limits) and the Outcomes-X.txt tables. :mod:`taynode.data.physionet`
turns what these return into datasets; its docstring describes the format and the rules for
malformed lines."""

from __future__ import annotations

import math
import os
import re
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..inputs import ENV, max_input_bytes, read_exact
from . import DataError, verify_sha256

__all__ = ["HORIZON_HOURS", "MAX_MEMBERS", "MAX_RECORD_BYTES", "STATIC", "VARIABLES", "Summary", "read_archive", "read_outcomes"]

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

_VAR_INDEX = {v: i for i, v in enumerate(VARIABLES)}
_STATIC_INDEX = {v: i for i, v in enumerate(STATIC)}
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_HEADER = "Time,Parameter,Value"
_N_EXAMPLES = 5
MAX_MEMBERS = 20_000  # limits on an archive (see read_archive); the official ones are far below
MAX_RECORD_BYTES = 1 << 20


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
    path: str | os.PathLike[str],
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


def read_outcomes(path: str | os.PathLike[str], expected_sha256: str | None = None, *, max_bytes: int | None = None) -> dict:
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
