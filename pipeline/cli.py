"""`mgfn` command line: one subcommand per job, each implemented in its own module.

Each module named in COMMANDS provides `add_arguments(parser)` and `main(args) -> int`.
Modules are imported only when their command runs, so `mgfn --help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    # name: (module, one-line help)
    "extract": ("pipeline.extract", "extract I3D clip features from a folder of videos into a resumable feature store"),
    "train": ("mgfn.train", "train MGFN on cached features listed in a CSV (video_id,label,path)"),
    "eval": ("mgfn.evaluate", "evaluate a checkpoint on a test list: frame ROC-AUC, PR-AUC, AP, FAR"),
    "import-checkpoint": ("mgfn.checkpoint", "convert the official mgfn_ucf.pkl state dict into our checkpoint format"),
    "synth": ("mgfn.synthetic", "write a synthetic feature dataset with planted anomalies (CSV lists + ground truth)"),
    "synth-context": ("mgfn.synthetic_context",
                      "write a synthetic feature dataset where only the order of clips makes them anomalous"),
    "export": ("mgfn.export", "write a trained I3D-LSTM's encoder outputs as a feature set of their own"),
    "score": ("pipeline.score", "score videos frame by frame with a trained model: CSV, JSON, plots, HTML report"),
    "run": ("pipeline.run", "run every stage for a dataset from one YAML, skipping what is already done"),
    "plot": ("pipeline.plot", "plots: a feature file, a run's training curves, a scored video"),
    "demo": ("pipeline.demo", "run the embedded offline demo end to end"),
    "data": ("pipeline.data_cli", "build train/test lists and ground truth for a dataset"),
}


def _input_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = []
    for module in ("mgfn.errors", "extractors.errors"):
        try:
            types.append(importlib.import_module(module).InputError)
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgfn", description="Video anomaly detection with I3D features and MGFN.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # only the chosen command's module is imported
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    errors = _input_error_types()
    try:
        return int(module.main(args) or 0)
    except errors as exc:
        print(f"mgfn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mgfn {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
