"""The README's code runs as written, and its two set-up commands are the first lines."""

import re

import numpy as np
from paths import ROOT

TEXT = (ROOT / "README.md").read_text()
VENV = "python3 -m venv .venv && . .venv/bin/activate && "
COMMANDS = [
    VENV + 'pip install -e ".[demo]" && python -m dpm_jax.demo',
    VENV + 'pip install -e ".[test]" && python -m pytest -q -n auto',
]


def test_readme_starts_with_the_two_commands():
    first = re.search(r"```bash\n(.*?)```", TEXT, re.S).group(1).strip().splitlines()
    assert first == COMMANDS


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", TEXT, re.S)
    assert blocks
    ns: dict = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), ns)
    assert "(8, 32, 32, 3) 20" in capsys.readouterr().out
    assert ns["x0"].shape == ns["x_T"].shape and np.all(np.isfinite(np.asarray(ns["x0"])))
