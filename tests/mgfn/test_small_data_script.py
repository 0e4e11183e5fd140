"""scripts/small_data.py runs recipes x variants x seeds and reports mean ± std and collapsed seeds."""
from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_small_data_script_reports_every_recipe_and_variant(tmp_path):
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "small_data.py"), "--seeds", "2", "--epochs", "1",
         "--recipes", "mil,reference", "--variants", "raw-1crop,l2-1crop", "--feature-size", "32", "--jobs", "1",
         "--amp", "none", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout.splitlines()[-1])
    assert [(r["variant"], r["recipe"]) for r in rows] == [
        ("raw-1crop", "mil"), ("raw-1crop", "reference"), ("l2-1crop", "mil"), ("l2-1crop", "reference")]
    for row in rows:
        finals = [r["final"] for r in row["runs"]]
        assert len(finals) == 2 and abs(row["final_mean"] - sum(finals) / 2) < 1e-9
        assert 0 <= row["collapsed"] <= 2
    reference = [r for r in rows if r["recipe"] == "reference"][0]["runs"][0]
    assert reference["max_con_n"] is not None          # MGFN runs log the normal-vs-normal contrastive term
    assert (tmp_path / "data" / "l2-1crop" / "train.csv").is_file()
