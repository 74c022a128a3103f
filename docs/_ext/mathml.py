"""Render math as MathML while the HTML is written, so pages need no JavaScript and no network.

Browsers draw MathML Core natively; the LaTeX is converted by ``latex2mathml``.
"""

from __future__ import annotations

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx


def _visit_inline(translator, node: nodes.Element) -> None:
    translator.body.append(convert(node.astext(), display="inline"))
    raise nodes.SkipNode


def _visit_block(translator, node: nodes.Element) -> None:
    translator.body.append('<div class="math notranslate nohighlight">')
    if node.get("number") is not None:
        translator.body.append(f'<span class="eqno">({node["number"]})</span>')
    translator.body.append(convert(node.astext(), display="block"))
    translator.body.append("</div>")
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict:
    app.add_html_math_renderer("mathml", (_visit_inline, None), (_visit_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
