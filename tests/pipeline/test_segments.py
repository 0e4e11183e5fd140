"""Sultani's 32-segment C3D features: the span rule, frame-count files, segment files, and
`mgfn data ucf-crime --layout sultani32` end to end into `mgfn eval`'s ground truth."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mgfn.data import read_csv_list
from mgfn.errors import InputError
from mgfn.metrics import align_ground_truth, frame_scores
from pipeline.cli import main as cli
from pipeline.datasets.segments import read_frame_counts, read_segment_file, sultani_spans


def clip_numbers(spans) -> list[tuple[int, int]]:
    """Each span as its 1-based (first, last) clip."""
    return [(a // 16 + 1, b // 16) for a, b in spans]


# -- the span rule --------------------------------------------------------------------------------------------------

def test_1748_frames_give_the_published_boundaries():
    spans = sultani_spans(1748)                                   # Explosion008: C = 109 clips
    assert len(spans) == 32
    assert [first for first, _ in clip_numbers(spans)][:4] == [1, 4, 8, 11]
    assert spans[0] == [0, 48] and spans[-1] == [1680, 1728]      # segment 1 = frames 0-47, 32 = 1680-1727
    assert clip_numbers(spans)[-1] == (106, 108)                  # b(32) = 106, b(33) = 109
    scores = frame_scores(np.arange(32.0), spans=spans, num_frames=1748)
    assert (scores[1680:] == 31).all() and scores[1679] == 30    # frames 1728-1747 take segment 32's score


def test_boundaries_round_half_away_from_zero_as_matlab():
    # C = 109: linspace(1, 109, 33)(5) = 14.5 -> 15 in MATLAB; numpy's banker's rounding would give 14.
    assert np.round(np.linspace(1, 109, 33))[4] == 14
    assert clip_numbers(sultani_spans(109 * 16))[3] == (11, 14)   # segment 4 = clips 11 .. 15 - 1
    assert clip_numbers(sultani_spans(109 * 16))[4][0] == 15
    # C = 17: 1 + 16 k / 32 = 1.5, 2.5, ... -> 2, 3, ...: every odd k rounds up.
    assert [first for first, _ in clip_numbers(sultani_spans(17 * 16))][:4] == [1, 2, 2, 3]


def test_33_clips_give_one_clip_per_segment_and_the_last_clip_none():
    spans = sultani_spans(33 * 16 + 7)
    assert spans == [[16 * i, 16 * i + 16] for i in range(32)]
    scores = frame_scores(np.arange(32.0), spans=spans, num_frames=33 * 16 + 7)
    assert (scores[512:] == 31).all()                             # clip 33 and the tail: the last segment's score


def test_fewer_than_33_clips_repeat_clips_and_cover_them_all():
    spans = sultani_spans(10 * 16 + 3)
    assert len(spans) == 32 and all(b - a == 16 for a, b in spans)
    assert sorted({first for first, _ in clip_numbers(spans)}) == list(range(1, 11))
    assert spans[0] == spans[1] == [0, 16] and spans[-1] == [144, 160]   # the empty last range: clip C alone
    assert sultani_spans(16) == [[0, 16]] * 32
    with pytest.raises(InputError, match="fewer than one 16-frame clip"):
        sultani_spans(15)


# -- frame counts ---------------------------------------------------------------------------------------------------

def test_frame_counts_from_mist_urdmu_and_csv(tmp_path):
    mist = tmp_path / "Temporal_Anomaly_Annotation_New.txt"
    mist.write_text("Abuse028_x264.mp4\tAbuse\t165\t240\t-1\t-1\t1412\n"
                    "Normal_Videos_003_x264.mp4\tNormal\t-1\t-1\t-1\t-1\t2822\n")
    urdmu = tmp_path / "UCF_Annotation.txt"
    urdmu.write_text("Abuse/Abuse028_x264.mp4 1412 Abuse 165 240 -1 -1 \n"
                     "Testing_Normal_Videos_Anomaly/Normal_Videos_003_x264.mp4 2822 Normal -1 -1 -1 -1 \n")
    table = tmp_path / "counts.csv"
    table.write_text("video_id,num_frames\nAbuse028_x264.mp4,1412\nNormal_Videos_003_x264,2822\n")
    expected = {"Abuse028_x264": 1412, "Normal_Videos_003_x264": 2822}
    for path in (mist, urdmu, table):
        assert read_frame_counts(path) == expected
    (tmp_path / "bare.csv").write_text("Abuse028_x264,1412\n")
    assert read_frame_counts(tmp_path / "bare.csv") == {"Abuse028_x264": 1412}


def test_frame_count_files_without_counts_are_refused(tmp_path):
    official = tmp_path / "Temporal_Anomaly_Annotation.txt"
    official.write_text("Abuse028_x264.mp4  Abuse  165  240  -1  -1  \n")
    with pytest.raises(InputError, match="no frame count: expected MIST"):
        read_frame_counts(official)
    (tmp_path / "bad.csv").write_text("video_id,num_frames\nAbuse028_x264,many\n")
    with pytest.raises(InputError, match="bad.csv:2: expected a frame count"):
        read_frame_counts(tmp_path / "bad.csv")
    (tmp_path / "twice.csv").write_text("a,10\na,11\n")
    with pytest.raises(InputError, match="a has two frame counts, 10 and 11"):
        read_frame_counts(tmp_path / "twice.csv")


# -- segment files --------------------------------------------------------------------------------------------------

def write_txt(path: Path, rows: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(" ".join(f"{x:g}" for x in row) for row in rows) + "\n")
    return path


def segment_features(seed: int, rows: int = 32, dim: int = 4096) -> np.ndarray:
    """Small exact values (quarters) so the text round trip is exact."""
    return np.random.default_rng(seed).integers(0, 8, (rows, dim)).astype(np.float32) / 4


def test_segment_files_are_32_rows_of_4096(tmp_path):
    x = segment_features(0)
    np.testing.assert_array_equal(read_segment_file(write_txt(tmp_path / "a.txt", x)), x)
    np.save(tmp_path / "b.npy", x.astype(np.float16))
    np.testing.assert_array_equal(read_segment_file(tmp_path / "b.npy"), x)
    with pytest.raises(InputError, match="31 rows, expected 32"):
        read_segment_file(write_txt(tmp_path / "c.txt", x[:31]))
    with pytest.raises(InputError, match="row 1 has 4095 numbers, expected 4096"):
        read_segment_file(write_txt(tmp_path / "d.txt", x[:, :4095]))
    np.save(tmp_path / "e.npy", x[:, :100])
    with pytest.raises(InputError, match="expected 32 x 4096 float segment features, got shape \\(32, 100\\)"):
        read_segment_file(tmp_path / "e.npy")


# -- mgfn data ucf-crime --layout sultani32 -------------------------------------------------------------------------

FRAMES = {"Abuse028_x264": 1412, "Arson011_x264": 1266, "Normal_Videos_006_x264": 450, "Shooting037_x264": 305}


@pytest.fixture
def sultani_set(tmp_path):
    """Annotation of 5 test videos (one without a frame count), frame counts, and segment files in class folders."""
    ann = tmp_path / "Temporal_Anomaly_Annotation.txt"
    ann.write_text("Abuse028_x264.mp4  Abuse  165  240  -1  -1\n"
                   "Arson011_x264.mp4  Arson  150  420  680  1267\n"
                   "Normal_Videos_006_x264.mp4  Normal  -1  -1  -1  -1\n"
                   "Shooting037_x264.mp4  Shooting  140  260  -1  -1\n"
                   "Burglary018_x264.mp4  Burglary  720  1050  -1  -1\n")
    counts = tmp_path / "UCF_Annotation.txt"
    counts.write_text("".join(f"{'Testing_Normal_Videos_Anomaly' if v.startswith('Normal') else v[:5]}/{v}.mp4 {n} "
                              f"Class -1 -1 -1 -1 \n" for v, n in FRAMES.items()))
    feats = tmp_path / "C3D"
    x = {}
    for i, vid in enumerate([*FRAMES, "Burglary018_x264", "Abuse001_x264", "Normal_Videos_001_x264"]):
        x[vid] = segment_features(i)
        folder = feats / ("Normal" if vid.startswith("Normal") else vid[:5])
        if vid == "Shooting037_x264":
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / f"{vid}.npy", x[vid])                # a .npy [32, 4096] among the text files
        else:
            write_txt(folder / f"{vid}.txt", x[vid])
    return {"ann": ann, "counts": counts, "features": feats, "x": x, "out": tmp_path / "out"}


def data_args(s, *extra):
    return ["data", "ucf-crime", "--annotation", str(s["ann"]), "--features", str(s["features"]),
            "--layout", "sultani32", "--out", str(s["out"]), *extra]


def test_sultani32_writes_one_crop_features_and_spans_for_eval(sultani_set, capsys):
    s = sultani_set
    assert cli(data_args(s, "--frame-counts", str(s["counts"]))) == 0
    err = capsys.readouterr().err
    assert "1 test video(s) without a frame count (left out): Burglary018_x264" in err
    test = read_csv_list(s["out"] / "test.csv")
    train = read_csv_list(s["out"] / "train.csv")
    assert [e.video_id for e in test] == list(FRAMES)
    assert sorted(e.video_id for e in train) == ["Abuse001_x264", "Normal_Videos_001_x264"]
    for e in test + train:
        feats = np.load(e.path)
        assert feats.dtype == np.float32 and feats.shape == (32, 1, 4096)
        np.testing.assert_array_equal(feats[:, 0], s["x"][e.video_id])
    for vid, n in FRAMES.items():
        gt = json.loads((s["out"] / "gt" / f"{vid}.json").read_text())
        assert gt["num_frames"] == n and gt["spans"] == sultani_spans(n)
    assert json.loads((s["out"] / "gt" / "Normal_Videos_006_x264.json").read_text())["events"] == []
    assert json.loads((s["out"] / "gt" / "Arson011_x264.json").read_text())["events"] == [[150, 420], [680, 1267]]
    truth = align_ground_truth(s["out"] / "gt", [e.video_id for e in test], [e.label for e in test], [32] * 4)
    assert [len(m) for m in truth.masks] == list(FRAMES.values()) and truth.mismatches == []
    assert not list((s["out"] / "features").glob(".*"))          # no temporary files left behind


def test_sultani32_then_mgfn_eval_reads_the_spans(sultani_set, capsys, monkeypatch):
    import mgfn.evaluate as evaluate

    s = sultani_set
    assert cli(data_args(s, "--frame-counts", str(s["counts"]))) == 0
    test = read_csv_list(s["out"] / "test.csv")
    # A stand-in model that scores row i of every video i / 31: the frame scores then follow the spans.
    monkeypatch.setattr(evaluate, "load_model", lambda path, device="cpu": (None, {}))
    monkeypatch.setattr(evaluate, "check_feature_size", lambda model, info, where: None)
    monkeypatch.setattr(evaluate, "predict", lambda model, test_set, device="cpu", progress=False:
                        [np.arange(32) / 31 for _ in test_set.entries])
    capsys.readouterr()
    assert cli(["eval", "--model", "stub.pt", "--test", str(s["out"] / "test.csv"), "--gt", str(s["out"] / "gt"),
                "--json"]) == 0
    auc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["auc"]
    from sklearn.metrics import roc_auc_score

    pred, gt = [], []
    for e in test:
        truth = json.loads((s["out"] / "gt" / f"{e.video_id}.json").read_text())
        pred.append(frame_scores(np.arange(32) / 31, spans=truth["spans"], num_frames=truth["num_frames"]))
        mask = np.zeros(truth["num_frames"], np.int8)
        for a, b in truth["events"]:
            mask[a:b + 1] = 1
        gt.append(mask)
    assert auc == pytest.approx(roc_auc_score(np.concatenate(gt), np.concatenate(pred)))


def test_sultani32_bad_input_is_one_line(sultani_set, capsys):
    s = sultani_set
    assert cli(data_args(s)) == 2
    assert "--layout sultani32 needs --frame-counts FILE" in capsys.readouterr().err
    write_txt(s["features"] / "Abuse" / "Abuse028_x264.txt", segment_features(0)[:30])
    assert cli(data_args(s, "--frame-counts", str(s["counts"]))) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith("Abuse028_x264.txt: 30 rows, expected 32 (one segment per line)")
    assert cli(["data", "xd-violence", "--annotation", str(s["ann"]), "--layout", "sultani32",
                "--out", str(s["out"])]) == 2
    assert "--layout sultani32 is UCF-Crime's" in capsys.readouterr().err
