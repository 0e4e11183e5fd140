"""The bad-input matrix (issue 15, item 2; the table is docs/bad-inputs.md): every kind of bad input gives one line.

Bad arguments, lists, configs, features and checkpoints stop the command before any work with one error line and
exit 2. A bad video among good ones is recorded as failed in the manifest and listed in the summary (exit 1) while
the others are extracted, their files complete. Unusual but valid videos (4K, 10-bit, odd sizes, gray, VFR, a
single frame, odd names) are extracted.

One extraction over a folder holding every kind of video runs once for the module (the stand-in model of
tests/conftest.py), then each kind is checked on its own.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.cli import main as cli
from video_samples import synthetic_frames, write_audio_only, write_video

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "mgfn"))
from helpers import make_split, write_csv  # noqa: E402  (tests/mgfn/helpers.py)

EXTRACT = ["--weights", "random", "--crops", "1", "--device", "cpu", "--no-progress"]
GOOD = ("good_a", "good_b")


def run(*argv) -> tuple[int, str, str]:
    """`mgfn ARGV` in this process: (exit status, stdout, stderr); an exception escaping main is a failure."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def one_error(text: str, prefix: str) -> str:
    """The single line of `text` starting with `prefix`, and no traceback anywhere."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, text
    return lines[0]


def store_dir(out: Path) -> Path:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return d


def manifest(out: Path) -> dict[str, dict]:
    return {r["video_id"]: r for r in map(json.loads, (store_dir(out) / "manifest.jsonl").read_text().splitlines())}


def assert_good_extracted(out: Path, ids=GOOD) -> None:
    recs = manifest(out)
    for vid in ids:
        assert recs[vid]["status"] == "done", recs[vid]
        arr = np.load(store_dir(out) / f"{vid}.npy")
        assert arr.shape == tuple(recs[vid]["shape"]) and np.isfinite(arr).all()
    assert not [p.name for p in store_dir(out).iterdir() if p.name.endswith((".part", ".progress.json", ".tmp"))]


@pytest.fixture(scope="module")
def tiny_model(request):
    """tests/conftest.py's `tiny`, for the whole module (its TinyI3D taken from the loaded conftest: another
    folder's conftest may own the name `conftest`)."""
    import extractors.extractor as extractor_module

    (root_conftest,) = [p for p in request.config.pluginmanager.get_plugins()
                        if Path(getattr(p, "__file__", None) or "-").resolve() == TESTS / "conftest.py"]
    TinyI3D = root_conftest.TinyI3D
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(extractor_module, "load_model",
                   lambda name, weights=None, device="cpu": TinyI3D(name, weights).to(device).eval())
        yield


# -- video files and frame folders -------------------------------------------------------------------------------

def write_faststart(path: Path, n: int) -> Path:
    """An mp4 with its index (moov) before the data, as `-movflags faststart` writes it."""
    import av

    src = write_video(path.with_name("src_" + path.name), synthetic_frames(n))
    with av.open(str(src)) as i, av.open(str(path), "w", options={"movflags": "faststart"}) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)
    src.unlink()
    return path


def write_rotated(path: Path, n: int) -> Path:
    """An H.264 mp4 whose display matrix rotates it 90 degrees (a phone video held upright)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 80, 64, "yuv420p"
        s.set_display_rotation(90)
        for img in synthetic_frames(n):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def cut_in_half(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def frame_folder(folder: Path, n: int = 20, step: int = 1) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, img in enumerate(synthetic_frames(n)):
        Image.fromarray(img).save(folder / f"{step * i + 1}.jpg")
    return folder


def make_videos(v: Path) -> dict[str, str]:
    """Every kind of video in one folder; returns {kind: why it could not be made} for those this PyAV cannot."""
    from PIL import Image

    cannot = {}
    write_video(v / "good_a.mp4", synthetic_frames(20))
    write_video(v / "good_b.mp4", synthetic_frames(33, seed=1))
    (v / "zero.mp4").write_bytes(b"")
    (v / "text.mp4").write_text("this is not a video\n")
    cut_in_half(write_video(v / "trunc_end.mp4", synthetic_frames(40)))   # libx264 mp4: index at the end
    cut_in_half(write_faststart(v / "trunc_front.mp4", 40))               # index at the front, data cut
    write_audio_only(v / "audio.mp4")
    write_video(v / "short.mp4", synthetic_frames(10))
    write_video(v / "one.mp4", synthetic_frames(1))
    pts = [0, 1, 3, 4, 8, 9, 10, 15, 16, 17, 20, 21, 22, 30, 31, 32, 33, 40, 41, 42]  # 1/50 s ticks, uneven gaps
    write_video(v / "vfr.mp4", synthetic_frames(len(pts)), pts=pts, time_base=Fraction(1, 50))
    uhd = synthetic_frames(17, 54, 96).repeat(40, axis=1).repeat(40, axis=2)   # 3840x2160, made fast
    write_video(v / "uhd.mp4", uhd)
    try:
        write_video(v / "tenbit.mp4", synthetic_frames(17), pix_fmt="yuv420p10le")
    except Exception as exc:  # noqa: BLE001 - an encoder without 10-bit support
        cannot["tenbit"] = f"libx264 here cannot write yuv420p10le ({exc})"
        (v / "tenbit.mp4").unlink(missing_ok=True)
    try:
        write_rotated(v / "rotated.mp4", 17)
    except Exception as exc:  # noqa: BLE001 - a PyAV without set_display_rotation
        cannot["rotated"] = f"this PyAV cannot write a display matrix ({exc})"
        (v / "rotated.mp4").unlink(missing_ok=True)
    write_video(v / "odd.mp4", synthetic_frames(17, 47, 63), pix_fmt="yuv444p")  # 4:2:0 needs even sizes
    write_video(v / "gray.mkv", synthetic_frames(17, gray=True), codec="ffv1", pix_fmt="gray")
    (frame_folder(v / "frames_corrupt") / "7.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (frame_folder(v / "frames_missing") / "7.jpg").unlink()
    Image.fromarray(synthetic_frames(1, 32, 40)[0]).save(frame_folder(v / "frames_mixed") / "9.jpg")
    frame_folder(v / "frames_every5", step=5)          # every 5th frame kept: 1.jpg, 6.jpg, ... is no gap
    (v / "loops").mkdir()
    os.symlink("..", v / "loops" / "up")                # a folder loop: symlinked folders are not followed
    os.symlink("self_loop.mp4", v / "self_loop.mp4")    # a file loop
    for name in ("with space", "ünïcödé", "-dash", "new\nline"):
        write_video(v / f"{name}.mp4", synthetic_frames(17))
    return cannot


@pytest.fixture(scope="module")
def batch(tiny_model, tmp_path_factory):
    """One `mgfn extract` over a folder of every kind of video: (exit status, stdout, stderr, out, cannot, log)."""
    root = tmp_path_factory.mktemp("batch")
    cannot = make_videos(root / "videos")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("extractors.decode")
    logger.addHandler(handler)
    try:
        rc, out, err = run("extract", root / "videos", "--out", root / "out", *EXTRACT)
    finally:
        logger.removeHandler(handler)
    return rc, out, err, root / "out", cannot, [r.getMessage() for r in records]


# kind: (video id, what the summary line says)
FAILED = {
    "zero-byte file": ("zero", "zero.mp4: empty file (0 bytes)"),
    "text file named .mp4": ("text", "text.mp4: not a readable video (truncated or not a video; ffmpeg: Invalid data"),
    "truncated, index at the end": ("trunc_end", "trunc_end.mp4: not a readable video (truncated or not a video"),
    "audio only": ("audio", "audio.mp4: no video stream (audio streams only)"),
    "corrupt jpg in a frame folder": ("frames_corrupt", "7.jpg: unreadable image (cannot identify image file"),
    "missing jpg in a frame folder": ("frames_missing",
                                      "frames_missing: frame 7 is missing (19 images numbered 1 to 20, 1 missing)"),
    "mixed sizes in a frame folder": ("frames_mixed", "9.jpg: frame is 40x32, the folder's first frame is 80x64"),
    "symlink loop (file)": ("self_loop", "self_loop.mp4: symlink loop"),
}


@pytest.mark.parametrize("kind", FAILED)
def test_bad_video_is_recorded_failed_and_the_batch_goes_on(batch, kind):
    rc, out, err, store, _, _ = batch
    vid, message = FAILED[kind]
    assert rc == 1
    line = one_error(out, f"  failed: {vid}:")
    assert message in line, line
    rec = manifest(store)[vid]
    assert rec["status"] == "failed" and message in rec["error"] and "\n" not in rec["error"]
    assert "Traceback" not in err
    assert_good_extracted(store)


# kind: (video id, clips T, width x height or None)
EXTRACTED = {
    "fewer than 16 frames": ("short", 1, None),
    "one frame": ("one", 1, None),
    "variable frame rate": ("vfr", 2, None),
    "4K": ("uhd", 2, (3840, 2160)),
    "10-bit": ("tenbit", 2, None),
    "rotated (display matrix)": ("rotated", 2, (80, 64)),
    "odd sizes": ("odd", 2, (63, 47)),
    "grayscale": ("gray", 2, None),
    "name with spaces": ("with space", 2, None),
    "unicode name": ("ünïcödé", 2, None),
    "leading dash": ("-dash", 2, None),
    "newline in the name": ("new\nline", 2, None),
    "truncated, index at the front": ("trunc_front", 2, None),
    "frame folder numbered every 5th frame": ("frames_every5", 2, None),
}


@pytest.mark.parametrize("kind", EXTRACTED)
def test_unusual_but_valid_video_is_extracted(batch, kind):
    rc, out, err, store, cannot, _ = batch
    vid, t, size = EXTRACTED[kind]
    if vid in cannot:
        pytest.skip(cannot[vid])
    rec = manifest(store)[vid]
    assert rec["status"] == "done" and rec["T"] == t, rec
    assert np.load(store_dir(store) / rec["file"]).shape == (t, 1, 8)
    if size:
        assert (rec["width"], rec["height"]) == size
    assert f"failed: {vid}:" not in out and "Traceback" not in out + err
    assert_good_extracted(store)


def test_truncated_faststart_file_is_kept_and_listed(batch):
    _, out, _, store, _, _ = batch
    line = one_error(out, "  truncated: trunc_front:")
    assert "of 40 declared frames decoded (kept; --strict fails it)" in line
    assert manifest(store)["trunc_front"]["truncated"]["frames_declared"] == 40


def test_rotated_video_says_its_rotation_is_ignored(batch):
    *_, cannot, logged = batch
    if "rotated" in cannot:
        pytest.skip(cannot["rotated"])
    (line,) = [m for m in logged if "rotated.mp4" in m]
    assert "display matrix rotates it 90 degrees; frames are read as stored" in line


def test_symlinked_folder_loop_is_not_followed(batch):
    rc, out, _, store, _, _ = batch
    assert "loops" not in out and not any(vid in ("loops", "up") for vid in manifest(store))
    one_error(out, "mgfn extract:")  # the walk ended, and the summary came


def test_summary_counts_every_video(batch):
    rc, out, _, _, cannot, _ = batch
    summary = one_error(out, "mgfn extract:")
    total = 2 + len(FAILED) + len(EXTRACTED) - len(cannot)
    assert f"{total} video(s)" in summary and f"{len(FAILED)} failed" in summary
    assert f"{total - len(FAILED)} done" in summary


def test_truncated_faststart_file_fails_with_strict(tiny_model, tmp_path):
    v = tmp_path / "videos"
    cut_in_half(write_faststart(v / "trunc_front.mp4", 40))
    write_video(v / "good_a.mp4", synthetic_frames(20))
    rc, out, err = run("extract", v, "--out", tmp_path / "out", "--strict", *EXTRACT)
    assert rc == 1
    assert "of the 40 frames its header declares decode (--strict)" in one_error(out, "  failed: trunc_front:")
    assert_good_extracted(tmp_path / "out", ["good_a"])


def test_duplicate_ids_across_folders_are_refused(tiny_model, tmp_path):
    v = tmp_path / "videos"
    write_video(v / "a" / "x.mp4", synthetic_frames(17))
    write_video(v / "b" / "x.avi", synthetic_frames(17), codec="mpeg4")
    rc, out, err = run("extract", v, "--out", tmp_path / "out", *EXTRACT)
    assert rc == 2 and not (tmp_path / "out").exists()
    line = one_error(err, "mgfn extract: error:")
    assert "1 video id(s) used by more than one input (x:" in line and "a/x.mp4" in line and "b/x.avi" in line


def test_a_leading_dash_name_given_after_double_dash(tiny_model, tmp_path, monkeypatch):
    write_video(tmp_path / "-dash.mp4", synthetic_frames(17))
    monkeypatch.chdir(tmp_path)
    rc, out, err = run("extract", "--out", "out", *EXTRACT, "--", "-dash.mp4")
    assert rc == 0 and manifest(tmp_path / "out")["-dash"]["status"] == "done"


@pytest.mark.parametrize("argv, message", [
    (["extract", "-dash.mp4", "--out", "out"],   # a name that looks like an option, given without `--`
     "mgfn extract: error: the following arguments are required: input (see mgfn extract --help)"),
    (["extract", "videos", "--out", "out", "--crops", "3"],
     "mgfn extract: error: argument --crops: invalid choice: 3 (choose from 10, 5, 1) (see mgfn extract --help)"),
])
def test_bad_arguments_are_one_line(argv, message):
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as stop:
        cli(argv)
    assert stop.value.code == 2 and err.getvalue() == message + "\n"


def test_a_list_naming_videos_outside_its_folder_is_refused(tiny_model, tmp_path):
    write_video(tmp_path / "lists" / "in.mp4", synthetic_frames(17))
    write_video(tmp_path / "elsewhere" / "out.mp4", synthetic_frames(17))
    (tmp_path / "lists" / "videos.txt").write_text("in.mp4\n../elsewhere/out.mp4\n")
    rc, out, err = run("extract", tmp_path / "lists" / "videos.txt", "--out", tmp_path / "out", *EXTRACT)
    assert rc == 2 and not (tmp_path / "out").exists()
    line = one_error(err, "mgfn extract: error:")
    assert "videos.txt:2: ../elsewhere/out.mp4 is outside" in line and "--allow-outside" in line


# -- unreadable permissions: root reads everything, so as root the case runs with those powers dropped -------------

PERMISSIONS_DRIVER = textwrap.dedent("""
    import sys
    sys.path[:0] = [{tests!r}]
    import extractors.extractor as extractor_module
    from conftest import TinyI3D
    extractor_module.load_model = lambda name, weights=None, device="cpu": TinyI3D(name, weights).eval()
    from pipeline.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_unreadable_files_and_folders_are_recorded_failed(tmp_path):
    v = tmp_path / "videos"
    write_video(v / "good_a.mp4", synthetic_frames(20))
    write_video(v / "locked.mp4", synthetic_frames(20)).chmod(0)
    frame_folder(v / "locked_frames").chmod(0)                          # a frame folder that cannot be listed
    write_video(v / "locked_dir" / "inside.mp4", synthetic_frames(17))
    (v / "locked_dir").chmod(0)                                         # a folder of videos that cannot be listed
    command = [sys.executable, "-c", PERMISSIONS_DRIVER.format(tests=str(TESTS)), "extract", str(v),
               "--out", str(tmp_path / "out"), *EXTRACT]
    try:
        (v / "locked.mp4").open("rb").close()
        enforced = False
    except PermissionError:
        enforced = True
    if not enforced:  # root: drop the capabilities that let it read anything
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, where permissions are not enforced, and setpriv is absent")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(command, cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=120)
    finally:
        for p in (v / "locked.mp4", v / "locked_frames", v / "locked_dir"):
            p.chmod(0o755)
    if "Operation not permitted" in proc.stderr and "setpriv" in proc.stderr:
        pytest.skip(f"cannot drop capabilities here: {proc.stderr.strip()}")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "locked.mp4: cannot read it (Permission denied)" in one_error(proc.stdout, "  failed: locked:")
    for folder in ("locked_frames", "locked_dir"):
        assert f"{folder}: Permission denied" in one_error(proc.stdout, f"  failed: {folder}:")
    assert_good_extracted(tmp_path / "out", ["good_a"])


# -- mgfn train / eval / score --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """A tiny feature set (its folder labelled by an extractor.json) and a model trained on it for one epoch."""
    from extractors.extractor import FeatureExtractor

    root = tmp_path_factory.mktemp("trained")
    split = make_split(root, 1, 8)
    info = FeatureExtractor("i3d_r50_rtfm", weights="random", crops=1, device="cpu").config()
    (split["root"] / "extractor.json").write_text(json.dumps(info))
    rc, out, err = run("train", "--train", split["train"], "--test", split["test"], "--gt", split["gt"],
                       "--out", root / "run", "--config", split["config"], "--epochs", 1, "--quiet")
    assert rc == 0, err
    rows = list(csv.reader(split["train"].read_text().splitlines()))[1:]
    return {**split, "rows": rows, "model": root / "run" / "best.pt", "info": info}


def train_with(split: dict, out: Path, *extra, **replace) -> tuple[int, str, str]:
    files = {**split, **replace}
    return run("train", "--train", files["train"], "--test", files["test"], "--gt", files["gt"], "--out", out,
               "--config", files["config"], "--epochs", 1, "--quiet", *extra)


BAD_FEATURES = {
    "wrong shape": (np.zeros((2, 3, 4, 5), np.float32),
                    "expected features [T, crops, D] or [T, D], got shape (2, 3, 4, 5)"),
    "wrong dtype": (np.zeros((12, 1, 8), np.int32), "features must be float16/32/64, got int32"),
    "NaN": ("nan", "features hold NaN or inf values (first in row 3 of 12)"),
    "inf": ("inf", "features hold NaN or inf values (first in row 3 of 12)"),
    "empty file (0 bytes)": (b"", "not a readable .npy feature file (EOFError)"),
    "empty array (no clips)": (np.zeros((0, 1, 8), np.float32),
                               "expected features [T, crops, D] or [T, D], got shape (0, 1, 8)"),
}


@pytest.mark.parametrize("kind", BAD_FEATURES)
def test_bad_feature_file_is_refused_before_training(trained, tmp_path, kind):
    content, message = BAD_FEATURES[kind]
    feats = tmp_path / "feats"
    shutil.copytree(trained["root"], feats)
    bad = feats / "bad.npy"
    if isinstance(content, bytes):
        bad.write_bytes(content)
    elif isinstance(content, str):
        arr = np.random.default_rng(0).random((12, 1, 8), dtype=np.float32)
        arr[3, 0, 5] = np.nan if content == "nan" else np.inf
        np.save(bad, arr)
    else:
        np.save(bad, content)
    train_csv = write_csv(feats / "train.csv", trained["rows"] + [["bad", 1, "bad.npy"]])
    rc, out, err = train_with(trained, tmp_path / "run", train=train_csv)
    assert rc == 2 and not (tmp_path / "run").exists()
    assert f"bad.npy: {message}" in one_error(err, "mgfn train: error:")
    assert "Traceback" not in out


def test_nan_in_a_test_feature_file_is_refused_too(trained, tmp_path):
    feats = tmp_path / "feats"
    shutil.copytree(trained["root"], feats)
    (vid, label, rel), *rest = list(csv.reader((feats / "test.csv").read_text().splitlines()))[1:]
    arr = np.load(feats / rel)
    arr[0, 0, 0] = np.nan
    np.save(feats / rel, arr)
    rc, out, err = run("eval", "--model", trained["model"], "--test", feats / "test.csv", "--gt", trained["gt"])
    assert rc == 2
    assert f"{rel}: features hold NaN or inf values (first in row 0" in one_error(err, "mgfn eval: error:")


@pytest.mark.parametrize("label", ["2", "yes", "-1"])
def test_labels_other_than_0_1_are_refused(trained, tmp_path, label):
    rows = trained["rows"]
    train_csv = write_csv(trained["root"] / f"labels_{label}.csv", rows[:-1] + [[rows[-1][0], label, rows[-1][2]]])
    rc, out, err = train_with(trained, tmp_path / "run", train=train_csv)
    assert rc == 2 and not (tmp_path / "run").exists()
    assert f"label must be 0 or 1, got '{label}'" in one_error(err, "mgfn train: error:")


def test_a_feature_list_naming_files_outside_its_folder_is_refused(trained, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    np.save(outside / "o.npy", np.random.default_rng(0).random((12, 1, 8), dtype=np.float32))
    train_csv = write_csv(trained["root"] / "outside.csv", trained["rows"] + [["o", 1, "../../elsewhere/o.npy"]])
    rc, out, err = train_with(trained, tmp_path / "run", train=train_csv)
    assert rc == 2 and not (tmp_path / "run").exists()
    line = one_error(err, "mgfn train: error:")
    assert "outside.csv: path '../../elsewhere/o.npy' escapes the list's folder" in line


@pytest.mark.parametrize("text, got", [("- a\n- b\n", "got a list (['a', 'b'])"), ("just text\n", "got text"),
                                       ("42\n", "got a number (42)")])
def test_a_yaml_that_is_not_a_mapping_is_refused(trained, tmp_path, text, got):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    rc, out, err = train_with(trained, tmp_path / "run", config=config)
    assert rc == 2 and not (tmp_path / "run").exists()
    assert f"config.yaml: expected a mapping (name: value lines), {got}" in one_error(err, "mgfn train: error:")


def test_ground_truth_of_the_wrong_length_is_one_warning_per_video(trained, tmp_path):
    gt = tmp_path / "gt"
    shutil.copytree(trained["gt"], gt)
    first = sorted(gt.glob("*.npy"))[0]
    np.save(first, np.zeros(5000, np.uint8))
    rc, out, err = run("eval", "--model", trained["model"], "--test", trained["test"], "--gt", gt)
    assert rc == 0
    line = one_error(err, "warning:")
    assert f"warning: {first.stem}: ground truth has 5000 frames, features cover" in line
    assert "Traceback" not in out + err


class Payload:
    """Unpickling this runs `touch MARKER` (os.system): what a hostile checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("command", ["eval", "score"])
def test_a_checkpoint_with_pickled_code_is_refused_and_the_code_not_run(trained, tmp_path, command):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "mgfn-vad/1", "model": Payload(marker)}, evil)
    if command == "eval":
        argv = ["eval", "--model", evil, "--test", trained["test"], "--gt", trained["gt"]]
    else:
        video = write_video(tmp_path / "v.mp4", synthetic_frames(17))
        argv = ["score", video, "--model", evil, "--out", tmp_path / "scores", "--store", tmp_path / "store",
                "--device", "cpu", "--quiet"]
    rc, out, err = run(*argv)
    assert rc == 2 and not marker.exists()
    line = one_error(err, f"mgfn {command}: error:")
    assert f"evil.pt: refused: it holds pickled code or objects ({os.system.__module__}.system), not only" in line
    assert not (tmp_path / "scores").exists() and not (tmp_path / "store").exists()


def test_a_checkpoint_of_another_feature_size_is_refused(trained, tmp_path):
    other = make_split(tmp_path, 1, 12)
    rc, out, err = run("eval", "--model", trained["model"], "--test", other["test"], "--gt", other["gt"])
    assert rc == 2
    assert "features are 12-d but the model expects 8-d" in one_error(err, "mgfn eval: error:")


def test_a_store_folder_made_by_another_extractor_is_refused(trained, tmp_path):
    from extractors.extractor import FeatureExtractor
    from pipeline.store import FeatureStore

    ex = FeatureExtractor("i3d_r50_rtfm", weights="random", crops=1, resize="short72", device="cpu")
    assert ex.extractor_id != trained["info"]["extractor_id"]
    with FeatureStore(tmp_path / "other", ex.extractor_id) as store:
        store.write_extractor_info(ex.config())
    video = write_video(tmp_path / "v.mp4", synthetic_frames(17))
    rc, out, err = run("score", video, "--model", trained["model"], "--out", tmp_path / "scores",
                       "--features", tmp_path / "other" / ex.extractor_id, "--device", "cpu", "--quiet")
    assert rc == 2 and not (tmp_path / "scores").exists()
    line = one_error(err, "mgfn score: error:")
    assert f"the model was trained on features {trained['info']['extractor_id']}, but --features" in line
    assert "(differs in: resize)" in line


# -- the slips of a first hour (a newcomer's walk through the README) ------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("command", ["train", "eval", "score"])
def test_cuda_asked_for_without_cuda_is_one_line(trained, tmp_path, command):
    if command == "train":
        rc, out, err = train_with(trained, tmp_path / "run", "--device", "cuda")
    elif command == "eval":
        rc, out, err = run("eval", "--model", trained["model"], "--test", trained["test"], "--gt", trained["gt"],
                           "--device", "cuda")
    else:
        video = write_video(tmp_path / "v.mp4", synthetic_frames(17))
        rc, out, err = run("score", video, "--model", trained["model"], "--out", tmp_path / "scores", "--quiet",
                           "--device", "cuda")
    assert rc == 2
    assert one_error(err, f"mgfn {command}: error:").endswith("device 'cuda' asked for, but CUDA is not available here")
    assert not (tmp_path / "run").exists() and not (tmp_path / "scores").exists()


@pytest.mark.parametrize("content", [b"not a model\n", bytes(range(256))])
def test_a_file_that_is_not_a_checkpoint_says_so_without_torchs_advice(trained, tmp_path, content):
    fake = tmp_path / "model.pt"
    fake.write_bytes(content)
    rc, out, err = run("eval", "--model", fake, "--test", trained["test"], "--gt", trained["gt"])
    assert rc == 2
    line = one_error(err, "mgfn eval: error:")
    assert f"{fake}: not a PyTorch checkpoint (torch.load cannot read it: Unsupported operand" in line
    assert "weights_only" not in line                  # torch's advice to load it unsafely is not passed on


def test_a_run_folder_given_as_the_model_names_its_checkpoint(trained, tmp_path):
    run_dir = trained["model"].parent
    rc, out, err = run("eval", "--model", run_dir, "--test", trained["test"], "--gt", trained["gt"])
    assert rc == 2
    assert one_error(err, "mgfn eval: error:").endswith(f"{run_dir}: is a folder; a checkpoint is a .pt file: "
                                                        f"did you mean {run_dir / 'best.pt'}?")


def test_a_feature_folder_given_as_the_list_is_one_line(trained, tmp_path):
    rc, out, err = train_with(trained, tmp_path / "run", train=trained["root"])
    assert rc == 2 and not (tmp_path / "run").exists()
    assert f"{trained['root']}: is a folder; a list is a file (CSV video_id,label[,path]" in one_error(
        err, "mgfn train: error:")


def test_score_refuses_a_model_of_another_feature_size_before_extracting(trained, tmp_path):
    """A model trained on 12-d features that records the (stand-in, 8-d) extractor: refused before any video is
    decoded, not after the extraction."""
    other = make_split(tmp_path, 1, 12)
    (other["root"] / "extractor.json").write_text(json.dumps(trained["info"]))
    rc, out, err = train_with(other, tmp_path / "run")
    assert rc == 0, err
    video = write_video(tmp_path / "v.mp4", synthetic_frames(17))
    rc, out, err = run("score", video, "--model", tmp_path / "run" / "best.pt", "--out", tmp_path / "scores",
                       "--store", tmp_path / "store", "--weights", "random", "--device", "cpu", "--quiet")
    assert rc == 2
    dim = trained["info"]["feature_dim"]
    assert f"best.pt expects 12-d features, the extractor gives {dim}-d" in one_error(err, "mgfn score: error:")
    assert not (tmp_path / "store").exists() and not (tmp_path / "scores").exists()


def test_a_list_pointed_at_an_empty_feature_folder_says_it_is_empty(trained, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = run("train", "--train", trained["train"], "--test", trained["test"], "--gt", trained["gt"],
                       "--features", empty, "--out", tmp_path / "run", "--config", trained["config"], "--quiet")
    assert rc == 2 and not (tmp_path / "run").exists()
    assert f"({empty} holds no .npy files)" in one_error(err, "mgfn train: error:")
