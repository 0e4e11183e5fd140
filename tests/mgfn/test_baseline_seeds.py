"""The MIL ranking baseline through the same train/eval, seeds as one run, and the collapse warning."""
from __future__ import annotations

import json

import numpy as np
import torch

from helpers import make_split
from mgfn.mil import MILRanking, mil_loss
from pipeline.cli import main as cli


def test_mil_ranking_loss_prefers_abnormal_max_above_normal_max():
    model = MILRanking(feature_size=8, dropout=0.0)
    out = model(torch.rand(4, 2, 6, 9))
    assert out.scores.shape == (4, 6, 1) and out.score_normal.shape == (2, 1)
    terms = mil_loss(out)
    expected = torch.relu(1 - out.score_abnormal + out.score_normal).mean()
    assert torch.allclose(terms["rank"], expected)


def test_mil_baseline_trains_and_evaluates_with_the_same_commands(tmp_path, capsys):
    split = make_split(tmp_path, 2, 32)
    args = ["train", "--train", str(split["train"]), "--test", str(split["test"]), "--gt", str(split["gt"]),
            "--out", str(tmp_path / "mil"), "--model", "mil", "--epochs", "2", "--batch-size", "2", "--quiet"]
    assert cli(args) == 0
    ckpt = torch.load(tmp_path / "mil" / "best.pt", weights_only=True)
    assert ckpt["model_config"]["type"] == "mil"
    capsys.readouterr()
    assert cli(["eval", "--model", str(tmp_path / "mil" / "best.pt"), "--test", str(split["test"]),
                "--gt", str(split["gt"]), "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out.splitlines()[-1])["auc"] <= 1.0


def test_seeds_run_reports_mean_and_std(tmp_path, capsys):
    split = make_split(tmp_path, 1, 32)
    assert cli(["train", "--train", str(split["train"]), "--test", str(split["test"]), "--gt", str(split["gt"]),
                "--out", str(tmp_path / "runs"), "--config", str(split["config"]), "--epochs", "1",
                "--seeds", "0-2", "--quiet"]) == 0
    result = json.loads((tmp_path / "runs" / "seeds.json").read_text())
    assert [r["seed"] for r in result["seeds"]] == [0, 1, 2]
    finals = [r["final"] for r in result["seeds"]]
    assert np.isclose(result["final_mean"], np.mean(finals)) and np.isclose(result["final_std"], np.std(finals))
    assert "3 seeds, auc: final epoch" in capsys.readouterr().out


def test_collapsed_scores_are_flagged(tmp_path, capsys):
    split = make_split(tmp_path, 1, 32)
    for f in split["root"].glob("*.npy"):           # identical features everywhere: one score for every snippet
        np.save(f, np.ones_like(np.load(f)))
    assert cli(["train", "--train", str(split["train"]), "--test", str(split["test"]), "--gt", str(split["gt"]),
                "--out", str(tmp_path / "run"), "--model", "mil", "--batch-size", "2", "--epochs", "1",
                "--quiet"]) == 0
    assert "the scores have collapsed" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["collapsed"] is True


def test_collapse_is_measured_on_logits_so_saturated_scores_are_not_collapse():
    from mgfn.train import COLLAPSE_LOGIT_STD, logit_spread
    rng = np.random.default_rng(0)
    constant = [0.47 + 1e-5 * rng.random(200)]                         # one score everywhere
    saturated = [np.concatenate([1e-5 * rng.random(190), 1 - 1e-4 * rng.random(10)])]   # sure of itself
    assert logit_spread(constant) < COLLAPSE_LOGIT_STD
    assert logit_spread(saturated) > COLLAPSE_LOGIT_STD
    small_but_ranked = [1e-4 * (1 + rng.random(200))]                 # tiny scores, spread in ratio: still ranks
    assert np.std(small_but_ranked[0]) < 1e-4 and logit_spread(small_but_ranked) > COLLAPSE_LOGIT_STD
