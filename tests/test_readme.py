"""The README's quickstart runs as written."""

import pathlib
import re


def test_readme_quickstart_runs(capsys):
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## Quickstart\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "(8, 32, 32, 3) 20" in out
