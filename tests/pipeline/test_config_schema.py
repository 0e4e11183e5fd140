"""Every YAML is held against one schema (mgfn.schema) before any work: run, train and dataset configs, every
section. A typo, a wrong type, a value out of range, a missing key, a file that is not a mapping or not YAML: one
line naming the file and `section.key`, exit status 2, no traceback. Also: a training set smaller than the batch
size trains with a smaller batch and says so in one note."""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.cli import main as cli

REPO = Path(__file__).resolve().parents[2]

RUN = {"name": "t", "workspace": "ws",
       "dataset": {"videos": "videos", "labels": "labels.csv", "gt": "videos/gt"},
       "extractor": {"name": "i3d_r50_rtfm", "weights": "random", "crops": 1},
       "train": {"epochs": 3, "batch_size": 2, "model": {"dims": [32, 64, 128], "depths": [1, 1, 1]}},
       "score": {"videos": "test", "threshold": 0.5}}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def edited(change) -> dict:
    config = copy.deepcopy(RUN)
    change(config)
    return config


RUN_CASES = {
    # unknown settings, in each section and nested ones
    "train.epocs: unknown setting (did you mean epochs?)": lambda c: c["train"].update(epocs=10),
    "extractor.cropsize: unknown setting (did you mean crop_size?)": lambda c: c["extractor"].update(cropsize=112),
    "score.treshold: unknown setting (did you mean threshold?)": lambda c: c["score"].update(treshold=0.3),
    "dataset.gtt: unknown setting (did you mean gt?)": lambda c: c["dataset"].update(gtt=c["dataset"].pop("gt")),
    "train.model.dimz: unknown setting (did you mean dims?)": lambda c: c["train"]["model"].update(dimz=[32]),
    "train.model.lstm.hiden: unknown setting (did you mean hidden?)":
        lambda c: c["train"]["model"].update(lstm={"hiden": 8}),
    "train.loss.margn: unknown setting (did you mean margin?)": lambda c: c["train"].update(loss={"margn": 1.0}),
    "trian: unknown setting (did you mean train?)": lambda c: c.update(trian=c.pop("train")),
    # wrong types
    "train.epochs: expected an integer, got 'ten'": lambda c: c["train"].update(epochs="ten"),
    "train.lr: expected a number, got [1]": lambda c: c["train"].update(lr=[1]),
    "extractor.crops: expected an integer, got 'ten'": lambda c: c["extractor"].update(crops="ten"),
    "score.threshold: expected a number, got 'high'": lambda c: c["score"].update(threshold="high"),
    "train.model.dims: expected a list of integers, got 64": lambda c: c["train"]["model"].update(dims=64),
    "allow_outside: expected true or false, got 'maybe'": lambda c: c.update(allow_outside="maybe"),
    "train: expected a mapping, got [1, 2]": lambda c: c.update(train=[1, 2]),
    # out of range, or not one of the choices
    "train.epochs: expected an integer >= 1, got -3": lambda c: c["train"].update(epochs=-3),
    "train.batch_size: expected an integer >= 1, got 0": lambda c: c["train"].update(batch_size=0),
    "score.threshold: expected a number from 0 to 1, got 1.5": lambda c: c["score"].update(threshold=1.5),
    "score.videos: expected one of test, all, got 'tset' (did you mean test?)": lambda c: c["score"].update(videos="tset"),
    "train: select must be test, val or last, got 'best'": lambda c: c["train"].update(select="best"),
    # missing required settings
    "dataset.gt: missing required setting (ground-truth folder: <video_id>.json events or <video_id>.npy masks)":
        lambda c: c["dataset"].pop("gt"),
    "workspace: missing required setting (where every stage writes)": lambda c: c.pop("workspace"),
}


@pytest.mark.parametrize("expected", list(RUN_CASES))
def test_run_config_errors_are_one_line_before_any_work(tmp_path, capsys, expected):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(edited(RUN_CASES[expected])))
    assert cli(["run", str(path)]) == 2
    assert one_line(capsys) == f"mgfn run: error: {path}: {expected}"
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("text, expected", [
    ("- name: t\n- workspace: ws\n", "expected a mapping (name: value lines), got a list ([{'name': 't'}, {'workspace': 'ws'}])"),
    ("just words\n", "expected a mapping (name: value lines), got text ('just words')"),
    ("name: t\ndataset: {videos: v\n", "not valid YAML at line 3, column 1: expected ',' or '}', but got '<stream end>'"),
    ("name: t\n  workspace: ws\n", "not valid YAML at line 2, column 12: mapping values are not allowed here"),
    ("", "name: missing required setting (the run's name (it names the run folder))"),
])
def test_run_config_that_is_not_a_mapping_or_not_yaml(tmp_path, capsys, text, expected):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert cli(["run", str(path)]) == 2
    assert one_line(capsys) == f"mgfn run: error: {path}: {expected}"


@pytest.mark.parametrize("text, expected", [
    ("epocs: 3\n", "epocs: unknown setting (did you mean epochs?)"),
    ("model:\n  dimz: [32, 64, 128]\n", "model.dimz: unknown setting (did you mean dims?)"),
    ("epochs: ten\n", "epochs: expected an integer, got 'ten'"),
    ("lr: [1]\n", "lr: expected a number, got [1]"),
    ("batch_size: 0\n", "batch_size: expected an integer >= 1, got 0"),
    ("model_type: mil\nmodel: {dims: [32]}\n",
     "model.dims: unknown setting (known: feature_size, hidden, dropout, center, center_scale, normalize, type)"),
    ("recipe: fancy\n", "recipe must be one of reference, default, got 'fancy'"),
    ("train:\n  epocs: 3\n", "train.epocs: unknown setting (did you mean epochs?)"),   # a run config's section
    ("[16, 32]\n", "expected a mapping (name: value lines), got a list ([16, 32])"),
    ("epochs: [3\n", "not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"),
])
def test_train_config_errors_are_one_line_before_any_work(tmp_path, capsys, text, expected):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    out = tmp_path / "run"
    assert cli(["train", "--train", str(tmp_path / "none.csv"), "--test", str(tmp_path / "none.csv"),
                "--gt", str(tmp_path / "gt"), "--out", str(out), "--config", str(path), "--quiet"]) == 2
    assert one_line(capsys) == f"mgfn train: error: {path}: {expected}"
    assert not out.exists()


@pytest.mark.parametrize("dataset, text, expected", [
    ("folders", "name: folders\nadapter:\n  test_fractoin: 0.2\n",
     "adapter.test_fractoin: unknown setting (did you mean test_fraction?)"),
    ("folders", "name: folders\nadapter: {test_fraction: 2}\n", "adapter.test_fraction: expected a number from 0 to 1, got 2"),
    ("ucf-crime", "name: ucf-crime\nadapter: {x: 1}\n", "adapter.x: unknown setting (this section takes no settings)"),
    ("ucf-crime", "name: ucf-crime\nfeature_sise: 2048\n", "feature_sise: unknown setting (did you mean feature_size?)"),
    ("ucf-crime", "name: ucf-crime\npublished: {auc: high}\n", "published.auc: expected a number, got 'high'"),
    ("ucf-crime", "name: ucf-crime\nmetric: acu\n", "metric: expected one of auc, pr_auc, ap, got 'acu' (did you mean auc?)"),
    ("minidrone", "name: minidrone\nadapter: {objects: Person}\n", "adapter.objects: expected a list of strings, got 'Person'"),
    ("ucf-crime", "crops: 10\n", "name: missing required setting (the dataset (ucf-crime, xd-violence, shanghaitech, "
                                 "minidrone, folders) or your own)"),
    ("ucf-crime", "ucf-crime\n", "expected a mapping (name: value lines), got text ('ucf-crime')"),
])
def test_dataset_config_errors_are_one_line(tmp_path, capsys, dataset, text, expected):
    path = tmp_path / "dataset.yaml"
    path.write_text(text)
    assert cli(["data", dataset, "--config", str(path), "--root", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert one_line(capsys) == f"mgfn data: error: {path}: {expected}"
    assert not (tmp_path / "out").exists()


def test_checked_in_configs_and_the_demo_config_pass(tmp_path):
    from mgfn.train import TrainConfig
    from pipeline.datasets import DatasetConfig
    from pipeline.demo import run_config
    from pipeline.run import RunConfig

    runs = sorted((REPO / "configs" / "run").glob("*.yaml"))
    trains = sorted((REPO / "configs" / "train").glob("*.yaml"))
    datasets = sorted((REPO / "configs" / "datasets").glob("*.yaml"))
    assert runs and trains and datasets
    for path in runs:
        RunConfig.from_yaml(path)
    for path in trains:
        TrainConfig(**TrainConfig.read_yaml(path))
    for path in datasets:
        cfg = DatasetConfig.from_yaml(path)
        if cfg.train_config_path():
            TrainConfig.read_yaml(cfg.train_config_path())
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(run_config("random", 8, 0)))     # what `mgfn demo` writes
    RunConfig.from_yaml(tmp_path / "demo.yaml")


def test_example_config_says_what_it_needs():
    first = (REPO / "configs" / "run" / "example.yaml").read_text().splitlines()[0]
    assert first.startswith("# Does not run as is: needs") and "data/videos/labels.csv" in first


def test_each_setting_has_one_definition_with_type_default_and_help():
    from mgfn.schema import describe
    from pipeline.run import ScoreSection

    assert describe(ScoreSection) == [
        "videos: a string or a list of strings, default 'test' - test, all or a list of video paths",
        "threshold: a number, default 0.5 - frames scoring above it are flagged"]


def test_numbers_written_as_text_are_numbers(tmp_path):
    from mgfn.train import TrainConfig

    path = tmp_path / "train.yaml"
    path.write_text("lr: 1e-3\nmodel: {mag_ratio: 1e-1}\n")          # YAML 1.1 reads both as text
    data = TrainConfig.read_yaml(path)
    assert data["lr"] == 1e-3 and data["model"]["mag_ratio"] == 0.1


def write_set(root: Path, n_normal: int, n_abnormal: int, prefix: str, gt: Path | None = None) -> Path:
    """Tiny `[T, 1, 8]` feature files, their CSV list and (for a test set) frame masks."""
    rng = np.random.default_rng(len(prefix) + n_normal)
    rows = []
    for label, count in ((0, n_normal), (1, n_abnormal)):
        for i in range(count):
            vid, t = f"{prefix}{'a' if label else 'n'}{i}", 12
            x = rng.random((t, 1, 8), dtype=np.float32)
            x[4:8] += label
            np.save(root / f"{vid}.npy", x)
            rows.append((vid, label, f"{vid}.npy"))
            if gt is not None and label:
                mask = np.zeros(16 * t, np.uint8)
                mask[64:128] = 1
                np.save(gt / f"{vid}.npy", mask)
    with (root / f"{prefix}.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("video_id", "label", "path"), *rows])
    return root / f"{prefix}.csv"


def test_a_set_smaller_than_the_batch_trains_with_a_smaller_batch(tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    train = write_set(tmp_path, 5, 3, "tr")
    test = write_set(tmp_path, 2, 2, "te", gt=tmp_path / "gt")
    config = tmp_path / "tiny.yaml"
    config.write_text("epochs: 2\nmodel: {dims: [32, 64, 128], depths: [1, 1, 1], dim_head: 32}\n")
    metrics = []
    for run in ("a", "b"):
        assert cli(["train", "--train", str(train), "--test", str(test), "--gt", str(tmp_path / "gt"), "--out",
                    str(tmp_path / run), "--config", str(config), "--batch-size", "16", "--quiet"]) == 0
        notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
        assert notes == ["note: 3 abnormal training videos, fewer than the batch size 16; using batch size 3"]
        assert yaml.safe_load((tmp_path / run / "config.yaml").read_text())["batch_size"] == 3
        metrics.append([{k: v for k, v in row.items() if k != "train_s"}
                        for row in csv.DictReader((tmp_path / run / "metrics.csv").read_text().splitlines())])
    assert metrics[0] == metrics[1] and len(metrics[0]) == 2             # still deterministic

    one_class = write_set(tmp_path, 4, 0, "no")
    assert cli(["train", "--train", str(one_class), "--test", str(test), "--gt", str(tmp_path / "gt"), "--out",
                str(tmp_path / "c"), "--config", str(config), "--quiet"]) == 2
    assert one_line(capsys) == f"mgfn train: error: {one_class}: no abnormal videos to train on"


# -- a run's dataset, checked before any work (the slips of a first hour) -------------------------------------------

def write_run(root: Path, labels: list[tuple], videos: str = "videos", **train) -> Path:
    (root / "videos" / "gt").mkdir(parents=True, exist_ok=True)
    with (root / "labels.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("video_id", "label", "split", "path"), *labels])
    config = copy.deepcopy(RUN)
    config["dataset"]["videos"] = videos
    config["train"].update(train)
    config["train"]["model"]["dim_head"] = 32
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_misspelt_videos_folder_is_refused(tmp_path, capsys):
    path = write_run(tmp_path, [("a", 1, "train", "videos/a.mp4")], videos="vidoes")
    assert cli(["run", str(path)]) == 2
    assert one_line(capsys) == f"mgfn run: error: {tmp_path / 'vidoes'}: videos folder not found (dataset.videos)"
    assert not (tmp_path / "ws").exists()


def test_labels_naming_no_video_that_exists_are_refused(tmp_path, capsys):
    path = write_run(tmp_path, [("a", 1, "train", "videos/a.mp4"), ("b", 0, "test", "videos/b.mp4")])
    assert cli(["run", str(path)]) == 2
    assert one_line(capsys) == (f"mgfn run: error: {tmp_path / 'labels.csv'}: none of its 2 videos exists "
                                f"(the first: {tmp_path / 'videos' / 'a.mp4'})")
    assert not (tmp_path / "ws").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_train_device_cuda_without_cuda_is_refused_before_extracting(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    path = write_run(tmp_path, [("a", 1, "train", "videos/a.mp4")], device="cuda")
    assert cli(["run", str(path)]) == 2
    assert one_line(capsys) == "mgfn run: error: device 'cuda' asked for, but CUDA is not available here"
    assert not (tmp_path / "ws").exists()


def test_when_every_training_video_fails_the_run_says_why(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "videos" / f"{name}.mp4").write_text("not a video\n")
    path = write_run(tmp_path, [("a", 1, "train", "videos/a.mp4"), ("b", 0, "train", "videos/b.mp4"),
                                ("c", 1, "test", "videos/c.mp4")])
    assert cli(["run", str(path), "--quiet"]) == 2
    captured = capsys.readouterr()
    failed = [line for line in captured.out.splitlines() if " failed: " in line]      # warnings: kept by --quiet
    assert [line.split(" failed: ")[0] for line in failed] == [f"[extract] warning: {v}" for v in "abc"], captured.out
    (error,) = captured.err.strip().splitlines()
    assert error.startswith("mgfn run: error: no train videos left: every one failed to extract (the first, a: ")


def test_a_test_list_of_one_class_cannot_choose_best_on_test(tmp_path, capsys):
    """No abnormal test video: no frame AUC, so `--select test` (the reference recipe's) is refused before training
    instead of ending with exit 0 and no best.pt; `--select last` (the default recipe's) trains and keeps the last
    epoch."""
    (tmp_path / "gt").mkdir()
    train = write_set(tmp_path, 4, 4, "tr")
    test = write_set(tmp_path, 2, 0, "te", gt=tmp_path / "gt")
    config = tmp_path / "tiny.yaml"
    config.write_text("epochs: 1\nmodel: {dims: [32, 64, 128], depths: [1, 1, 1], dim_head: 32}\n")
    argv = ["train", "--train", str(train), "--test", str(test), "--gt", str(tmp_path / "gt"), "--config", str(config),
            "--batch-size", "2", "--quiet"]
    assert cli([*argv, "--out", str(tmp_path / "a"), "--select", "test"]) == 2
    assert one_line(capsys) == (f"mgfn train: error: {test}: no abnormal test videos, so no frame AUC to choose "
                                "best.pt by (--select test); add some, or train with --select last")
    assert not (tmp_path / "a").exists()
    assert cli([*argv, "--out", str(tmp_path / "b")]) == 0                        # the default recipe: last
    assert (tmp_path / "b" / "best.pt").is_file()
    assert yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())["select"] == "last"
