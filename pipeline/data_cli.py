"""`mgfn data DATASET`: build `train.csv`, `test.csv` and `gt/` for a dataset from its own files."""
from __future__ import annotations

import sys
from pathlib import Path

from mgfn.errors import InputError
from pipeline.datasets import DATASETS, DatasetConfig, dataset_module, default_config
from pipeline.datasets.common import Report, Sources, write_dataset
from pipeline.datasets.segments import LAYOUTS


def add_arguments(parser) -> None:
    parser.add_argument("dataset", choices=list(DATASETS), help="which dataset's naming and annotation to read")
    parser.add_argument("--root", help="the dataset's videos (or frame folders); for `folders`: ROOT/normal, ROOT/abnormal")
    parser.add_argument("--annotation", help="the official annotation file (ShanghaiTech: the test_frame_mask folder; "
                                             "Mini-drone: a ViPER XML file or a folder of them)")
    parser.add_argument("--features", help="feature folder (<id>.npy, <id>_i3d.npy or <id>__k.npy); the ground truth "
                                           "is aligned to their clip counts. With --layout sultani32: <id>.txt (32 lines "
                                           "x 4096 numbers) or <id>.npy [32, 4096], at any depth")
    parser.add_argument("--layout", choices=LAYOUTS, default="clips",
                        help="what a feature row is: clips (one row per 16 frames) or sultani32 (ucf-crime: "
                             "Sultani's 32 C3D segments per video, converted to OUT/features/<id>.npy [32, 1, 4096]; "
                             "the test ground truth gives each row's frame span, frames after the last span take the "
                             "last row's score; test videos without a frame count are left out with a warning)")
    parser.add_argument("--frame-counts", help="with --layout sultani32: the test videos' frame counts: MIST's "
                                               "Temporal_Anomaly_Annotation_New.txt (7th column), UR-DMU's "
                                               "UCF_Annotation.txt (2nd column) or a video_id,num_frames CSV")
    parser.add_argument("--train-list", help="list of training videos (RTFM .list, SH_Train.txt, XD_Train.list)")
    parser.add_argument("--test-list", help="list of test videos (RTFM test .list, SH_Test.txt, XD_Test.list)")
    parser.add_argument("--config", help="dataset settings YAML (default: configs/datasets/<dataset>.yaml)")
    parser.add_argument("--out", help="folder to write train.csv, test.csv and gt/")
    parser.add_argument("--link", choices=("hard", "copy"), default="hard",
                        help="features outside --out are hard-linked or copied into OUT/features/")
    parser.add_argument("--stats", action="store_true", help="print the number of videos and events per class")


def sources_from_args(args, cfg: DatasetConfig) -> Sources:
    p = lambda v: Path(v) if v else None  # noqa: E731
    return Sources(root=p(args.root), annotation=p(args.annotation), features=p(args.features),
                   train_list=p(args.train_list), test_list=p(args.test_list), config=cfg.adapter,
                   layout=args.layout, frame_counts=p(args.frame_counts))


def build(dataset: str, src: Sources, out: Path, link: str = "hard") -> Report:
    """Read the dataset with its adapter and write the lists and ground truth."""
    if src.layout not in LAYOUTS:
        raise InputError(f"unknown feature layout {src.layout!r}; known: {', '.join(LAYOUTS)}")
    if src.layout == "sultani32" and dataset != "ucf-crime":
        raise InputError(f"--layout sultani32 is UCF-Crime's 32-segment C3D layout, not {dataset}'s")
    if src.frame_counts and src.layout != "sultani32":
        raise InputError("--frame-counts goes with --layout sultani32")
    return write_dataset(dataset_module(dataset).load(src), out, link, src.layout)


def print_report(report: Report, out: Path, file=None, dataset: str = "") -> None:
    file = file or sys.stdout                 # looked up per call: a default bound at import outlives a redirect
    for split in ("train", "test"):
        c = report.counts.get(split, {0: 0, 1: 0})
        print(f"{split}: {c[1] + c[0]} videos ({c[1]} abnormal, {c[0]} normal) -> {out / (split + '.csv')}", file=file)
    if report.labels is not None:
        print(f"videos for `mgfn run` -> {report.labels} (dataset.labels) and {out / 'gt'} (dataset.gt)", file=file)
    if not report.with_features:
        run = "`mgfn run` a config whose dataset is the labels.csv above (it extracts), or " if report.labels else ""
        print(f"note: no --features, so {out / 'train.csv'} and test.csv name no feature files: {run}`mgfn extract` "
              "the videos and run this again with --features FOLDER", file=file)
    for title, names in (("video(s) without a feature file (left out)", report.missing_features),
                         ("test video(s) without a frame count (left out)", report.missing_frame_counts),
                         ("abnormal test video(s) without frame labels (training and `mgfn run` need them: "
                          "--annotation, or move them to train)", report.no_truth)):
        if names:
            print(f"warning: {len(names)} {title}: {', '.join(names[:10])}"
                  + (" …" if len(names) > 10 else ""), file=sys.stderr)
    for split in ("train", "test"):
        c = report.counts.get(split, {0: 0, 1: 0})
        missing = [name for label, name in ((1, "abnormal"), (0, "normal")) if c[label] == 0]
        if missing:
            why = ("training needs both" if split == "train" else
                   "no frame AUC on the test set (training keeps its last epoch; --select test is refused)")
            hint = (" (every annotated video goes to test: annotate fewer, or use train/ and test/ subfolders)"
                    if dataset == "folders" and split == "train" else "")
            print(f"warning: no {' or '.join(missing)} {split} videos: {why}{hint}", file=sys.stderr)
    for line in report.mismatches:
        print(f"warning: ground truth off by more than one clip: {line}", file=sys.stderr)


def main(args) -> int:
    cfg = DatasetConfig.from_yaml(args.config, args.dataset) if args.config else default_config(args.dataset)
    src = sources_from_args(args, cfg)
    module = dataset_module(args.dataset)
    if args.stats:
        if not hasattr(module, "stats"):
            raise InputError(f"{args.dataset}: no per-class statistics for this dataset")
        rows = module.stats(src)
        width = max(len(r[0]) for r in rows) if rows else 5
        print(f"{'class':<{width}}  videos  events")
        for name, videos, events in rows:
            print(f"{name:<{width}}  {videos:6d}  {events:6d}")
        print(f"{'total':<{width}}  {sum(r[1] for r in rows):6d}  {sum(r[2] for r in rows):6d}")
        if not args.out:
            return 0
    if not args.out:
        raise InputError("--out DIR is required (or --stats alone)")
    out = Path(args.out)
    report = build(args.dataset, src, out, args.link)
    print_report(report, out, dataset=args.dataset)
    return 0
