"""notebooks/clampgen.ipynb runs top to bottom, headless (nbclient with an ipykernel), at tiny
sizes (CLAMPGEN_NOTEBOOK_QUICK=1), and shows its images; it is committed without outputs."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "clampgen.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert NOTEBOOK.stat().st_size < 30_000


def test_notebook_runs_headless(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("CLAMPGEN_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that fails
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6, [
        c.source[:40] for c in code
    ]  # final, loss, curves, grid, own loop, toy
    assert (tmp_path / "notebook_results" / "star" / "summary.md").is_file()
    videos = [
        o
        for c in code
        for o in c.outputs
        if "text/html" in o.get("data", {}) and "<video" in o["data"]["text/html"]
    ]
    assert len(videos) == 1  # the comparison video, embedded
    pytest.importorskip("av")
