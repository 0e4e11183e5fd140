"""`mgfn train` / `mgfn eval` / `mgfn import-checkpoint` end to end, resume after SIGKILL, bad input."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import make_split, read_metrics, train_args, write_csv
from pipeline.cli import main as cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("crops, dim, per_crop", [(1, 4096, False), (5, 1024, True), (10, 2048, False)])
def test_train_then_eval_end_to_end(tmp_path, capsys, crops, dim, per_crop):
    split = make_split(tmp_path, crops, dim, per_crop=per_crop)
    assert cli(train_args(split, tmp_path / "run", "--epochs", 2)) == 0
    run = tmp_path / "run"
    assert {"config.yaml", "last.pt", "best.pt", "metrics.csv", "summary.json"} <= {p.name for p in run.iterdir()}
    assert len(read_metrics(run)) == 2 and any((run / "tb").iterdir())
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["feature_info"] == {"feature_size": dim, "crops": crops}
    capsys.readouterr()
    scores = tmp_path / "scores"
    assert cli(["eval", "--model", str(run / "best.pt"), "--test", str(split["test"]), "--gt", str(split["gt"]),
                "--scores-dir", str(scores), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"auc", "pr_auc", "ap", "auc_abnormal", "far"} <= set(result)
    saved = sorted(scores.glob("*.npy"))
    assert len(saved) == 4 and np.load(saved[0]).ndim == 1


def test_validation_selection_is_reported(tmp_path, capsys):
    split = make_split(tmp_path, 1, 32, n=5)
    assert cli(train_args(split, tmp_path / "run", "--epochs", 1, "--select", "val")) == 0
    assert "validation split" in capsys.readouterr().out
    assert "val_auc" in read_metrics(tmp_path / "run")[0]


def test_resume_after_sigkill_gives_the_same_metrics(tmp_path):
    split = make_split(tmp_path, 2, 64, n=6)
    epochs = 6
    assert cli(train_args(split, tmp_path / "straight", "--epochs", epochs, "--seed", 3)) == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *train_args(split, killed, "--epochs", epochs,
                                                                            "--seed", 3)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (killed / "metrics.csv").is_file() and len(read_metrics(killed)) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(read_metrics(killed))
    assert 2 <= done_before < epochs
    assert cli(train_args(split, killed, "--epochs", epochs, "--seed", 3, "--resume")) == 0
    assert read_metrics(killed) == read_metrics(tmp_path / "straight")
    assert not list(killed.glob("*.tmp")) and not list(killed.glob(".*.tmp"))


def test_import_official_checkpoint_then_eval(tmp_path, capsys):
    from mgfn.checkpoint import ours_to_reference
    from mgfn.model import MGFN, MGFNConfig

    split = make_split(tmp_path, 1, 32)
    model = MGFN(MGFNConfig(feature_size=32, dims=(32, 64, 128), depths=(1, 1, 1), dim_head=32))
    reference_names = {f"module.{k}": v for k, v in ours_to_reference(model.state_dict()).items()}
    torch.save(reference_names, tmp_path / "mgfn_ucf.pkl")
    assert cli(["import-checkpoint", str(tmp_path / "mgfn_ucf.pkl"), "--out", str(tmp_path / "model.pt")]) == 0
    imported = torch.load(tmp_path / "model.pt", weights_only=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(imported["model"][key], value)
    capsys.readouterr()
    assert cli(["eval", "--model", str(tmp_path / "model.pt"), "--test", str(split["test"]), "--gt",
                str(split["gt"]), "--json"]) == 0


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_input_is_one_line_before_training(tmp_path, capsys):
    split = make_split(tmp_path, 1, 32)
    root = split["root"]

    rows = list(csv.reader(split["train"].read_text().splitlines()))[1:]
    write_csv(root / "missing.csv", rows + [["gone", 1, "gone.npy"]])
    assert cli(train_args({**split, "train": root / "missing.csv"}, tmp_path / "r1")) == 2
    assert "gone.npy: feature file not found" in _error(capsys)

    np.save(root / "bad_shape.npy", np.zeros((2, 3, 4, 5), np.float32))
    write_csv(root / "shape.csv", rows + [["bad_shape", 1, "bad_shape.npy"]])
    assert cli(train_args({**split, "train": root / "shape.csv"}, tmp_path / "r2")) == 2
    assert "bad_shape.npy: expected features" in _error(capsys)

    np.save(root / "ints.npy", np.zeros((4, 1, 32), np.int32))
    write_csv(root / "dtype.csv", rows + [["ints", 1, "ints.npy"]])
    assert cli(train_args({**split, "train": root / "dtype.csv"}, tmp_path / "r3")) == 2
    assert "ints.npy: features must be float" in _error(capsys)

    np.save(root / "wide.npy", np.zeros((4, 1, 64), np.float32))
    write_csv(root / "mixed.csv", rows + [["wide", 1, "wide.npy"]])
    assert cli(train_args({**split, "train": root / "mixed.csv"}, tmp_path / "r4")) == 2
    assert "mixes feature sizes" in _error(capsys)

    write_csv(root / "labels.csv", rows[:-1] + [[rows[-1][0], "2", rows[-1][2]]])
    assert cli(train_args({**split, "train": root / "labels.csv"}, tmp_path / "r5")) == 2
    assert "label must be 0 or 1" in _error(capsys)

    # (a batch size above the set's size is lowered with a note: tests/pipeline/test_config_schema.py)

    (split["gt"] / "tea0.npy").unlink()
    assert cli(train_args(split, tmp_path / "r7")) == 2
    assert "no ground truth for abnormal test video 'tea0'" in _error(capsys)
    assert not (tmp_path / "r7").exists()


def test_checkpoint_from_a_different_feature_size_is_refused(tmp_path, capsys):
    split = make_split(tmp_path / "a", 1, 32)
    assert cli(train_args(split, tmp_path / "run", "--epochs", 1)) == 0
    other = make_split(tmp_path / "b", 1, 48)
    capsys.readouterr()
    assert cli(["eval", "--model", str(tmp_path / "run" / "best.pt"), "--test", str(other["test"]),
                "--gt", str(other["gt"])]) == 2
    assert "features are 48-d but the model expects 32-d" in _error(capsys)


def test_cosine_schedule_goes_from_lr_to_zero_and_a_resumed_run_follows_it(tmp_path, monkeypatch):
    from mgfn import train

    cfg = train.TrainConfig(lr=1e-3, lr_schedule="cosine", epochs=4)
    assert [train.epoch_lr(cfg, e) for e in (1, 3)] == pytest.approx([1e-3, 5e-4])
    assert 0 < train.epoch_lr(cfg, 4) < 2e-4 and train.epoch_lr(train.TrainConfig(lr=1e-3), 4) == 1e-3

    split = make_split(tmp_path, 1, 32)
    config = tmp_path / "cosine.yaml"
    config.write_text(split["config"].read_text() + "lr_schedule: cosine\n")
    split = {**split, "config": config}
    assert cli(train_args(split, tmp_path / "straight", "--epochs", 4)) == 0
    assert yaml_setting(tmp_path / "straight", "lr_schedule") == "cosine"

    real, calls = train.train_one_epoch, []

    def stop_at_third(*args, **kwargs):         # the process dies while training epoch 3
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", stop_at_third)
    assert cli(train_args(split, tmp_path / "killed", "--epochs", 4)) == 130    # interrupted: resume it
    monkeypatch.setattr(train, "train_one_epoch", real)
    assert len(read_metrics(tmp_path / "killed")) == 2
    assert cli(train_args(split, tmp_path / "killed", "--epochs", 4, "--resume")) == 0
    assert read_metrics(tmp_path / "killed") == read_metrics(tmp_path / "straight")


def yaml_setting(run, key):
    import yaml
    return yaml.safe_load((run / "config.yaml").read_text())[key]
