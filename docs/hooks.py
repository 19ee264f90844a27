"""MkDocs hook: the docstrings use Sphinx roles (``:func:`solve```, ``:class:`~taynode.problem.Problem```),
which Markdown renders as the role's name before a code span; keep the code span, drop the role
(and Sphinx's ``~`` short-name marker)."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc|math|ref|py:\w+):\s*(<code>)~?")


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(r"\1", html)
