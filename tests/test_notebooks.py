"""The notebooks run top to bottom on this checkout (CI executes them; each takes about 10 s)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # executes notebooks: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {
    "compare_schedulers.ipynb": {"tables": True},
    "capacity_whatif.ipynb": {"tables": True},
    "provisioning.ipynb": {"tables": True},
    "kv_studies.ipynb": {"tables": True},
    "traces.ipynb": {"figure_file": "traces_overview.png"},
}


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_executes(name, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    for cell in nb.cells:  # drop the stored outputs: only a fresh run counts
        if cell.cell_type == "code":
            cell.outputs = []
    # the kernel imports this checkout's servesim and writes figure files into a scratch folder
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                     os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("SERVESIM_FIGURES", str(tmp_path))
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    expect = NOTEBOOKS[name]
    if expect.get("tables"):
        assert [o for o in outputs if "text/html" in o.get("data", {})], "the tables are displayed"
    if "figure_file" in expect:
        assert (tmp_path / expect["figure_file"]).read_bytes()[:4] == b"\x89PNG"
