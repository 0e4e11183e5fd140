"""Videos a browser can play, for the HTML report.

Chromium plays H.264, VP8, VP9 and AV1 (8-bit 4:2:0) in mp4 and webm files and nothing else: AVI, MKV, MOV,
MPEG files and MPEG-4 Part 2 (DivX, Xvid, msmpeg4) stay black with `readyState` 0. `preview_for` leaves playable
files alone and gives every other source (frame folders too) a small H.264 mp4 made with PyAV from the frames the
extractor decodes (so the preview has the frames the scores are about), written next to the report under a
temporary name and renamed into place; a re-run reuses it while the source is unchanged.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

PLAYABLE = {".mp4": {"h264", "vp9", "av1"}, ".m4v": {"h264", "vp9", "av1"}, ".webm": {"vp8", "vp9", "av1"}}
PLAYABLE_PIX_FMTS = {"yuv420p", "yuvj420p"}
MIME_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".ogv": "video/ogg",
              ".mov": "video/quicktime", ".mkv": "video/x-matroska", ".avi": "video/x-msvideo",
              ".wmv": "video/x-ms-wmv", ".asf": "video/x-ms-asf", ".flv": "video/x-flv", ".3gp": "video/3gpp",
              ".mpeg": "video/mpeg", ".mpg": "video/mpeg", ".vob": "video/mpeg", ".ts": "video/mp2t",
              ".mts": "video/mp2t", ".m2ts": "video/mp2t"}
PREVIEW_DIR = "previews"          # beside the report
MAX_WIDTH = 640


@dataclass
class Playable:
    """What the report embeds or links for one video, and a one-line note when a browser cannot play it."""

    path: Path
    mime: str
    note: str | None = None        # set when the page shows a video that will not play, and why
    preview_of: str | None = None  # set when `path` is a preview standing in for the source: what the source is


def mime_type(path) -> str:
    return MIME_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


def why_unplayable(path) -> str | None:
    """None when Chromium can play the file as it is, else a short reason ('AVI with msmpeg4 video')."""
    import av

    path = Path(path)
    if path.is_dir():
        return "a folder of frames"
    suffix = path.suffix.lower()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return "no video stream"
            ctx = container.streams.video[0].codec_context
            codec, pix_fmt = ctx.name, ctx.pix_fmt
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        return f"unreadable ({type(exc).__name__})"
    kind = f"{suffix.lstrip('.').upper() or 'a file'} with {codec} video"
    if codec not in PLAYABLE.get(suffix, ()):
        return kind
    if pix_fmt not in PLAYABLE_PIX_FMTS:
        return f"{kind} in {pix_fmt}"
    return None


def preview_name(path: Path) -> str:
    """A file name that changes with the source (path, size, modification time): a stale preview is never reused."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem if path.is_file() else path.name).strip("._")[:60] or "video"
    return f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:10]}.mp4"


def make_preview(source, out: Path, fps: float | None = None, max_width: int = MAX_WIDTH) -> Path:
    """Encode `source` (any video the extractor reads, or a frame folder) as H.264 yuv420p mp4 at `out`, atomically.

    Every decoded frame is kept, at `fps` (default: the source's), so the preview lasts as long as the scored
    frames; frames wider than max_width are scaled down.
    """
    import av
    import numpy as np

    from extractors.decode import open_video
    from mgfn.atomic import atomic_path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with open_video(source) as reader:
            info = reader.info
            rate = Fraction(fps or info.fps or 25.0).limit_denominator(1000)
            width = max(2, min(info.width, max_width) // 2 * 2)
            height = max(2, round(info.height * width / info.width / 2) * 2)
            with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.options = {"crf": "28", "preset": "veryfast"}
                index = 0
                for chunk in reader.chunks(32):                                     # [n, H, W, 3] uint8 RGB
                    for img in chunk:
                        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                        frame = frame.reformat(width=width, height=height, format="yuv420p")
                        frame.pts, frame.time_base = index, 1 / rate
                        index += 1
                        for packet in stream.encode(frame):
                            container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
    return out


def preview_for(video_path, out_dir: Path, fps: float | None = None) -> Playable:
    """The file the report should show for `video_path`: itself when a browser plays it, else an H.264 preview in
    OUT_DIR/previews/ (made once). When neither works, the source with its own MIME type and a note saying why."""
    path = Path(video_path)
    if not path.exists():
        return Playable(path, mime_type(path), f"{path.name} is not there any more")
    reason = why_unplayable(path)
    if reason is None:
        return Playable(path, mime_type(path))
    target = Path(out_dir) / PREVIEW_DIR / preview_name(path)
    if not target.is_file():
        try:
            make_preview(path, target, fps)
        except Exception as exc:  # noqa: BLE001 - the report still lists the video, saying why it cannot play
            from mgfn.atomic import is_disk_error

            if is_disk_error(exc):  # the disk's fault, not the video's: the run stops and resumes later
                raise
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            return Playable(path, mime_type(path),
                            f"A browser cannot play {path.name} ({reason}) and no preview could be made: {detail}")
    return Playable(target, "video/mp4", preview_of=f"{path.name} ({reason})")
