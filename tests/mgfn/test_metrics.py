"""Frame-level metrics and ground-truth alignment."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score

from mgfn.errors import InputError
from mgfn.metrics import align_ground_truth, evaluate_scores, frame_scores, read_ground_truth


def test_snippet_scores_repeat_per_frame():
    np.testing.assert_array_equal(frame_scores([0.1, 0.9], 3), [0.1, 0.1, 0.1, 0.9, 0.9, 0.9])


def test_json_events_are_inclusive_and_normal_without_mask_is_zero(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"num_frames": 10, "events": [[2, 4], [8, 20]]}))
    np.testing.assert_array_equal(read_ground_truth(tmp_path, "a", 1), [0, 0, 1, 1, 1, 0, 0, 0, 1, 1])
    assert read_ground_truth(tmp_path, "n", 0) is None
    with pytest.raises(InputError, match="no ground truth for abnormal test video 'b'"):
        read_ground_truth(tmp_path, "b", 1)


def test_masks_are_padded_or_cut_to_16T_and_big_differences_reported(tmp_path):
    np.save(tmp_path / "short.npy", np.ones(20, np.uint8))
    np.save(tmp_path / "long.npy", np.ones(100, np.uint8))
    truth = align_ground_truth(tmp_path, ["short", "long", "n"], [1, 1, 0], [2, 2, 3])
    assert [len(m) for m in truth.masks] == [32, 32, 48]
    assert truth.masks[0][:20].all() and not truth.masks[0][20:].any()
    assert len(truth.mismatches) == 1 and truth.mismatches[0].startswith("long:")


def test_metrics_against_sklearn_and_reference_definitions(tmp_path):
    rng = np.random.default_rng(0)
    masks = [np.repeat(rng.integers(0, 2, 5), 16).astype(np.int8), np.zeros(16 * 4, np.int8)]
    for i, m in enumerate(masks):
        np.save(tmp_path / f"v{i}.npy", m)
    scores = [rng.random(5), rng.random(4)]
    truth = align_ground_truth(tmp_path, ["v0", "v1"], [1, 0], [5, 4])
    m = evaluate_scores(scores, truth)
    pred, gt = np.concatenate([np.repeat(s, 16) for s in scores]), np.concatenate(masks)
    assert m["auc"] == pytest.approx(roc_auc_score(gt, pred))
    precision, recall, _ = precision_recall_curve(gt, pred)
    assert m["pr_auc"] == pytest.approx(auc(recall, precision))
    assert m["auc_abnormal"] == pytest.approx(roc_auc_score(masks[0], np.repeat(scores[0], 16)))
    assert m["far"] == pytest.approx((scores[1] >= 0.5).mean())
    assert m["ap"] != pytest.approx(m["pr_auc"], abs=1e-9)  # trapezoid PR-AUC is not sklearn's AP
