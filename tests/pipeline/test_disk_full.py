"""Out of disk and read-only: `mgfn extract` on a full disk stops with one line (exit 75), records no video as failed,
keeps every finished file intact and, once space is back, the same command finishes with the bytes of an
uninterrupted run; a read-only store or output folder is refused up front in one line (exit 2).

A full disk is simulated in-process (every write of the feature store and of mgfn.atomic draws on a byte budget;
the write that does not fit writes what fits, then fails with ENOSPC), and, where this machine lets the tests mount
one (root), also made real with a small tmpfs and a read-only bind mount; those tests skip cleanly otherwise."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

import mgfn.atomic as atomic
from fake_disk import Disk, OnDisk
import pipeline.store as store_module
from pipeline.cli import EXIT_DISK, disk_error_line
from pipeline.cli import main as cli

ENOSPC_LINE = re.compile(r"mgfn extract: error: no space left on device writing (?P<path>.+); finished videos are "
                         r"kept; free space and run the same command to resume")
TEMPS = (".tmp", ".part", ".progress.json", ".claim")


def extract(inp, out, *extra) -> int:
    return cli(["extract", str(inp), "--out", str(out), "--weights", "random", "--crops", "1", "--device", "cpu",
                "--no-progress", "--decoders", "0", "--batch-size", "1", "--flush-every", "1", *map(str, extra)])


def store_dir(out: Path) -> Path:
    (d,) = [p for p in out.iterdir() if p.is_dir()]
    return d


def files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store_dir(out).glob("*.npy"))}


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (store_dir(out) / "manifest.jsonl").read_text().splitlines()]


def temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob("*") if p.name.endswith(TEMPS))


@pytest.fixture
def disk(monkeypatch) -> Disk:
    """Every write of the feature store (manifest, .part, claims, progress, extractor.json) and of mgfn.atomic."""
    d = Disk()
    real_open, real_atomic_open = open, atomic.atomic_open

    def store_open(path, mode="r", *args, **kw):
        f = real_open(path, mode, *args, **kw)
        return OnDisk(f, d) if set(mode) & set("wax+") and str(path).endswith(d.only or "") else f

    @contextmanager
    def atomic_open(path, mode="wb", **kw):
        with real_atomic_open(path, mode, **kw) as f:
            yield OnDisk(f, d)

    monkeypatch.setattr(store_module, "open", store_open, raising=False)
    monkeypatch.setattr(atomic, "atomic_open", atomic_open)
    d.real_atomic_open = real_atomic_open
    return d


@pytest.mark.parametrize("fraction", [0.02, 0.25, 0.5, 0.8, 0.97])
def test_a_full_disk_stops_extraction_keeps_finished_videos_and_resumes(tiny, mixed, tmp_path, disk, capsys,
                                                                         fraction):
    assert extract(mixed, tmp_path / "ref") == 0
    ref, needed = files(tmp_path / "ref"), disk.used
    assert len(ref) == 5
    capsys.readouterr()

    out = tmp_path / "out"
    disk.free = int(needed * fraction)
    assert extract(mixed, out) == EXIT_DISK
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("mgfn extract: error")]
    assert len(errors) == 1 and "Traceback" not in err, err
    m = ENOSPC_LINE.fullmatch(errors[0])
    assert m, errors[0]
    assert Path(m["path"]).parent.is_relative_to(out)             # names the file it was writing
    kept = files(out)
    assert all(data == ref[name] for name, data in kept.items())  # every finished file intact
    recs = records(out)
    assert not [r for r in recs if r["status"] != "done"]         # the disk's fault: no video recorded as failed
    assert {r["file"] for r in recs} <= set(kept)                 # nothing recorded done that is not there

    disk.free = None                                              # space is back: the same command finishes
    assert extract(mixed, out) == 0
    assert files(out) == ref
    assert temps(out) == []
    done = [r["video_id"] for r in records(out) if r["status"] == "done"]
    assert sorted(done) == sorted(set(done)) and len(done) == 5   # no video recorded done twice


def test_a_full_disk_while_streaming_a_part_file(tiny, mixed, tmp_path, disk, monkeypatch, capsys):
    """The disk fills up while a video's rows stream into its .part: the partial file is kept and resumed."""
    monkeypatch.setattr(atomic, "atomic_open", disk.real_atomic_open)
    disk.only = ".part"
    assert extract(mixed, tmp_path / "ref") == 0
    ref, needed = files(tmp_path / "ref"), disk.used
    capsys.readouterr()
    out = tmp_path / "out"
    disk.free = needed // 2
    assert extract(mixed, out) == EXIT_DISK
    m = ENOSPC_LINE.fullmatch(capsys.readouterr().err.strip().splitlines()[-1])
    assert m and m["path"].endswith(".npy.part"), m
    assert Path(m["path"]).is_file()                               # kept for the next run to resume
    disk.free = None
    assert extract(mixed, out) == 0
    assert files(out) == ref and temps(out) == []


def test_a_full_disk_right_after_a_video_is_renamed_loses_nothing(tiny, mixed, tmp_path, monkeypatch, capsys):
    """The manifest append of a finished video fails: its file is complete, and the next run records it without
    recomputing it (from its progress record)."""
    assert extract(mixed, tmp_path / "ref") == 0
    ref = files(tmp_path / "ref")
    real_record = store_module.FeatureStore.record

    def full(self, vid, source, status, **fields):
        if status == "done":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.manifest_path))
        return real_record(self, vid, source, status, **fields)

    monkeypatch.setattr(store_module.FeatureStore, "record", full)
    out = tmp_path / "out"
    assert extract(mixed, out) == EXIT_DISK
    (first,) = files(out)
    assert files(out)[first] == ref[first]
    assert (store_dir(out) / "manifest.jsonl").read_bytes() == b""
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"mgfn extract: error: no space left on device writing {store_dir(out) / 'manifest.jsonl'}; "
                    "finished videos are kept; free space and run the same command to resume")

    monkeypatch.setattr(store_module.FeatureStore, "record", real_record)
    assert extract(mixed, out) == 0
    assert files(out) == ref and temps(out) == []
    recovered = {r["video_id"]: r for r in records(out)}[first.removesuffix(".npy")]
    assert recovered["resumed_from"] == recovered["T"] and recovered["seconds"] == 0.0   # not recomputed


def test_a_decoder_out_of_space_stops_the_run_instead_of_failing_the_video(tiny, mixed, tmp_path, monkeypatch,
                                                                            capsys):
    from extractors import decoders

    real_run = decoders._Decoder.run

    def full(self, job, path, *args):
        if Path(path).name == "v2.mp4":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_run(self, job, path, *args)

    monkeypatch.setattr(decoders._Decoder, "run", full)
    out = tmp_path / "out"
    assert extract(mixed, out) == EXIT_DISK
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "mgfn extract: error: no space left on device; finished videos are kept; free space and run the same "
        "command to resume")
    assert "v2" not in {r["video_id"] for r in records(out)}        # not recorded as failed
    monkeypatch.setattr(decoders._Decoder, "run", real_run)
    assert extract(mixed, out) == 0
    assert {r["video_id"] for r in records(out) if r["status"] == "done"} == {f"v{i}" for i in range(5)}


def test_disk_error_lines():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/runs/x/last.pt")
    assert disk_error_line("train", full) == (
        "mgfn train: error: no space left on device writing /data/runs/x/last.pt; finished epochs are kept "
        "(last.pt); free space and run the same command with --resume to go on")
    quota = OSError(errno.EDQUOT, "Disk quota exceeded", "/f/a.npy.part")
    assert disk_error_line("extract", quota).startswith("mgfn extract: error: disk quota exceeded writing /f/a.npy.part; ")
    ro = OSError(errno.EROFS, "Read-only file system", "/f/report.html")
    assert disk_error_line("score", ro) == (
        "mgfn score: error: read-only file system writing /f/report.html; make the folder writable or choose another "
        "one, then run the same command to resume")


# ------------------------------------------------------------------------------------------------ read-only

def test_a_read_only_store_is_refused_up_front(tiny, mixed, tmp_path, monkeypatch, capsys):
    """Simulated (EROFS on every file made under it), so it runs everywhere; the bind-mount test makes it real."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kw):
        if flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR) and Path(os.fsdecode(path)).is_relative_to(ro):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(atomic.os, "open", read_only)
    assert extract(mixed, ro) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(rf"mgfn extract: error: feature store {re.escape(str(ro))}/\S+ is not writable "
                        r"\(read-only file system\): make it writable or choose another folder", line), line
    assert list(ro.iterdir()) == []


def _can_mount() -> str | None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting needs root and mount(8)"
    return None


@contextmanager
def _mounted(args: list[str], target: Path):
    r = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount here ({r.stderr.strip() or r.returncode}); the simulated tests cover this")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.mark.skipif(_can_mount() is not None, reason=str(_can_mount()))
def test_a_read_only_bind_mount_is_refused_up_front(tiny, mixed, tmp_path, capsys):
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    with _mounted(["--bind", "-o", "ro", str(src)], ro):
        try:
            (ro / "probe").write_bytes(b"")
            pytest.skip("the bind mount is not read-only here")
        except OSError:
            pass
        assert extract(mixed, ro) == 2
        assert re.fullmatch(rf"mgfn extract: error: feature store {re.escape(str(ro))}/\S+ is not writable "
                            r"\(read-only file system\): make it writable or choose another folder",
                            capsys.readouterr().err.strip().splitlines()[-1])
        assert list(src.iterdir()) == []


@pytest.mark.skipif(_can_mount() is not None, reason=str(_can_mount()))
def test_a_real_full_tmpfs_stops_extraction_and_resumes_when_space_is_back(tiny, mixed, tmp_path, capsys):
    assert extract(mixed, tmp_path / "ref") == 0
    ref = files(tmp_path / "ref")
    capsys.readouterr()
    mnt = tmp_path / "disk"
    mnt.mkdir()
    with _mounted(["-t", "tmpfs", "-o", "size=1m", "tmpfs"], mnt):
        st = os.statvfs(mnt)
        ballast = mnt / "ballast"
        ballast.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 6 * st.f_frsize))   # 6 pages left
        out = mnt / "out"
        assert extract(mixed, out) == EXIT_DISK
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("mgfn extract: error")]
        assert len(errors) == 1 and ENOSPC_LINE.fullmatch(errors[0]) and "Traceback" not in err, err
        kept = files(out)
        assert kept and all(data == ref[name] for name, data in kept.items())
        assert not [r for r in records(out) if r["status"] != "done"]
        ballast.unlink()                                  # space is back
        assert extract(mixed, out) == 0
        assert files(out) == ref and temps(out) == []
