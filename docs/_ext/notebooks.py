"""Put notebooks/*.ipynb, executed in small mode, into docs/notebooks/ before Sphinx reads them.

The notebooks are committed without outputs. Each is executed top to bottom with
``JADAM_NOTEBOOK_SMALL=1`` in ``notebooks/`` (so its relative paths hold), in this interpreter,
importing this checkout's jadam. ``tests/test_notebooks.py`` saves the notebooks it executes in
``docs/_build/executed/``; a saved copy is reused instead of executing again when its code cells
are those of the source and it is newer than the source, every file under jadam/ and the
benchmark plot. docs/notebooks/ is generated (git-ignored).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile

import nbclient
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from sphinx.application import Sphinx
from sphinx.util import logging

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ROOT / "notebooks"
EXECUTED = ROOT / "docs" / "_build" / "executed"  # written by tests/test_notebooks.py too
RENDERED = ROOT / "docs" / "notebooks"
KERNEL = "jadam-docs-python"
logger = logging.getLogger(__name__)


def kernel_manager(kernel_dir: pathlib.Path) -> KernelManager:
    """A kernel running this interpreter in small mode, importing this checkout's jadam."""
    spec_dir = kernel_dir / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "jadam docs kernel",
        "language": "python",
        "env": {
            "JADAM_NOTEBOOK_SMALL": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def code_sources(notebook: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def newest_input_mtime(source: pathlib.Path) -> float:
    inputs = [source, *ROOT.glob("jadam/**/*.py"), ROOT / "benchmarks" / "results.png"]
    return max(path.stat().st_mtime for path in inputs if path.exists())


def reusable_execution(source: pathlib.Path) -> nbformat.NotebookNode | None:
    """The copy tests/test_notebooks.py executed, if it is of this source and up to date."""
    saved = EXECUTED / source.name
    if not saved.exists() or saved.stat().st_mtime < newest_input_mtime(source):
        return None
    executed = nbformat.read(saved, as_version=4)
    original = nbformat.read(source, as_version=4)
    return executed if code_sources(executed) == code_sources(original) else None


def execute(source: pathlib.Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(source, as_version=4)
    with tempfile.TemporaryDirectory() as kernel_dir:
        client = nbclient.NotebookClient(
            notebook,
            km=kernel_manager(pathlib.Path(kernel_dir)),
            kernel_name=KERNEL,
            timeout=600,
            resources={"metadata": {"path": str(SOURCES)}},
        )
        client.execute(cleanup_kc=True)  # raises CellExecutionError naming the failing cell
    save_execution(notebook, source.name)
    return notebook


def save_execution(notebook: nbformat.NotebookNode, name: str) -> None:
    """Write an executed notebook where the docs build looks for it (atomically)."""
    EXECUTED.mkdir(parents=True, exist_ok=True)
    partial = EXECUTED / f".{name}.partial"
    nbformat.write(notebook, partial)
    partial.replace(EXECUTED / name)


def render_notebooks(app: Sphinx) -> None:
    RENDERED.mkdir(exist_ok=True)
    sources = sorted(SOURCES.glob("*.ipynb"))
    for stale in set(RENDERED.glob("*.ipynb")) - {RENDERED / path.name for path in sources}:
        stale.unlink()
    for source in sources:
        notebook = reusable_execution(source)
        if notebook is None:
            logger.info(f"executing {source.name} in small mode")
            notebook = execute(source)
        else:
            logger.info(f"reusing the test suite's execution of {source.name}")
        text = nbformat.writes(notebook)
        target = RENDERED / source.name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", render_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
