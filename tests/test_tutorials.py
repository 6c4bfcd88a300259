"""The tutorial notebooks: committed without outputs, and each one runs top to bottom without an error.

Each notebook is executed with ``nbclient`` in a fresh kernel of this interpreter
(``sys.executable``, registered as a throwaway kernelspec so a ``python3`` kernel of another
environment can never be picked up), with a temporary working directory. The notebooks run at
their own (only) settings; ``-m "not tutorial"`` deselects the execution tests.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = ("01_the_problem", "02_logged_data", "03_extrapolation_error", "04_off_policy_evaluation")
#: Seconds a single cell may run before the test fails (the slowest cell trains agents for ~1 min).
CELL_TIMEOUT_S = 900


def test_the_four_notebooks_exist_and_nothing_else():
    assert sorted(p.stem for p in TUTORIALS.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name):
    nb = json.loads((TUTORIALS / f"{name}.ipynb").read_text(encoding="utf-8"))
    dirty = [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{name}.ipynb has outputs or execution counts in cells {dirty}; "
                       "run `python tutorials/strip_outputs.py` before committing")
    assert "widgets" not in nb.get("metadata", {})
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_teaches_and_ends_with_exercises(name):
    nb = json.loads((TUTORIALS / f"{name}.ipynb").read_text(encoding="utf-8"))
    text = ["".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "markdown"]
    exercises = [t for t in text if "## Exercises" in t]
    assert len(exercises) == 1, "one Exercises section"
    n_answers = exercises[0].count("<details>")
    assert 2 <= n_answers <= 3 and n_answers == exercises[0].count("</details>"), "2-3 exercises with collapsed answers"
    assert "Closing note" in text[-1] and " s " in text[-1], "the closing note states the measured run time"


def test_strip_outputs_clears_an_executed_notebook(tmp_path):
    import nbformat

    sys.path.insert(0, str(TUTORIALS))
    try:
        from strip_outputs import strip
    finally:
        sys.path.remove(str(TUTORIALS))
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1")
    cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1)]
    cell.execution_count = 1
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    nb.cells.append(cell)
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert strip(path) is True
    cleaned = nbformat.read(path, as_version=4).cells[0]
    assert cleaned.outputs == [] and cleaned.execution_count is None and "execution" not in cleaned.metadata
    assert strip(path) is False


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernelspec for this interpreter in a private JUPYTER_PATH (found before any user or system one)."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    name = "mtf-tutorial-test"
    install(kernel_name=name, prefix=str(prefix))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    yield name
    mp.undo()


@pytest.mark.tutorial
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, kernel_name, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert list(tmp_path.iterdir()) == [], "a notebook leaves nothing in its working directory"
