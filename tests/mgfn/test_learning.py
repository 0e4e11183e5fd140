"""MGFN learns planted anomalies: a few epochs on a synthetic set beat chance and the untrained model clearly."""
from __future__ import annotations

import torch

from mgfn.data import TestSet, read_list
from mgfn.evaluate import predict
from mgfn.metrics import align_ground_truth, evaluate_scores
from mgfn.model import MGFN, MGFNConfig
from mgfn.synthetic import SynthConfig, make_dataset
from mgfn.train import TrainConfig, run_training

MODEL = {"dims": [32, 64, 128], "depths": [1, 1, 1], "dim_head": 32}


def test_training_beats_chance_and_the_untrained_model(tmp_path):
    paths = make_dataset(tmp_path / "data", SynthConfig(train_normal=16, train_abnormal=16, test_normal=8,
                                                        test_abnormal=8, feature_size=64, seed=1))
    entries = read_list(paths["test"])
    test_set = TestSet(entries)
    truth = align_ground_truth(paths["gt"], [e.video_id for e in entries], [e.label for e in entries],
                               test_set.clip_counts())
    torch.manual_seed(0)
    untrained = evaluate_scores(predict(MGFN(MGFNConfig(feature_size=64, **MODEL)), test_set), truth)["auc"]

    cfg = TrainConfig(epochs=8, batch_size=4, seed=0, model=MODEL)
    summary = run_training(paths["train"], paths["test"], paths["gt"], tmp_path / "run", cfg, progress=False,
                           log=lambda *_: None)
    final = summary["final"]["auc"]
    assert final >= 0.8, f"final AUC {final:.3f}"
    assert final >= untrained + 0.15, f"final {final:.3f} vs untrained {untrained:.3f}"
