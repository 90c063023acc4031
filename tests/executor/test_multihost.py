"""Two processes (loopback, jax.distributed, 4 CPU devices each) sample one global batch."""

import subprocess
import sys

from paths import ROOT

EXAMPLE = ROOT / "examples" / "multihost.py"


def test_two_processes_match_one_process():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--launch", "2"], capture_output=True, text=True, timeout=280
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for i in (0, 1):
        assert f"process {i}: 4 local shards match (global batch 32 on 8 devices)" in out, out[
            -3000:
        ]
