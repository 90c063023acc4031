"""The Colab quickstart notebook runs top to bottom on CPU with small settings."""

import os
import sys

import pytest
from paths import ROOT

nbformat = pytest.importorskip(
    "nbformat", reason="executing the notebook needs nbformat (pip install -e '.[test]')"
)
nbclient = pytest.importorskip(
    "nbclient", reason="executing the notebook needs nbclient (pip install -e '.[test]')"
)
pytest.importorskip(
    "ipykernel", reason="executing the notebook needs ipykernel (pip install -e '.[test]')"
)
pytest.importorskip("flax", reason="the notebook loads the Flax digits model")
pytest.importorskip("matplotlib", reason="the notebook plots with matplotlib")

NOTEBOOK = ROOT / "colab" / "dpm_jax_quickstart.ipynb"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits the environment: small settings, CPU only, no x64, and the
    # kernel is this interpreter (the package as installed here).
    monkeypatch.setenv("DPM_JAX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("JAX_ENABLE_X64", raising=False)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "CPU:" in outputs
    assert "NFE 10" in outputs
    assert "reference (20 steps): accuracy" in outputs
    assert "output sharding" in outputs
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 2  # the sample grid and the NFE-vs-quality plot
