"""`i3d_lstm` wherever an extractor name is accepted: extract, train, score, run (a tiny stand-in for I3D)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mgfn.features import input_size
from pipeline.cli import main as cli

TINY_MODEL = {"dims": [32, 64, 128], "depths": [1, 1, 1], "dim_head": 32, "lstm": {"hidden": 8}}


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py: tiny LSTM ops


def make_scenes(root: Path) -> Path:
    """6 training and 4 test scenes with a labels CSV (video_id,label,split,path); returns the CSV."""
    from pipeline.scenes import make_scene_videos

    rows = []
    for split, n, seed in (("train", 3, 0), ("test", 2, 1)):
        for r in make_scene_videos(root / "videos", n_normal=n, n_abnormal=n, frames=48, size=(64, 48), seed=seed,
                                   split=split):
            rows.append((r["video_id"], r["label"], split, Path(r["path"]).relative_to(root).as_posix()))
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "label", "split", "path"])
        w.writerows(rows)
    return root / "labels.csv"


def test_extract_train_score_with_i3d_lstm(tiny, tmp_path, capsys):
    labels = make_scenes(tmp_path)
    store = tmp_path / "features"
    assert cli(["extract", str(tmp_path / "videos"), "--out", str(store), "--extractor", "i3d_lstm", "--weights",
                "random", "--crops", "1", "--resize", "short64", "--device", "cpu", "--no-progress"]) == 0
    assert "reads i3d_r50_rtfm features" in capsys.readouterr().out
    (folder,) = [p for p in store.iterdir() if p.is_dir()]
    assert folder.name.startswith("i3d_r50_rtfm-random-")                  # the I3D cache, shared with plain I3D
    with labels.open() as f:
        videos = list(csv.DictReader(f))
    for split in ("train", "test"):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "label", "path"])
            w.writerows((v["video_id"], v["label"], f"{v['video_id']}.npy") for v in videos if v["split"] == split)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"batch_size": 2, "extractor": "i3d_lstm",
                                                        "model": TINY_MODEL}))
    run = tmp_path / "run"
    assert cli(["train", "--train", str(folder / "train.csv"), "--test", str(folder / "test.csv"), "--gt",
                str(tmp_path / "videos" / "gt"), "--out", str(run), "--config", str(tmp_path / "tiny.yaml"),
                "--epochs", "1", "--quiet", "--device", "cpu"]) == 0
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["model_config"]["lstm"]["hidden"] == 8
    assert ckpt["provenance"]["extractor"]["name"] == "i3d_r50_rtfm"

    test_videos = sorted((tmp_path / "videos").glob("test_*.mp4"))[:2]
    for extra in ([], ["--extractor", "i3d_lstm"]):
        out = tmp_path / f"scores{len(extra)}"
        assert cli(["score", *map(str, test_videos), "--model", str(run / "best.pt"), "--out", str(out),
                    "--store", str(store), "--weights", "random", "--no-progress", *extra]) == 0
        assert all((out / f"{v.stem}.csv").is_file() for v in test_videos)
    assert (tmp_path / "scores0" / f"{test_videos[0].stem}.csv").read_text() == \
        (tmp_path / "scores2" / f"{test_videos[0].stem}.csv").read_text()
    # the scores are the LSTM model's: the checkpoint rebuilt with its front end, over the whole clip sequence
    from mgfn.checkpoint import load_model
    from mgfn.data import magnitude_channel

    model, _ = load_model(run / "best.pt")
    assert model.frontend is not None
    feats = np.load(folder / f"{test_videos[0].stem}.npy")
    x = np.concatenate([feats, magnitude_channel(feats)], -1).transpose(1, 0, 2)[None]
    with torch.no_grad():
        expected = model.predict(torch.from_numpy(np.ascontiguousarray(x)))[0].numpy()
    with (tmp_path / "scores0" / f"{test_videos[0].stem}.csv").open() as f:
        frame_scores = np.array([float(r["score"]) for r in csv.DictReader(f)])
    np.testing.assert_allclose(frame_scores[::16][:len(expected)], expected, atol=1e-6)

    # the name must fit the model: i3d_lstm is for a model with an LSTM front end, and only for one
    plain = tmp_path / "plain.pt"
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("frontend.")}
    clip_size = input_size(8, ckpt["model_config"].get("center", "none"))    # 8-d features, centred as trained
    ckpt["model"]["fam.to_tokens.weight"] = torch.zeros(32, clip_size, 3)
    ckpt["model_config"] = {k: v for k, v in ckpt["model_config"].items() if k != "lstm"}
    torch.save(ckpt, plain)
    capsys.readouterr()
    common = ["--out", str(tmp_path / "x"), "--store", str(store), "--weights", "random", "--no-progress"]
    assert cli(["score", str(test_videos[0]), "--model", str(plain), "--extractor", "i3d_lstm", *common]) == 2
    assert cli(["score", str(test_videos[0]), "--model", str(run / "best.pt"), "--extractor", "i3d_r50_rtfm",
                *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "has no LSTM front end" in err[0] and "has an LSTM front end" in err[1]


def test_run_with_extractor_i3d_lstm(tiny, tmp_path):
    make_scenes(tmp_path)
    config = {"name": "t", "workspace": "ws", "extractor": "i3d_lstm",
              "dataset": {"videos": "videos", "labels": "labels.csv", "gt": "videos/gt"},
              "train": {"epochs": 1, "batch_size": 2, "device": "cpu", "model": TINY_MODEL}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    # `extractor: i3d_lstm` alone would load the Kinetics weights; the test says random ones (and base) explicitly
    config["extractor"] = {"name": "i3d_lstm", "base": "i3d_r50_rtfm", "weights": "random", "crops": 1,
                           "resize": "short64", "crop_size": 56, "device": "cpu"}
    (tmp_path / "run2.yaml").write_text(yaml.safe_dump(config))
    from pipeline.run import RunConfig

    assert RunConfig.from_yaml(tmp_path / "run.yaml")[0].extractor == {"name": "i3d_lstm"}
    assert cli(["run", str(tmp_path / "run2.yaml")]) == 0
    stages = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "ws" / "stages").glob("*.json")}
    assert stages["extract"]["extractor_id"].startswith("i3d_r50_rtfm-random-")
    ckpt = torch.load(stages["train"]["model"], weights_only=True)
    assert ckpt["model_config"]["lstm"]["hidden"] == 8 and ckpt["train_config"]["extractor"] == "i3d_lstm"
    assert len(stages["score"]["summaries"]) == 4 and stages["report"]["frame_auc"] is not None
