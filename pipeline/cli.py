"""`mgfn` command line: one subcommand per job, each implemented in its own module.

Each module named in COMMANDS provides `add_arguments(parser)` and `main(args) -> int`.
Modules are imported only when their command runs, so `mgfn --help` is instant.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys

COMMANDS = {
    # name: (module, one-line help), in the order of the work (mgfn --help lists them so)
    "extract": ("pipeline.extract", "extract I3D clip features from a folder of videos into a resumable feature store"),
    "train": ("mgfn.train", "train MGFN on cached features listed in a CSV (video_id,label,path)"),
    "eval": ("mgfn.evaluate", "evaluate a checkpoint on a test list: frame ROC-AUC, PR-AUC, AP, FAR"),
    "score": ("pipeline.score", "score videos frame by frame with a trained model: CSV, JSON, plots, HTML report"),
    "run": ("pipeline.run", "run every stage for a dataset from one YAML, skipping what is already done"),
    "demo": ("pipeline.demo", "run the embedded offline demo end to end"),
    "data": ("pipeline.data_cli", "build train/test lists and ground truth for a dataset"),
    "plot": ("pipeline.plot", "plots: a feature file, a run's training curves, a scored video"),
    "synth": ("mgfn.synthetic", "write a synthetic feature dataset with planted anomalies (CSV lists + ground truth)"),
    "synth-context": ("mgfn.synthetic_context",
                      "write a synthetic feature dataset where only the order of clips makes them anomalous"),
    "export": ("mgfn.export", "write a trained I3D-LSTM's encoder outputs as a feature set of their own"),
    "import-checkpoint": ("mgfn.checkpoint", "convert the official mgfn_ucf.pkl state dict into our checkpoint format"),
}


EXAMPLE = """\
start with `mgfn demo` (offline, 2-3 minutes on a CPU), then, for videos of your own:
  mgfn extract VIDEOS/ --out features/            # I3D features, resumable
  mgfn run my.yaml                                # every stage from one config (copy configs/run/example.yaml)
  mgfn score new.mp4 --model run/best.pt --out scores/
`mgfn COMMAND --help` for each command's options; README.md for the rest."""


# ------------------------------------------------------------------ options shared by the commands, worded once

DEVICE_HELP = "auto (CUDA if available, else CPU), cpu, cuda or cuda:N"
DTYPES = ("float32", "bfloat16")
AMP_DTYPES = {"none": "float32", "bf16": "bfloat16"}        # the old `--amp` values and the `--dtype` each means


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, except where there is nothing to show (unset, an off switch, an
    empty list) or the help already says what the default is."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        default = action.default
        off = default is False and not isinstance(action, argparse.BooleanOptionalAction)   # a switch left off
        if default is None or off or default == [] or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def add_device_argument(parser: argparse.ArgumentParser, default: str | None = "auto", extra: str = "") -> None:
    """`--device`, with the one help text every command shares."""
    parser.add_argument("--device", default=default, help=DEVICE_HELP + extra)


def add_quiet_argument(parser: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    """`--quiet` (dest `quiet`), and `--no-progress`, its old name, kept as a hidden alias."""
    parser.add_argument("--quiet", action="store_true", help=help)
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


class _AmpAlias(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, AMP_DTYPES[values])


def add_dtype_argument(parser: argparse.ArgumentParser, default: str | None = "float32",
                       help: str = "model arithmetic; bfloat16 is autocast (fast on recent CPUs and GPUs)",
                       amp_alias: bool = False) -> None:
    """`--dtype float32|bfloat16`; with `amp_alias`, also `--amp none|bf16`, its old form, as a hidden alias that
    sets the same `dtype` (none: float32, bf16: bfloat16)."""
    parser.add_argument("--dtype", choices=DTYPES, default=default, help=help)
    if amp_alias:
        parser.add_argument("--amp", dest="dtype", choices=tuple(AMP_DTYPES), action=_AmpAlias, help=argparse.SUPPRESS)


class _TopHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """`mgfn --help`: the example under the commands as written, line by line."""


def _use_formatter(parser: argparse.ArgumentParser) -> None:
    """HelpFormatter for a parser and every subparser under it (subparsers do not inherit it)."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _use_formatter(sub)


EXIT_DISK = 75  # sysexits' EX_TEMPFAIL: out of disk space (or quota), or the file system went read-only; re-run later

# what each command keeps when the disk fills up, and how to go on
_RESUME_HINT = {
    "extract": "finished videos are kept; free space and run the same command to resume",
    "score": "finished videos are kept; free space and run the same command to resume",
    "run": "finished stages and videos are kept; free space and run the same command to resume",
    "train": "finished epochs are kept (last.pt); free space and run the same command with --resume to go on",
    "demo": "finished stages are kept; free space and run the same command to resume",
}


def disk_error_line(command: str, exc: OSError) -> str:
    """The one line for a write the disk refused: what happened, which file, what is kept, how to resume."""
    import errno

    what = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system"}.get(
        exc.errno, "disk quota exceeded" if exc.errno == getattr(errno, "EDQUOT", None) else exc.strerror)
    where = f" writing {exc.filename}" if exc.filename else ""
    hint = ("make the folder writable or choose another one, then run the same command to resume"
            if exc.errno == errno.EROFS else _RESUME_HINT.get(command, "finished files are kept; free space and run "
                                                                       "the same command again"))
    return f"mgfn {command}: error: {what}{where}; {hint}"


def _input_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = []
    for module in ("mgfn.errors", "extractors.errors"):
        try:
            types.append(importlib.import_module(module).InputError)
        except (ImportError, AttributeError):
            pass
    return tuple(types)


class Parser(argparse.ArgumentParser):
    """A bad argument is one line, as every other bad input is (argparse would print the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(prog="mgfn", description="Video anomaly detection with I3D features and MGFN.", epilog=EXAMPLE)
    parser.add_argument("--version", action="store_true", help="print the version (and git commit) and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = {}
    for name, (module, help_text) in COMMANDS.items():
        p = parser.commands[name] = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # only the chosen command's module is imported
            importlib.import_module(module).add_arguments(p)
    _use_formatter(parser)
    parser.formatter_class = _TopHelpFormatter      # its example keeps its lines
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        near = difflib.get_close_matches(command, COMMANDS, n=1)
        if near:
            build_parser().error(f"unknown command {command!r}; did you mean {near[0]}?")
    if command not in COMMANDS:
        command = None
    parser = build_parser(command)
    args, unknown = parser.parse_known_args(argv)
    if unknown:       # said by the command's own parser, so the line names `mgfn COMMAND` and its --help
        parser.commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.version:
        from pipeline.version import code_version

        print(f"mgfn {code_version()}")
        return 0
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
    except OSError as exc:
        from mgfn.atomic import is_disk_error

        if not is_disk_error(exc):
            raise
        print(disk_error_line(args.command, exc), file=sys.stderr)
        return EXIT_DISK
    except KeyboardInterrupt:
        print(f"mgfn {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
