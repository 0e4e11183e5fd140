"""`mgfn data`: the real annotation files parse completely, ground truth is 16·T long, public feature layouts import,
and features written by `mgfn extract --rtfm-names` go through the importer into training."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mgfn.data import load_features, read_csv_list
from mgfn.metrics import align_ground_truth
from pipeline.cli import main as cli
from pipeline.datasets import ucf_crime, xd_violence
from pipeline.datasets.common import Sources, list_entry_id
from pipeline.data_cli import build


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ann(shared_dir) -> Path:
    path = shared_dir / "data" / "annotations"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


# -- real annotation files ------------------------------------------------------------------------------------

def test_ucf_all_290_test_videos_with_their_events_and_classes(ann):
    path = ann / "ucf_crime" / "Temporal_Anomaly_Annotation.txt"
    videos = ucf_crime.read_annotation(path)
    assert len(videos) == 290 and len({v.video_id for v in videos}) == 290
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    for v, parts in zip(videos, lines):
        assert v.video_id == parts[0].removesuffix(".mp4") and v.anomaly_class == parts[1]
        assert len(v.events) == sum(1 for s in parts[2::2] if int(s) != -1)
    assert sum(v.anomaly_class != "Normal" for v in videos) == 140
    assert {v.anomaly_class for v in videos} == set(ucf_crime.CLASSES) | {"Normal"}
    assert all(v.events for v in videos if v.anomaly_class != "Normal")
    assert all(ucf_crime.class_of(v.video_id) == v.anomaly_class for v in videos)


def test_ucf_stats_command_prints_the_files_count_per_class(ann, capsys):
    path = ann / "ucf_crime" / "Temporal_Anomaly_Annotation.txt"
    assert cli(["data", "ucf-crime", "--annotation", str(path), "--stats"]) == 0
    printed = {parts[0]: (int(parts[1]), int(parts[2])) for parts in
               (ln.split() for ln in capsys.readouterr().out.splitlines()[1:])}
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    per_class = Counter(p[1] for p in lines)
    events = Counter()
    for p in lines:
        events[p[1]] += sum(1 for s in p[2::2] if s != "-1")
    assert {k: v for k, v in printed.items() if k != "total"} == {c: (per_class[c], events[c]) for c in per_class}
    assert printed["total"] == (290, sum(events.values()))


def test_ucf_rtfm_lists_give_810_abnormal_of_1610_and_140_of_290(ann, tmp_path):
    d = ann / "ucf_crime"
    report = build("ucf-crime", Sources(annotation=d / "Temporal_Anomaly_Annotation.txt",
                                        train_list=d / "ucf-i3d.list", test_list=d / "ucf-i3d-test.list"), tmp_path)
    assert report.counts == {"train": {1: 810, 0: 800}, "test": {1: 140, 0: 150}}
    train = rows(tmp_path / "train.csv")
    assert [r["label"] for r in train] == ["1"] * 810 + ["0"] * 800
    assert train[0]["video_id"] == "Abuse001_x264" and train[0]["classes"] == "Abuse"
    assert len(list((tmp_path / "gt").glob("*.json"))) == 140
    gt = json.loads((tmp_path / "gt" / "Arson011_x264.json").read_text())
    assert len(gt["events"]) == 2


def test_xd_multi_event_lines_and_class_codes(ann):
    path = ann / "xd_violence" / "annotations.txt"
    events = xd_violence.read_annotation(path)
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    assert len(events) == len(lines) == 500
    assert events["v=S-7rRLrxnVQ__#1_label_B4-0-0"] == [(0, 1517), (1970, 3038)]
    assert max(len(e) for e in events.values()) == 22          # the longest line: 44 frame numbers
    assert sum(map(len, events.values())) == sum((len(p) - 1) // 2 for p in lines)
    assert xd_violence.classes_of("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6") == \
        ["explosion", "shooting", "car accident"]
    assert xd_violence.classes_of("wangted.2008__#0-27-17_0-28-07_label_A") == []


def test_xd_lists_collapse_per_crop_lines_onto_800_test_videos(ann, tmp_path):
    d = ann / "xd_violence"
    report = build("xd-violence", Sources(annotation=d / "annotations.txt", train_list=d / "XD_Train.list",
                                          test_list=d / "XD_Test.list"), tmp_path)
    assert report.counts["test"] == {1: 500, 0: 300}
    assert sum(report.counts["train"].values()) == 3954
    assert report.no_truth == []
    assert len(list((tmp_path / "gt").glob("*.json"))) == 500


def test_shanghaitech_lists_masks_and_the_63_abnormal_split(ann, tmp_path):
    d = ann / "shanghaitech"
    for train, test in (("SH_Train.txt", "SH_Test.txt"),
                        ("shanghai-i3d-train-10crop.list", "shanghai-i3d-test-10crop.list")):
        report = build("shanghaitech", Sources(annotation=d / "test_frame_mask", train_list=d / train,
                                               test_list=d / test), tmp_path)
        assert report.counts == {"train": {1: 63, 0: 175}, "test": {1: 44, 0: 155}}
    labels = [r["label"] for r in rows(tmp_path / "train.csv")]
    assert labels == ["1"] * 63 + ["0"] * 175                    # RTFM: the first 63 lines are abnormal
    mask = np.load(d / "test_frame_mask" / "01_0015.npy")
    assert np.array_equal(np.load(tmp_path / "gt" / "01_0015.npy"), mask)


# -- ground truth aligned to the features -----------------------------------------------------------------------

def write_features(folder: Path, clips: dict[str, int], suffix: str = "_i3d", crops: int = 2, dim: int = 8):
    folder.mkdir(parents=True, exist_ok=True)
    for vid, t in clips.items():
        np.save(folder / f"{vid}{suffix}.npy", np.random.default_rng(0).random((t, crops, dim), dtype=np.float32))


def test_ground_truth_is_16T_for_every_video_and_features_may_live_elsewhere(ann, tmp_path):
    lines = [ln.split() for ln in (ann / "ucf_crime" / "Temporal_Anomaly_Annotation.txt").read_text().splitlines()]
    clips = {p[0].removesuffix(".mp4"): max(int(x) for x in p[2:]) // 16 + 2 for p in lines[:6] + lines[-3:]}
    feats = tmp_path / "features"
    write_features(feats, clips)
    ann_file = tmp_path / "ann.txt"
    ann_file.write_text("\n".join(" ".join(p) for p in lines[:6] + lines[-3:]) + "\n")
    out = tmp_path / "lists"
    assert cli(["data", "ucf-crime", "--annotation", str(ann_file), "--features", str(feats), "--out", str(out)]) == 0
    entries = read_csv_list(out / "test.csv")                  # paths stay inside the list's folder
    assert [e.video_id for e in entries] == list(clips)
    counts = [load_features(e.path).shape[0] for e in entries]
    truth = align_ground_truth(out / "gt", [e.video_id for e in entries], [e.label for e in entries], counts)
    assert truth.mismatches == []
    for e, t in zip(entries, counts):
        gt = out / "gt" / f"{e.video_id}.json"
        if e.label:
            assert json.loads(gt.read_text())["num_frames"] == 16 * t
    assert rows(out / "train.csv") == []                         # only annotation + features: test split only


def test_features_shorter_than_the_annotation_report_the_video_by_name(ann, tmp_path, capsys):
    feats = tmp_path / "features"
    n = len(np.load(ann / "shanghaitech" / "test_frame_mask" / "01_0015.npy"))
    write_features(feats, {"01_0015": 3, "01_0014": 4})          # the mask has hundreds of frames; 3 clips cover 48
    (tmp_path / "test.txt").write_text("01_0015\n")
    (tmp_path / "train.txt").write_text("01_0014\n")
    code = cli(["data", "shanghaitech", "--annotation", str(ann / "shanghaitech" / "test_frame_mask"),
                "--train-list", str(tmp_path / "train.txt"), "--test-list", str(tmp_path / "test.txt"),
                "--features", str(feats), "--out", str(tmp_path / "out")])
    assert code == 0
    err = capsys.readouterr().err
    assert "01_0015" in err and f"{n} frames" in err and "48" in err
    assert len(np.load(tmp_path / "out" / "gt" / "01_0015.npy")) == 48


def test_event_past_the_end_of_the_features_is_reported(tmp_path, capsys):
    write_features(tmp_path / "f", {"Abuse030_x264": 2, "Normal_Videos_003_x264": 2})
    (tmp_path / "a.txt").write_text("Abuse030_x264.mp4  Abuse  1275  1360  -1  -1\n"
                                    "Normal_Videos_003_x264.mp4 Normal -1 -1 -1 -1\n")
    assert cli(["data", "ucf-crime", "--annotation", str(tmp_path / "a.txt"), "--features", str(tmp_path / "f"),
                "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "Abuse030_x264" in err and "Normal_Videos_003" not in err


# -- public feature layouts -----------------------------------------------------------------------------------------

def test_rtfm_list_paths_map_by_basename_onto_the_feature_folder():
    assert list_entry_id(r"G:\UCF_Test_ten_crop_i3d\Abuse028_x264_i3d.npy") == "Abuse028_x264"
    assert list_entry_id("/home/yu/SH_Test_ten_crop_i3d/01_0015_i3d.npy") == "01_0015"
    assert list_entry_id("E:/x/RGBTest/Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6__3.npy") == \
        "Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6"


def test_xd_per_crop_files_import_as_5_crops_of_1024(tmp_path):
    names = {"Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6": (1, 4), "wangted.2008__#0-27-17_0-28-07_label_A": (0, 3)}
    feats = tmp_path / "RGBTest"
    feats.mkdir()
    lst = []
    for name, (_, t) in names.items():
        for k in range(5):
            np.save(feats / f"{name}__{k}.npy", np.full((t, 1024), k, dtype=np.float32))
            lst.append(f"E:/DLCode/RGBTest/{name}__{k}.npy")
    (tmp_path / "XD_Test.list").write_text("\n".join(lst))
    (tmp_path / "annotations.txt").write_text("Bad.Boys.1995__#01-11-55_01-12-40_label_G-B2-B6 0 20 40 63\n")
    out = tmp_path / "out"
    build("xd-violence", Sources(annotation=tmp_path / "annotations.txt", test_list=tmp_path / "XD_Test.list",
                                 features=feats), out)
    entries = read_csv_list(out / "test.csv")
    arr = load_features(entries[0].path)
    assert arr.shape == (4, 5, 1024) and arr[0, 3, 0] == 3
    assert json.loads((out / "gt" / f"{entries[0].video_id}.json").read_text()) == \
        {"num_frames": 64, "events": [[0, 20], [40, 63]]}


def test_folders_layout_with_per_video_annotation(tmp_path):
    root = tmp_path / "videos"
    for label, names in (("normal", ["n1", "n2", "n3", "n4"]), ("abnormal", ["a1", "a2", "a3"])):
        (root / label).mkdir(parents=True)
        for n in names:
            (root / label / f"{n}.mp4").write_bytes(b"")
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "a1.json").write_text(json.dumps({"num_frames": 40, "events": [[3, 9]]}))
    write_features(tmp_path / "f", {n: 3 for n in ["n1", "n2", "n3", "n4", "a1", "a2", "a3"]}, suffix="")
    out = tmp_path / "out"
    report = build("folders", Sources(root=root, annotation=gt, features=tmp_path / "f",
                                      config={"test_fraction": 0.5}), out)
    test = {r["video_id"]: r["label"] for r in rows(out / "test.csv")}
    assert test["a1"] == "1" and sum(v == "0" for v in test.values()) == 2
    assert json.loads((out / "gt" / "a1.json").read_text())["num_frames"] == 48
    assert report.counts["train"][0] + report.counts["test"][0] == 4


def test_unknown_dataset_and_missing_out_are_one_line_errors(tmp_path, capsys):
    assert cli(["data", "ucf-crime", "--annotation", str(tmp_path / "nope.txt"), "--out", str(tmp_path)]) == 2
    assert "annotation file not found" in capsys.readouterr().err


# -- round trip: mgfn extract --rtfm-names -> importer with RTFM lists -> training ------------------------------

def test_rtfm_named_features_from_extract_import_with_rtfm_lists_and_train(tiny, make_video, tmp_path):
    from mgfn.train import TrainConfig, run_training

    train = ["Abuse001_x264", "Arson002_x264", "Normal_Videos001_x264", "Normal_Videos002_x264"]
    test = ["Abuse028_x264", "Normal_Videos_003_x264"]
    videos = tmp_path / "videos"
    for i, name in enumerate(train + test):
        make_video(f"{name}.mp4", 48, seed=i, directory=videos)
    out = tmp_path / "features"
    assert cli(["extract", str(videos), "--out", str(out), "--weights", "random", "--crops", "1", "--device", "cpu",
                "--no-progress", "--rtfm-names"]) == 0
    (store,) = [p for p in out.iterdir() if p.is_dir()]
    assert (store / "Abuse001_x264_i3d.npy").is_file()
    (tmp_path / "ucf-i3d.list").write_text("".join(f"G:\\UCF_Train_ten_crop_i3d\\{n}_i3d.npy\n" for n in train))
    (tmp_path / "ucf-i3d-test.list").write_text("".join(f"G:\\UCF_Test_ten_crop_i3d\\{n}_i3d.npy\n" for n in test))
    (tmp_path / "ann.txt").write_text("Abuse028_x264.mp4  Abuse  10  30  -1  -1\n"
                                      "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n")
    lists = tmp_path / "lists"
    assert cli(["data", "ucf-crime", "--annotation", str(tmp_path / "ann.txt"), "--features", str(out),
                "--train-list", str(tmp_path / "ucf-i3d.list"), "--test-list", str(tmp_path / "ucf-i3d-test.list"),
                "--out", str(lists)]) == 0
    assert [r["label"] for r in rows(lists / "train.csv")] == ["1", "1", "0", "0"]
    cfg = TrainConfig(epochs=1, batch_size=2, device="cpu",
                      model={"dims": [32, 64, 128], "depths": [1, 1, 1], "dim_head": 32})
    summary = run_training(lists / "train.csv", lists / "test.csv", lists / "gt", tmp_path / "run", cfg,
                           progress=False, log=lambda *_: None)
    assert summary["best_epoch"] == 1 and 0.0 <= summary["final"]["auc"] <= 1.0


def test_folders_of_videos_give_mgfn_run_its_labels_and_say_what_is_missing(tmp_path, capsys):
    """`mgfn data folders` on videos alone (no --features): OUT/labels.csv, whose paths lead `mgfn run` back to the
    videos, and OUT/gt; it says that the lists name no features, and warns when a split lacks a class."""
    import yaml

    from pipeline.run import RunConfig, read_dataset

    root = tmp_path / "myvideos"
    for label, names in (("normal", ["n1", "n2", "n3"]), ("abnormal", ["a1", "a2"])):
        (root / label).mkdir(parents=True)
        for n in names:
            (root / label / f"{n}.mp4").write_bytes(b"x")
    gt = tmp_path / "mygt"
    gt.mkdir()
    for n in ("a1", "a2"):                              # every abnormal video annotated: all of them go to test
        (gt / f"{n}.json").write_text(json.dumps({"num_frames": 40, "events": [[3, 9]]}))
    out = tmp_path / "mydata"
    assert cli(["data", "folders", "--root", str(root), "--annotation", str(gt), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"videos for `mgfn run` -> {out / 'labels.csv'} (dataset.labels) and {out / 'gt'} (dataset.gt)" in captured.out
    assert "note: no --features" in captured.out
    assert "warning: no abnormal train videos: training needs both (every annotated video goes to test" in captured.err
    labels = {r["video_id"]: r for r in rows(out / "labels.csv")}
    assert {v: (r["label"], r["split"]) for v, r in labels.items()} == {
        "n1": ("0", "train"), "n2": ("0", "test"), "n3": ("0", "train"), "a1": ("1", "test"), "a2": ("1", "test")}
    assert labels["a1"]["path"] == "../myvideos/abnormal/a1.mp4"
    assert (out / "gt" / "a1.json").is_file()

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"name": "mine", "workspace": "ws", "dataset": {
        "videos": "myvideos", "labels": "mydata/labels.csv", "gt": "mydata/gt"},
        "extractor": {"name": "i3d_r50_rtfm", "weights": "random", "crops": 1}}))
    cfg, base = RunConfig.from_yaml(config)
    videos, gt_dir = read_dataset(cfg, base)
    assert {v.video_id: v.path for v in videos}["a1"] == (root / "abnormal" / "a1.mp4").resolve()
    assert gt_dir == (out / "gt").resolve()


def test_linked_features_keep_their_extractor_record(tmp_path):
    """Features of an `mgfn extract` store linked into OUT/features/ take its extractor.json along, so a model
    trained on the lists records what made its features (and `mgfn score` can extract new videos the same way)."""
    from mgfn.errors import InputError
    from mgfn.train import feature_provenance

    root = tmp_path / "videos"
    for label, names in (("normal", ["n1", "n2"]), ("abnormal", ["a1", "a2"])):
        (root / label).mkdir(parents=True)
        for n in names:
            (root / label / f"{n}.mp4").write_bytes(b"")
    store = tmp_path / "store" / "i3d_r50_rtfm-random-0123456789"
    write_features(store, {n: 3 for n in ["n1", "n2", "a1", "a2"]}, suffix="")
    info = {"extractor_id": "i3d_r50_rtfm-random-0123456789", "name": "i3d_r50_rtfm", "feature_dim": 2048}
    (store / "extractor.json").write_text(json.dumps(info))
    out = tmp_path / "out"
    build("folders", Sources(root=root, features=store, config={"test_fraction": 0.5}), out)
    assert json.loads((out / "features" / "extractor.json").read_text()) == info
    assert feature_provenance(read_csv_list(out / "train.csv")) == {"extractor": info}

    (store / "extractor.json").write_text(json.dumps({**info, "extractor_id": "other"}))
    with pytest.raises(InputError, match="features of another extractor than those already in"):
        build("folders", Sources(root=root, features=store, config={"test_fraction": 0.5}), out)
