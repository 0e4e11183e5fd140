"""`mgfn extract`: skip/redo/resume rules, bad inputs recorded and skipped over, and a SIGKILL mid-run.

Most tests run the command in-process with a tiny stand-in model (fast); the crash test and one shape test run the
real Caffe2 I3D-R50 (`i3d_r50_rtfm`) with `--weights random` in a subprocess.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import extractors.extractor as extractor_module
from pipeline.cli import main as cli
from video_samples import write_audio_only

REPO = Path(__file__).resolve().parents[2]


def extract(inp, out, *extra) -> int:
    return cli(["extract", str(inp), "--out", str(out), "--weights", "random", "--crops", "1",
                "--device", "cpu", "--no-progress", *map(str, extra)])


def store_dir(out: Path) -> Path:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return d


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (store_dir(out) / "manifest.jsonl").read_text().splitlines()]


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in store_dir(out).iterdir()
                  if p.name.endswith((".part", ".progress.json", ".tmp")))


# -- in-process, tiny model -------------------------------------------------------------------------------------

def test_bad_inputs_are_recorded_as_failed_and_the_rest_extracted(tiny, make_video, tmp_path, capsys):
    vids = tmp_path / "videos"
    make_video("good1.mp4", 20, directory=vids)
    make_video("good2.mp4", 33, directory=vids)
    (vids / "zero.mp4").write_bytes(b"")
    (vids / "text.mp4").write_text("this is not a video\n")
    trunc = make_video("truncated.mp4", 40, directory=vids)
    trunc.write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    write_audio_only(vids / "audio.mp4")
    out = tmp_path / "out"
    assert extract(vids, out) == 1
    recs = {r["video_id"]: r for r in manifest(out)}
    assert {v for v, r in recs.items() if r["status"] == "done"} == {"good1", "good2"}
    failed = {v: r["error"] for v, r in recs.items() if r["status"] == "failed"}
    assert set(failed) == {"zero", "text", "truncated", "audio"}
    assert all(reason and "\n" not in reason for reason in failed.values())
    assert "audio" in failed["audio"] or "video stream" in failed["audio"]
    assert np.load(store_dir(out) / "good2.npy").shape == (3, 1, 8)
    printed = capsys.readouterr()
    assert "2 done, 0 skipped (already done), 4 failed" in printed.out
    assert "failed: zero:" in printed.out and "random weights" in printed.err
    assert leftovers(out) == []


def test_too_short_for_a_clip_with_tail_drop_fails_only_that_video(tiny, make_video, tmp_path):
    vids = tmp_path / "videos"
    make_video("short.mp4", 10, directory=vids)
    make_video("ok.mp4", 16, directory=vids)
    out = tmp_path / "out"
    assert extract(vids, out, "--tail", "drop") == 1
    recs = {r["video_id"]: r for r in manifest(out)}
    assert recs["ok"]["status"] == "done" and recs["short"]["status"] == "failed"
    assert "fewer than one clip" in recs["short"]["error"]


def test_rerun_skips_done_redoes_changed_and_failed(tiny, make_video, tmp_path, capsys):
    vids = tmp_path / "videos"
    a = make_video("a.mp4", 20, directory=vids)
    make_video("b.mp4", 20, directory=vids, seed=1)
    (vids / "c.mp4").write_bytes(b"")
    out = tmp_path / "out"
    assert extract(vids, out) == 1
    assert extract(vids, out) == 1  # a, b skipped; c failed again
    assert "0 done, 2 skipped (already done), 1 failed" in capsys.readouterr().out
    first_a = (store_dir(out) / "a.npy").read_bytes()
    make_video("a.mp4", 40, directory=vids, seed=3)  # new content, new size and mtime
    os.utime(a, ns=(time.time_ns(), time.time_ns() + 10**9))
    make_video("c.mp4", 20, directory=vids, seed=2)  # the failed one is now a good video
    assert extract(vids, out) == 0
    assert "2 done, 1 skipped" in capsys.readouterr().out
    assert (store_dir(out) / "a.npy").read_bytes() != first_a
    assert np.load(store_dir(out) / "a.npy").shape == (3, 1, 8)
    runs = [r["run"] for r in manifest(out) if r["video_id"] == "b"]
    assert len(runs) == 1  # b was extracted exactly once


def test_interrupted_long_video_resumes_to_identical_bytes(tiny, make_video, tmp_path, monkeypatch):
    vids = tmp_path / "videos"
    make_video("long.mp4", 16 * 9 + 3, directory=vids)
    ref = tmp_path / "ref"
    assert extract(vids, ref, "--batch-size", "2") == 0

    forward = extractor_module.FeatureExtractor.launch
    calls = {"n": 0}

    def interrupted(self, x):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return forward(self, x)

    monkeypatch.setattr(extractor_module.FeatureExtractor, "launch", interrupted)
    out = tmp_path / "out"
    assert extract(vids, out, "--batch-size", "2", "--flush-every", "3") == 130
    progress = json.loads((store_dir(out) / "long.npy.progress.json").read_text())
    assert progress["clips_done"] == 6  # three whole batches of two, flushed on the interrupt
    monkeypatch.setattr(extractor_module.FeatureExtractor, "launch", forward)
    assert extract(vids, out, "--batch-size", "2", "--flush-every", "3") == 0
    (rec,) = manifest(out)
    assert rec["resumed_from"] == 6 and rec["T"] == 10
    assert (store_dir(out) / "long.npy").read_bytes() == (store_dir(ref) / "long.npy").read_bytes()
    assert leftovers(out) == []


def test_interrupted_after_the_last_flush_resumes_without_recompute(tiny, make_video, tmp_path, monkeypatch):
    from pipeline.store import FeatureWriter

    vids = tmp_path / "videos"
    make_video("v.mp4", 16 * 3, directory=vids)
    ref = tmp_path / "ref"
    assert extract(vids, ref) == 0
    finish = FeatureWriter.finish

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(FeatureWriter, "finish", interrupted)
    out = tmp_path / "out"
    assert extract(vids, out, "--flush-every", "1") == 130
    monkeypatch.setattr(FeatureWriter, "finish", finish)
    assert extract(vids, out) == 0
    (rec,) = manifest(out)
    assert rec["resumed_from"] == 3 and rec["T"] == 3
    assert (store_dir(out) / "v.npy").read_bytes() == (store_dir(ref) / "v.npy").read_bytes()
    assert leftovers(out) == []


def test_names_with_dots_and_rtfm_names(tiny, make_video, tmp_path):
    vids = tmp_path / "videos"
    name = "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0"
    make_video(f"{name}.mp4", 20, directory=vids)
    out = tmp_path / "out"
    assert extract(vids, out, "--rtfm-names") == 0
    assert (store_dir(out) / f"{name}_i3d.npy").is_file()
    assert manifest(out)[0]["video_id"] == name


def test_frame_folders_are_videos_named_by_the_folder(tiny, make_video, tmp_path):
    from PIL import Image
    from video_samples import synthetic_frames

    folder = tmp_path / "videos" / "cam.01"
    folder.mkdir(parents=True)
    for i, frame in enumerate(synthetic_frames(20)):
        Image.fromarray(frame).save(folder / f"{i + 1}.png")
    make_video("other.mp4", 16, directory=tmp_path / "videos")
    out = tmp_path / "out"
    assert extract(tmp_path / "videos", out) == 0
    recs = {r["video_id"]: r for r in manifest(out)}
    assert set(recs) == {"cam.01", "other"} and recs["cam.01"]["T"] == 2
    assert extract(tmp_path / "videos", out) == 0  # a frame folder's size + mtime say it is unchanged
    assert len(manifest(out)) == 2


def test_text_file_input_resolves_relative_and_refuses_escapes(tiny, make_video, tmp_path, capsys):
    lists = tmp_path / "lists"
    make_video("x.mp4", 20, directory=lists / "sub")
    outside = make_video("outside.mp4", 20, directory=tmp_path / "elsewhere")
    (lists / "ok.txt").write_text("# comment\nsub/x.mp4\n\n")
    out = tmp_path / "out"
    assert extract(lists / "ok.txt", out) == 0
    assert (store_dir(out) / "x.npy").is_file()
    (lists / "bad.txt").write_text("sub/x.mp4\n../elsewhere/outside.mp4\n")
    assert extract(lists / "bad.txt", tmp_path / "out2") == 2
    assert "outside" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
    (lists / "abs.txt").write_text(f"{outside}\n")
    assert extract(lists / "abs.txt", tmp_path / "out3") == 2
    assert extract(lists / "bad.txt", tmp_path / "out4", "--allow-outside") == 0


def test_duplicate_ids_from_different_folders_are_refused(tiny, make_video, tmp_path, capsys):
    vids = tmp_path / "videos"
    make_video("same.mp4", 20, directory=vids / "a")
    make_video("same.mp4", 20, directory=vids / "b")
    assert extract(vids, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "same" in err and len(err.strip().splitlines()) == 1


def test_manifest_records_source_and_random_weights(tiny, make_video, tmp_path):
    v = make_video("v.mp4", 30)
    out = tmp_path / "out"
    assert extract(v, out) == 0
    (rec,) = manifest(out)
    assert rec["status"] == "done" and rec["source"] == str(v.resolve())
    assert rec["size"] == v.stat().st_size and rec["mtime_ns"] == v.stat().st_mtime_ns
    assert rec["num_frames"] == 30 and rec["fps"] == pytest.approx(25) and rec["T"] == 2
    assert rec["random_weights"] is True and rec["extractor_id"] == store_dir(out).name
    assert "random" in store_dir(out).name
    info = json.loads((store_dir(out) / "extractor.json").read_text())
    assert info["random_weights"] is True


# -- subprocess, real Caffe2 I3D-R50 with random weights -------------------------------------------------------

def run_cli(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.Popen([sys.executable, "-m", "pipeline", "extract", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_identical_outputs(make_video, tmp_path):
    vids = tmp_path / "videos"
    make_video("a_short.mp4", 16, directory=vids, seed=1)
    make_video("b_long.mp4", 16 * 4, directory=vids, seed=2)
    make_video("c_short.mp4", 12, directory=vids, seed=3)
    common = ["--weights", "random", "--crops", "1", "--device", "cpu", "--dtype", "bfloat16", "--flush-every", "1",
              "--no-progress"]

    out = tmp_path / "out"
    proc = run_cli(vids, "--out", out, *common)
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        progress = list(out.glob("*/b_long.npy.progress.json"))
        if progress:
            try:
                done = json.loads(progress[0].read_text())["clips_done"]
            except (ValueError, OSError):
                done = 0
            if 1 <= done < 4:
                proc.send_signal(signal.SIGKILL)
                killed_at = done
                break
        time.sleep(0.005)
    proc.communicate()                                      # reaped, and its pipes closed
    assert killed_at is not None, "the first run ended before it could be killed mid-video"
    assert [r["video_id"] for r in manifest(out)] == ["a_short"]

    rerun = run_cli(vids, "--out", out, *common)
    stdout, stderr = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, stderr
    assert "2 done, 1 skipped" in stdout and "random weights" in stderr

    ref = tmp_path / "ref"  # the uninterrupted run, in-process (same code, same seeded random weights)
    assert cli(["extract", str(vids), "--out", str(ref), *common]) == 0

    recs = manifest(out)
    assert sorted(r["video_id"] for r in recs) == ["a_short", "b_long", "c_short"]  # none done twice
    second_run = {r["run"] for r in recs[1:]}
    assert len(second_run) == 1 and recs[0]["run"] not in second_run
    b = next(r for r in recs if r["video_id"] == "b_long")
    assert b["resumed_from"] >= killed_at and b["shape"] == [4, 1, 2048]
    for name in ("a_short.npy", "b_long.npy", "c_short.npy"):
        assert (store_dir(out) / name).read_bytes() == (store_dir(ref) / name).read_bytes(), name
    assert leftovers(out) == []


@pytest.mark.slow
def test_real_i3d_r50_ten_crops_gives_t_10_2048(make_video, tmp_path):
    v = make_video("v.mp4", 16)
    out = tmp_path / "out"
    assert cli(["extract", str(v), "--out", str(out), "--weights", "random", "--device", "cpu",
                "--dtype", "bfloat16", "--no-progress"]) == 0
    arr = np.load(store_dir(out) / "v.npy")
    assert arr.shape == (1, 10, 2048) and arr.dtype == np.float32 and np.isfinite(arr).all()
    assert not np.allclose(arr[:, 0], arr[:, 5])  # a crop and its flip differ
    (rec,) = manifest(out)
    assert rec["random_weights"] is True and rec["weights"]["random"] is True
