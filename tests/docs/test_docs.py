"""The documentation's code runs as written, and the site builds without a warning.

Every ```python block of ``docs/**/*.md`` is executed; the blocks of one page run
in order in one namespace (a later block may use names an earlier one defined),
under this suite's settings (float64, 8 CPU devices: ``tests/conftest.py``).

**Marker for code that is not run.** An HTML comment ``<!-- skip -->`` on the
line just before the opening fence (blank lines between are allowed) excludes
that block. The docs use it for the old APIs on the migration page (PyTorch,
diffusers' Flax schedulers) and for code that needs several processes. Other
fenced languages (``bash``, ``text``, ``pycon``) are never run.

**Marker for printed output.** A block opened with ```{.text .output} right
after a python block shows what that block prints; the test compares the two
(line by line, trailing spaces ignored), so the output on the page cannot go
stale. (The ``output`` class also lets the site style it: ``extra.css``.)

The last test builds the site with ``mkdocs build --strict`` (warnings are
errors: broken links, missing images, docstring problems); it needs the docs
tools (mkdocs-material, mkdocstrings[python]) and is skipped, saying so, when
they are not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import pathlib
import re
import subprocess
import sys
from typing import NamedTuple

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SKIP_MARKER = "<!-- skip -->"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")


class Block(NamedTuple):
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skipped: bool  # preceded by <!-- skip -->
    output: bool  # a {.text .output} block: what the python block before it prints


def blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text (nested in lists or admonitions too)."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group("indent"), m.group("fence"), m.group("info").strip()
        lang = info.split()[0].lstrip("{.").rstrip("}") if info else ""
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and not lines[j].strip().strip(fence[0])
        ):
            j += 1
        body = [
            ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1 : j]
        ]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        skipped = k >= 0 and lines[k].strip() == SKIP_MARKER
        output = info.startswith("{") and ".output" in info.strip("{}").split()
        out.append(Block(i + 1, lang, "\n".join(body) + "\n", skipped, output))
        i = j + 1
    return out


def runnable(text: str) -> list[tuple[Block, Block | None]]:
    """The python blocks that run, each with the output block that follows it (or None)."""
    bs = blocks(text)
    pairs = []
    for n, b in enumerate(bs):
        if b.lang not in ("python", "py") or b.skipped:
            continue
        nxt = bs[n + 1] if n + 1 < len(bs) else None
        pairs.append((b, nxt if nxt is not None and nxt.output else None))
    return pairs


PAGES = sorted(DOCS.rglob("*.md"))
RUNNABLE = [p for p in PAGES if runnable(p.read_text())]


def test_marker_parsing():
    text = (
        '```python\na = 1\n```\n\n<!-- skip -->\n```python title="old API"\nimport torch\n```\n'
        "```bash\nls\n```\n    ```python\n    print(2)\n    ```\n\n"
        "    ```{.text .output}\n    2\n    ```\n"
    )
    pairs = runnable(text)
    assert [(b.code, o.code if o else None) for b, o in pairs] == [
        ("a = 1\n", None),
        ("print(2)\n", "2\n"),
    ]
    assert [(b.lang, b.skipped, b.output) for b in blocks(text)] == [
        ("python", False, False),
        ("python", True, False),
        ("bash", False, False),
        ("python", False, False),
        ("text", False, True),
    ]


def test_every_page_has_been_found():
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    for page in (
        "index.md",
        "getting-started.md",
        "choosing-a-solver.md",
        "model-families.md",
        "time-grids.md",
        "guidance-and-thresholding.md",
        "inversion.md",
        "editing.md",
        "gradients-and-remat.md",
        "many-devices.md",
        "migrating.md",
        "numerics.md",
    ):
        assert page in names


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.relative_to(DOCS).as_posix() for p in RUNNABLE])
def test_page_code_runs(page):
    ns: dict = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for block, output in runnable(page.read_text()):
        where = f"{page.relative_to(ROOT)}, block at line {block.line}"
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                exec(compile(block.code, f"{page.relative_to(ROOT)}:{block.line}", "exec"), ns)
        except Exception as e:  # name the block that failed
            raise AssertionError(f"{where} failed: {type(e).__name__}: {e}") from e
        if output is not None:
            got = [ln.rstrip() for ln in buf.getvalue().rstrip("\n").split("\n")]
            want = [ln.rstrip() for ln in output.code.rstrip("\n").split("\n")]
            assert got == want, (
                f"{where} printed\n" + "\n".join(got) + "\nbut the page shows\n" + "\n".join(want)
            )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package of a dotted name
        return False


_HAVE_DOCS_TOOLS = all(
    _installed(m) for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
)


@pytest.mark.skipif(
    not _HAVE_DOCS_TOOLS,
    reason="the docs tools are not installed: pip install -e '.[docs]' "
    "(mkdocs-material, mkdocstrings[python]) to build the site",
)
def test_site_builds_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in PAGES:
        rel = page.relative_to(DOCS).with_suffix("")
        html = tmp_path / "site" / (rel.parent if rel.name == "index" else rel) / "index.html"
        assert html.is_file(), f"{page.name} was not rendered ({html})"
