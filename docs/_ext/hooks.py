"""MkDocs hooks: publish the benchmark plots without keeping a second copy.

The quality plots live in ``benchmarks/results/`` (written by
``benchmarks/quality.py``); ``on_files`` adds them to the site as
``assets/benchmarks/<name>.png``, so the pages link to the current plots and a
strict build fails if one goes missing.
"""

from __future__ import annotations

import pathlib

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLOTS = ROOT / "benchmarks" / "results"


def on_files(files, config):
    for png in sorted(PLOTS.glob("*.png")):
        files.append(File.generated(config, f"assets/benchmarks/{png.name}", abs_src_path=str(png)))
    return files
