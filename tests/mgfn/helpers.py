"""Small feature datasets and a tiny MGFN config so training tests run in seconds."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

TINY_CONFIG = """\
batch_size: 2
model:
  dims: [32, 64, 128]
  depths: [1, 1, 1]
  dim_head: 32
"""


def write_features(root: Path, n_normal: int, n_abnormal: int, crops: int, dim: int, clips=(10, 30),
                   seed: int = 0, per_crop: bool = False, prefix: str = "v") -> list[tuple[str, int, str]]:
    """Random `[T, crops, D]` files (abnormal ones with a brighter event) and their CSV rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, count in ((0, n_normal), (1, n_abnormal)):
        for i in range(count):
            vid = f"{prefix}{'a' if label else 'n'}{i}"
            t = int(rng.integers(*clips))
            x = rng.random((t, crops, dim), dtype=np.float32)
            if label:
                x[t // 3: t // 2] += 1.0
            if per_crop:
                for k in range(crops):
                    np.save(root / f"{vid}__{k}.npy", x[:, k])
                rows.append((vid, label, f"{vid}__0.npy"))
            else:
                np.save(root / f"{vid}.npy", x)
                rows.append((vid, label, f"{vid}.npy"))
    return rows


def write_csv(path: Path, rows) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "label", "path"])
        w.writerows(rows)
    return path


def write_gt(gt_dir: Path, root: Path, rows) -> None:
    """Masks for abnormal videos (the event of write_features); normal videos get none (all zeros)."""
    from mgfn.data import load_features

    gt_dir.mkdir(exist_ok=True)
    for vid, label, rel in rows:
        if label:
            t = load_features(root / rel).shape[0]
            mask = np.zeros(16 * t, dtype=np.uint8)
            mask[16 * (t // 3): 16 * (t // 2)] = 1
            np.save(gt_dir / f"{vid}.npy", mask)


def make_split(tmp: Path, crops: int, dim: int, per_crop: bool = False, n: int = 4) -> dict:
    """Train/test CSVs, ground truth and a tiny-model config under `tmp`."""
    root = tmp / "feats"
    root.mkdir(parents=True, exist_ok=True)
    train = write_features(root, n, n, crops, dim, seed=1, per_crop=per_crop, prefix="tr")
    test = write_features(root, 2, 2, crops, dim, seed=2, per_crop=per_crop, prefix="te")
    write_gt(tmp / "gt", root, test)
    cfg = tmp / "tiny.yaml"
    cfg.write_text(TINY_CONFIG)
    return {"train": write_csv(root / "train.csv", train), "test": write_csv(root / "test.csv", test),
            "gt": tmp / "gt", "config": cfg, "root": root}


def train_args(split, out, *extra):
    """`mgfn train` arguments for a `make_split` split and its tiny config."""
    return ["train", "--train", str(split["train"]), "--test", str(split["test"]), "--gt", str(split["gt"]),
            "--out", str(out), "--config", str(split["config"]), "--quiet", *map(str, extra)]


def read_metrics(run):
    """A run's metrics.csv rows without the timing column (the same run twice gives the same rows)."""
    with (run / "metrics.csv").open() as f:
        return [{k: v for k, v in row.items() if k != "train_s"} for row in csv.DictReader(f)]
