"""FeatureStore: ids keep dots, atomic finished files, resume gives the same bytes, manifest survives a torn line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from extractors.errors import InputError
from pipeline.store import FeatureStore, SourceStat, find_duplicate_ids, video_id


def _blocks(n: int, crops: int = 2, dim: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, crops, dim)).astype(np.float32) for _ in range(n)]


@pytest.fixture
def source(tmp_path):
    p = tmp_path / "src" / "video.mp4"
    p.parent.mkdir()
    p.write_bytes(b"x" * 100)
    return SourceStat.of(p)


def test_video_id_keeps_every_dot_but_the_suffix(tmp_path):
    assert video_id("Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0.mp4") == "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0"
    frames = tmp_path / "frames.of.v1"
    frames.mkdir()
    assert video_id(frames) == "frames.of.v1"


def test_duplicate_ids_found_across_folders_and_case():
    dups = find_duplicate_ids(["a/x.mp4", "b/x.avi", "c/Y.mp4", "d/y.mkv", "e/z.mp4"])
    assert set(dups) == {"x", "Y"}
    assert dups["x"] == ["a/x.mp4", "b/x.avi"]


def test_finished_file_equals_np_save_and_no_temp_files_remain(tmp_path, source):
    blocks = _blocks(5)
    with FeatureStore(tmp_path / "out", "ext-1", flush_every=2) as store:
        w = store.writer("v.1", source)
        for b in blocks:
            w.add(b)
        final, T = w.finish()
        store.record("v.1", source, "done", file=final.name, T=T)
        w.close_done()
        assert T == 5 and final.name == "v.1.npy"
        assert store.is_done("v.1", source)
    expected = tmp_path / "expected.npy"
    np.save(expected, np.concatenate(blocks))
    assert final.read_bytes() == expected.read_bytes()
    assert sorted(p.name for p in final.parent.iterdir()) == ["manifest.jsonl", "v.1.npy"]


def test_resume_cuts_unflushed_rows_and_gives_identical_bytes(tmp_path, source):
    blocks = _blocks(7)
    root = tmp_path / "out"
    with FeatureStore(root, "ext-1", flush_every=3) as store:
        w = store.writer("v", source)
        for b in blocks[:5]:  # 3 flushed, 2 buffered
            w.add(b)
        w._file.write(b"garbage-after-last-flush")  # what a crash mid-write can leave
        w._file.close()                               # the process dies: its files are closed, nothing finished
    # "crash": no finish; a new store resumes
    with FeatureStore(root, "ext-1", flush_every=3) as store:
        w = store.writer("v", source)
        assert w.start_clip == 3
        for b in blocks[3:]:
            w.add(b)
        final, T = w.finish()
        w.close_done()
    assert T == 7
    np.testing.assert_array_equal(np.load(final), np.concatenate(blocks))
    expected = tmp_path / "expected.npy"
    np.save(expected, np.concatenate(blocks))
    assert final.read_bytes() == expected.read_bytes()
    assert not list(final.parent.glob("*.part")) and not list(final.parent.glob("*.progress.json"))


def test_changed_source_discards_partial(tmp_path, source):
    root = tmp_path / "out"
    with FeatureStore(root, "ext-1", flush_every=1) as store:
        w = store.writer("v", source)
        w.add(_blocks(1)[0])
        assert (store.dir / "v.npy.part").exists()
        w._file.close()                               # the process dies with the video unfinished
    path = source.path
    with open(path, "ab") as f:
        f.write(b"more")
    with FeatureStore(root, "ext-1", flush_every=1) as store:
        w = store.writer("v", SourceStat.of(path))
        assert w.start_clip == 0
        assert not (store.dir / "v.npy.part").exists()


def test_done_is_not_done_after_source_changes_or_file_removed(tmp_path, source):
    with FeatureStore(tmp_path / "out", "ext-1") as store:
        w = store.writer("v", source)
        w.add(_blocks(1)[0])
        final, T = w.finish()
        store.record("v", source, "done", file=final.name, T=T)
        assert store.is_done("v", source)
        assert not store.is_done("v", SourceStat(source.path, source.size + 1, source.mtime_ns))
        final.unlink()
        assert not store.is_done("v", source)


def test_torn_manifest_line_is_cut_and_later_records_survive(tmp_path, source):
    root = tmp_path / "out"
    with FeatureStore(root, "ext-1") as store:
        store.record("a", source, "failed", error="bad")
    with open(root / "ext-1" / "manifest.jsonl", "ab") as f:
        f.write(b'{"video_id": "b", "sta')  # crash mid-append
    with FeatureStore(root, "ext-1") as store:
        assert set(store.records) == {"a"}
        store.record("c", source, "failed", error="bad")
    with FeatureStore(root, "ext-1") as store:
        assert set(store.records) == {"a", "c"}
        assert [r["video_id"] for r in store.history()] == ["a", "c"]


def test_finished_but_unrecorded_file_is_recovered_without_recompute(tmp_path, source):
    root = tmp_path / "out"
    with FeatureStore(root, "ext-1") as store:
        w = store.writer("v", source)
        w.add(_blocks(2)[0])
        w.finish()  # crash before the manifest record
    with FeatureStore(root, "ext-1") as store:
        w = store.writer("v", source)
        assert w.recovered is not None and w.recovered["clips_done"] == 1


def test_rtfm_names_and_float16(tmp_path, source):
    with FeatureStore(tmp_path / "out", "ext-1", rtfm_names=True, file_dtype="float16") as store:
        w = store.writer("Bad.Boys", source)
        for b in _blocks(3):
            w.add(b)
        final, _ = w.finish()
    assert final.name == "Bad.Boys_i3d.npy"
    arr = np.load(final)
    assert arr.dtype == np.float16 and arr.shape == (3, 2, 3)


def test_two_stores_share_a_folder_through_claims(tmp_path, source):
    with FeatureStore(tmp_path / "out", "ext-1") as a, FeatureStore(tmp_path / "out", "ext-1") as b:
        assert a.claim("v") and not b.claim("v")  # a live holder keeps its video
        assert b.holder("v")["run"] == a.run_id
        w = a.writer("v", source)
        w.add(_blocks(1)[0])
        final, T = w.finish()
        a.record("v", source, "done", file=final.name, T=T)
        a.release("v")
        assert b.claim("v") and b.is_done("v", source)  # claiming re-reads the manifest: b sees a's record
        b.release("v")
        b.record("w", source, "failed", error="x")
        a.refresh()
        assert a.records["w"]["status"] == "failed"


def test_a_dead_holders_claim_is_taken_over(tmp_path):
    import os
    import subprocess
    import sys

    from pipeline import store as store_module

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with FeatureStore(tmp_path / "out", "ext-1", claim_timeout=5) as s:
        s.claim_path("v").write_text(json.dumps({"host": store_module.HOST, "pid": int(dead.stdout)}))
        assert s.holder("v") is None and s.claim("v")  # same host, dead pid: expired at once
        s.release("v")
        other = s.claim_path("w")
        other.write_text(json.dumps({"host": "elsewhere", "pid": 1}))
        assert not s.claim("w")  # another host's fresh claim holds
        os.utime(other, (0, 0))  # no heartbeat for longer than the timeout
        assert s.claim("w")


def test_frame_folder_stat_changes_when_a_frame_changes(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    (d / "0001.jpg").write_bytes(b"a")
    s1 = SourceStat.of(d)
    (d / "0001.jpg").write_bytes(b"ab")
    assert SourceStat.of(d).size != s1.size


def test_a_flush_retried_after_a_cut_short_write_lands_in_place(tmp_path, source):
    blocks = _blocks(3)
    with FeatureStore(tmp_path / "out", "ext-1", flush_every=2) as store:
        w = store.writer("v", source)
        w.add(blocks[0])
        w.add(blocks[1])  # flushed: 2 rows
        w.add(blocks[2])  # buffered
        w._file.write(b"half a row")  # what an interrupted write leaves behind
        w.flush()
        final, T = w.finish()
    expected = tmp_path / "expected.npy"
    np.save(expected, np.concatenate(blocks))
    assert T == 3 and final.read_bytes() == expected.read_bytes()
