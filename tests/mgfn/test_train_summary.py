"""summary.json of `mgfn train`: each field means what its name says, whichever way best.pt is chosen."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from helpers import make_split
from pipeline.cli import main as cli


def train(split, out, *extra) -> tuple[dict, list[dict]]:
    assert cli(["train", "--train", str(split["train"]), "--test", str(split["test"]), "--gt", str(split["gt"]),
                "--out", str(out), "--config", str(split["config"]), "--quiet", *map(str, extra)]) == 0
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    return json.loads((out / "summary.json").read_text()), rows


@pytest.mark.parametrize("select, metric", [("last", "auc"), ("test", "auc"), ("test", "pr_auc")])
def test_summary_names_the_epoch_best_pt_holds_and_its_metric(tmp_path, capsys, select, metric):
    split = make_split(tmp_path, 1, 32, n=4)
    summary, rows = train(split, tmp_path / "run", "--epochs", 3, "--select", select, "--metric", metric)
    assert summary["final_epoch"] == 3 and summary["final"]["auc"] == pytest.approx(float(rows[-1]["auc"]))
    assert summary["best_metric"] == metric
    best = rows[summary["best_epoch"] - 1]
    # best_value is the metric's value at best_epoch: never an epoch number (select=last once wrote 3.0 here)
    assert summary["best_value"] == pytest.approx(float(best[metric]))
    assert 0.0 <= summary["best_value"] <= 1.0
    if select == "last":
        assert summary["best_epoch"] == 3
    else:
        assert summary["best_value"] == pytest.approx(max(float(r[metric]) for r in rows))
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["epoch"] == summary["best_epoch"]
    assert f"{metric} {summary['best_value']:.4f}" in capsys.readouterr().out


def test_summary_with_validation_selection_names_val_auc(tmp_path):
    split = make_split(tmp_path, 1, 32, n=5)
    summary, rows = train(split, tmp_path / "run", "--epochs", 2, "--select", "val")
    assert summary["best_metric"] == "val_auc"
    assert summary["best_value"] == pytest.approx(float(rows[summary["best_epoch"] - 1]["val_auc"]))
