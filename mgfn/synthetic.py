"""Synthetic feature datasets with planted anomalous snippets and exact frame ground truth.

Normal videos: non-negative clip features drifting smoothly around a per-video scene vector (like pooled
post-ReLU I3D features). Abnormal videos: the same, plus one or two events of consecutive snippets pushed
along one of a few anomaly directions with a larger magnitude. Used by the demo and the learning test.
"""
from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mgfn.atomic import atomic_open


@dataclass
class SynthConfig:
    train_normal: int = 24
    train_abnormal: int = 24
    test_normal: int = 10
    test_abnormal: int = 10
    feature_size: int = 256
    crops: int = 1
    min_clips: int = 24
    max_clips: int = 80
    anomaly_classes: int = 3
    strength: float = 1.0          # how far an anomalous snippet moves along its direction
    keep_norm: bool = True         # anomalous clips keep their norm: only the direction gives them away
    l2_normalize: bool = False     # each clip feature scaled to unit norm (then the magnitude channel is constant)
    clip_noise: float = 0.0        # independent noise on every clip (a single clip is then an unreliable witness)
    distractors: float = 0.0       # chance that a video (normal or not) holds a large *normal* event of its own
    dtype: str = "float32"
    seed: int = 0


def _event(rng, clips, direction, strength: float, keep_norm: bool, mask=None) -> None:
    """Push a run of consecutive clips along `direction` with a rising and falling ramp (in place)."""
    t = len(clips)
    length = int(rng.integers(max(2, t // 10), max(3, t // 3)))
    start = int(rng.integers(0, t - length + 1))
    ramp = np.sin(np.linspace(0.3, np.pi - 0.3, length))[:, None]
    seg = clips[start:start + length]
    moved = np.maximum(seg + strength * 2.0 * ramp * direction, 0.0)
    if keep_norm:
        moved *= np.linalg.norm(seg, axis=1, keepdims=True) / np.linalg.norm(moved, axis=1, keepdims=True)
    clips[start:start + length] = moved
    if mask is not None:
        mask[start:start + length] = True


def _video(rng, cfg: SynthConfig, directions, abnormal: bool, distractor_directions=None):
    t = int(rng.integers(cfg.min_clips, cfg.max_clips + 1))
    d = cfg.feature_size
    scene = rng.gamma(2.0, 0.5, size=d)
    drift = np.zeros(d)
    clips = np.empty((t, d))
    for i in range(t):                                   # AR(1) drift: neighbouring clips look alike
        drift = 0.9 * drift + 0.1 * rng.normal(0, 1.0, size=d)
        clips[i] = scene + 0.5 * drift
    if cfg.clip_noise > 0:
        clips += cfg.clip_noise * rng.normal(0, 1.0, size=(t, d))
    if cfg.distractors > 0 and rng.random() < cfg.distractors:      # a loud normal event: high magnitude, not anomalous
        direction = distractor_directions[int(rng.integers(len(distractor_directions)))]
        _event(rng, clips, direction, 2 * cfg.strength, keep_norm=False)
    mask = np.zeros(t, dtype=bool)
    if abnormal:
        for _ in range(int(rng.integers(1, 3))):
            direction = directions[int(rng.integers(len(directions)))]
            _event(rng, clips, direction, cfg.strength, cfg.keep_norm, mask)
    clips = np.maximum(clips, 0.0)
    crops = clips[:, None, :] * (1.0 + 0.05 * rng.normal(size=(t, cfg.crops, 1))) \
        + 0.05 * rng.normal(size=(t, cfg.crops, d))
    crops = np.maximum(crops, 0.0)
    if cfg.l2_normalize:
        crops /= np.linalg.norm(crops, axis=-1, keepdims=True) + 1e-8
    return crops.astype(cfg.dtype), mask


def _directions(rng, cfg: SynthConfig):
    """A few sparse non-negative directions of norm sqrt(D), like class-specific units."""
    directions = rng.gamma(2.0, 0.5, size=(cfg.anomaly_classes, cfg.feature_size))
    directions *= rng.random((cfg.anomaly_classes, cfg.feature_size)) < 0.25
    return directions / (np.linalg.norm(directions, axis=1, keepdims=True) / np.sqrt(cfg.feature_size))


def make_dataset(out_dir, cfg: SynthConfig | None = None) -> dict[str, Path]:
    """Write `features/<id>.npy` [T, crops, D], `train.csv`, `test.csv` and `gt/<id>.npy` frame masks."""
    cfg = cfg or SynthConfig()
    rng = np.random.default_rng(cfg.seed)
    directions = _directions(rng, cfg)
    distractor_directions = _directions(rng, cfg) if cfg.distractors > 0 else None
    return write_splits(out_dir, cfg, lambda abnormal: _video(rng, cfg, directions, abnormal, distractor_directions))


def write_splits(out_dir, cfg, video) -> dict[str, Path]:
    """Write the train and test splits of `cfg` (train/test_normal/abnormal counts); `video(abnormal)` makes one
    video's features `[T, crops, D]` and its clip mask, called abnormal videos first, then normal, per split."""
    out = Path(out_dir)
    (out / "features").mkdir(parents=True, exist_ok=True)
    (out / "gt").mkdir(exist_ok=True)
    splits = {"train": (cfg.train_normal, cfg.train_abnormal), "test": (cfg.test_normal, cfg.test_abnormal)}
    for split, (n_normal, n_abnormal) in splits.items():
        rows = []
        for label, count in ((1, n_abnormal), (0, n_normal)):
            for i in range(count):
                vid = f"{split}_{'abnormal' if label else 'normal'}_{i:03d}"
                feats, mask = video(bool(label))
                with atomic_open(out / "features" / f"{vid}.npy") as f:
                    np.save(f, feats)
                if split == "test":
                    with atomic_open(out / "gt" / f"{vid}.npy") as f:
                        np.save(f, np.repeat(mask, 16).astype(np.uint8))
                rows.append((vid, label, f"features/{vid}.npy"))
        with atomic_open(out / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["video_id", "label", "path"])
            w.writerows(rows)
    return {"train": out / "train.csv", "test": out / "test.csv", "gt": out / "gt", "root": out}


SYNTH_HELP = {
    "train_normal": "normal training videos", "train_abnormal": "abnormal training videos",
    "test_normal": "normal test videos", "test_abnormal": "abnormal test videos",
    "feature_size": "feature dimension D", "crops": "crops per clip",
    "min_clips": "fewest clips in a video", "max_clips": "most clips in a video",
    "anomaly_classes": "number of anomaly directions",
    "strength": "how far an anomalous snippet moves along its direction",
    "keep_norm": "anomalous clips keep their norm: only the direction gives them away",
    "l2_normalize": "scale each clip feature to unit norm (the magnitude channel is then constant)",
    "clip_noise": "independent noise on every clip (a single clip is then an unreliable witness)",
    "distractors": "chance that a video (normal or not) holds a large normal event of its own",
    "dtype": "dtype of the saved feature files", "seed": "random seed",
}


def config_arguments(parser, defaults, helps: dict[str, str]) -> None:
    """`--out` and one flag per field of the dataclass instance `defaults`, with its help from `helps`."""
    parser.add_argument("--out", required=True, help="folder to write features/, gt/, train.csv, test.csv")
    for name, value in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=helps[name])
        else:
            parser.add_argument(flag, type=type(value), default=value, help=helps[name])


def add_arguments(parser) -> None:
    config_arguments(parser, SynthConfig(), SYNTH_HELP)


def main(args) -> int:
    cfg = SynthConfig(**{k: getattr(args, k) for k in vars(SynthConfig())})
    paths = make_dataset(args.out, cfg)
    print(f"wrote {cfg.train_normal + cfg.train_abnormal} training and {cfg.test_normal + cfg.test_abnormal} test "
          f"videos ({cfg.crops} crops x {cfg.feature_size}-d) to {paths['root']}")
    return 0
