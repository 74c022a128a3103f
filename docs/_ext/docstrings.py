"""Let docstrings' plain-Unicode maths through reStructuredText unchanged.

jadam's docstrings write |g_t| for absolute values and ``jax.Array``s for plurals, which
reStructuredText would read as substitution references and unterminated literals.
"""

from __future__ import annotations

import re

from sphinx.application import Sphinx

_LITERAL_PLURAL = re.compile(r"``(?=\w)")
_TABLE_LINE = re.compile(r"^\s*(\+[-=+]+\+|\| .* \|)\s*$")


def escape_line(line: str) -> str:
    if _TABLE_LINE.match(line):
        return line
    line = line.replace("|", r"\|")
    # ``x``s: a literal followed by a letter needs an escaped space after the closing ``
    parts = line.split("``")
    for index in range(2, len(parts), 2):  # text after each closing ``
        parts[index] = re.sub(r"^(?=\w)", r"\\ ", parts[index])
    return "``".join(parts)


def escape_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = [escape_line(line) for line in lines]


def setup(app: Sphinx) -> dict:
    app.connect("autodoc-process-docstring", escape_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
