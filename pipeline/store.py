"""Feature store: one `[T, crops, D]` .npy per video under ROOT/<extractor-id>/, a JSON-lines manifest, resumable writes.

Layout of ROOT/<extractor-id>/:
    <video-id>.npy              finished features (or <video-id>_i3d.npy with rtfm_names)
    manifest.jsonl              one JSON record per finished or failed video; the last record per id wins
    extractor.json              the extractor's config and provenance (weights digest, random weights, ...)
    <file>.part                 features of a long video being extracted (a .npy whose header says 0 rows)
    <file>.progress.json        how many clips of the .part are flushed, and the source they came from

    <file>.claim                who is extracting a video now (host, pid, run); refreshed while it works

Every finished file is written under a temporary name, fsynced and renamed into place, so a file with the
final name is always complete. Partial files end in `.part`, not `.npy`, so nothing that globs `*.npy`
mistakes them for features.

Several processes (two `mgfn extract` runs, Ray actors, on one machine or several over a shared folder) may
write one store: each claims a video before extracting it (`claim`), manifest records are appended under a
lock, and a claim expires when its holder dies (at once on the same host, after `claim_timeout` seconds
without a heartbeat elsewhere), so its video is taken over and resumed from its last flushed clip.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import io
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from extractors.errors import InputError
from mgfn import atomic
from mgfn.atomic import fsync_dir as _fsync_dir

MANIFEST = "manifest.jsonl"
EXTRACTOR_INFO = "extractor.json"
FILE_DTYPES = ("float32", "float16")
CLAIM_TIMEOUT = 120.0  # seconds without a heartbeat after which another host's claim is taken over
HOST = socket.gethostname()


def video_id(path: str | os.PathLike) -> str:
    """The whole file stem (only the last suffix goes: `Bad.Boys.1995__#00-26-51...B2-0-0.mp4` keeps its dots); a frame folder's name."""
    p = Path(path)
    return p.name if p.is_dir() else p.stem


@dataclass(frozen=True)
class SourceStat:
    """What says a source changed: total size in bytes and latest mtime (a frame folder sums its files)."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> "SourceStat":
        p = Path(path).resolve()
        st = p.stat()
        if not p.is_dir():
            return cls(str(p), st.st_size, st.st_mtime_ns)
        size, mtime = 0, st.st_mtime_ns
        with os.scandir(p) as entries:
            for e in entries:
                if e.is_file():
                    est = e.stat()
                    size += est.st_size
                    mtime = max(mtime, est.st_mtime_ns)
        return cls(str(p), size, mtime)

    def same_as(self, record: dict) -> bool:
        return record.get("size") == self.size and record.get("mtime_ns") == self.mtime_ns


def find_duplicate_ids(paths: Iterable[str | os.PathLike]) -> dict[str, list[str]]:
    """Video ids claimed by more than one input (compared case-insensitively, as macOS and Windows would)."""
    seen: dict[str, list[str]] = {}
    for p in paths:
        seen.setdefault(video_id(p).casefold(), []).append(str(p))
    return {video_id(ids[0]): ids for ids in seen.values() if len(ids) > 1}


def _pid_alive(pid: int) -> bool:
    return atomic._pid_alive(pid)


def _stale_tmp(path: Path) -> bool:
    """A temp file left by a dead process on this host (another host's are its own business)."""
    stem = path.name.removesuffix(".tmp")
    if not stem.rpartition(".")[2].rpartition("-")[2].isdigit():
        return True  # an older layout's <name>.tmp: nobody writes those any more
    return atomic.stale_tmp_pid(path.name) is not None


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The exact header np.save writes; its length does not change with the first dimension (numpy pads for growth)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class FeatureStore:
    """ROOT/<extractor-id>/<video-id>.npy files `[T, crops, D]` plus a manifest; skips, resumes and records failures."""

    def __init__(self, root: str | os.PathLike, extractor_id: str, rtfm_names: bool = False,
                 file_dtype: str = "float32", flush_every: int = 32, run_id: str | None = None,
                 claim_timeout: float = CLAIM_TIMEOUT):
        if file_dtype not in FILE_DTYPES:
            raise InputError(f"file dtype must be one of {', '.join(FILE_DTYPES)}, not {file_dtype!r}")
        if flush_every < 1:
            raise InputError(f"--flush-every must be at least 1, not {flush_every}")
        self.root = Path(root)
        self.extractor_id = extractor_id
        self.dir = self.root / extractor_id
        self.rtfm_names = rtfm_names
        self.file_dtype = np.dtype(file_dtype)
        self.flush_every = flush_every
        self.run_id = run_id or uuid.uuid4().hex[:12]
        atomic.check_writable(self.dir, "feature store")    # a read-only store is refused before any work
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output folder {self.dir}: {exc.strerror}") from None
        self.manifest_path = self.dir / MANIFEST
        # unbuffered: an append that fails (a full disk) is cut back at once, never left queued to land later
        self._manifest = open(self.manifest_path, "a+b", buffering=0)
        self.records: dict[str, dict] = {}
        self._read_offset = 0
        self.claim_timeout = claim_timeout
        self._claims: dict[str, Path] = {}  # video id -> claim file this store holds
        self._claims_lock = threading.Lock()
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.refresh()
        self._remove_stale_tmp()

    # -- manifest -------------------------------------------------------------------------------------------

    def _locked(self, exclusive: bool):
        """The manifest's lock, held only while reading or appending (other writers wait that long at most)."""
        store = self

        class _Lock:
            def __enter__(self):
                fcntl.flock(store._manifest.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)

            def __exit__(self, *exc):
                fcntl.flock(store._manifest.fileno(), fcntl.LOCK_UN)

        return _Lock()

    def refresh(self) -> None:
        """Read the records appended since the last read, by this process or another; the last per id wins."""
        with self._locked(exclusive=False):
            self._manifest.seek(self._read_offset)
            data = self._manifest.read()
        end = data.rfind(b"\n") + 1  # a half-written last line (a writer killed mid-append) is not read yet
        for line in data[:end].decode("utf-8", "replace").splitlines():
            try:
                rec = json.loads(line)
                self.records[rec["video_id"]] = rec
            except (ValueError, KeyError, TypeError):
                continue
        self._read_offset += end

    def history(self) -> list[dict]:
        """Every manifest record in the order written (a video extracted twice appears twice)."""
        self._manifest.seek(0)
        out = []
        for line in self._manifest.read().decode("utf-8", "replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def record(self, vid: str, source: SourceStat, status: str, **fields: Any) -> dict:
        """Append one record (done / failed) and fsync it; it becomes the video's current state."""
        rec = {"video_id": vid, "status": status, "source": source.path, "size": source.size,
               "mtime_ns": source.mtime_ns, "extractor_id": self.extractor_id, "run": self.run_id, "time": _now()}
        rec.update(fields)
        with self._locked(exclusive=True):
            f = self._manifest
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size:  # cut a half-written last line (a writer killed mid-append) so this record starts a line
                f.seek(max(0, size - 65536))
                tail = f.read()
                if not tail.endswith(b"\n"):
                    cut = tail.rfind(b"\n")
                    f.truncate(size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size))
            start = f.seek(0, os.SEEK_END)
            data = memoryview((json.dumps(rec, sort_keys=False) + "\n").encode())
            try:
                while data:
                    data = data[f.write(data):]
                os.fsync(f.fileno())
            except OSError as exc:
                try:
                    f.truncate(start)          # no half record: the manifest stays as it was
                except OSError:
                    pass
                raise atomic.name_error(exc, self.manifest_path)
        self.refresh()
        self.records[vid] = rec
        return rec

    # -- claims: which process extracts which video --------------------------------------------------------

    def claim_path(self, vid: str) -> Path:
        return self.path_for(vid).with_name(self.path_for(vid).name + ".claim")

    def _holder(self, path: Path) -> dict | None:
        """The claim's holder, or None when the claim is gone or expired (its holder died)."""
        try:
            holder = json.loads(path.read_text())
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        except (ValueError, OSError):  # half-written by a holder killed while claiming
            return None
        if holder.get("host") == HOST:
            return holder if _pid_alive(int(holder.get("pid", -1))) else None
        return holder if age < self.claim_timeout else None

    def holder(self, vid: str) -> dict | None:
        """Who extracts `vid` now ({host, pid, run}), or None."""
        return self._holder(self.claim_path(vid))

    def claim(self, vid: str) -> bool:
        """Claim `vid` for this process; False when a live process holds it. Expired claims are taken over."""
        path = self.claim_path(vid)
        if vid in self._claims:
            return True
        data = json.dumps({"video_id": vid, "host": HOST, "pid": os.getpid(), "run": self.run_id,
                           "time": _now()}).encode()
        with self._locked(exclusive=True):  # one claimant at a time decides whether a claim has expired
            if path.exists():
                if self._holder(path) is not None:
                    return False
                path.unlink(missing_ok=True)
            atomic.write_bytes(path, data)
        with self._claims_lock:
            self._claims[vid] = path
        self._start_heartbeat()
        self.refresh()  # another process may have finished it since we last looked
        return True

    def release(self, vid: str) -> None:
        """Give up the claim on `vid` (after its record is written, or on the way out)."""
        with self._claims_lock:
            path = self._claims.pop(vid, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or not self._heartbeat.is_alive():
            self._heartbeat = threading.Thread(target=self._beat, name="store-claims", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        """Touch every held claim a few times per timeout, so other hosts see this process is alive."""
        while not self._heartbeat_stop.wait(max(0.5, self.claim_timeout / 4)):
            with self._claims_lock:
                paths = list(self._claims.values())
            for path in paths:
                try:
                    os.utime(path)
                except OSError:
                    pass

    def _remove_stale_tmp(self) -> None:
        for tmp in self.dir.glob("*.tmp"):  # left by a crash inside an atomic write
            if _stale_tmp(tmp):
                tmp.unlink(missing_ok=True)

    def write_extractor_info(self, config: dict) -> None:
        """extractor.json: the config and provenance shared by every file in this folder."""
        path = self.dir / EXTRACTOR_INFO
        data = (json.dumps({"extractor_id": self.extractor_id, **config}, indent=2, sort_keys=True) + "\n").encode()
        if not path.exists() or path.read_bytes() != data:
            atomic.write_bytes(path, data)

    # -- files ----------------------------------------------------------------------------------------------

    def path_for(self, vid: str) -> Path:
        """Where a video's features live: <id>.npy, or <id>_i3d.npy with rtfm_names."""
        return self.dir / (f"{vid}_i3d.npy" if self.rtfm_names else f"{vid}.npy")

    def is_done(self, vid: str, source: SourceStat) -> bool:
        """Done, same extractor and file dtype, source unchanged (size + mtime), and the file is still there."""
        rec = self.records.get(vid)
        return (rec is not None and rec.get("status") == "done" and source.same_as(rec)
                and rec.get("extractor_id") == self.extractor_id
                and rec.get("file_dtype", "float32") == self.file_dtype.name
                and rec.get("file") == self.path_for(vid).name and self.path_for(vid).is_file())

    def load(self, vid: str) -> np.ndarray:
        """A finished video's features `[T, crops, D]`."""
        return np.load(self.path_for(vid))

    def writer(self, vid: str, source: SourceStat) -> "FeatureWriter":
        """A writer that resumes from this video's last flushed clip when its source and settings are unchanged."""
        return FeatureWriter(self, vid, source)

    def cleanup(self, vids: Iterable[str] | None = None) -> None:
        """Remove partial files of videos that are now done (or of `vids`), and temp files of dead processes.

        Files of a video another live process has claimed are left alone."""
        self._remove_stale_tmp()
        self.refresh()
        done = {self.path_for(v).name: v for v, r in self.records.items() if r.get("status") == "done"}
        if vids is not None:
            done |= {self.path_for(v).name: v for v in vids}
        for p in list(self.dir.glob("*.part")) + list(self.dir.glob("*.progress.json")):
            base = p.name.removesuffix(".part").removesuffix(".progress.json")
            if base in done and (done[base] in self._claims or self.holder(done[base]) is None):
                p.unlink(missing_ok=True)

    def close(self) -> None:
        self._heartbeat_stop.set()
        for vid in list(self._claims):
            self.release(vid)
        if not self._manifest.closed:
            self._manifest.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FeatureWriter:
    """Streams one video's blocks `[t, crops, D]` into `<file>.part`, flushing every N clips; finish() renames it into place.

    On resume, rows past the last flushed clip are cut off and extraction restarts at `start_clip`, so the
    finished file holds the same bytes as an uninterrupted run (batches are aligned to absolute clip indices).
    """

    def __init__(self, store: FeatureStore, vid: str, source: SourceStat):
        self.store, self.vid, self.source = store, vid, source
        self.final = store.path_for(vid)
        self.part = self.final.with_name(self.final.name + ".part")
        self.progress_path = self.final.with_name(self.final.name + ".progress.json")
        self.dtype = store.file_dtype
        self.start_clip = 0
        self.recovered: dict | None = None  # progress of a file finished but not yet recorded (crash in between)
        self._rows = 0
        self._shape: tuple[int, int] | None = None  # (crops, D)
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._file = None
        self._header_len = 0
        self.info: dict = {}
        self._resume()

    def _progress_matches(self, prog: dict) -> bool:
        return (prog.get("extractor_id") == self.store.extractor_id and self.source.same_as(prog)
                and prog.get("file_dtype") == self.dtype.name)

    def _resume(self) -> None:
        prog = None
        if self.progress_path.exists():
            try:
                prog = json.loads(self.progress_path.read_text())
            except ValueError:
                prog = None
        if prog is None or not self._progress_matches(prog):
            self.discard()
            return
        crops, dim = prog["crops"], prog["dim"]
        row_bytes = crops * dim * self.dtype.itemsize
        if prog.get("complete"):
            size = len(_npy_header((prog["clips_done"], crops, dim), self.dtype)) + prog["clips_done"] * row_bytes
            if self.final.is_file() and self.final.stat().st_size == size:
                self.recovered = prog
                return
            self.discard()
            return
        header_len = len(_npy_header((0, crops, dim), self.dtype))
        want = header_len + prog["clips_done"] * row_bytes
        if not self.part.is_file() or self.part.stat().st_size < want:
            self.discard()
            return
        self._file = open(self.part, "r+b")
        self._file.truncate(want)  # rows written after the last progress record are recomputed
        self._file.seek(want)
        self._header_len = header_len
        self._shape = (crops, dim)
        self._rows = self.start_clip = prog["clips_done"]
        self.info = prog.get("info", {})

    def discard(self) -> None:
        """Forget any partial state of this video."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for p in (self.part, self.progress_path):
            p.unlink(missing_ok=True)
        self._rows = self.start_clip = 0
        self._shape = None
        self._buffer, self._buffered = [], 0

    def add(self, block: np.ndarray) -> None:
        """Append clips `[t, crops, D]`; flushes to disk once `flush_every` clips are buffered."""
        if block.ndim != 3:
            raise ValueError(f"feature block must be [t, crops, D], got shape {block.shape}")
        if self._shape is None:
            self._shape = (block.shape[1], block.shape[2])
        elif block.shape[1:] != self._shape:
            raise ValueError(f"feature block shape {block.shape} does not match earlier [*, {self._shape[0]}, {self._shape[1]}]")
        self._buffer.append(np.ascontiguousarray(block, dtype=self.dtype))
        self._buffered += block.shape[0]
        if self._buffered >= self.store.flush_every:
            self.flush()

    def _open_part(self) -> None:
        header = _npy_header((0, *self._shape), self.dtype)
        self._file = open(self.part, "wb")
        self._file.write(header)
        self._header_len = len(header)

    def _write_progress(self, complete: bool = False) -> None:
        prog = {"video_id": self.vid, "source": self.source.path, "size": self.source.size,
                "mtime_ns": self.source.mtime_ns, "extractor_id": self.store.extractor_id,
                "file_dtype": self.dtype.name, "crops": self._shape[0], "dim": self._shape[1],
                "clips_done": self._rows, "complete": complete, "info": self.info}
        atomic.write_bytes(self.progress_path, json.dumps(prog).encode())

    def flush(self) -> None:
        """Write buffered clips, fsync, then record how many clips are safely on disk."""
        if not self._buffer:
            return
        try:
            self._write_buffer()
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:  # a full disk: the rows past the last progress record are recomputed on resume
            raise atomic.name_error(exc, self.part)
        self._write_progress()

    def _write_buffer(self) -> None:
        """Write buffered rows right after the counted ones (a write cut short and retried lands in the same place)."""
        if self._file is None:
            self._open_part()
        self._file.seek(self._header_len + self._rows * self._shape[0] * self._shape[1] * self.dtype.itemsize)
        for b in self._buffer:
            self._file.write(b.tobytes())
        self._rows += self._buffered
        self._buffer, self._buffered = [], 0

    def finish(self) -> tuple[Path, int]:
        """Write the final header, rename into place; returns (path, T). The caller then records it as done."""
        if self.recovered is not None:
            return self.final, self.recovered["clips_done"]
        if self._shape is None:
            raise InputError("no clips were extracted")
        try:
            self._write_buffer()
            self._file.truncate()  # nothing past the last row
            header = _npy_header((self._rows, *self._shape), self.dtype)
            assert len(header) == self._header_len, "npy header length changed"
            self._file.seek(0)
            self._file.write(header)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:  # a full disk: resumed from the last flushed clip
            raise atomic.name_error(exc, self.part)
        self._file.close()
        self._file = None
        self._write_progress(complete=True)  # lets a crash right after the rename be recovered without recompute
        os.replace(self.part, self.final)
        _fsync_dir(self.final.parent)
        return self.final, self._rows

    def close(self) -> None:
        """Close the partial file of a video left unfinished (an interrupted run), keeping it and its progress
        record for the next run to resume from; the writer is not used again."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # rows a full disk refused: past the last progress record, recomputed on resume
                pass
            self._file = None

    def close_done(self) -> None:
        """After the manifest says done: the progress record is no longer needed."""
        self.progress_path.unlink(missing_ok=True)

    @property
    def shape(self) -> tuple[int, int, int] | None:
        return None if self._shape is None else (self._rows + self._buffered, *self._shape)
