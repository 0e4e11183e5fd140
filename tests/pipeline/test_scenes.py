"""pipeline.scenes: deterministic synthetic surveillance videos whose ground truth marks exactly the event frames."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.scenes import ANOMALIES, make_scene_videos, plan_scene, render_frames

SIZE = (96, 72)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    return out, make_scene_videos(out, n_normal=2, n_abnormal=5, frames=64, size=SIZE, seed=3, split="test")


def test_records_name_label_and_ground_truth_files(videos):
    out, records = videos
    assert [r["anomaly"] for r in records] == ["normal", "normal", *ANOMALIES]
    assert len({r["video_id"] for r in records}) == len(records)
    for r in records:
        assert r["label"] == int(r["anomaly"] != "normal")
        assert r["num_frames"] == 64
        gt = json.loads((out / "gt" / f"{r['video_id']}.json").read_text())
        assert gt == {"num_frames": 64, "events": r["events"]}
        if r["label"]:
            assert r["events"] and all(0 <= s <= e < 64 for s, e in r["events"])
        else:
            assert r["events"] == []
    with (out / "test.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["video_id"] for row in rows] == [r["video_id"] for r in records]
    assert [json.loads(row["events"]) for row in rows] == [r["events"] for r in records]


def test_videos_decode_to_the_recorded_frame_count_and_size(videos):
    _, records = videos
    for r in records:
        with av.open(r["path"]) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == r["num_frames"]
        assert frames[0].shape == (SIZE[1], SIZE[0], 3)


def test_same_seed_gives_identical_files_and_another_seed_does_not(videos, tmp_path):
    out, records = videos
    again = make_scene_videos(tmp_path / "a", n_normal=2, n_abnormal=5, frames=64, size=SIZE, seed=3, split="test")
    for r, s in zip(records, again):
        assert r["events"] == s["events"]
        assert Path(r["path"]).read_bytes() == Path(s["path"]).read_bytes()
    other = make_scene_videos(tmp_path / "b", n_normal=1, n_abnormal=0, frames=64, size=SIZE, seed=4, split="test")
    assert Path(other[0]["path"]).read_bytes() != Path(records[0]["path"]).read_bytes()


@pytest.mark.parametrize("kind", ANOMALIES)
def test_rendering_differs_from_the_normal_rendering_exactly_in_the_event_frames(kind):
    for seed in range(2):
        scene = plan_scene(kind, 150, (160, 120), 25, seed)
        with_event = np.stack(list(render_frames(scene)))                 # [N, H, W, 3]
        without = np.stack(list(render_frames(scene, anomaly=False)))
        differs = (with_event != without).any(axis=(1, 2, 3))
        truth = np.zeros(150, dtype=bool)
        for s, e in scene.events:
            truth[s:e + 1] = True
        assert len(scene.events) == 1
        np.testing.assert_array_equal(differs, truth, err_msg=f"{kind} seed {seed}: {scene.events}")
        s, e = scene.events[0]
        assert s > 0 and e < 149, "an event leaves normal frames before and after it"


def test_explosion_brightens_the_picture():
    scene = plan_scene("explosion", 150, (160, 120), 25, 0)
    (s, e), = scene.events
    frames = np.stack(list(render_frames(scene))).astype(np.float64)
    calm = np.stack(list(render_frames(scene, anomaly=False))).astype(np.float64)
    gain = frames.mean(axis=(1, 2, 3)) - calm.mean(axis=(1, 2, 3))
    assert gain[s:e + 1].min() > 1.0 and gain[s:e + 1].max() > 20.0


def test_normal_videos_vary_in_walkers_lighting_and_background():
    scenes = [plan_scene("normal", 32, (160, 120), 25, seed) for seed in range(8)]
    assert len({len(s.walkers) for s in scenes}) >= 3
    brightness = [s.gain.mean() for s in scenes]
    assert max(brightness) - min(brightness) > 0.15
    assert len({s.background.tobytes() for s in scenes}) == 8
    headings = {int(np.sign(p.x[-1] - p.x[0])) for s in scenes for p in s.walkers}
    assert headings >= {-1, 1}


def test_runner_and_vehicle_move_faster_than_walkers():
    def speeds(scene, people):
        (s, e), = scene.events
        return [abs(p.x[e] - p.x[s]) / (e - s) for p in people]

    walkers = [abs(np.diff(p.x)).max() for seed in range(5) for p in plan_scene("normal", 64, (160, 120), 25, seed).walkers]
    runner = plan_scene("running", 150, (160, 120), 25, 0)
    vehicle = plan_scene("vehicle", 150, (160, 120), 25, 0)
    (s, e), = vehicle.events
    assert min(speeds(runner, runner.anomaly_actors)) > 2 * max(walkers)
    assert abs(vehicle.vehicle.x[e] - vehicle.vehicle.x[s]) / (e - s) > 3 * max(walkers)


def test_odd_size_and_unknown_anomaly_types_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        make_scene_videos(tmp_path, n_normal=1, n_abnormal=0, frames=32, size=(161, 120))
    with pytest.raises(ValueError, match="anomaly types"):
        make_scene_videos(tmp_path, n_normal=0, n_abnormal=1, frames=32, kinds=("juggling",))
    assert not list(tmp_path.glob("*.mp4"))


@pytest.mark.slow
def test_thirty_videos_of_150_frames_take_seconds(tmp_path):
    t0 = time.perf_counter()
    records = make_scene_videos(tmp_path, n_normal=20, n_abnormal=10, frames=150, seed=0)
    elapsed = time.perf_counter() - t0
    assert len(records) == 30
    assert elapsed < 30, f"{elapsed:.1f}s (about 5 s on an idle 2-core CPU)"
