"""Frame-level metrics and ground-truth alignment, with 16-frame clips or rows given frame spans."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import auc, precision_recall_curve, roc_auc_score

from mgfn.errors import InputError
from mgfn.metrics import align_ground_truth, evaluate_scores, frame_scores, read_ground_truth
from pipeline.cli import main as cli


def test_snippet_scores_repeat_per_frame():
    np.testing.assert_array_equal(frame_scores([0.1, 0.9], 3), [0.1, 0.1, 0.1, 0.9, 0.9, 0.9])


def test_json_events_are_inclusive_and_normal_without_mask_is_zero(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"num_frames": 10, "events": [[2, 4], [8, 20]]}))
    truth = read_ground_truth(tmp_path, "a", 1)
    np.testing.assert_array_equal(truth.mask, [0, 0, 1, 1, 1, 0, 0, 0, 1, 1])
    assert truth.spans is None
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


# -- rows with frame spans ----------------------------------------------------------------------------------------

def test_span_scores_cover_their_frames_and_the_last_row_the_tail():
    scores = [0.1, 0.2, 0.3]
    out = frame_scores(scores, spans=[[2, 5], [5, 6], [6, 9]], num_frames=12)
    np.testing.assert_array_equal(out, [0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    np.testing.assert_array_equal(frame_scores(scores, spans=[[0, 2], [2, 4], [4, 6]]), np.repeat(scores, 2))


def test_overlapping_spans_give_the_later_row_and_gaps_the_row_before():
    # Repeated spans (Sultani's rule for short videos): the later row wins, as the official evaluator overwrites.
    out = frame_scores([0.1, 0.2, 0.3, 0.4], spans=[[0, 4], [0, 4], [6, 8], [6, 10]], num_frames=11)
    np.testing.assert_array_equal(out, [0.2] * 4 + [0.2] * 2 + [0.4] * 5)


@pytest.mark.parametrize("spans, match", [
    ([[0, 4], [3, 2]], "span 1 \\[3, 2\\) is empty or outside"),
    ([[0, 4], [4, 11]], "outside the video's 10 frames"),
    ([[4, 8], [0, 4]], "non-decreasing"),
    ([[0, 4.5]], "integer frame pairs"),
])
def test_bad_spans_are_one_line_errors_naming_the_file(tmp_path, spans, match):
    (tmp_path / "v.json").write_text(json.dumps({"num_frames": 10, "events": [], "spans": spans}))
    with pytest.raises(InputError, match=match) as err:
        read_ground_truth(tmp_path, "v", 1)
    assert str(tmp_path / "v.json") in str(err.value) and "\n" not in str(err.value)


def test_spans_keep_every_frame_and_must_be_one_per_row(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"num_frames": 50, "events": [[40, 49]],
                                                 "spans": [[0, 16], [16, 32], [32, 45]]}))
    np.save(tmp_path / "b.npy", np.ones(20, np.uint8))
    truth = align_ground_truth(tmp_path, ["a", "b"], [1, 1], [3, 2])
    assert [len(m) for m in truth.masks] == [50, 32]             # no cut to 16*T where rows have spans
    assert truth.spans[0].tolist() == [[0, 16], [16, 32], [32, 45]] and truth.spans[1] is None
    with pytest.raises(InputError, match=f"{tmp_path / 'a.json'}: a has 3 spans but its features have 4 rows"):
        align_ground_truth(tmp_path, ["a"], [1], [4])


def test_evaluate_with_spans_equals_sklearn_on_spread_scores(tmp_path):
    gt = {"a": {"num_frames": 40, "events": [[10, 19]], "spans": [[0, 8], [8, 20], [20, 36]]},
          "n": {"num_frames": 30, "events": [], "spans": [[0, 10], [10, 20]]}}
    scores = [np.array([0.2, 0.9, 0.1]), np.array([0.3, 0.6])]
    truth = align_ground_truth(gt, ["a", "n", "c"], [1, 0, 0], [3, 2, 2])   # c: normal, no truth, 16-frame clips
    m = evaluate_scores([*scores, np.array([0.0, 0.4])], truth)
    pred = np.concatenate([[0.2] * 8 + [0.9] * 12 + [0.1] * 20, [0.3] * 10 + [0.6] * 20, [0.0] * 16 + [0.4] * 16])
    gt_frames = np.zeros(40 + 30 + 32, np.int8)
    gt_frames[10:20] = 1
    assert m["auc"] == pytest.approx(roc_auc_score(gt_frames, pred))
    assert m["far"] == pytest.approx(((pred[40:]) >= 0.5).mean())
    json_file = tmp_path / "gt.json"
    json_file.write_text(json.dumps(gt))
    assert evaluate_scores([*scores, np.array([0.0, 0.4])],
                           align_ground_truth(json_file, ["a", "n", "c"], [1, 0, 0], [3, 2, 2])) == m
    with pytest.raises(InputError, match="no entry for abnormal test video 'x'"):
        align_ground_truth(json_file, ["x"], [1], [2])


def _cli_split(tmp_path, feature_rows: dict[str, int], labels: dict[str, int]):
    """Random one-crop features and a test CSV for `mgfn eval`."""
    rows = []
    for vid, t in feature_rows.items():
        np.save(tmp_path / f"{vid}.npy", np.random.default_rng(0).random((t, 1, 8), dtype=np.float32))
        rows.append((vid, labels[vid], f"{vid}.npy"))
    with (tmp_path / "test.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("video_id", "label", "path"), *rows])
    return tmp_path / "test.csv"


@pytest.fixture
def label_model(monkeypatch):
    """`mgfn eval` with a stand-in model that scores every row of a video with the video's label."""
    import mgfn.evaluate as evaluate

    class Stub:
        config = type("Config", (), {"feature_size": None})()

    def load(path, device="cpu"):
        return Stub(), {"epoch": 1}

    def predict(model, test_set, device="cpu", progress=False):
        return [np.full(n, float(e.label)) for e, n in zip(test_set.entries, test_set.clip_counts())]

    monkeypatch.setattr(evaluate, "load_model", load)
    monkeypatch.setattr(evaluate, "predict", predict)
    monkeypatch.setattr(evaluate, "check_feature_size", lambda model, info, where: None)


def test_eval_command_spreads_rows_over_spans(tmp_path, capsys, label_model):
    test_csv = _cli_split(tmp_path, {"a": 2, "n": 2}, {"a": 1, "n": 0})
    gt = {"a": {"num_frames": 100, "events": [[10, 49]], "spans": [[0, 30], [30, 60]]},
          "n": {"num_frames": 300, "events": [], "spans": [[0, 100], [100, 200]]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    assert cli(["eval", "--model", "stub.pt", "--test", str(test_csv), "--gt", str(tmp_path / "gt.json"),
                "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # a: 100 frames scored 1 (40 anomalous, 60 not, frames 60-99 after the last span too); n: 300 frames scored 0.
    assert result["auc"] == pytest.approx((300 + 0.5 * 60) / 360)
    gt["a"].pop("spans")                         # 16-frame clips: a's truth is cut to 32 frames (22 anomalous)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    assert cli(["eval", "--model", "stub.pt", "--test", str(test_csv), "--gt", str(tmp_path / "gt.json"),
                "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["auc"] == pytest.approx((300 + 0.5 * 10) / 310)


# -- the real 32-segment set in ../shared ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def c3d_set(shared_dir):
    path = shared_dir / "data" / "ucf_crime_c3d"
    if not (path / "gt.json").is_file():
        pytest.skip(f"{path} is absent")
    with (path / "test.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return path, [r["video_id"] for r in rows], [int(r["label"]) for r in rows]


def test_video_label_oracle_scores_the_published_auc_on_the_c3d_set(c3d_set):
    path, ids, labels = c3d_set
    features = np.load(path / "features.npz")
    counts = [features[vid].shape[0] for vid in ids]
    gt = json.loads((path / "gt.json").read_text())
    metrics = evaluate_scores([np.full(t, float(label)) for t, label in zip(counts, labels)],
                              align_ground_truth(gt, ids, labels, counts))
    assert round(metrics["auc"], 4) == 0.8398 and metrics["auc_abnormal"] == 0.5


def test_video_label_oracle_through_mgfn_eval_on_the_c3d_set(c3d_set, tmp_path, capsys, label_model):
    path, ids, labels = c3d_set
    features = np.load(path / "features.npz")
    for vid in ids:
        np.save(tmp_path / f"{vid}.npy", features[vid].astype(np.float32)[:, None, :])     # [32, 1, 4096]
    with (tmp_path / "test.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("video_id", "label", "path"), *((v, y, f"{v}.npy") for v, y in zip(ids, labels))])
    assert cli(["eval", "--model", "stub.pt", "--test", str(tmp_path / "test.csv"), "--gt", str(path / "gt.json"),
                "--json"]) == 0
    assert round(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["auc"], 4) == 0.8398
