"""Write one API-reference page per public module of ``python/taynode`` at build time (mkdocs-gen-files).

The pages follow the package: a module that moves or appears gets its page on the next build,
with nothing listed by hand. ``reference/SUMMARY.md`` is the section's navigation (mkdocs-literate-nav).
"""

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python"

nav = mkdocs_gen_files.Nav()
for path in sorted((PACKAGE / "taynode").rglob("*.py")):
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if any(p.startswith("_") for p in parts):
        continue  # private modules (_xla, _inline) are not API
    page = Path(*parts).with_suffix(".md")
    nav[tuple(parts)] = page.as_posix()
    with mkdocs_gen_files.open(Path("reference", page), "w") as fh:
        fh.write(f"# `{'.'.join(parts)}`\n\n::: {'.'.join(parts)}\n")

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as fh:
    fh.writelines(nav.build_literate_nav())
