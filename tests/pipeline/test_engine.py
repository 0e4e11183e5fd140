"""Many videos at once: the same bytes whatever the decoders, the batch size and the mix; two writers on one
store split the work and survive a SIGKILL of either; truncated files are recorded as such."""
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

from pipeline.cli import main as cli
from pipeline.engine import truncation_tolerance

REPO = Path(__file__).resolve().parents[2]

# `mgfn extract` in a subprocess with the tests' TinyI3D (each forward slowed down, so a kill lands mid-run)
RUNNER = """
import sys, time
sys.path[:0] = [{repo!r}, {repo!r} + "/tests"]
import extractors.extractor as ex
from tests.conftest import TinyI3D
class Slow(TinyI3D):
    def features(self, x):
        time.sleep({delay})
        return super().features(x)
ex.load_model = lambda name, weights=None, device="cpu": Slow(name, weights).to(device).eval()
from pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def extract(inp, out, *extra) -> int:
    return cli(["extract", str(inp), "--out", str(out), "--weights", "random", "--crops", "1",
                "--device", "cpu", "--no-progress", *map(str, extra)])


def files(out: Path) -> dict[str, bytes]:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.npy"))}


def records(out: Path) -> list[dict]:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return [json.loads(line) for line in (d / "manifest.jsonl").read_text().splitlines()]


def test_the_summary_says_where_the_process_s_time_went(tiny, mixed, tmp_path, capsys, monkeypatch):
    """A line under the summary splits the run's seconds by phase (pipeline.engine.PHASES, then "other"): together
    they are the run's time, and the network's forward passes (made slow here) land in "network"."""
    import re

    from extractors.extractor import FeatureExtractor

    launch = FeatureExtractor.launch
    monkeypatch.setattr(FeatureExtractor, "launch", lambda self, x: (time.sleep(0.05), launch(self, x))[1])
    assert extract(mixed, tmp_path / "out", "--decoders", "1") == 0
    out = capsys.readouterr().out
    total = float(re.search(r"video\(s\) in ([\d.]+)s", out).group(1))
    line = re.search(r"  time in this process: (.*)", out).group(1)
    spent = dict(p.rsplit(" ", 1) for p in line.split(", "))
    assert list(spent) == ["waiting for decoders", "staging", "network", "waiting for the network", "writing",
                           "other"]
    seconds = {k: float(v.rstrip("s")) for k, v in spent.items()}
    assert seconds["network"] >= 0.2 and abs(sum(seconds.values()) - total) <= 0.1 * len(seconds)


def test_decoders_batch_size_and_mix_give_the_same_bytes(tiny, mixed, tmp_path):
    assert extract(mixed, tmp_path / "ref", "--decoders", "0", "--batch-size", "1") == 0
    ref = files(tmp_path / "ref")
    assert len(ref) == 5
    for decoders, batch in [(0, 3), (2, 4), (1, 2)]:
        out = tmp_path / f"d{decoders}b{batch}"
        assert extract(mixed, out, "--decoders", decoders, "--batch-size", batch) == 0
        assert files(out) == ref, (decoders, batch)


def test_real_network_gives_the_same_bytes_in_mixed_batches(mixed, tmp_path):
    """The packed oneDNN I3D-R50: a clip's features do not depend on what else rides in its batch."""
    args = ("--extractor", "i3d_r50_rtfm", "--dtype", "bfloat16")
    some = tmp_path / "some"
    some.mkdir()
    for name in ("v0.mp4", "v4.mp4"):
        (some / name).symlink_to(mixed / name)
    assert extract(some, tmp_path / "ref", *args, "--batch-size", "1") == 0
    assert extract(some, tmp_path / "mix", *args, "--batch-size", "3", "--decoders", "1") == 0
    assert files(tmp_path / "mix") == files(tmp_path / "ref")


def _start(args: list[str], delay: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER.format(repo=str(REPO), delay=delay), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_writers_split_the_work_and_survive_a_kill(tiny, mixed, tmp_path):
    assert extract(mixed, tmp_path / "ref", "--batch-size", "2") == 0
    out = tmp_path / "out"
    args = ["extract", str(mixed), "--out", str(out), "--weights", "random", "--crops", "1", "--device", "cpu",
            "--no-progress", "--batch-size", "2", "--flush-every", "2"]
    a, b = _start(args, delay=0.15), _start(args, delay=0.15)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill `a` once it holds a video with flushed clips
        claims = [json.loads(p.read_text()) for p in out.glob("*/*.claim") if p.stat().st_size]
        if any(c.get("pid") == a.pid for c in claims) and list(out.glob("*/*.progress.json")):
            break
        time.sleep(0.05)
    a.send_signal(signal.SIGKILL)
    a.communicate()                                   # reaped, and its pipes closed
    _, err = b.communicate(timeout=120)
    assert b.returncode == 0, err
    assert files(out) == files(tmp_path / "ref")
    done = [r["video_id"] for r in records(out) if r["status"] == "done"]
    assert sorted(done) == sorted(set(done)) and len(done) == 5  # no video recorded done twice
    assert not [p for p in (out).glob("*/*") if p.suffix in (".part", ".tmp", ".claim")]
    # the killed writer's unfinished video was resumed, not started over, when its file had flushed rows
    assert extract(mixed, out) == 0  # a third run has nothing left to do


def test_a_truncated_file_is_recorded_and_strict_fails_it(tiny, make_video, tmp_path, capsys):
    vids = tmp_path / "videos"
    good = make_video("t.mp4", 200, directory=vids)
    data = good.read_bytes()
    # an mp4 cut short whose header (moov at the front, as faststart writes it) still declares every frame
    import av

    with av.open(str(good)) as c:
        declared = c.streams.video[0].frames
    cut = vids / "cut.mp4"
    _faststart(good, cut)
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 3])
    good.unlink()
    assert declared == 200 and len(data) > 0
    assert extract(vids, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "1 truncated" in out and "truncated: cut" in out
    (rec,) = records(tmp_path / "out")
    t = rec["truncated"]
    assert t["frames_declared"] == 200 and t["frames_declared"] - t["frames_decoded"] > truncation_tolerance(200)
    assert extract(vids, tmp_path / "strict", "--strict") == 1
    assert "truncated" in records(tmp_path / "strict")[0]["error"]


def _faststart(src: Path, dst: Path) -> None:
    """Remux with the index at the front (the layout of files cut short by a failed download)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        s_in = i.streams.video[0]
        s_out = o.add_stream_from_template(s_in)
        for packet in i.demux(s_in):
            if packet.dts is None:
                continue
            packet.stream = s_out
            o.mux(packet)
