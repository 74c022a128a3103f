"""Sphinx configuration for jadam's documentation (built offline, warnings as errors).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` from the repository root.
"""

from __future__ import annotations

import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout's jadam, whatever is installed
sys.path.insert(0, str(DOCS / "_ext"))

import jadam  # noqa: E402

project = "jadam"
author = "the jadam authors"
copyright = "2026, the jadam authors"
release = jadam.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_nb",
    "mathml",  # docs/_ext/mathml.py: LaTeX → MathML at build time, no JavaScript, no network
    "api_coverage",  # docs/_ext/api_coverage.py: a jadam.__all__ name without a page fails
    "docstrings",  # docs/_ext/docstrings.py: |g| and ``x``s in docstrings read as text
    "notebooks",  # docs/_ext/notebooks.py: notebooks/ executed in small mode, outputs reused
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
suppress_warnings = ["myst.header"]  # pages transcluded from benchmarks/ start at level 2

# API reference: one page per public name, generated from the docstrings.
autosummary_generate = True
autodoc_default_options = {"members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
add_module_names = False

# MyST markdown pages and notebooks.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # docs/_ext/notebooks.py executes (or reuses) before Sphinx reads
nb_execution_raise_on_error = True
nb_ipywidgets_js = {}  # no CDN scripts
nb_merge_streams = True

# Offline: no intersphinx, no remote assets.
html_theme = "sphinx_book_theme"
html_title = f"jadam {release}"
html_static_path: list[str] = []
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
}
html_math_renderer = "mathml"
