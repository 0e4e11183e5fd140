"""`mgfn extract --backend ray` on a local Ray (2 CPUs): the local backend's bytes, and an actor killed
mid-video is restarted and its video finishes with the same bytes. Skipped when Ray is not installed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--weights", "random", "--crops", "1", "--device", "cpu", "--no-progress", "--batch-size", "1",
        "--flush-every", "1"]


def mgfn(*args) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipeline", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def files(out: Path) -> dict[str, bytes]:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.npy"))}


@pytest.mark.slow
def test_ray_gives_the_local_bytes_and_survives_a_killed_actor(make_video, tmp_path):
    vids = tmp_path / "videos"
    make_video("long.mp4", 16 * 8, directory=vids, seed=1)
    make_video("short.mp4", 20, directory=vids, seed=2)
    local = mgfn("extract", vids, "--out", tmp_path / "local", *ARGS)
    _, err = local.communicate(timeout=300)                 # reads the pipes (and closes them) as it waits
    assert local.returncode == 0, err

    out = tmp_path / "ray"
    run = mgfn("extract", vids, "--out", out, *ARGS, "--backend", "ray")
    killed, deadline = None, time.monotonic() + 300     # Ray starts slowly on a busy 2-core machine
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        for claim in out.glob("*/long.npy.claim"):  # the actor holding the long video, once it has flushed rows
            try:
                pid = json.loads(claim.read_text())["pid"]
            except (ValueError, KeyError, OSError):
                continue
            if list(out.glob("*/long.npy.progress.json")):
                os.kill(pid, signal.SIGKILL)
                killed = pid
        time.sleep(0.05)
    stdout, stderr = run.communicate(timeout=300)
    assert killed is not None, f"no actor was killed (exit {run.returncode}): {stderr[-2000:]}"
    assert run.returncode == 0, stderr
    assert "2 done, 0 skipped (already done)" in stdout and "0 failed" in stdout
    assert files(out) == files(tmp_path / "local")
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    recs = [json.loads(line) for line in (d / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["video_id"] for r in recs if r["status"] == "done") == ["long", "short"]
    (long_rec,) = [r for r in recs if r["video_id"] == "long"]
    assert long_rec["resumed_from"] > 0  # the restarted actor resumed the killed one's flushed clips
