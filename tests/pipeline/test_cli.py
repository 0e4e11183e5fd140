"""The `mgfn` command line itself: `--version`, and help texts that say what each command does."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from extractors.decode import VIDEO_EXTENSIONS
from mgfn.train import config_from_args
from pipeline import version
from pipeline.cli import COMMANDS, DEVICE_HELP, build_parser, main as cli

REPO = Path(__file__).resolve().parents[2]


def test_version_prints_the_package_version_and_the_git_commit(capsys):
    assert cli(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"mgfn {metadata.version('mgfn-vad')}")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        commit = re.search(r"\(git ([0-9a-f]{12})(\+modified)?\)$", out)
        assert commit and head.stdout.startswith(commit.group(1)), out


def test_version_without_git_or_metadata(monkeypatch, tmp_path, capsys):
    """Outside a git checkout (or with no git at all) the version alone; without installed metadata, pyproject's."""
    monkeypatch.setattr(version, "REPO", tmp_path)               # not a git checkout, no pyproject.toml
    monkeypatch.setattr(version, "DISTRIBUTION", "no-such-distribution-mgfn")
    version.git_commit.cache_clear()
    version.package_version.cache_clear()
    try:
        assert version.code_version() == "unknown"
        (tmp_path / "pyproject.toml").write_text('[project]\nname = "mgfn-vad"\nversion = "9.8.7"\n')
        version.package_version.cache_clear()
        assert cli(["--version"]) == 0
        assert capsys.readouterr().out.strip() == "mgfn 9.8.7"
        monkeypatch.setenv("PATH", "")                           # git itself missing
        version.git_commit.cache_clear()
        assert version.git_commit() is None
    finally:
        version.git_commit.cache_clear()
        version.package_version.cache_clear()


def test_version_from_the_installed_entry_point():
    done = subprocess.run([sys.executable, "-m", "pipeline", "--version"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.startswith("mgfn ") and not done.stderr


def _subparsers(parser):
    (action,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return action.choices


@pytest.mark.parametrize("what", ["features", "curves", "scores"])
def test_plot_subcommands_have_descriptions(what):
    plot = _subparsers(build_parser("plot"))["plot"]
    sub = _subparsers(plot)[what]
    assert sub.description and len(sub.description) > 60
    assert " ".join(sub.description.split()[:8]) in " ".join(sub.format_help().split())      # shown by --help


def test_export_metavars_name_what_they_are():
    export = _subparsers(build_parser("export"))["export"]
    text = export.format_help()
    assert "DIR2" not in text and "--out OUT_DIR" in text and "--features I3D_DIR" in text


# ------------------------------------------------------------------ one CLI: the same options worded the same

def _options(parser, path=()):
    """(command path, parser, action) for every option and argument of `parser` and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield path, parser, action


def _every_option():
    for command in COMMANDS:
        yield from _options(build_parser(command))


def _shown_help(parser, action) -> str:
    return parser._get_formatter()._expand_help(action)


def test_every_option_of_every_command_has_help_and_says_its_default_once():
    missing, twice, unshown = [], [], []
    for path, parser, action in _every_option():
        name = " ".join(path) + " " + ("/".join(action.option_strings) or action.dest)
        if action.help is argparse.SUPPRESS:                     # the hidden aliases (--no-progress, --amp)
            continue
        if not (action.help or "").strip():
            missing.append(name)
            continue
        text = _shown_help(parser, action)
        if text.count("(default") > 1 or text.count("default:") > 1:
            twice.append(f"{name}: {text}")
        shown = action.default is not None and action.default is not False and action.default != []
        if shown and action.option_strings and "default" not in text:
            unshown.append(f"{name}: {text}")
    assert not missing, f"options without help: {missing}"
    assert not twice, "defaults said twice:\n" + "\n".join(twice)
    assert not unshown, "defaults not shown:\n" + "\n".join(unshown)


def test_defaults_are_shown_in_help():
    text = _subparsers(build_parser("score"))["score"].format_help()
    assert "(default: 0.5)" in " ".join(text.split()) and "(default: auto)" in text


def test_one_device_help_everywhere():
    helps = {" ".join(path): action.help for path, _, action in _every_option() if "--device" in action.option_strings}
    assert set(helps) >= {"extract", "score", "eval", "export", "train"}
    assert all(h.startswith(DEVICE_HELP) for h in helps.values()), helps


QUIET_COMMANDS = ("extract", "score", "export", "train", "eval", "run", "demo")
REQUIRED = {
    "extract": ["videos", "--out", "o"], "score": ["v.mp4", "--model", "m.pt", "--out", "o"],
    "export": ["--model", "m.pt", "--features", "f", "--out", "o"],
    "train": ["--train", "t.csv", "--test", "s.csv", "--gt", "gt", "--out", "o"],
    "eval": ["--model", "m.pt", "--test", "s.csv", "--gt", "gt"], "run": ["run.yaml"], "demo": [],
}


@pytest.mark.parametrize("command", QUIET_COMMANDS)
def test_quiet_and_its_old_name_no_progress(command):
    parser = build_parser(command)
    assert parser.parse_args([command, *REQUIRED[command]]).quiet is False
    assert parser.parse_args([command, *REQUIRED[command], "--quiet"]).quiet is True
    assert parser.parse_args([command, *REQUIRED[command], "--no-progress"]).quiet is True     # hidden alias
    text = _subparsers(parser)[command].format_help()
    assert "--quiet" in text and "--no-progress" not in text


def test_train_dtype_and_its_old_name_amp():
    parser = build_parser("train")
    parse = lambda *extra: parser.parse_args(["train", *REQUIRED["train"], *extra])  # noqa: E731
    assert parse("--amp", "bf16").dtype == parse("--dtype", "bfloat16").dtype == "bfloat16"
    assert parse("--amp", "none").dtype == parse("--dtype", "float32").dtype == "float32"
    assert parse().dtype is None                                   # unset: the --config's amp, else float32
    assert config_from_args(parse("--dtype", "bfloat16")).amp == config_from_args(parse("--amp", "bf16")).amp == "bf16"
    assert config_from_args(parse()).amp == "none"
    text = _subparsers(parser)["train"].format_help()
    assert "--dtype {float32,bfloat16}" in text and "--amp" not in text
    with pytest.raises(SystemExit):
        parse("--amp", "fp16")


@pytest.mark.parametrize("command", ["extract", "train"])
def test_dtype_choices_are_the_same(command):
    (action,) = [a for _, _, a in _options(build_parser(command)) if "--dtype" in a.option_strings]
    assert tuple(action.choices) == ("float32", "bfloat16")


def test_extract_help_lists_every_accepted_video_extension():
    text = " ".join(_subparsers(build_parser("extract"))["extract"].format_help().split())
    missing = [ext for ext in VIDEO_EXTENSIONS if f"{ext} " not in text and f"{ext}," not in text]
    assert not missing, missing
    score = " ".join(_subparsers(build_parser("score"))["score"].format_help().split())
    assert all(ext in score for ext in VIDEO_EXTENSIONS)


def test_crop_size_reaches_the_feature_extractor(monkeypatch, tmp_path):
    """`mgfn extract --crop-size N`: parsed (default 224), handed to FeatureExtractor, and to every Ray actor."""
    import extractors.extractor as extractor_module
    from pipeline.ray_backend import _extractor_kwargs

    parser = build_parser("extract")
    assert parser.parse_args(["extract", "v", "--out", "o"]).crop_size == 224
    args = parser.parse_args(["extract", "v", "--out", "o", "--crop-size", "112"])
    assert args.crop_size == 112 and _extractor_kwargs(args)["crop_size"] == 112

    seen = {}

    class Stop(Exception):
        pass

    def fake(name, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(extractor_module, "FeatureExtractor", fake)
    (tmp_path / "v.mp4").write_bytes(b"")
    with pytest.raises(Stop):
        cli(["extract", str(tmp_path / "v.mp4"), "--out", str(tmp_path / "o"), "--device", "cpu",
             "--crop-size", "112", "--quiet"])
    assert seen["crop_size"] == 112


def test_run_quiet_keeps_warnings_and_notes_only():
    from pipeline.run import quiet_log

    kept = []
    log = quiet_log(kept.append)
    for line in ("[extract] 3 videos with i3d_r50_rtfm", "[extract] WARNING: random I3D weights (asked for)",
                 "[train] epoch 1/8  loss 1.0", "[train] note: 3 abnormal training videos, fewer than the batch size",
                 "[score] 2 videos scored into x"):
        log(line)
    assert kept == ["[extract] WARNING: random I3D weights (asked for)",
                    "[train] note: 3 abnormal training videos, fewer than the batch size"]


@pytest.mark.parametrize("argv, message", [
    (["extrct", "videos"], "mgfn: error: unknown command 'extrct'; did you mean extract? (see mgfn --help)"),
    (["extract", "videos", "--out", "o", "--cpus-per-worker", "2"],       # named by the command, not by `mgfn`
     "mgfn extract: error: unrecognized arguments: --cpus-per-worker 2 (see mgfn extract --help)"),
    (["train", "--train", "a.csv", "--test", "b.csv", "--gt", "g", "--out", "o", "--epoch", "3", "extra"],
     "mgfn train: error: unrecognized arguments: extra (see mgfn train --help)"),
])
def test_a_mistyped_command_or_option_is_one_line_naming_the_command(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        cli(argv)
    assert stop.value.code == 2 and capsys.readouterr().err == message + "\n"


def test_top_help_lists_the_commands_in_the_order_of_the_work_and_keeps_its_example():
    text = build_parser().format_help()
    listed = [line.split()[0] for line in text.splitlines() if line.startswith("    ") and not line.startswith("     ")]
    assert listed[:6] == ["extract", "train", "eval", "score", "run", "demo"]
    assert "\n  mgfn extract VIDEOS/ --out features/ " in text                 # one example command a line
    assert "\n  mgfn score new.mp4 --model run/best.pt --out scores/\n" in text
