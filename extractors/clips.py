"""Frames to fixed-length clips: `ClipSampler` cuts a chunk stream into [clip_len, H, W, 3] clips with bounded memory.

Tail policies for the frames after the last full clip:
  pad  - clips start at 0, stride, 2*stride, ... while start < N; missing frames repeat the last frame.
         T = ceil(N / 16) for 16/16: the RTFM authors' recipe and the default.
  loop - same clips as pad, but missing frames wrap around to the start of the video (frame i -> i mod N).
  drop - only clips that fit entirely: T = floor(N / 16) for 16/16.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

TAIL_POLICIES = ("pad", "loop", "drop")


class ClipSampler:
    """Cuts frames into clips of `clip_len` frames every `stride` frames, with a tail policy (pad/loop/drop)."""

    def __init__(self, clip_len: int = 16, stride: int = 16, tail: str = "pad"):
        if clip_len < 1 or stride < 1:
            raise ValueError(f"clip_len and stride must be >= 1, got {clip_len}, {stride}")
        if tail not in TAIL_POLICIES:
            raise ValueError(f"tail must be one of {', '.join(TAIL_POLICIES)}, got {tail!r}")
        self.clip_len, self.stride, self.tail = clip_len, stride, tail

    def __repr__(self) -> str:
        return f"ClipSampler(clip_len={self.clip_len}, stride={self.stride}, tail={self.tail!r})"

    def describe(self) -> dict:
        """Everything that changes which frames go into which clip (for the extractor id hash)."""
        return {"clip_len": self.clip_len, "stride": self.stride, "tail": self.tail}

    def num_clips(self, num_frames: int) -> int:
        """How many clips a video of `num_frames` frames gives (0 means fewer frames than one clip)."""
        if num_frames <= 0:
            return 0
        if self.tail == "drop":
            return 0 if num_frames < self.clip_len else (num_frames - self.clip_len) // self.stride + 1
        return -(-num_frames // self.stride)  # starts 0, stride, ... while start < N

    def first_frame(self, start_clip: int) -> int:
        """The frame where clip `start_clip` begins: pass it to `reader.chunks(start=...)` to resume there."""
        return start_clip * self.stride

    def clip_frames(self, index: int, num_frames: int) -> np.ndarray:
        """Source frame indices of clip `index` under the tail policy (the rule `clips()` streams)."""
        frames = np.arange(self.first_frame(index), self.first_frame(index) + self.clip_len)
        if self.tail == "loop":
            return frames % num_frames
        return np.minimum(frames, num_frames - 1)

    def clips(self, chunks: Iterable[np.ndarray], start_clip: int = 0, *, chunks_start: int = 0,
              head: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Stream uint8 clips [clip_len, H, W, 3] from frame chunks [n, H, W, 3], beginning with clip `start_clip`.

        `chunks` begin at frame `chunks_start` (0: the whole video; or `first_frame(start_clip)` to resume without
        decoding the skipped frames). The loop tail needs the video's first frames: when resuming mid-video, pass
        `head` = the first `clip_len` frames (or use `read_clips`, which does). Holds at most clip_len plus one
        chunk of frames.
        """
        if start_clip < 0 or not 0 <= chunks_start <= self.first_frame(start_clip):
            raise ValueError(f"need 0 <= chunks_start ({chunks_start}) <= first_frame(start_clip) "
                             f"({self.first_frame(start_clip)})")
        if self.tail == "loop" and chunks_start > 0 and head is None:
            raise ValueError("tail='loop' needs head= (the video's first clip_len frames) when chunks_start > 0")
        need_head = self.tail == "loop" and head is None
        head_parts: list[np.ndarray] = []
        buf: np.ndarray | None = None  # frames [buf_start, buf_start + len(buf)) not yet consumed
        buf_start = chunks_start
        next_start = self.first_frame(start_clip)  # first frame of the next clip to emit
        seen = chunks_start  # frames received so far (absolute count)
        for chunk in chunks:
            if not len(chunk):
                continue
            if need_head and seen < self.clip_len:
                head_parts.append(chunk[: self.clip_len - seen].copy())
            seen += len(chunk)
            # Drop what no later clip needs before joining, so the buffer stays at most clip_len + chunk frames.
            if buf is None or buf_start + len(buf) <= next_start:
                skip = max(0, next_start - (seen - len(chunk)))
                buf, buf_start = chunk[skip:], seen - len(chunk) + skip
            else:
                buf = np.concatenate([buf[next_start - buf_start:], chunk])  # [<=clip_len + n, H, W, 3]
                buf_start = next_start
            while next_start + self.clip_len <= seen:
                lo = next_start - buf_start
                yield buf[lo:lo + self.clip_len].copy()  # [clip_len, H, W, 3], owns its memory
                next_start += self.stride
            if next_start >= seen:
                buf, buf_start = None, seen
        if self.tail == "drop" or next_start >= seen or seen == 0:
            return
        if need_head:
            head = np.concatenate(head_parts)
        # Tail: clips that start before the end but run past it.
        tail = buf[next_start - buf_start:]  # frames [next_start, seen)
        while next_start < seen:
            have = tail[next_start - (seen - len(tail)):]
            missing = self.clip_len - len(have)
            if self.tail == "pad":
                fill = np.repeat(have[-1:], missing, axis=0)
            else:  # loop: frames seen, seen+1, ... wrap to 0, 1, ... (mod N, which matters when N < clip_len)
                wrapped = np.arange(missing) % seen
                if wrapped.max() >= len(head):  # N < clip_len and resumed: the head must cover the video
                    raise ValueError(f"head= holds {len(head)} frames; the loop tail needs {wrapped.max() + 1}")
                fill = head[wrapped]
            yield np.concatenate([have, fill])  # [clip_len, H, W, 3]
            next_start += self.stride

    def read_clips(self, reader, start_clip: int = 0, chunk_size: int = 64,
                   counted: list[int] | None = None) -> Iterator[np.ndarray]:
        """Clips of a `VideoReader`, resuming at clip `start_clip` by seeking (loop tail: re-reads the head).

        `counted[0]` (if given) grows by the frames decoded from the first clip's frame on (a truncated file
        decodes fewer than its header says)."""
        first, head = self.first_frame(start_clip), None
        if first >= reader.info.num_frames:
            return
        if self.tail == "loop" and first > 0:
            frames = reader.chunks(self.clip_len, start=0)
            head = next(frames)  # [<=clip_len, H, W, 3]
            frames.close()
        chunks = reader.chunks(chunk_size, start=first)
        if counted is not None:
            chunks = _counting(chunks, counted)
        yield from self.clips(chunks, start_clip, chunks_start=first, head=head)


def _counting(chunks: Iterator[np.ndarray], counted: list[int]) -> Iterator[np.ndarray]:
    for chunk in chunks:
        counted[0] += len(chunk)
        yield chunk
