"""Video files and frame folders as streams of uint8 RGB frames: one reader interface over PyAV, decord and images.

Every reader promises that `chunks()` yields exactly `info.num_frames` frames. The count comes from the container's
packet index (one decoded frame per non-discarded packet, which holds for every codec we know); if the decoder
then yields fewer frames (corrupt data), the last good frame is repeated up to the count and a warning is logged,
so clip counts computed from `info` always match the clips produced.

Backend cost, measured through this module on the shared clips (CPU seconds, so other load does not count):
PyAV with one reused RGB converter decodes 2,500 frames per CPU-second on 320x240 H.264 (RoadAccidents002),
1,500 on 640x272 H.264 and 1,530 on 768x576 MS-MPEG4 AVI; decord 1,700-1,950, 950-1,030 and 550. So "auto" uses
PyAV and falls back to decord only when PyAV opens a file but cannot decode it. Both give identical RGB for
even-sized 4:2:0 and for 4:4:4 / gray sources; for odd-sized 4:2:0 their chroma upsampling differs (max 25 levels,
mean under 1, equal error against the source). Rotation metadata (phone videos) is ignored by both (PyAV logs a
warning when a video has it).
PyAV resumes by seeking to the keyframe before `start` and placing frames by pts (decoding from 0 when in doubt);
decord's own seeks return wrong frames on open-GOP and B-frame AVI/MKV files, so it decodes from 0 instead.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from extractors.errors import InputError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".3gp", ".asf", ".avi", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg",
                    ".mts", ".ogv", ".ts", ".vob", ".webm", ".wmv")
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png")
BACKENDS = ("auto", "pyav", "decord", "frames")
AUTO_ORDER = ("pyav", "decord")  # fastest first, see the module docstring for the measurements
FRAME_FOLDER_FPS = 25.0  # frame folders (and streams without any timing) say this in `info.fps` unless told otherwise


@dataclass
class VideoInfo:
    """What a reader yields: `num_frames` is exact (after any resampling), `fps` is frames per second."""

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    backend: str
    declared_frames: int = field(default=0, compare=False)  # what the container's header says (0: it says nothing); a truncated file has fewer


def natural_sort_key(text: str) -> list:
    """Sort key putting "2.jpg" before "10.jpg" (digit runs compare as numbers, the rest case-insensitively)."""
    parts = re.split(r"(\d+)", text)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)]


def _is_video(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_videos(root: str | os.PathLike) -> list[Path]:
    """Video files and frame folders under `root`, naturally sorted by relative path.

    A folder is a frame folder when it directly holds images and no video files; its subfolders are not searched.
    A subfolder that cannot be listed (permissions) is returned as an entry of its own, so that its extraction
    fails with the reason instead of its videos being silently left out. Symlinked folders are not followed.
    """
    root = Path(root)
    if root.is_file():
        return [root] if _is_video(root.name) else []
    if not root.is_dir():
        raise InputError(f"{root}: no such file or folder")
    found: list[Path] = []

    def unreadable(err: OSError) -> None:
        if Path(err.filename) == root:
            raise InputError(f"{root}: cannot list the folder ({err.strerror})")
        found.append(Path(err.filename))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        videos = [Path(dirpath) / f for f in filenames if _is_video(f)]
        if not videos and any(_is_image(f) for f in filenames):
            found.append(Path(dirpath))
            dirnames[:] = []
            continue
        found.extend(videos)

    def key(p: Path) -> list:
        return [natural_sort_key(part) for part in p.relative_to(root).parts]

    return sorted(found, key=key)


def resample_indices(times: np.ndarray, target_fps: float, end_time: float | None = None) -> np.ndarray:
    """Source frame for each output time t0 + k/target_fps: the latest frame whose time is <= it (works for VFR).

    `times` are presentation times in seconds, ascending; the video ends at `end_time` (default: last time plus
    the median frame gap). Returns int64 indices, non-decreasing, one per output frame.
    """
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    if end_time is None:
        gap = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / target_fps
        end_time = float(times[-1]) + gap
    # Times within 5% of an output period count as equal: decord's timestamps are float32 (0.24 ms steps at 1 h),
    # and a frame at exactly k/target_fps must not lose to its predecessor by a rounding error.
    tol = 0.05
    count = max(1, int(np.ceil((end_time - times[0]) * target_fps - tol)))
    out_times = times[0] + np.arange(count, dtype=np.float64) / target_fps
    return np.maximum(np.searchsorted(times, out_times + tol / target_fps, side="right") - 1, 0).astype(np.int64)


def _rechunk(arrays: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup a stream of frame arrays into arrays of exactly `size` frames (the last may be shorter)."""
    pending: list[np.ndarray] = []
    held = 0
    for arr in arrays:
        if not len(arr):
            continue
        if not pending and len(arr) == size:
            yield arr
            continue
        pending.append(arr)
        held += len(arr)
        while held >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            rest = joined[size:]
            pending, held = ([rest], len(rest)) if len(rest) else ([], 0)
    if pending:
        yield np.concatenate(pending)


class VideoReader:
    """Streams one video as uint8 RGB chunks [n, H, W, 3]; `info.num_frames` is exactly what `chunks()` yields."""

    def __init__(self, info: VideoInfo, times: np.ndarray | None = None, target_fps: float | None = None):
        self._source_frames = info.num_frames
        self.frames_repeated = 0  # frames indexed but not decodable, filled with the last good one
        self._selection: np.ndarray | None = None
        if target_fps is not None:
            if times is None or len(times) != info.num_frames:
                times = np.arange(info.num_frames) / info.fps
            self._selection = resample_indices(times, float(target_fps))
            info = replace(info, num_frames=len(self._selection), fps=float(target_fps))
        self.info = info

    def _decode(self, start: int, chunk_size: int) -> Iterator[np.ndarray]:
        """Source frames from frame `start` on, in chunks of at most `chunk_size`; backends implement this."""
        raise NotImplementedError

    def chunks(self, chunk_size: int = 64, start: int = 0) -> Iterator[np.ndarray]:
        """Frames `start`, `start+1`, ... as uint8 arrays [<=chunk_size, H, W, 3]; memory is bounded by the chunk."""
        if chunk_size < 1 or start < 0:
            raise ValueError(f"need chunk_size >= 1 and start >= 0, got {chunk_size}, {start}")
        if start >= self.info.num_frames:
            return
        if self._selection is None:
            yield from _rechunk(self._source(start, chunk_size), chunk_size)
        else:
            yield from _rechunk(self._resampled(start, chunk_size), chunk_size)

    def _source(self, start: int, chunk_size: int) -> Iterator[np.ndarray]:
        """Source frames from `start`, exactly `num_frames - start` of them (see the module docstring)."""
        want, seen, last = self._source_frames - start, 0, None
        frames = self._decode(start, chunk_size)
        try:
            for chunk in frames:
                if seen >= want:
                    log.warning("%s: stream has more frames than its index (%d); extra frames dropped",
                                self.info.path, self._source_frames)
                    break
                chunk = chunk[: want - seen]
                seen += len(chunk)
                last = chunk[-1]
                yield chunk
        finally:
            frames.close()
        if seen < want:
            if last is None:
                raise InputError(f"{Path(self.info.path).name}: no decodable video frames from frame {start} "
                                 f"(truncated or corrupt file?)")
            log.warning("%s: decoded %d of %d frames; repeating the last one", self.info.path, start + seen,
                        self._source_frames)
            self.frames_repeated += want - seen
            while seen < want:
                n = min(chunk_size, want - seen)
                seen += n
                yield np.repeat(last[None], n, axis=0)

    def _resampled(self, start: int, chunk_size: int) -> Iterator[np.ndarray]:
        sel = self._selection
        k, offset = start, int(sel[start])
        for chunk in self._source(offset, chunk_size):
            end = offset + len(chunk)
            k_end = int(np.searchsorted(sel, end, side="left"))  # outputs whose source frame is in this chunk
            if k_end > k:
                yield chunk[sel[k:k_end] - offset]
                k = k_end
            offset = end
            if k >= len(sel):
                break

    def frames_found(self) -> tuple[int, int]:
        """(source frames that decoded, source frames the file declares), after a full pass over it."""
        decoded = self._source_frames - self.frames_repeated
        return decoded, max(self.info.declared_frames, self._source_frames)

    def close(self) -> None:
        """Release the file; chunk iterators already started stop working."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info})"


# ---------------------------------------------------------------------------------------------------- PyAV


class _Undecodable(InputError):
    """The container opened but no frame decodes: another backend may still manage."""


def _open_container(path: Path):
    """Open with PyAV and pick the video stream (not cover art); InputError with a one-line reason otherwise."""
    import av

    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        reason = getattr(err, "strerror", None) or str(err)
        if isinstance(err, PermissionError):
            raise InputError(f"{path.name}: cannot read it ({reason})") from None
        raise InputError(f"{path.name}: not a readable video (truncated or not a video; ffmpeg: {reason})") from None
    streams = [s for s in container.streams.video
               if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["no"]
        container.close()
        raise InputError(f"{path.name}: no video stream ({', '.join(kinds)} streams only)")
    return container, streams[0]


class PyAVReader(VideoReader):
    """Decodes with PyAV (FFmpeg): frame-and-slice threading, one reused RGB converter, exact seek by pts."""

    backend = "pyav"

    def __init__(self, path: str | os.PathLike, target_fps: float | None = None, threads: int = 0):
        import av

        self.path, self.threads = Path(path), threads
        self._open: set = set()
        container, stream = _open_container(self.path)
        try:
            self._stream_index = stream.index
            time_base = stream.time_base
            pts: list = []
            try:
                for packet in container.demux(stream):
                    if packet.size and not packet.is_discard:
                        pts.append(packet.pts)
            except av.FFmpegError as err:  # truncated or corrupt: the decoder stops at the same place
                log.warning("%s: demuxing stopped after %d packets (%s)", self.path, len(pts), err)
            if not pts:
                raise InputError(f"{self.path.name}: video stream has no frames (truncated or empty file?)")
            rate = stream.average_rate or stream.guessed_rate
            declared = int(stream.frames or 0)
        finally:
            container.close()
        if None in pts or time_base is None:
            fps = float(rate) if rate else FRAME_FOLDER_FPS
            times, self._pts = np.arange(len(pts)) / fps, None
        else:
            self._pts = sorted(pts)  # presentation order; packets come in decode order
            times = np.array(self._pts, dtype=np.float64) * float(time_base)
            span = times[-1] - times[0]
            fps = float(rate) if rate else ((len(times) - 1) / span if span > 0 else FRAME_FOLDER_FPS)
        probe = self._decode(0, 1)
        first = next(probe, None)  # prove that frames decode, and get the true frame size
        probe.close()
        if first is None:
            raise _Undecodable(f"{self.path.name}: PyAV could not decode any frame (truncated or corrupt file?)")
        height, width = first.shape[1:3]
        info = VideoInfo(str(self.path), len(pts), fps, int(width), int(height), self.backend, declared)
        super().__init__(info, times, target_fps)

    def _decode(self, start: int, chunk_size: int) -> Iterator[np.ndarray]:
        seek = bool(start) and self._pts is not None and len(set(self._pts)) == len(self._pts)
        if (yield from self._decode_pass(start, chunk_size, seek)) == "inexact seek":
            log.debug("%s: inexact seek, decoding from the start", self.path)
            yield from self._decode_pass(start, chunk_size, seek=False)

    def _decode_pass(self, start: int, chunk_size: int, seek: bool):
        """One decode from the keyframe before `start` (seek) or from frame 0; returns "inexact seek" on doubt."""
        import av
        from av.video.reformatter import VideoReformatter

        container = av.open(str(self.path))
        self._open.add(container)
        try:
            stream = container.streams[self._stream_index]
            stream.thread_type = "AUTO"
            stream.thread_count = self.threads
            index = 0
            pts_index = None
            if seek:
                pts_index = {p: i for i, p in enumerate(self._pts)}
                container.seek(self._pts[start], stream=stream, backward=True)
            # One converter for the whole stream: creating one per frame costs up to 20% at SD sizes. Conversion
            # threads=1: SwScale slice threads cost more than they save on frames this small.
            rgb = VideoReformatter()
            info = getattr(self, "info", None)  # None only while __init__ decodes the first frame
            buf, n = None, 0
            try:
                for frame in container.decode(stream):
                    if pts_index is not None:  # after a seek, place frames by pts until frame `start` appears
                        index = pts_index.get(frame.pts, -1)
                        if index < 0 or index > start:
                            return "inexact seek"
                        if index < start:
                            continue
                        pts_index = None
                    if info is None and getattr(frame, "rotation", 0):  # the probe in __init__: said once
                        log.warning("%s: its display matrix rotates it %s degrees; frames are read as stored, "
                                    "unrotated", self.path.name, frame.rotation)
                    if index >= start:
                        if info is None or (frame.width, frame.height) == (info.width, info.height):
                            out = rgb.reformat(frame, format="rgb24", threads=1).to_ndarray()
                        else:  # keep the shape fixed should the stream change resolution midway (slow path)
                            out = rgb.reformat(frame, width=info.width, height=info.height, format="rgb24",
                                               threads=1).to_ndarray()
                        if buf is None:
                            buf, n = np.empty((chunk_size, *out.shape), dtype=np.uint8), 0  # [chunk, H, W, 3]
                        buf[n] = out
                        n += 1
                        if n == chunk_size:
                            yield buf
                            buf = None
                    index += 1
            except av.FFmpegError as err:
                log.warning("%s: decoding stopped at frame %s (%s)", self.path, index, err)
            if pts_index is not None:
                return "inexact seek"
            if buf is not None:
                yield buf[:n]
        finally:
            container.close()
            self._open.discard(container)
        return None

    def close(self) -> None:
        for container in list(self._open):
            container.close()
        self._open.clear()


# -------------------------------------------------------------------------------------------------- decord


def _decord_reason(err: Exception) -> str:
    # "[17:51:24] /github/workspace/src/video/video_reader.cc:486: Error: ..." -> "Error: ..."
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", str(err).strip().splitlines()[0])


class DecordReader(VideoReader):
    """Decodes with decord (its own packet index). Fails on some sizes (e.g. width 48); resumes by decoding from 0."""

    backend = "decord"

    def __init__(self, path: str | os.PathLike, target_fps: float | None = None, threads: int = 0):
        import decord

        self.path = Path(path)
        container, _ = _open_container(self.path)  # one-line reasons for bad files, and no decord crash on them
        container.close()
        try:
            self._vr = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=threads)
            n = len(self._vr)
            if n == 0:
                raise InputError(f"{self.path.name}: video stream has no frames (truncated or empty file?)")
            height, width = self._vr.get_batch([0]).shape[1:3]  # get_batch: vr[0] works where batches fail
            self._vr.seek(0)
            times = self._vr.get_frame_timestamp(np.arange(n))[:, 0]
            fps = float(self._vr.get_avg_fps())
        except decord.DECORDError as err:
            raise _Undecodable(f"{self.path.name}: decord could not decode it ({_decord_reason(err)})") from None
        info = VideoInfo(str(self.path), n, fps, int(width), int(height), self.backend)
        super().__init__(info, times, target_fps)

    def _decode(self, start: int, chunk_size: int) -> Iterator[np.ndarray]:
        import decord

        # Always from frame 0: decord's seeks (and skip_frames) return wrong frames on open-GOP H.264 and on
        # B-frame AVI/MKV (tests/extractors/test_decode.py), so resuming decodes and discards instead.
        n = self._source_frames
        for i in range(0, n, chunk_size):
            if self._vr is None:
                raise InputError(f"{self.path.name}: reader is closed")
            try:
                if i == 0:
                    self._vr.seek(0)
                batch = self._vr.get_batch(list(range(i, min(i + chunk_size, n)))).asnumpy()  # [n, H, W, 3]
            except decord.DECORDError as err:
                log.warning("%s: decord stopped at frame %d (%s)", self.path, i, _decord_reason(err))
                return
            if i + len(batch) > start:
                yield batch[max(0, start - i):]

    def close(self) -> None:
        self._vr = None


# --------------------------------------------------------------------------------------------- frame folder


def _check_numbering(folder: Path, files: list[Path]) -> None:
    """Frames numbered in one sequence (img_0001.jpg, img_0002.jpg, ... or every 5th: 1, 6, 11, ...) must have no
    gap: a missing frame would shift every later frame against the timeline (and the ground truth) without a word."""
    parts = [re.fullmatch(r"(.*?)(\d+)(\D*)", p.stem) for p in files]
    if not all(parts) or len({(m.group(1), m.group(3)) for m in parts}) != 1:
        return  # not one numbered sequence: natural order is all there is
    numbers = sorted(int(m.group(2)) for m in parts)
    steps = set(np.diff(numbers).tolist())
    if len(steps) <= 1 or 0 in steps:
        return  # evenly numbered (or duplicate numbers, whose order natural sorting decides)
    step = min(steps)
    expected = range(numbers[0], numbers[-1] + 1, step)
    present = set(numbers)
    missing = next(n for n in expected if n not in present)
    every = "" if step == 1 else f" every {step}"
    raise InputError(f"{folder.name}: frame {missing} is missing ({len(files)} images numbered {numbers[0]} to "
                     f"{numbers[-1]}{every}, {len(expected) - len(numbers)} missing)")


class FrameFolderReader(VideoReader):
    """A folder of frame images (png/jpg/jpeg/bmp) in natural order: 1.jpg, 2.jpg, ..., 10.jpg."""

    backend = "frames"

    def __init__(self, path: str | os.PathLike, target_fps: float | None = None, fps: float = FRAME_FOLDER_FPS):
        from PIL import Image

        self.path = Path(path)
        self.files = sorted((p for p in self.path.iterdir() if p.is_file() and _is_image(p.name)),
                            key=lambda p: natural_sort_key(p.name))
        if not self.files:
            raise InputError(f"{self.path.name}: folder holds no frame images ({', '.join(IMAGE_EXTENSIONS)})")
        _check_numbering(self.path, self.files)
        try:
            with Image.open(self.files[0]) as img:
                width, height = img.size
        except OSError as err:
            raise InputError(f"{self.files[0]}: unreadable image ({err})") from None
        info = VideoInfo(str(self.path), len(self.files), float(fps), width, height, self.backend)
        super().__init__(info, np.arange(len(self.files)) / float(fps), target_fps)

    def _decode(self, start: int, chunk_size: int) -> Iterator[np.ndarray]:
        from PIL import Image

        want = (self.info.height, self.info.width, 3)
        for i in range(start, len(self.files), chunk_size):
            out = np.empty((min(chunk_size, len(self.files) - i), *want), dtype=np.uint8)  # [n, H, W, 3]
            for j, file in enumerate(self.files[i:i + len(out)]):
                try:
                    with Image.open(file) as img:
                        frame = np.asarray(img.convert("RGB"))
                except OSError as err:
                    raise InputError(f"{file}: unreadable image ({err})") from None
                if frame.shape != want:
                    raise InputError(f"{file}: frame is {frame.shape[1]}x{frame.shape[0]}, "
                                     f"the folder's first frame is {want[1]}x{want[0]}")
                out[j] = frame
            yield out


# ------------------------------------------------------------------------------------------------- opening


def open_video(path: str | os.PathLike, backend: str = "auto", target_fps: float | None = None, *,
               threads: int = 0, folder_fps: float = FRAME_FOLDER_FPS) -> VideoReader:
    """Open a video file or a frame folder for streaming; `target_fps` resamples by timestamps.

    `backend`: "auto" (PyAV, then decord if PyAV cannot decode), "pyav", "decord", or "frames" (folders).
    `threads`: decoder threads, 0 for FFmpeg's choice. Raises InputError with a one-line reason for bad input.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown decode backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if target_fps is not None and not target_fps > 0:
        raise InputError(f"target_fps must be positive, got {target_fps}")
    path = Path(path)
    if path.is_dir():
        if backend not in ("auto", "frames"):
            raise InputError(f"{path.name}: a folder of frames needs backend 'frames' or 'auto', not {backend!r}")
        return FrameFolderReader(path, target_fps, fps=folder_fps)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if backend == "frames":
        raise InputError(f"{path.name}: backend 'frames' reads folders of images, this is a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name}: empty file (0 bytes)")
    readers = {"pyav": PyAVReader, "decord": DecordReader}
    if backend != "auto":
        return readers[backend](path, target_fps, threads=threads)
    first_error: InputError | None = None
    for name in AUTO_ORDER:
        try:
            return readers[name](path, target_fps, threads=threads)
        except _Undecodable as err:  # opened but undecodable: the other backend may manage
            first_error = first_error or err
        except ImportError as err:
            first_error = first_error or InputError(f"{path.name}: backend {name} unavailable ({err})")
    raise InputError(str(first_error)) from None
