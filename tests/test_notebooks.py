"""The study notebooks run top to bottom (CI executes them; each takes about 10 s here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # executes notebooks: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["compare_schedulers.ipynb", "capacity_whatif.ipynb", "provisioning.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_study_notebook_executes(name, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    for cell in nb.cells:  # drop the stored outputs: only a fresh run counts
        if cell.cell_type == "code":
            cell.outputs = []
    # the kernel must import this checkout's servesim
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                     os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert tables, "the study tables are displayed"
