"""The README's code runs as written."""

import re

import numpy as np
from paths import ROOT

TEXT = (ROOT / "README.md").read_text()


def _block(heading: str) -> str:
    return re.search(rf"## {re.escape(heading)}\n\n```python\n(.*?)```", TEXT, re.S).group(1)


def test_readme_quickstart_and_extras_run(capsys):
    ns: dict = {}
    exec(compile(_block("Quickstart"), "README.md", "exec"), ns)
    assert "(8, 32, 32, 3) 20" in capsys.readouterr().out
    exec(compile(_block("Beyond the reference: UniPC, stochastic solvers, gradients, progress"),
                 "README.md", "exec"), ns)
    assert ns["x0"].shape == ns["x_T"].shape and np.all(np.isfinite(np.asarray(ns["g"])))


def test_readme_model_families_run(capsys):
    """The model-family examples (the table's first code block after its heading)."""
    code = re.search(r"## Model families\n.*?```python\n(.*?)```", TEXT, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert "(4, 8) True" in capsys.readouterr().out
