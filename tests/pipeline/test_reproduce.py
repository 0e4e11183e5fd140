"""scripts/reproduce.py runs the seed protocol end to end on a small synthetic set and writes its table."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_protocol_gives_three_rows_over_seeds(tmp_path, capsys):
    reproduce = load_script()
    assert reproduce.main(["xd-violence", "--synthetic", "--seeds", "0", "1", "--epochs", "1", "--device", "cpu",
                           "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "final epoch" in out and "best on test (as published)" in out and "selected on validation" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["metric"] == "pr_auc" and set(results["seeds"]) == {"0", "1"}
    for r in results["seeds"].values():
        assert r["best_test"] == r["final"]            # one epoch: the best on test is the last
        assert 0.0 <= r["val"] <= 1.0 and r["val_epoch"] == 1
    assert (tmp_path / "seed1_val" / "metrics.csv").is_file()
