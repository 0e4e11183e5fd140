"""`mgfn train` on a full disk stops with one line (exit 75), keeps its last finished epoch intact, and `--resume`
once space is back ends with the metrics and weights of an uninterrupted run; a read-only --out is refused up front."""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager

import pytest
import torch

import mgfn.atomic as atomic
import mgfn.checkpoint as checkpoint
from fake_disk import Disk, OnDisk
from helpers import make_split, read_metrics, train_args
from pipeline.cli import EXIT_DISK
from pipeline.cli import main as cli


@pytest.fixture
def disk(monkeypatch) -> Disk:
    d = Disk()
    real = atomic.atomic_open

    @contextmanager
    def atomic_open(path, mode="wb", **kw):
        with real(path, mode, **kw) as f:
            yield OnDisk(f, d)

    monkeypatch.setattr(atomic, "atomic_open", atomic_open)
    monkeypatch.setattr(checkpoint, "atomic_open", atomic_open)
    return d


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_a_full_disk_stops_training_keeps_the_last_epoch_and_resume_ends_the_same(tmp_path, capsys, disk, fraction):
    split = make_split(tmp_path, 2, 64, n=6)
    epochs = 4
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert cli(train_args(split, straight, "--epochs", epochs, "--seed", 3)) == 0
    capsys.readouterr()

    disk.free, disk.used = int(disk.used * fraction), 0
    assert cli(train_args(split, run, "--epochs", epochs, "--seed", 3)) == EXIT_DISK
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"mgfn train: error: no space left on device writing {run}/") and line.endswith(
        "; finished epochs are kept (last.pt); free space and run the same command with --resume to go on"), line
    last = torch.load(run / "last.pt", weights_only=True)          # intact: the last finished epoch
    assert 1 <= last["epoch"] < epochs
    assert len(read_metrics(run)) >= last["epoch"]
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

    disk.free = None
    assert cli(train_args(split, run, "--epochs", epochs, "--seed", 3, "--resume")) == 0
    assert read_metrics(run) == read_metrics(straight)
    a, b = torch.load(run / "last.pt", weights_only=True), torch.load(straight / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == epochs
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])


def test_a_read_only_run_folder_is_refused_before_training(tmp_path, capsys, monkeypatch):
    split = make_split(tmp_path, 1, 32)
    ro = tmp_path / "ro"
    ro.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kw):
        if flags & os.O_CREAT and os.fsdecode(path).startswith(str(ro)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(atomic.os, "open", read_only)
    assert cli(train_args(split, ro / "run", "--epochs", 1)) == 2
    assert capsys.readouterr().err.strip() == (f"mgfn train: error: run folder {ro / 'run'} is not writable "
                                               "(read-only file system): make it writable or choose another folder")
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root; the simulated test above covers this")
def test_a_real_full_tmpfs_stops_training_and_resume_ends_the_same(tmp_path, capsys):
    """A real ENOSPC from the kernel (torch's zip writer turns it into a RuntimeError; the one line still shows)."""
    import subprocess

    split = make_split(tmp_path, 2, 64, n=6)
    epochs = 3
    straight = tmp_path / "straight"
    assert cli(train_args(split, straight, "--epochs", epochs, "--seed", 3)) == 0
    capsys.readouterr()
    best, last = (straight / "best.pt").stat().st_size, (straight / "last.pt").stat().st_size
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the simulated test covers this")
    try:
        st = os.statvfs(mnt)
        free = best + last + best + last // 2 + 64 * st.f_frsize    # epoch 1 fits, epoch 2's last.pt does not
        (mnt / "ballast").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - free))
        run = mnt / "run"
        assert cli(train_args(split, run, "--epochs", epochs, "--seed", 3)) == EXIT_DISK
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
            f"mgfn train: error: no space left on device writing {run}/"), err
        assert torch.load(run / "last.pt", weights_only=True)["epoch"] >= 1
        assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
        (mnt / "ballast").unlink()
        assert cli(train_args(split, run, "--epochs", epochs, "--seed", 3, "--resume")) == 0
        assert read_metrics(run) == read_metrics(straight)
        a, b = torch.load(run / "last.pt", weights_only=True), torch.load(straight / "last.pt", weights_only=True)
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
