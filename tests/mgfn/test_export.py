"""`mgfn export`: an I3D-LSTM's encoder outputs as features, re-read and trained on; resumable; refusals."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from helpers import make_split
from mgfn.data import load_features, read_list
from mgfn.features import input_size
from pipeline.cli import main as cli


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py: tiny LSTM ops


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A split with an extractor.json beside its features and an I3D-LSTM trained on it (1 epoch)."""
    tmp = tmp_path_factory.mktemp("lstm")
    split = make_split(tmp, 2, 16)
    (split["root"] / "extractor.json").write_text(json.dumps({"extractor_id": "i3d_r50_rtfm-abc", "name": "i3d_r50_rtfm",
                                                              "random_weights": True}))
    run = tmp / "run"
    assert cli(["train", "--train", str(split["train"]), "--test", str(split["test"]), "--gt", str(split["gt"]),
                "--out", str(run), "--config", str(split["config"]), "--quiet", "--epochs", "1",
                "--extractor", "i3d_lstm", "--lstm", "hidden=12,bidirectional=true,skip=false",   # outputs alone
                "--device", "cpu"]) == 0
    return split, run / "best.pt"


def export(split, model, out, *extra):
    return cli(["export", "--model", str(model), "--features", str(split["root"]), "--out", str(out),
                "--list", str(split["train"]), "--list", str(split["test"]), "--no-progress", *map(str, extra)])


def test_export_writes_t_crops_h_with_provenance_and_trains(trained, tmp_path, capsys):
    split, model = trained
    out = tmp_path / "exported"
    assert export(split, model, out) == 0
    info = json.loads((out / "extractor.json").read_text())
    assert info["name"] == "i3d_lstm_export" and info["feature_dim"] == 24 and info["crops"] == 2
    assert info["source"]["extractor_id"] == "i3d_r50_rtfm-abc" and info["random_weights"] is True
    assert info["lstm"]["hidden"] == 12 and len(info["checkpoint_sha256"]) == 64
    for entry in read_list(out / "train.csv") + read_list(out / "test.csv"):
        source = load_features(split["root"] / f"{entry.video_id}.npy")
        feats = load_features(entry.path)
        assert feats.dtype == np.float32 and feats.shape == (source.shape[0], 2, 24)
        assert np.abs(feats).max() <= 1.0                                 # LSTM outputs (tanh-bounded)
    assert len((out / "videos.list").read_text().split()) == 12

    # the exported set is a feature set like any other: mgfn train reads it and records where it came from
    run = tmp_path / "run"
    assert cli(["train", "--train", str(out / "train.csv"), "--test", str(out / "test.csv"), "--gt", str(split["gt"]),
                "--out", str(run), "--config", str(split["config"]), "--quiet", "--epochs", "1"]) == 0
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["feature_info"] == {"feature_size": 24, "crops": 2} and "lstm" not in ckpt["model_config"]
    assert ckpt["provenance"]["extractor"]["extractor_id"] == info["extractor_id"]


def test_export_resumes_and_refuses_other_checkpoints_and_plain_models(trained, tmp_path, capsys):
    split, model = trained
    out = tmp_path / "exported"
    assert export(split, model, out) == 0
    kept = out / "trn0.npy"
    before = kept.stat().st_mtime_ns
    (out / "tea1.npy").unlink()
    capsys.readouterr()
    assert export(split, model, out) == 0
    assert "1 exported, 11 already there" in capsys.readouterr().out
    assert kept.stat().st_mtime_ns == before and (out / "tea1.npy").is_file()

    other = tmp_path / "other.pt"
    ckpt = torch.load(model, weights_only=True)
    ckpt["epoch"] = 99
    torch.save(ckpt, other)
    plain = tmp_path / "plain.pt"
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if not k.startswith("frontend.")}
    ckpt["model_config"] = {k: v for k, v in ckpt["model_config"].items() if k != "lstm"}
    clip_size = input_size(16, ckpt["model_config"].get("center", "none"))   # 16-d features, centred as trained
    ckpt["model"]["fam.to_tokens.weight"] = torch.zeros(32, clip_size, 3)
    torch.save(ckpt, plain)
    assert export(split, other, out) == 2
    assert export(split, plain, tmp_path / "x") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "another checkpoint" in err[0] and "no LSTM front end" in err[1]


def test_export_lists_must_name_videos_of_the_folder(trained, tmp_path, capsys):
    split, model = trained
    stray = tmp_path / "stray.csv"
    with stray.open("w", newline="") as f:
        csv.writer(f).writerows([["video_id", "label", "path"], ["zz", 1, "zz.npy"]])
    np.save(tmp_path / "zz.npy", np.zeros((3, 2, 16), np.float32))
    assert cli(["export", "--model", str(model), "--features", str(split["root"]), "--out", str(tmp_path / "o"),
                "--list", str(stray), "--no-progress"]) == 2
    assert "is not a video of --features" in capsys.readouterr().err
