"""What every study shares: presets, float64 evaluation, atomic files, figures and tables.

A study is a frozen config dataclass (fields documented with :func:`setting`, which the CLI turns
into flags), a ``PRESETS`` dict of named configs read with :func:`preset`, and a ``run`` function
that writes its results into a folder through :func:`write_text` / :func:`write_json`,
:func:`save_figure` and :func:`write_table`, so an interrupted run never leaves a torn file.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, field, fields, replace
from typing import Any, TypeVar

from ..atomic import write_atomic

F = TypeVar("F", bound=Callable)

# Settings added after runs had been stored: at these defaults they are left out of a run's stored
# config, so the checkpoints and cached results written before them still resume and match.
QUADRATURE_DEFAULTS = {"quadrature": "integrated", "samples": 1}
LATER_DEFAULTS = QUADRATURE_DEFAULTS | {"steer": 0.0, "epoch_eval_records": 0}


def setting(default: Any, help: str, **kw: Any) -> Any:
    """A config field with its documentation (``taynode`` shows it as the flag's help)."""
    return field(default=default, metadata={"help": help}, **kw)


def preset(presets: dict, name: str, **overrides: Any) -> Any:
    """The config ``presets[name]`` with ``overrides`` (``None`` values are ignored: "not given")."""
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; valid: {sorted(presets)}")
    base = presets[name]
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in fields(base)})
    if unknown:
        study = type(base).__name__.removesuffix("Config")
        raise ValueError(f"unknown {study} settings {unknown}; valid: {sorted(f.name for f in fields(base))}")
    return replace(base, **given)


def check_quadrature(cfg: Any) -> None:
    """A study config's ``quadrature`` and ``samples``, checked before any work."""
    from ..solve import QUADRATURES

    if cfg.quadrature not in QUADRATURES:
        raise ValueError(f"quadrature must be one of {', '.join(QUADRATURES)}, got {cfg.quadrature!r}")
    if isinstance(cfg.samples, bool) or not isinstance(cfg.samples, int) or cfg.samples < 1:
        raise ValueError(f"samples (sample times per solve) must be an integer >= 1, got {cfg.samples!r}")


def stored_config(cfg: Any) -> dict:
    """``asdict(cfg)`` without the later-added settings that are at their defaults."""
    return {k: v for k, v in asdict(cfg).items() if not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}


def with_x64(fn: F) -> F:
    """Run ``fn`` with JAX's 64-bit types enabled, then restore the caller's setting.

    The studies evaluate in float64 (and some train in it); the process-wide switch is left to
    entry points (the CLI), so calling a study never changes the caller's JAX."""
    import jax

    @functools.wraps(fn)
    def scoped(*args, **kwargs):
        with jax.enable_x64(True):
            return fn(*args, **kwargs)

    return scoped


def cast(tree: Any, dtype: Any) -> Any:
    """``tree`` with every floating-point array converted to ``dtype`` (other leaves as they are)."""
    import equinox as eqx
    import jax

    return jax.tree_util.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


def write_text(path: str, text: str | bytes) -> None:
    """Write ``path`` atomically (:func:`taynode.atomic.write_atomic`: a uniquely named
    temporary file beside it, flushed to disk, then a rename), so neither a kill nor another
    process writing the same file at once leaves it torn."""
    write_atomic(path, text)


def write_json(path: str, obj: Any, default: Callable | None = None) -> None:
    """``obj`` as indented JSON, atomically (``default`` as in :func:`json.dumps`)."""
    write_text(path, json.dumps(obj, indent=2, default=default))


def save_figure(fig: Any, path: str, dpi: int = 120) -> None:
    """Write a matplotlib figure to ``path`` atomically (a temporary file, then a rename) and close it."""
    import matplotlib.pyplot as plt

    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    os.replace(tmp, path)


def csv_text(rows: list[dict], columns: Sequence[str] | None = None, *, lineterminator: str = "\r\n") -> str:
    """``rows`` as CSV text: ``columns`` (default: the union of the rows' keys, in order) as the
    header; keys outside ``columns`` are left out."""
    columns = list(dict.fromkeys(k for r in rows for k in r)) if columns is None else list(columns)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator=lineterminator)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def markdown_rows(rows: list[dict], columns: Sequence[str] | None = None, fmt: Callable[[Any], str] = str) -> str:
    """``rows`` as a markdown table (``columns`` as in :func:`csv_text`), cells through ``fmt``."""
    columns = list(dict.fromkeys(k for r in rows for k in r)) if columns is None else list(columns)
    md = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return md + "".join("| " + " | ".join(fmt(r.get(k)) for k in columns) + " |\n" for r in rows)


def write_table(
    stem: str, markdown: str, rows: list[dict], columns: Sequence[str] | None = None, *, lineterminator: str = "\r\n"
) -> None:
    """``stem.md`` (the given markdown text) and ``stem.csv`` (``rows``, see :func:`csv_text`), atomically."""
    write_text(stem + ".csv", csv_text(rows, columns, lineterminator=lineterminator))
    write_text(stem + ".md", markdown)
