"""scripts/chaos.py, short version: a SIGKILL in `mgfn extract` (decoder processes) and in `mgfn train`, each
re-run to the end, give the uninterrupted run's outputs with no temporary file left and no video done twice."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_chaos_short(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/chaos.py", "--kills", "2", "--quick", "--seed", "1",
                           "--only", "extract-decoders,train", "--keep", str(tmp_path / "chaos")],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert summary["kills"] == summary["survived"] == summary["identical"] == 2
    assert summary["landed"] == 2 and summary["temp_left"] == 0 and summary["redone"] == 0
    assert summary["orphans"] == 0  # decoder processes of the killed extraction did not linger
