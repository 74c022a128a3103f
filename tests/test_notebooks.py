"""Every notebook under notebooks/ runs top to bottom in small mode (JADAM_NOTEBOOK_SMALL=1).

The kernel is the docs build's (docs/_ext/notebooks.py): a kernelspec written to a temporary
directory that launches ``sys.executable``, so the notebooks run in the same interpreter (and
virtual environment) as pytest, whatever other "python3" kernels are installed on the machine.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("jupyter_client")
pytest.importorskip("sphinx")  # the kernel and the saved copies are the docs extension's

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _docs_extension():
    """docs/_ext/notebooks.py: its kernel (this interpreter, small mode, this checkout's jadam)
    and where it keeps executed notebooks, so that the docs build reuses what the tests ran."""
    spec = importlib.util.spec_from_file_location(
        "docs_notebooks_extension", ROOT / "docs" / "_ext" / "notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_notebooks = _docs_extension()


@pytest.fixture
def kernel_manager(tmp_path):
    return docs_notebooks.kernel_manager(tmp_path / "kernels")


EXPECTED = [
    "01_quickstart",
    "02_bias_correction",
    "03_step_size_bounds",
    "04_adamax_and_averaging",
    "05_when_adam_fails",
    "06_scaling_up",
    "07_limitations",
]


def test_notebooks_are_present():
    assert [path.stem for path in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_a_clean_thin_client(path):
    """Committed without outputs, at most ~15 cells, no shell escapes, public API only."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(notebook.cells) <= 16, f"{path.name} has {len(notebook.cells)} cells"
    assert all(not cell.outputs and cell.execution_count is None for cell in code), path.name
    for cell in code:
        for line in cell.source.splitlines():
            assert not line.lstrip().startswith(("!", "%pip")), f"{path.name}: {line}"
    source = "\n".join(cell.source for cell in code)
    assert "JADAM_NOTEBOOK_SMALL" in source, f"{path.name} has no small mode"
    assert "jadam._" not in source, f"{path.name} reaches into jadam's private modules"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_small_mode(path, kernel_manager):
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        km=kernel_manager,
        kernel_name=docs_notebooks.KERNEL,
        timeout=300,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(
        cleanup_kc=True
    )  # shuts the kernel down after; raises CellExecutionError, naming the cell, if any cell fails
    figures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert figures, f"{path.name} drew no figure"
    docs_notebooks.save_execution(notebook, path.name)  # the docs build need not rerun it
