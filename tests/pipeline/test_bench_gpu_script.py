"""scripts/bench_gpu.py's CPU dry run: tiny videos end to end with and without decoder processes, the network
alone, one JSON line; the two stores it compares hold the same bytes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_gpu_dry_run_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "scripts/bench_gpu.py", "--device", "cpu", "--videos", "2", "--min-frames", "20",
         "--max-frames", "40", "--size", "80x64", "--crops", "1", "--net-clips", "1", "--rounds", "1",
         "--decoders", "1", "--parts", "sequential,decoders,net-float32", "--json-out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res == json.loads(out.read_text())
    assert res["frames_total"] == 60 and res["e2e_sequential"]["frames"] == 60
    assert res["e2e_decoders"]["frames"] == 60
    phases = res["e2e_decoders"]["phases_s"]   # where the extracting process's time went, from mgfn extract
    assert list(phases) == ["waiting for decoders", "staging", "network", "waiting for the network", "writing",
                            "other"] and phases["network"] > 0
    assert res["decoders_vs_sequential"] == {"files": 2, "identical": 2, "min_cosine": 1.0}
    assert res["net_float32_eager"]["fps"] > 0 and res["net_float32_autotuned"]["fps"] > 0
