"""Decoding: exact frame counts, backends agreeing frame for frame, resume, resampling, frame folders, bad input."""
from __future__ import annotations

import logging
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from extractors import decode
from extractors.decode import (VIDEO_EXTENSIONS, FrameFolderReader, VideoInfo, list_videos, natural_sort_key,
                               open_video, resample_indices)
from extractors.errors import InputError



from video_samples import synthetic_frames, write_audio_only  # noqa: E402

FILE_BACKENDS = ["pyav", "decord"]


def read_all(reader, chunk_size=64, start=0) -> np.ndarray:
    parts = list(reader.chunks(chunk_size, start=start))
    return np.concatenate(parts) if parts else np.zeros((0, reader.info.height, reader.info.width, 3), np.uint8)


def write_gop_video(path: Path, frames: np.ndarray, codec: str = "libx264", options: dict | None = None,
                    container_options: dict | None = None) -> Path:
    """Like conftest.write_video, with encoder options (short GOPs, B-frames) that make seeking non-trivial."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = options or {}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


OPEN_GOP_X264 = {"crf": "10", "x264-params": "keyint=8:min-keyint=8:bframes=3:scenecut=0:open-gop=1"}


# ------------------------------------------------------------------------------------------ counts and shapes


@pytest.mark.parametrize("backend", FILE_BACKENDS)
@pytest.mark.parametrize("n", [5, 16, 17, 33])
def test_num_frames_is_exactly_what_chunks_yield(make_video, backend, n):
    with open_video(make_video(f"v{n}.mp4", n), backend) as reader:
        frames = read_all(reader, chunk_size=8)
        assert reader.info == VideoInfo(reader.info.path, n, 25.0, 80, 64, backend)
    assert frames.shape == (n, 64, 80, 3) and frames.dtype == np.uint8


@pytest.mark.parametrize("backend", FILE_BACKENDS)
@pytest.mark.parametrize("name, height, width, kw", [
    ("odd444.mp4", 63, 81, {"pix_fmt": "yuv444p"}),
    ("odd420.mkv", 63, 81, {"codec": "ffv1"}),
    ("portrait.mp4", 112, 64, {}),
    ("mpeg4.avi", 64, 80, {"codec": "mpeg4"}),
    ("vp9.webm", 64, 80, {"codec": "libvpx-vp9"}),
])
def test_odd_sizes_portrait_and_containers(make_video, backend, name, height, width, kw):
    with open_video(make_video(name, 17, height=height, width=width, **kw), backend) as reader:
        frames = read_all(reader, chunk_size=5)
        assert (reader.info.num_frames, reader.info.height, reader.info.width) == (17, height, width)
    assert frames.shape == (17, height, width, 3)


def test_odd_sized_frames_decode_close_to_the_source(make_video):
    source = synthetic_frames(17, 63, 81)
    with open_video(make_video("odd444.mp4", 17, height=63, width=81, pix_fmt="yuv444p")) as reader:
        frames = read_all(reader)
    assert np.abs(frames.astype(int) - source).mean() < 3  # H.264 at crf 10: close, not lossless


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_grayscale_video_becomes_three_equal_channels(make_video, backend):
    path = make_video("gray.mkv", 17, height=63, width=81, gray=True, codec="ffv1", pix_fmt="gray")
    assert av.open(str(path)).streams.video[0].codec_context.pix_fmt == "gray"
    with open_video(path, backend) as reader:
        frames = read_all(reader)
    assert frames.shape == (17, 63, 81, 3)
    assert np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 0], frames[..., 2])
    assert np.array_equal(frames, synthetic_frames(17, 63, 81, gray=True))  # ffv1 is lossless


def test_tiny_portrait_that_decord_cannot_batch_still_opens_with_auto(make_video):
    # decord 0.6.0 fails get_batch at width 48 ("DECORDArrayCopyFromTo: The size must exactly match").
    with open_video(make_video("narrow.mp4", 17, height=96, width=48)) as reader:
        assert read_all(reader).shape == (17, 96, 48, 3)


# ------------------------------------------------------------------------------------ backends agree exactly


@pytest.mark.parametrize("name, height, width, kw", [
    ("plain.mp4", 64, 80, {}),
    ("odd444.mp4", 63, 81, {"pix_fmt": "yuv444p"}),
    ("mpeg4.avi", 64, 80, {"codec": "mpeg4"}),
    ("vp8.webm", 64, 80, {"codec": "libvpx"}),
    ("gray.mkv", 63, 81, {"codec": "ffv1", "pix_fmt": "gray", "gray": True}),
])
def test_decord_and_pyav_give_identical_frames(make_video, name, height, width, kw):
    path = make_video(name, 33, height=height, width=width, **kw)
    with open_video(path, "pyav") as a, open_video(path, "decord") as b:
        assert a.info.num_frames == b.info.num_frames == 33
        assert np.array_equal(read_all(a, 7), read_all(b, 10))


def test_decord_and_pyav_differ_only_slightly_on_odd_sized_420(make_video):
    # Their FFmpeg builds upsample odd-sized 4:2:0 chroma differently: measured max 25 levels, mean well under 1.
    path = make_video("odd420.mkv", 9, height=63, width=81, codec="ffv1")
    with open_video(path, "pyav") as a, open_video(path, "decord") as b:
        diff = np.abs(read_all(a).astype(int) - read_all(b))
    assert diff.max() <= 32 and diff.mean() < 1.0


def test_decord_and_pyav_agree_on_b_frame_open_gop_video(tmp_path):
    path = write_gop_video(tmp_path / "gop.mp4", synthetic_frames(40, 64, 80), options=OPEN_GOP_X264)
    with open_video(path, "pyav") as a, open_video(path, "decord") as b:
        assert np.array_equal(read_all(a), read_all(b))


@pytest.mark.slow
def test_backends_agree_on_a_real_ucf_video(shared_dir):
    path = shared_dir / "data" / "videos" / "RoadAccidents002_x264.mp4"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with open_video(path, "pyav") as a, open_video(path, "decord") as b:
        assert a.info.num_frames == b.info.num_frames == 347
        for x, y in zip(a.chunks(64), b.chunks(64)):
            assert np.array_equal(x, y)


# ------------------------------------------------------------------------------------------ streaming, resume


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_chunks_never_exceed_chunk_size(make_video, backend):
    with open_video(make_video("v.mp4", 33), backend) as reader:
        sizes = [len(c) for c in reader.chunks(chunk_size=8)]
    assert sizes == [8, 8, 8, 8, 1]


@pytest.mark.parametrize("backend", ["pyav", "decord", "frames"])
def test_streaming_memory_does_not_grow_with_video_length(make_video, tmp_path, backend):
    n, chunk = 160, 8
    if backend == "frames":
        path = tmp_path / "frames"
        path.mkdir()
        for i, img in enumerate(synthetic_frames(n, 64, 80), 1):
            Image.fromarray(img).save(path / f"{i}.png")
    else:
        path = make_video("long.mp4", n)
    frame_bytes = 64 * 80 * 3
    with open_video(path, backend) as reader:
        tracemalloc.start()
        try:
            count = sum(len(c) for c in reader.chunks(chunk_size=chunk))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert count == n
    assert peak < 6 * chunk * frame_bytes, f"peak {peak} bytes: more than a few chunks held at once"


@pytest.mark.parametrize("backend", FILE_BACKENDS)
@pytest.mark.parametrize("codec, options", [("libx264", OPEN_GOP_X264), ("mpeg4", {"g": "8", "bf": "2"})])
def test_resume_from_any_frame_matches_full_decode(tmp_path, backend, codec, options):
    path = write_gop_video(tmp_path / f"gop.{'mp4' if codec == 'libx264' else 'avi'}",
                           synthetic_frames(40, 64, 80), codec, options)
    with open_video(path, backend) as reader:
        full = read_all(reader)
        for start in (1, 7, 8, 9, 16, 17, 31, 39):
            assert np.array_equal(read_all(reader, 6, start=start), full[start:]), f"start={start}"
        assert read_all(reader, start=40).shape[0] == 0


def test_pyav_resume_seeks_to_a_keyframe_when_the_pts_are_exact(tmp_path, caplog):
    path = write_gop_video(tmp_path / "gop.mp4", synthetic_frames(40, 64, 80), options=OPEN_GOP_X264)
    with open_video(path, "pyav") as reader, caplog.at_level(logging.DEBUG, logger="extractors.decode"):
        full = read_all(reader)
        assert np.array_equal(read_all(reader, start=33), full[33:])
    assert "inexact seek" not in caplog.text


# --------------------------------------------------------------------------------------- timing, resampling


def test_variable_frame_rate_counts_frames_and_averages_fps(make_video):
    pts = [0, 1, 2, 4, 5, 8, 9, 10, 13, 14, 15, 16, 20, 21, 22, 23, 24, 26, 27, 30]
    path = make_video("vfr.mp4", len(pts), pts=pts, time_base=Fraction(1, 25))
    for backend in FILE_BACKENDS:
        with open_video(path, backend) as reader:
            assert reader.info.num_frames == 20
            assert reader.info.fps == pytest.approx(20 / (31 / 25), rel=0.05)


@pytest.mark.parametrize("backend", FILE_BACKENDS)
def test_target_fps_picks_latest_frame_at_or_before_each_output_time(make_video, backend):
    pts = [0, 1, 2, 4, 5, 8, 9, 10, 13, 14, 15, 16, 20, 21, 22, 23, 24, 26, 27, 30]
    path = make_video("vfr.mp4", len(pts), pts=pts, time_base=Fraction(1, 25))
    with open_video(path, backend) as source:
        frames = read_all(source)
    with open_video(path, backend, target_fps=25) as reader:
        out = read_all(reader, chunk_size=7)
        assert reader.info.fps == 25.0 and reader.info.num_frames == 31  # 0 .. 30 inclusive, one per 1/25 s
        resumed = read_all(reader, chunk_size=4, start=11)
    expected = [max(i for i, p in enumerate(pts) if p <= k) for k in range(31)]
    assert np.array_equal(out, frames[expected])
    assert np.array_equal(resumed, out[11:])


def test_target_fps_halves_and_doubles_constant_rate(make_video):
    path = make_video("cfr.mp4", 33)
    with open_video(path) as reader:
        frames = read_all(reader)
    with open_video(path, target_fps=12.5) as half, open_video(path, target_fps=50) as double:
        assert half.info.num_frames == 17 and double.info.num_frames == 66
        assert np.array_equal(read_all(half), frames[::2])
        assert np.array_equal(read_all(double, 5), np.repeat(frames, 2, axis=0))


def test_resample_indices_by_timestamps():
    times = np.array([0.0, 0.04, 0.08, 0.16, 0.20])  # a gap after 0.08 s
    assert resample_indices(times, 25).tolist() == [0, 1, 2, 2, 3, 4]
    assert resample_indices(times, 10).tolist() == [0, 2, 4]  # at 0, 0.1, 0.2 s
    assert resample_indices(times + 5.0, 10).tolist() == [0, 2, 4]  # a non-zero start time
    assert resample_indices(np.array([0.0]), 25).tolist() == [0]


# ------------------------------------------------------------------------------------------------ frame folders


def make_frame_folder(root: Path, n: int, ext: str = "png", gray: bool = False) -> tuple[Path, np.ndarray]:
    root.mkdir(parents=True, exist_ok=True)
    frames = synthetic_frames(n, 48, 40, gray=gray)
    for i, img in enumerate(frames, 1):
        Image.fromarray(img[..., 0] if gray else img).save(root / f"{i}.{ext}")
    return root, frames


def test_frame_folder_reads_in_natural_order(tmp_path):
    folder, frames = make_frame_folder(tmp_path / "clip.v2", 12)  # 1.png .. 12.png: 10 must follow 9
    (folder / "notes.txt").write_text("not a frame")
    with open_video(folder) as reader:
        assert reader.info == VideoInfo(str(folder), 12, decode.FRAME_FOLDER_FPS, 40, 48, "frames")
        assert np.array_equal(read_all(reader, 5), frames)  # png is lossless, so order shows exactly
        assert np.array_equal(read_all(reader, 5, start=9), frames[9:])


def test_frame_folder_of_gray_jpegs_gives_rgb(tmp_path):
    folder, frames = make_frame_folder(tmp_path / "gray", 5, ext="jpg", gray=True)
    with open_video(folder, "frames", folder_fps=10, target_fps=5) as reader:
        out = read_all(reader)
        assert (reader.info.num_frames, reader.info.fps) == (3, 5.0)
    assert out.shape == (3, 48, 40, 3) and np.array_equal(out[..., 0], out[..., 2])
    assert np.abs(out.astype(int) - frames[::2]).mean() < 4  # JPEG is lossy


def test_frame_folder_with_a_frame_of_another_size_fails_clearly(tmp_path):
    folder, _ = make_frame_folder(tmp_path / "mixed", 3)
    Image.new("RGB", (10, 10)).save(folder / "4.png")
    with open_video(folder) as reader, pytest.raises(InputError, match="4.png"):
        read_all(reader)


def test_natural_sort_key_orders_numbers_by_value():
    names = ["10.jpg", "2.jpg", "1.jpg", "img_10.png", "img_9.png", "B.png", "a.png"]
    assert sorted(names, key=natural_sort_key) == ["1.jpg", "2.jpg", "10.jpg", "a.png", "B.png", "img_9.png",
                                                   "img_10.png"]


# ------------------------------------------------------------------------------------------------- discovery


def test_list_videos_finds_files_and_frame_folders_naturally_sorted(tmp_path, make_video):
    make_video("10.mp4", 2, directory=tmp_path / "a")
    make_video("9.mp4", 2, directory=tmp_path / "a")
    make_video("cam.v1.avi", 2, codec="mpeg4", directory=tmp_path)
    make_video("with_thumb.mkv", 2, codec="ffv1", directory=tmp_path / "b")
    Image.new("RGB", (8, 8)).save(tmp_path / "b" / "thumbnail.jpg")  # a folder with videos is not a frame folder
    make_frame_folder(tmp_path / "frames" / "v1", 3)
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    make_video("skip.mp4", 2, directory=tmp_path / ".hidden")
    found = [p.relative_to(tmp_path).as_posix() for p in list_videos(tmp_path)]
    assert found == ["a/9.mp4", "a/10.mp4", "b/with_thumb.mkv", "cam.v1.avi", "frames/v1"]
    assert list_videos(tmp_path / "cam.v1.avi") == [tmp_path / "cam.v1.avi"]
    assert list_videos(tmp_path / "frames" / "v1") == [tmp_path / "frames" / "v1"]
    assert ".mp4" in VIDEO_EXTENSIONS and ".webm" in VIDEO_EXTENSIONS


# ------------------------------------------------------------------------------------------------- bad input


def bad_inputs(tmp_path: Path, make_video) -> dict[str, Path]:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    whole = make_video("whole.mp4", 40).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty_dir").mkdir()
    return {"zero-byte": empty, "text": text, "truncated": truncated,
            "audio-only": write_audio_only(tmp_path / "audio.mp4"), "missing": tmp_path / "missing.mp4",
            "empty folder": tmp_path / "empty_dir"}


@pytest.mark.parametrize("backend", ["auto", "pyav", "decord"])
def test_bad_inputs_raise_input_error_with_one_line_reason(tmp_path, make_video, backend):
    reasons = {}
    for kind, path in bad_inputs(tmp_path, make_video).items():
        if kind == "empty folder" and backend != "auto":
            continue
        with pytest.raises(InputError) as err:
            with open_video(path, backend) as reader:
                read_all(reader)
        reasons[kind] = str(err.value)
        assert "\n" not in reasons[kind] and path.name in reasons[kind], (kind, reasons[kind])
    if backend != "decord":
        assert "empty file" in reasons["zero-byte"]
        assert "no video stream" in reasons["audio-only"] and "audio" in reasons["audio-only"]
        assert "not a readable video" in reasons["text"]


def test_truncated_file_with_index_up_front_decodes_what_is_there(tmp_path, caplog):
    whole = write_gop_video(tmp_path / "fast.mp4", synthetic_frames(60, 64, 80), options={"crf": "10"},
                            container_options={"movflags": "faststart"}).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING), open_video(cut) as reader:
        frames = read_all(reader)
    assert 0 < reader.info.num_frames < 60 and len(frames) == reader.info.num_frames


def test_stream_shorter_than_its_index_repeats_last_frame_and_warns(tmp_path, monkeypatch, caplog):
    folder, frames = make_frame_folder(tmp_path / "f", 10)
    reader = open_video(folder)
    real = FrameFolderReader._decode

    def short(self, start, chunk_size):  # the decoder gives up after frame 6
        left = 7 - start
        for chunk in real(self, start, chunk_size):
            if left <= 0:
                return
            yield chunk[:left]
            left -= len(chunk)

    monkeypatch.setattr(FrameFolderReader, "_decode", short)
    with caplog.at_level(logging.WARNING):
        out = read_all(reader, chunk_size=4)
    assert len(out) == 10 and np.array_equal(out[:7], frames[:7]) and (out[7:] == frames[6]).all()
    assert "repeating the last one" in caplog.text
    with pytest.raises(InputError, match="no decodable video frames"):
        read_all(reader, start=8)


def test_auto_falls_back_to_decord_when_pyav_cannot_decode(make_video, monkeypatch):
    path = make_video("v.mp4", 17)

    def undecodable(self, *args, **kw):
        raise decode._Undecodable("v.mp4: PyAV could not decode any frame")

    monkeypatch.setattr(decode.PyAVReader, "__init__", undecodable)
    with open_video(path) as reader:
        assert reader.info.backend == "decord" and len(read_all(reader)) == 17


def test_bad_options_raise_input_error(make_video):
    path = make_video("v.mp4", 3)
    with pytest.raises(InputError, match="unknown decode backend"):
        open_video(path, "opencv")
    with pytest.raises(InputError, match="target_fps"):
        open_video(path, target_fps=0)
    with pytest.raises(InputError, match="folders"):
        open_video(path, "frames")
