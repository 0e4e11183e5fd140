"""The context benchmark: exact ground truth from the order of states, and no clip anomalous on its own."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mgfn.data import load_features, read_list
from mgfn.synthetic_context import ContextConfig, _states
from pipeline.cli import main as cli


def test_a_run_is_wrong_exactly_when_its_step_is_neither_stay_nor_advance():
    rng = np.random.default_rng(0)
    for states in (3, 4, 5):
        cfg = ContextConfig(states=states)
        for abnormal in (False, True) * 20:
            seq, wrong = _states(rng, cfg, 12, abnormal)
            steps = [(b - a) % states for a, b in zip(seq, seq[1:])]
            assert wrong[1:] == [s not in (0, 1) for s in steps] and not wrong[0]
            assert any(wrong) == abnormal


def test_files_ground_truth_and_cli(tmp_path, capsys):
    out = tmp_path / "ctx"
    assert cli(["synth-context", "--out", str(out), "--train-normal", "3", "--train-abnormal", "3",
                "--test-normal", "2", "--test-abnormal", "4", "--crops", "2", "--feature-size", "16"]) == 0
    assert "a cycle of 3 states" in capsys.readouterr().out
    test = read_list(out / "test.csv")
    assert len(read_list(out / "train.csv")) == 6 and [e.label for e in test] == [1, 1, 1, 1, 0, 0]
    for e in test:
        feats = load_features(e.path)
        gt = np.load(out / "gt" / f"{e.video_id}.npy")
        assert feats.shape[1:] == (2, 16) and feats.dtype == np.float32 and (feats >= 0).all()
        assert gt.shape == (16 * feats.shape[0],) and set(np.unique(gt)) <= {0, 1}
        assert bool(gt.any()) == bool(e.label)
    assert cli(["synth-context", "--out", str(out), "--states", "2"]) == 2
    assert "states must be at least 3" in capsys.readouterr().err


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Every test clip of a 120-video set: features, frame-level labels, video index."""
    from mgfn.synthetic_context import make_dataset

    root = tmp_path_factory.mktemp("ctx")
    make_dataset(root, ContextConfig(train_normal=1, train_abnormal=1, test_normal=60, test_abnormal=60, seed=3))
    x, y, v = [], [], []
    for i, e in enumerate(read_list(root / "test.csv")):
        feats = load_features(e.path)[:, 0]
        x.append(feats)
        y.append(np.load(root / "gt" / f"{e.video_id}.npy")[::16])
        v.append(np.full(len(feats), i))
    return np.concatenate(x), np.concatenate(y), np.concatenate(v)


def test_no_clip_is_anomalous_on_its_own(clips):
    """A clip classifier trained with frame labels is at chance: only the order of clips tells."""
    x, y, v = clips
    train, test = v % 2 == 0, v % 2 == 1
    model = LogisticRegression(C=0.1, max_iter=2000).fit(x[train], y[train])
    assert 0.4 < roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]) < 0.6
    # while the states themselves are easy to tell apart (so the order is there to be learned)
    from sklearn.cluster import KMeans
    assert KMeans(4, n_init=3, random_state=0).fit(x).inertia_ < 0.25 * KMeans(1, n_init=1).fit(x).inertia_
