"""scripts/real_data.py trains recipes x seeds on the real C3D set (from its .npz as is), reports the yardsticks,
and reuses the runs a second call finds in --out."""
from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def real_data(*args, timeout=600):
    out = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "real_data.py"), *args], capture_output=True,
                         text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1]), out.stdout


def test_real_data_script_reports_recipes_yardsticks_and_reuses_runs(shared_dir, tmp_path):
    data = shared_dir / "data" / "ucf_crime_c3d"
    args = ["--data", str(data), "--recipes", "mil,default", "--seeds", "0,1", "--epochs", "2", "--jobs", "2",
            "--out", str(tmp_path), "--select", "val"]
    first, table = real_data(*args)
    assert round(first["yardsticks"]["oracle_auc"], 4) == 0.8398          # spans and events read as the set says
    assert 0.4 < first["yardsticks"]["random_auc_mean"] < 0.6
    assert [r["recipe"] for r in first["recipes"]] == ["mil", "default"]
    for row in first["recipes"]:
        assert row["seeds"] == [0, 1] and len(row["auc_per_seed"]) == 2 and 0 < row["auc_mean"] < 1
        assert "val_selected_mean" in row and 0 <= row["auc_abnormal_mean"] <= 1
    assert "video-level oracle" in table
    second, _ = real_data(*args)                                           # every run found finished in --out
    assert second["recipes"] == first["recipes"] and second["wall_s"] < first["wall_s"]
