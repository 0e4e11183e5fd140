#!/usr/bin/env python
"""Training throughput on UCF-sized synthetic features, against the reference data path, in one process.

Ours: every video pooled to 32 segments once (`mgfn.data.TrainingSet`), a batch is one tensor index.
Baseline: what the reference Dataset does per item: np.load the whole file, pool each crop with a Python
loop (`process_feat`), add the magnitude, collate 16 + 16 videos (DataLoader, num_workers=0).
Then one full optimisation step at the UCF shape (16 + 16 videos, 10 crops, T=32, 2048-d) in float32 and
with bf16 autocast. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mgfn.data import PairedBatches, TrainingSet, VideoEntry  # noqa: E402
from mgfn.losses import mgfn_loss  # noqa: E402
from mgfn.model import MGFN, MGFNConfig  # noqa: E402


def make_features(root: Path, videos: int, abnormal: int, crops: int, dim: int, clips: tuple[int, int], seed: int):
    """UCF-like files `[T, crops, D]` float16 (written once, reused on later runs)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(videos):
        path = root / f"v{i:04d}.npy"
        t = int(rng.integers(clips[0], clips[1] + 1))
        if not path.is_file():
            x = rng.standard_normal((t, crops, dim), dtype=np.float32).astype(np.float16)
            np.save(path.with_suffix(".tmp.npy"), x)
            path.with_suffix(".tmp.npy").replace(path)
        entries.append(VideoEntry(f"v{i:04d}", int(i < abnormal), path))
    return entries


def process_feat(feat, length=32):
    """The reference's utils.process_feat (np.int -> int)."""
    new_feat = np.zeros((length, feat.shape[1])).astype(np.float32)
    r = np.linspace(0, len(feat), length + 1, dtype=int)
    for i in range(length):
        if r[i] != r[i + 1]:
            new_feat[i, :] = np.mean(feat[r[i]:r[i + 1], :], 0)
        else:
            new_feat[i, :] = feat[r[i], :]
    return new_feat


class ReferenceDataset(Dataset):
    """The reference training Dataset.__getitem__ for UCF ten-crop features."""

    def __init__(self, entries):
        self.entries = entries

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, index):
        features = np.array(np.load(self.entries[index].path), dtype=np.float32).transpose(1, 0, 2)  # [10, T, F]
        divided_features, divided_mag = [], []
        for feature in features:
            feature = process_feat(feature, 32)
            divided_features.append(feature)
            divided_mag.append(np.linalg.norm(feature, axis=1)[:, np.newaxis])
        divided_features = np.array(divided_features, dtype=np.float32)
        divided_mag = np.array(divided_mag, dtype=np.float32)
        return np.concatenate((divided_features, divided_mag), axis=2), self.entries[index].label


def bench_baseline(entries, batch_size, iterations):
    normal = [e for e in entries if e.label == 0]
    abnormal = [e for e in entries if e.label == 1]
    nloader = DataLoader(ReferenceDataset(normal), batch_size=batch_size, shuffle=False, num_workers=0, drop_last=True)
    aloader = DataLoader(ReferenceDataset(abnormal), batch_size=batch_size, shuffle=False, num_workers=0, drop_last=True)
    t0 = time.perf_counter()
    done = 0
    for (ninput, _), (ainput, _) in zip(nloader, aloader):
        batch = torch.cat((ninput, ainput), 0)
        done += 1
        if done >= iterations:
            break
    return done / (time.perf_counter() - t0), tuple(batch.shape)


def bench_ours(entries, batch_size, epochs):
    t0 = time.perf_counter()
    data = TrainingSet(entries)
    setup_s = time.perf_counter() - t0
    batches = PairedBatches(data.indices(0), data.indices(1), batch_size)
    t0, done = time.perf_counter(), 0
    for epoch in range(epochs):
        for normal, abnormal in batches.epoch(torch.Generator().manual_seed(epoch)):
            batch = data.data[np.concatenate([normal, abnormal])]
            done += 1
    return done / (time.perf_counter() - t0), setup_s, len(batches), tuple(batch.shape)


def step_seconds(amp: bool, batch_size: int, crops: int, dim: int, steps: int) -> float:
    torch.manual_seed(0)
    model = MGFN(MGFNConfig(feature_size=dim))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    x = torch.randn(2 * batch_size, crops, 32, dim + 1)
    times = []
    for i in range(steps + 1):                                 # the first step warms up
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        out = type(out)(*(t.float() for t in out))
        loss = mgfn_loss(out, crops)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default="data/bench_train", help="where the synthetic feature files live (reused)")
    p.add_argument("--videos", type=int, default=1610)
    p.add_argument("--abnormal", type=int, default=810)
    p.add_argument("--crops", type=int, default=10)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--clips", type=int, nargs=2, default=(32, 96), help="range of clips per video")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--baseline-iterations", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3, help="epochs of our loader to time")
    p.add_argument("--steps", type=int, default=2, help="timed optimisation steps per precision")
    args = p.parse_args()

    t0 = time.perf_counter()
    entries = make_features(Path(args.cache), args.videos, args.abnormal, args.crops, args.dim, tuple(args.clips), 0)
    print(f"features: {args.videos} videos x {args.crops} crops x {args.dim}-d float16 in {args.cache} "
          f"({time.perf_counter() - t0:.0f}s to prepare)", flush=True)
    base_its, shape = bench_baseline(entries, args.batch_size, args.baseline_iterations)
    print(f"baseline (reference loader, load + pool per batch): {base_its:.3f} it/s, batch {shape}", flush=True)
    ours_its, setup_s, per_epoch, shape = bench_ours(entries, args.batch_size, args.epochs)
    print(f"ours (pooled once in {setup_s:.1f}s, then indexed): {ours_its:.1f} it/s, batch {shape}", flush=True)
    epoch_base = per_epoch / base_its
    epoch_ours = per_epoch / ours_its
    print(f"loader time per epoch ({per_epoch} iterations): baseline {epoch_base:.1f}s, ours {epoch_ours:.3f}s "
          f"(+{setup_s:.1f}s once); speedup {ours_its / base_its:.0f}x", flush=True)
    fp32 = step_seconds(False, args.batch_size, args.crops, args.dim, args.steps)
    print(f"one optimisation step at the UCF shape, float32: {fp32:.2f}s", flush=True)
    bf16 = step_seconds(True, args.batch_size, args.crops, args.dim, args.steps)
    print(f"one optimisation step at the UCF shape, bf16 autocast: {bf16:.2f}s ({fp32 / bf16:.1f}x)", flush=True)
    print(json.dumps({"ours_it_s": round(ours_its, 3), "baseline_it_s": round(base_its, 4),
                      "speedup": round(ours_its / base_its, 1), "step_s_fp32": round(fp32, 3),
                      "step_s_bf16": round(bf16, 3), "pool_once_s": round(setup_s, 1),
                      "iterations_per_epoch": per_epoch}))


if __name__ == "__main__":
    main()
