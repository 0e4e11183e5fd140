"""`mgfn run` (every stage, resumable after SIGKILL in each stage) and `mgfn score` on new videos.

A tiny dataset of synthetic scenes, the real Caffe2 I3D-R50 with random weights at a small crop, and a tiny
MGFN keep the whole file to about a minute.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main as cli

REPO = Path(__file__).resolve().parents[2]

EXTRACTOR = {"name": "i3d_r50_rtfm", "weights": "random", "crops": 1, "resize": "short64", "crop_size": 56,
             "device": "cpu"}
TRAIN = {"epochs": 3, "batch_size": 2, "seed": 0,
         "model": {"dims": [32, 64, 128], "depths": [1, 1, 1], "dim_head": 32}}


def make_dataset(root: Path) -> Path:
    """Scenes for training and testing, a labels CSV and a run config; returns the config path."""
    from pipeline.scenes import make_scene_videos

    rows = []
    for split, n_normal, n_abnormal, seed in (("train", 3, 3, 0), ("test", 2, 2, 1)):
        for r in make_scene_videos(root / "videos", n_normal=n_normal, n_abnormal=n_abnormal, frames=40,
                                   size=(64, 48), seed=seed, split=split):
            rows.append((r["video_id"], r["label"], split, Path(r["path"]).relative_to(root).as_posix()))
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "label", "split", "path"])
        w.writerows(rows)
    config = {"name": "t", "workspace": "ws", "dataset": {"videos": "videos", "labels": "labels.csv",
                                                          "gt": "videos/gt"},
              "extractor": EXTRACTOR, "train": TRAIN, "score": {"videos": "test"}}
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    return root / "run.yaml"


def final_outputs(ws: Path) -> dict:
    """What a finished run leaves: feature bytes, metrics (without timings), score CSVs."""
    out = {}
    for p in sorted((ws / "features").rglob("*.npy")):
        out[p.relative_to(ws).as_posix()] = p.read_bytes()
    (metrics,) = (ws / "runs").glob("*/metrics.csv")
    with metrics.open() as f:
        out["metrics"] = [{k: v for k, v in r.items() if k != "train_s"} for r in csv.DictReader(f)]
    for p in sorted((ws / "scores").rglob("*.csv")):
        out[p.relative_to(ws).as_posix()] = p.read_text()
    return out


def test_score_spreads_rows_over_their_spans_and_records_them(tmp_path):
    import numpy as np

    from pipeline.score import ScoredVideo, frame_scores_for, write_scores

    np.testing.assert_array_equal(frame_scores_for([0.1, 0.9], 35), [0.1] * 16 + [0.9] * 19)
    spans = np.array([[0, 10], [10, 30]])
    frames = frame_scores_for([0.1, 0.9], 35, spans=spans)
    np.testing.assert_array_equal(frames, [0.1] * 10 + [0.9] * 25)      # frames after the last span: the last row
    summary = write_scores(tmp_path, ScoredVideo("v", "v.mp4", 25.0, frames, np.array([0.1, 0.9]), spans), 0.5, {})
    assert summary["spans"] == [[0, 10], [10, 30]]
    assert json.loads((tmp_path / "v.json").read_text())["spans"] == [[0, 10], [10, 30]]
    clips = write_scores(tmp_path, ScoredVideo("c", "c.mp4", 25.0, frames, np.array([0.1, 0.9])), 0.5, {})
    assert "spans" not in clips and not list(tmp_path.glob(".*"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted run: (config path, workspace)."""
    root = tmp_path_factory.mktemp("straight")
    config = make_dataset(root)
    assert cli(["run", str(config)]) == 0
    return config, root / "ws"


def test_run_leaves_every_stage_output(finished, capsys):
    config, ws = finished
    stages = {p.stem: json.loads(p.read_text()) for p in (ws / "stages").glob("*.json")}
    assert set(stages) == {"extract", "train", "score", "report"}
    assert (ws / "report.html").is_file() and stages["report"]["frame_auc"] is not None
    assert len(list((ws / "scores").rglob("*.csv"))) == 4
    # a second run does nothing again
    before = {p: p.stat().st_mtime_ns for p in ws.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli(["run", str(config)]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]       # names the model `mgfn score` takes next
    assert f"; model {stages['train']['model']}; report {ws / 'report.html'}" in last
    after = {p: p.stat().st_mtime_ns for p in ws.rglob("*") if p.is_file() and "tb" not in p.parts}
    changed = [p for p, t in after.items() if p in before and before[p] != t]
    assert not changed, changed


def _wait(proc, condition, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_run_killed_in_each_stage_finishes_with_the_same_outputs(finished, tmp_path):
    _, straight_ws = finished
    config = make_dataset(tmp_path)
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "pipeline", "run", str(config)]

    def manifest_done():
        files = list((ws / "features").glob("*/manifest.jsonl"))
        return files and '"done"' in files[0].read_text()

    def metrics_rows():
        files = list((ws / "runs").glob("*/metrics.csv"))
        return files and len(files[0].read_text().splitlines()) >= 2

    def scored():
        return any((ws / "scores").rglob("*.csv"))

    killed_in = []
    for stage, condition in (("extract", manifest_done), ("train", metrics_rows), ("score", scored)):
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if _wait(proc, condition) and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_in.append(stage)
        proc.wait()
    assert "extract" in killed_in and "train" in killed_in, killed_in
    assert cli(["run", str(config)]) == 0
    assert final_outputs(ws) == final_outputs(straight_ws)
    # no completed work twice: each video extracted once, each epoch trained once
    (manifest,) = (ws / "features").glob("*/manifest.jsonl")
    done = [json.loads(line)["video_id"] for line in manifest.read_text().splitlines() if '"done"' in line]
    assert len(done) == len(set(done)) == 10
    assert not list(ws.rglob("*.tmp")) and not list(ws.rglob("*.part"))


def test_score_writes_a_row_per_real_frame_and_a_report(finished, tmp_path, capsys):
    from extractors.decode import open_video

    config, ws = finished
    model = next((ws / "runs").glob("*/best.pt"))
    videos = sorted((config.parent / "videos").glob("test_*.mp4"))[:2]
    out = tmp_path / "scores"
    assert cli(["score", *map(str, videos), "--model", str(model), "--out", str(out),
                "--store", str(ws / "features"), "--quiet"]) == 0
    for video in videos:
        with open_video(video) as reader:
            n = reader.info.num_frames
        with (out / f"{video.stem}.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert [int(r["frame"]) for r in rows] == list(range(n))
        summary = json.loads((out / f"{video.stem}.json").read_text())
        assert summary["num_frames"] == n and summary["random_weights"] is True
    page = (out / "report.html").read_text()
    assert "random" in page.lower() and videos[0].stem in page
    captured = capsys.readouterr()
    assert "WARNING" in captured.err
    store_line = [line for line in captured.out.splitlines() if line.startswith("mgfn score: features")]
    assert len(store_line) == 1 and f"feature store {ws / 'features'}{os.sep}" in store_line[0]    # where they went


def test_score_bad_inputs(finished, tmp_path, capsys):
    config, ws = finished
    model = next((ws / "runs").glob("*/best.pt"))
    good = sorted((config.parent / "videos").glob("test_*.mp4"))[0]
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    out = tmp_path / "out"
    rc = cli(["score", str(good), str(bad), "--model", str(model), "--out", str(out),
              "--store", str(tmp_path / "store"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and (out / f"{good.stem}.csv").is_file()
    assert any(line.startswith("mgfn score: error: broken:") for line in err.splitlines())

    (tmp_path / "empty").mkdir()
    assert cli(["score", str(tmp_path / "empty"), "--model", str(model), "--out", str(out)]) == 2
    assert "no videos" in capsys.readouterr().err

    # features made by another extractor configuration are refused
    other = dict(EXTRACTOR, crops=1, resize="short72")
    from extractors.extractor import FeatureExtractor
    from pipeline.store import FeatureStore
    ex = FeatureExtractor(other.pop("name"), **other)
    with FeatureStore(tmp_path / "other", ex.extractor_id) as store:
        store.write_extractor_info(ex.config())
    rc = cli(["score", str(good), "--model", str(model), "--out", str(out),
              "--features", str(tmp_path / "other" / ex.extractor_id)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "trained on features" in err[0] and "resize" in err[0]


@pytest.mark.slow
def test_score_real_videos(finished, shared_dir, tmp_path):
    """Real UCF-Crime clips and street scenes: one CSV row per decoded frame."""
    from extractors.decode import open_video

    config, ws = finished
    model = next((ws / "runs").glob("*/best.pt"))
    videos = sorted((shared_dir / "data" / "videos").iterdir())
    out = tmp_path / "real"
    assert cli(["score", *map(str, videos), "--model", str(model), "--out", str(out),
                "--store", str(tmp_path / "store"), "--no-progress"]) == 0
    for video in videos:
        with open_video(video) as reader:
            n = reader.info.num_frames
        with (out / f"{video.stem}.csv").open() as f:
            assert sum(1 for _ in f) == n + 1
    assert (out / "report.html").is_file()
    assert any((out / "previews").glob("vtest-*.mp4"))           # vtest.avi (msmpeg4) shown as an H.264 preview


def test_score_a_missing_path_beside_a_good_video(finished, tmp_path, capsys):
    """`mgfn score missing.mp4 good.mp4`: the good one scored, the missing one reported everywhere, exit 1."""
    config, ws = finished
    model = next((ws / "runs").glob("*/best.pt"))
    good = sorted((config.parent / "videos").glob("test_*.mp4"))[0]
    missing = tmp_path / "missing.mp4"
    out = tmp_path / "out"
    rc = cli(["score", str(missing), str(good), "--model", str(model), "--out", str(out),
              "--store", str(ws / "features"), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1
    assert (out / f"{good.stem}.csv").is_file() and (out / f"{good.stem}.json").is_file()
    errors = [line for line in captured.err.splitlines() if line.startswith("mgfn score: error:")]
    assert errors == [f"mgfn score: error: missing: {missing} does not exist"]
    assert "2 video(s): 1 scored, 1 failed" in captured.out
    with (out / "summary.csv").open() as f:
        rows = {r["video_id"]: r for r in csv.DictReader(f)}
    assert rows[good.stem]["status"] == "scored" and float(rows[good.stem]["max_score"]) >= 0
    assert rows["missing"]["status"] == "failed" and rows["missing"]["source"] == str(missing)
    assert "does not exist" in rows["missing"]["reason"]
    page = (out / "report.html").read_text()
    failed_table = page[page.index('id="failed-videos"'):]
    assert "<td>missing</td>" in failed_table[:failed_table.index("</table>")]
    assert f"<h2>{good.stem}</h2>" in page
    # provenance: the checkpoint's epoch and training settings, random weights said in words
    assert "<th>model checkpoint</th><td>epoch " in page and "<th>training settings</th><td>recipe: " in page
    assert "<th>random weights</th><td>yes</td>" in page

    # only missing inputs: nothing to score is a usage error (exit 2), as before
    assert cli(["score", str(missing), "--model", str(model), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_summary_json_fields_mean_what_they_say(finished):
    _, ws = finished
    (run_dir,) = (ws / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert summary["final_epoch"] == len(rows) == TRAIN["epochs"]
    assert summary["best_metric"] == "auc"
    assert summary["best_value"] == pytest.approx(float(rows[summary["best_epoch"] - 1]["auc"]))


def test_run_with_a_kept_model_names_that_file_in_its_report(finished, tmp_path):
    """`mgfn demo` keeps the model as model.pt: the run scores with that copy and its report names it."""
    import shutil

    from pipeline.run import run

    config, _ = finished
    root = tmp_path / "copy"
    shutil.copytree(config.parent, root, ignore=shutil.ignore_patterns("ws"))      # the inputs, not the workspace
    kept = root / "model.pt"
    rec = run(root / config.name, keep_model=kept, log=lambda msg: None)
    page = Path(rec["report"]).read_text()
    (best,) = (root / "ws" / "runs").glob("*/best.pt")
    assert kept.read_bytes() == best.read_bytes()
    assert f"<th>model</th><td>{kept}</td>" in page
    assert f"<th>model copied from</th><td>{best}</td>" in page
    score = json.loads((root / "ws" / "stages" / "score.json").read_text())
    assert score["provenance"]["model"] == str(kept)
