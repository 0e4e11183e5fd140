#!/usr/bin/env python
"""How much of the demo's events its features show: a linear probe trained on clip labels (which MGFN never sees).

Reads a demo workspace (`mgfn demo --out DIR`, default data/demo): its train/test lists, features and frame
ground truth. A clip counts as abnormal when its middle frame is inside an event. Fits a logistic regression on
the training clips (features as they come, and each less its video's median clip) and prints the frame AUC
inside abnormal test videos, overall and per event kind: an upper bound, with labels no weakly supervised model
has, of how well any linear read-out of these features can localise the events.

    .venv/bin/python scripts/demo_probe.py --workspace data/demo
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def clips(workspace: Path, split: str, clip: int = 16):
    """(video ids, `[T, D]` features of the first crop, 0/1 clip labels, video labels) of one split."""
    out = []
    with (workspace / f"{split}.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            x = np.load(workspace / row["path"])[:, 0].astype(np.float64)            # [T, D]
            gt = workspace / "videos" / "gt" / f"{row['video_id']}.json"
            events = json.loads(gt.read_text())["events"] if gt.is_file() else []
            middle = np.arange(len(x)) * clip + clip // 2
            y = np.zeros(len(x), np.int8)
            for s, e in events:
                y[(middle >= s) & (middle <= e)] = 1
            out.append((row["video_id"], x, y, int(row["label"])))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, default=Path("data/demo"))
    args = p.parse_args()
    train, test = clips(args.workspace, "train"), clips(args.workspace, "test")
    for name, transform in (("as they come", lambda x: x), ("less the median clip", lambda x: x - np.median(x, 0))):
        probe = LogisticRegression(max_iter=2000).fit(np.concatenate([transform(x) for _, x, _, _ in train]),
                                                      np.concatenate([y for _, _, y, _ in train]))
        inside = [(vid, probe.decision_function(transform(x)), y) for vid, x, y, label in test if label]
        pooled = roc_auc_score(np.concatenate([y for *_, y in inside]), np.concatenate([s for _, s, _ in inside]))
        kinds = collections.defaultdict(list)
        for vid, s, y in inside:
            if 0 < y.mean() < 1:
                kinds[vid.split("_")[1]].append(roc_auc_score(y, s))
        per_kind = ", ".join(f"{k} {np.mean(v):.2f}" for k, v in sorted(kinds.items()))
        print(f"features {name:22s} probe AUC inside abnormal test videos {pooled:.3f}  ({per_kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
