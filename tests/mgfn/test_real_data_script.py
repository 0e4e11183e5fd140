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


def test_smoothed_copy_averages_neighbouring_rows_of_training_videos_only(tmp_path):
    """--smooth W: every training row becomes the mean of W neighbouring rows (kept inside the video); test rows,
    lists and ground truth are copied as they are (with --smooth-where all the test rows are smoothed too)."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("real_data", os.path.join(REPO, "scripts", "real_data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    src = tmp_path / "set"
    src.mkdir()
    (src / "train.csv").write_text("video_id,label,class\nA,1,Abuse\nN,0,Normal\n")
    (src / "test.csv").write_text("video_id,label,class\nT,1,Abuse\n")
    (src / "gt.json").write_text('{"T": {"num_frames": 96, "events": [[0, 15]]}}')
    rng = np.random.default_rng(0)
    rows = {vid: rng.random((6, 4)).astype(np.float16) for vid in ("A", "N", "T")}
    np.savez(src / "features.npz", **rows)

    out = module.smoothed_copy(src, 3, "train", tmp_path / "train_only")
    with np.load(out / "features.npz") as npz:
        a = rows["A"].astype(np.float32)
        want = np.stack([a[lo:lo + 3].mean(0) for lo in (0, 0, 1, 2, 3, 3)])   # windows of 3, kept inside 6 rows
        np.testing.assert_allclose(npz["A"].astype(np.float32), want, atol=1e-3)
        np.testing.assert_array_equal(npz["T"], rows["T"])                   # a test video: untouched
    assert (out / "gt.json").read_text() == (src / "gt.json").read_text()
    everywhere = module.smoothed_copy(src, 3, "all", tmp_path / "all")
    with np.load(everywhere / "features.npz") as npz:
        assert not np.array_equal(npz["T"], rows["T"])
