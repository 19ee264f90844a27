"""Copy the committed figures of ``benchmarks/`` into the built site (mkdocs-gen-files), so result pages
show the same PNG files the benchmark scripts wrote, at ``benchmarks/<path>`` of the site."""

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent

for png in sorted((ROOT / "benchmarks").rglob("*.png")):
    rel = png.relative_to(ROOT)
    with mkdocs_gen_files.open(rel.as_posix(), "wb") as fh:
        fh.write(png.read_bytes())
