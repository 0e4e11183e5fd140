"""`mgfn demo`: the embedded default, offline. For now the feature-level demo: a synthetic feature dataset
with planted anomalies (exact frame ground truth) -> MGFN training (reference architecture) -> evaluation.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from mgfn.synthetic import SynthConfig, make_dataset
from mgfn.train import TrainConfig, run_training


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="data/demo", help="workspace for the demo (default data/demo)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs (default 8)")
    parser.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    t0 = time.perf_counter()
    out = Path(args.out)
    print(f"demo: synthetic feature dataset with planted anomalies -> MGFN -> frame-level AUC, in {out}")
    paths = make_dataset(out / "dataset", SynthConfig(seed=args.seed))
    cfg = TrainConfig(epochs=args.epochs, batch_size=8, seed=args.seed)
    summary = run_training(paths["train"], paths["test"], paths["gt"], out / "run", cfg, resume=True,
                           provenance={"features": "synthetic (mgfn.synthetic, not video features)"}, progress=False)
    shutil.copyfile(out / "run" / "best.pt", out / "model.pt")
    final = summary["final"]
    print(f"demo: frame AUC {final['auc']:.3f} (final epoch), best {summary['best_value']:.3f} at epoch "
          f"{summary['best_epoch']}; chance is 0.5")
    print(f"demo: model {out / 'model.pt'}, metrics {out / 'run' / 'metrics.csv'} ({time.perf_counter() - t0:.0f}s)")
    return 0
