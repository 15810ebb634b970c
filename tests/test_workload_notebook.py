"""notebooks/traces.ipynb runs top to bottom on the shipped traces (CI executes notebooks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # executes notebooks: `pytest -m "not slow"` skips them

ROOT = Path(__file__).resolve().parents[1]


def test_traces_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(ROOT / "notebooks" / "traces.ipynb", as_version=4)
    # the kernel must import this checkout's servesim, and write its figure into a scratch folder
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "SERVESIM_FIGURES")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), saved["PYTHONPATH"]]))
    os.environ["SERVESIM_FIGURES"] = str(tmp_path)
    try:
        client = nbclient.NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
        )
        client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert (tmp_path / "traces_overview.png").read_bytes()[:4] == b"\x89PNG"
