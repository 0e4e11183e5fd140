"""The one way this project writes a file: a temporary name, fsync, rename, fsync of the folder.

A reader (or a run killed at any moment, or a full disk) sees the old file or the new one, never half of one:

    write_bytes(path, data)
    write_text(path, text)                        # UTF-8
    with atomic_open(path, "wb") as f:            # or "w" (text; newline="" for csv writers)
        np.save(f, array)                         # torch.save, fig.savefig(f, format=...), csv.writer(f), ...
    with atomic_path(path) as tmp:                # for libraries that want a file name (PyAV, shutil.copy2)
        av.open(str(tmp), mode="w", format="mp4")

On success the file is fsynced and renamed onto `path`, then the folder is fsynced; on any exception (ENOSPC
included) the temporary file is removed and `path` is left as it was. An OSError raised while writing names `path`
(`exc.filename`) so the command line can say which file it was writing.

Temporary names are `.<name>.<host>-<pid>-<n>.tmp` beside the target: unique per process and per write (threads
too), hidden, ending in `.tmp`. The first write into a folder removes the temporary files that dead processes of
this host left there (`remove_stale_tmp`), so a run killed mid-write leaves nothing behind once it is resumed.

It lives in `mgfn` (which knows nothing of videos) so that `mgfn` and `pipeline` share it; `extractors` must not
import `mgfn`, and it writes one file only: the weights download (extractors/weights.py), which streams into its
own temporary `.part` name, checks the sha256, fsyncs and renames. The feature store's append-only manifest and
its `.part` feature writer (pipeline/store.py) are resumable by design and write in place; tests/test_atomic_writes.py
lists these exceptions and fails on any other write that bypasses this module.
"""
from __future__ import annotations

import errno
import hashlib
import itertools
import os
import re
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from mgfn.errors import InputError

HOST = socket.gethostname()
# errors that are the disk's fault, not the input's: a run stops (nothing is recorded as failed) and resumes later
DISK_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS) if e is not None)

_seq = itertools.count()
_cleaned: set[str] = set()
_cleaned_lock = threading.Lock()
_NAME_MAX = 255


def is_disk_error(exc: BaseException) -> bool:
    """Out of space, over quota, or a read-only file system: stop the run, it is not the input's fault."""
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


def name_error(exc: BaseException, path, tmp=None) -> BaseException:
    """Make an OSError raised while writing `path` name it, not its temporary file (a failed write() names none);
    returns `exc`."""
    if isinstance(exc, OSError) and exc.filename in (None, None if tmp is None else str(tmp)):
        exc.filename = str(path)
    return exc


def tmp_name(path: str | os.PathLike) -> Path:
    """`.<name>.<host>-<pid>-<n>.tmp` beside `path` (the name is shortened, with a hash, when it would not fit)."""
    path = Path(path)
    suffix = f".{HOST}-{os.getpid()}-{next(_seq)}.tmp"
    stem = f".{path.name}"
    if len(os.fsencode(stem + suffix)) > _NAME_MAX:
        digest = hashlib.sha1(os.fsencode(path.name)).hexdigest()[:12]
        stem = f".{path.name[:40]}~{digest}"
    return path.with_name(stem + suffix)


# ours (.<name>.<host>-<pid>-<n>.tmp) and the feature store's older form (<name>.<host>-<pid>.tmp), this host's only
_THIS_HOST = (re.compile(rf"^.*\.{re.escape(HOST)}-(\d+)-\d+\.tmp$", re.DOTALL),
              re.compile(rf"^.*\.{re.escape(HOST)}-(\d+)\.tmp$", re.DOTALL))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return True
    return True


def stale_tmp_pid(name: str) -> int | None:
    """The pid of a dead process of this host that left temporary file `name`, else None (a live process's, another
    host's, or not one of ours)."""
    for pattern in _THIS_HOST:
        m = pattern.match(name)
        if m:
            pid = int(m.group(1))
            return None if pid == os.getpid() or _pid_alive(pid) else pid
    return None


def remove_stale_tmp(folder: str | os.PathLike) -> int:
    """Remove the temporary files dead processes of this host left in `folder`; returns how many."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        if e.name.endswith(".tmp") and stale_tmp_pid(e.name) is not None:
            try:
                os.unlink(e.path)
                removed += 1
            except OSError:
                pass
    return removed


def _cleanup_once(folder: Path) -> None:
    key = os.path.abspath(folder)
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    remove_stale_tmp(folder)


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync a folder, so a rename in it survives a power cut (a no-op where the file system cannot)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, getattr(errno, "ENOTSUP", errno.EINVAL),
                             getattr(errno, "EOPNOTSUPP", errno.EINVAL)):
            raise
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a library that writes a file by name; on success it is fsynced and
    renamed onto `path`, on an exception removed. The name ends in `.tmp`: tell the library the format."""
    path = Path(path)
    _cleanup_once(path.parent)
    tmp = tmp_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, path)
    except BaseException as exc:
        _discard(tmp, path, exc)
        raise


def _discard(tmp: Path, path: Path, exc: BaseException) -> None:
    """A failed write: remove its temporary file and name `path`, not the temp file, in the error."""
    try:
        os.unlink(tmp)
    except OSError:
        pass
    name_error(exc, path, tmp)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                newline: str | None = None) -> Iterator[IO]:
    """Yield a file object (mode "wb" or "w") writing a temporary file; on success it is flushed, fsynced and renamed
    onto `path`, on an exception removed, leaving `path` as it was. Text mode is UTF-8 unless `encoding` says."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    _cleanup_once(path.parent)
    tmp = tmp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise name_error(exc, path, tmp)
    try:
        if mode == "w":
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            f = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _commit(tmp, path)
    except BaseException as exc:
        _discard(tmp, path, exc)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically (no newline translation); returns `path`."""
    return write_bytes(path, text.encode(encoding))


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> None:
    """Refuse, in one line (InputError), a folder this process cannot write (read-only file system or mount,
    permissions): checked with os.access and a real probe file, before any work starts; a folder not made yet is
    checked in its nearest existing parent. A full disk passes (the probe holds no data): the write that runs out
    of space stops the run instead."""
    folder = Path(folder)
    where = folder
    while not where.is_dir() and where.parent != where:   # not made yet: it will be made in the nearest that is
        where = where.parent
    reason = None
    probe = tmp_name(where / ".write-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise name_error(exc, folder)
        reason = exc.strerror or str(exc)
    else:
        os.close(fd)
        os.unlink(probe)
    if reason is None and not os.access(where, os.W_OK | os.X_OK):
        reason = "permission denied"
    if reason is not None:
        raise InputError(f"{what} {folder} is not writable ({reason[:1].lower() + reason[1:]}): "
                         "make it writable or choose another folder")
