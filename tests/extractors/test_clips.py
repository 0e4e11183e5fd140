"""ClipSampler: clip counts per tail policy, clip contents from any chunking, resume, and bounded memory."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from extractors.clips import ClipSampler
from extractors.decode import open_video


def numbered_frames(n: int, size: int = 2) -> np.ndarray:
    """Frame i is filled with the value i, so a clip shows which frames it holds: [n, size, size, 3]."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, size, size, 3)).copy()


def chunked(frames: np.ndarray, size: int):
    for i in range(0, len(frames), size):
        yield frames[i:i + size]


def frame_ids(clips) -> list[list[int]]:
    return [clip[:, 0, 0, 0].tolist() for clip in clips]


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 32, 33, 100])
def test_num_clips_per_tail_policy(n):
    assert ClipSampler(tail="pad").num_clips(n) == math.ceil(n / 16)  # the RTFM authors' T
    assert ClipSampler(tail="loop").num_clips(n) == math.ceil(n / 16)
    assert ClipSampler(tail="drop").num_clips(n) == n // 16
    assert ClipSampler(16, 8, "pad").num_clips(n) == math.ceil(n / 8)  # starts 0, 8, ... while start < N
    assert ClipSampler(16, 8, "drop").num_clips(n) == (0 if n < 16 else (n - 16) // 8 + 1)


def test_fewer_frames_than_one_clip():
    frames = numbered_frames(5)
    assert frame_ids(ClipSampler(tail="pad").clips([frames])) == [[0, 1, 2, 3, 4] + [4] * 11]
    assert frame_ids(ClipSampler(tail="loop").clips([frames])) == [[i % 5 for i in range(16)]]
    assert list(ClipSampler(tail="drop").clips([frames])) == []
    assert list(ClipSampler().clips([])) == []


def test_seventeen_frames_pad_repeats_the_last_frame_and_loop_wraps():
    frames = numbered_frames(17)
    assert frame_ids(ClipSampler(tail="pad").clips(chunked(frames, 5))) == [list(range(16)), [16] * 16]
    assert frame_ids(ClipSampler(tail="loop").clips(chunked(frames, 5))) == [list(range(16)), [16] + list(range(15))]
    assert frame_ids(ClipSampler(tail="drop").clips(chunked(frames, 5))) == [list(range(16))]


@pytest.mark.parametrize("tail", ["pad", "loop", "drop"])
@pytest.mark.parametrize("clip_len, stride", [(16, 16), (16, 8), (16, 24), (4, 1)])
@pytest.mark.parametrize("n", [3, 16, 17, 33, 50])
@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_streamed_clips_match_the_tail_rule_for_any_chunking(tail, clip_len, stride, n, chunk):
    sampler = ClipSampler(clip_len, stride, tail)
    frames = numbered_frames(n)
    clips = list(sampler.clips(chunked(frames, chunk)))
    assert len(clips) == sampler.num_clips(n)
    for i, clip in enumerate(clips):
        assert clip.shape == (clip_len, 2, 2, 3) and clip.dtype == np.uint8 and clip.flags.c_contiguous
        assert np.array_equal(clip, frames[sampler.clip_frames(i, n)]), f"clip {i}"


@pytest.mark.parametrize("tail", ["pad", "loop", "drop"])
@pytest.mark.parametrize("stride", [8, 16])
@pytest.mark.parametrize("n", [5, 17, 33, 47])
def test_resume_skipping_from_frame_zero_or_starting_at_first_frame_agree(tail, stride, n):
    sampler = ClipSampler(16, stride, tail)
    frames = numbered_frames(n)
    full = list(sampler.clips(chunked(frames, 7)))
    for start_clip in range(len(full) + 1):
        skipped = list(sampler.clips(chunked(frames, 7), start_clip=start_clip))
        first = sampler.first_frame(start_clip)
        seeked = list(sampler.clips(chunked(frames[first:], 7), start_clip=start_clip, chunks_start=first,
                                    head=frames[:16]))
        assert frame_ids(skipped) == frame_ids(seeked) == frame_ids(full[start_clip:]), start_clip


def test_loop_tail_when_resuming_needs_the_head():
    sampler = ClipSampler(tail="loop")
    with pytest.raises(ValueError, match="head="):
        list(sampler.clips([numbered_frames(33)[16:]], start_clip=1, chunks_start=16))
    with pytest.raises(ValueError, match="chunks_start"):
        list(sampler.clips([numbered_frames(33)], start_clip=0, chunks_start=16))


@pytest.mark.parametrize("tail", ["pad", "loop", "drop"])
def test_read_clips_resumes_a_real_video_by_seeking(make_video, tail):
    sampler = ClipSampler(tail=tail)
    with open_video(make_video("v.mp4", 40)) as reader:
        full = list(sampler.read_clips(reader, chunk_size=8))
        assert len(full) == sampler.num_clips(reader.info.num_frames) == (2 if tail == "drop" else 3)
        for start_clip in range(len(full) + 1):
            resumed = list(sampler.read_clips(reader, start_clip=start_clip, chunk_size=8))
            assert len(resumed) == len(full) - start_clip
            assert all(np.array_equal(a, b) for a, b in zip(resumed, full[start_clip:]))


def test_clip_stream_memory_is_bounded_by_one_clip_and_one_chunk():
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    chunk, n = 8, 800

    def source():
        for _ in range(n // chunk):
            yield np.repeat(frame[None], chunk, axis=0)

    sampler = ClipSampler(16, 8, "loop")
    tracemalloc.start()
    try:
        count = sum(1 for _ in sampler.clips(source()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == sampler.num_clips(n)
    assert peak < 6 * (16 + chunk) * frame.nbytes, f"peak {peak} bytes"


def test_bad_sampler_options():
    with pytest.raises(ValueError, match="tail"):
        ClipSampler(tail="wrap")
    with pytest.raises(ValueError):
        ClipSampler(clip_len=0)
    assert ClipSampler(16, 8, "loop").describe() == {"clip_len": 16, "stride": 8, "tail": "loop"}
