"""Every results table of the README and the documentation, generated from the committed result files.

A table lives in a Markdown file between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->``; this
script rewrites what is between the two markers from the files named in ``TABLES`` (``summary.json``
of the headline runs, ``seeds.json``, ``results*.json``, ``reference.json`` for the paper's and Pal
et al.'s numbers), so a number in the docs cannot drift from its file. ``--check`` rewrites
nothing and fails, listing the tables, where a file's table differs from what its sources give
(``tests/test_docs_tables.py`` runs it)::

    python benchmarks/tables.py            # rewrite README.md and docs/**/*.md in place
    python benchmarks/tables.py --check    # exit status 1 on any difference

A new table: a generator ``name(root) -> markdown`` in ``doctables/`` that reads only committed
files, an entry in ``TABLES``, and the two markers in a page (``tests/test_docs_tables.py`` fails
on a block nothing generates and on a generator no page uses; add a hand-edit case there). A
table a benchmark writes as Markdown itself is included unedited with ``--8<-- "path"`` instead.

The ratio convention, everywhere: a saving, a change or a time ratio pairs each regularized run with
the unregularized run of the same seed (same data, initialization, batches and noise), and a cell
shows the mean of those paired values and, in brackets, each seed's value in seed order.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from collections.abc import Callable

from doctables import figs, other, runs  # benchmarks/ is sys.path[0] when this runs as a script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- table:([\w.-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)


TABLES: dict[str, Callable[[str], str]] = {
    "mnist-full": runs.mnist_file("full"),
    "mnist-long": runs.mnist_file("long"),
    "mnist-small-cost": runs.mnist_file("small_cost"),
    "latent-cpu": runs.latent_file("cpu"),
    "latent-long": runs.latent_file("long"),
    "latent-converged": runs.latent_file("converged"),
    "latent-single": runs.latent_single,
    "ffjord-seeds": runs.ffjord_seeds_table,
    "ffjord-8gaussians": runs.ffjord_single("benchmarks/ffjord/results.json"),
    "ffjord-pinwheel": runs.ffjord_single("benchmarks/ffjord/pinwheel_results.json"),
    "ffjord-mnist": runs.ffjord_single("benchmarks/ffjord/mnist_results.json"),
    "ffjord-mnist-seed1": runs.ffjord_single("benchmarks/ffjord/mnist_seed1_results.json"),
    "paper-table2": runs.paper_table2,
    "mnist-fig6": figs.fig6,
    "toy": figs.toy,
    **other.TABLES_MORE,
}


def relink(text: str, path: str, root: str) -> str:
    """Links are written relative to the repository root (``](docs/...)``, right for the README);
    inside a docs page they are made relative to that page."""
    if os.path.dirname(path) == root:
        return text
    here = os.path.dirname(path)
    return re.sub(r"\]\((docs/[^)]+)\)", lambda m: "](" + os.path.relpath(os.path.join(root, m.group(1)), here) + ")", text)


def documents(root: str) -> list[str]:
    """The Markdown files that may hold tables: the README and every page of the docs."""
    return [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True))


def update(root: str = ROOT, check: bool = False) -> list[str]:
    """Rewrite (or, with ``check``, compare) every table block; returns ``file: table`` for each difference.
    An unknown table name is an error: a block that nothing generates would be a typed table."""
    cache: dict[str, str] = {}
    stale = []
    for path in documents(root):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()

        def fill(m: re.Match) -> str:
            name = m.group(2)
            if name not in TABLES:
                raise KeyError(f"{os.path.relpath(path, root)}: no generator for table {name!r} (known: {', '.join(TABLES)})")
            if name not in cache:
                cache[name] = TABLES[name](root)
            want = relink(cache[name], path, root)
            if m.group(3) != want:
                stale.append(f"{os.path.relpath(path, root)}: {name}")
            return m.group(1) + want + m.group(4)

        new = BLOCK.sub(fill, text)
        if new != text and not check:
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(new)
            os.replace(tmp, path)
    return stale


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from its files")
    p.add_argument("--root", default=ROOT, help="the repository to work on (default: this one)")
    ns = p.parse_args(argv)
    stale = update(ns.root, check=ns.check)
    for s in stale:
        print(("differs from its files: " if ns.check else "rewritten: ") + s)
    return 1 if stale and ns.check else 0


if __name__ == "__main__":
    sys.exit(main())
