"""FeatureExtractor: block shapes and counts, resume gives the same bytes, ids track what changes the numbers.

A tiny stand-in model (monkeypatched over `load_model`) keeps these fast; the real I3D runs in tests/pipeline.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

import extractors.extractor as extractor_module
from extractors.errors import InputError
from extractors.extractor import FeatureExtractor, inference_network, pack_convolutions


def _run(ext: FeatureExtractor, path, start_clip: int = 0) -> list[np.ndarray]:
    with ext.extract(path, start_clip=start_clip) as feats:
        return list(feats)


def test_blocks_are_t_crops_d_and_t_is_ceil_n_over_16(tiny, make_video):
    video = make_video("v.mp4", n_frames=37)
    ext = FeatureExtractor("tiny", weights="random", crops=5, device="cpu", batch_size=2)
    with ext.extract(video) as feats:
        assert feats.info.num_frames == 37 and feats.num_clips == 3
        blocks = list(feats)
    assert [b.shape for b in blocks] == [(2, 5, 8), (1, 5, 8)]
    assert all(b.dtype == np.float32 for b in blocks)


def test_tail_drop_with_too_few_frames_is_bad_input(tiny, make_video):
    video = make_video("short.mp4", n_frames=10)
    ext = FeatureExtractor("tiny", weights="random", crops=1, device="cpu", tail="drop")
    with pytest.raises(InputError, match="fewer than one clip"):
        ext.extract(video)


def test_unreadable_file_raises_input_error_on_open(tiny, tmp_path):
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    ext = FeatureExtractor("tiny", weights="random", crops=1, device="cpu")
    with pytest.raises(InputError):
        ext.extract(bad)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_resume_at_a_batch_boundary_gives_identical_bytes(tiny, make_video, batch_size):
    video = make_video("long.mp4", n_frames=16 * 7 + 5)
    ext = FeatureExtractor("tiny", weights="random", crops=1, device="cpu", batch_size=batch_size)
    full = np.concatenate(_run(ext, video))
    start = 3 * batch_size if batch_size == 1 else 6
    resumed = np.concatenate(_run(ext, video, start_clip=start))
    assert full.shape == (8, 1, 8)
    assert resumed.tobytes() == full[start:].tobytes()


def test_workers_and_batch_size_do_not_change_the_id(tiny, make_video):
    video = make_video("v.mp4", n_frames=50)
    a = FeatureExtractor("tiny", weights="random", crops=1, device="cpu", batch_size=1, workers=1)
    b = FeatureExtractor("tiny", weights="random", crops=1, device="cpu", batch_size=1, workers=3)
    c = FeatureExtractor("tiny", weights="random", crops=1, device="cpu", batch_size=4, workers=1)
    assert a.extractor_id == b.extractor_id == c.extractor_id
    assert np.concatenate(_run(a, video)).tobytes() == np.concatenate(_run(b, video)).tobytes()


def test_id_changes_with_everything_that_changes_the_numbers(tiny):
    base = dict(name="tiny", weights="random", crops=1, device="cpu")
    ids = {FeatureExtractor(**base).extractor_id}
    for change in [dict(crops=5), dict(tail="drop"), dict(stride=8), dict(clip_len=8), dict(fps=10.0),
                   dict(resize="340x256"), dict(preset="inception"), dict(dtype="bfloat16"),
                   dict(weights="/some/file.pth"), dict(name="tiny2")]:
        ids.add(FeatureExtractor(**{**base, **change}).extractor_id)
    assert len(ids) == 11
    ext = FeatureExtractor(**base)
    assert ext.extractor_id.startswith("tiny-random-")
    cfg = ext.config()
    assert cfg["random_weights"] is True and cfg["extractor_id"] == ext.extractor_id


def test_bfloat16_is_close_to_float32(tiny, make_video):
    video = make_video("v.mp4", n_frames=32)
    f32 = np.concatenate(_run(FeatureExtractor("tiny", weights="random", crops=1, device="cpu"), video))
    bf16 = np.concatenate(_run(FeatureExtractor("tiny", weights="random", crops=1, device="cpu", dtype="bfloat16"), video))
    cos = (f32 * bf16).sum(-1) / (np.linalg.norm(f32, axis=-1) * np.linalg.norm(bf16, axis=-1))
    assert cos.min() > 0.99


def test_queue_is_bounded_and_early_stop_ends_the_worker(tiny, make_video, monkeypatch):
    """The worker runs ahead of the model by at most the queue size (memory flat in video length)."""
    video = make_video("v.mp4", n_frames=16 * 12)
    ext = FeatureExtractor("tiny", weights="random", crops=1, device="cpu", batch_size=1)
    prepared, consumed = [], []
    prepare, forward = ext.prepare, ext.forward
    monkeypatch.setattr(ext, "prepare", lambda clips: (prepared.append(1), prepare(clips))[1])

    def slow_forward(x):
        time.sleep(0.02)
        consumed.append(1)
        return forward(x)

    monkeypatch.setattr(ext, "forward", slow_forward)
    ahead = 0
    with ext.extract(video) as feats:
        for i, _ in enumerate(feats):
            ahead = max(ahead, len(prepared) - len(consumed))
            if i == 5:
                break
    assert ahead <= extractor_module.QUEUE_BATCHES + 2
    assert not any(t.name.startswith("decode:") and t.is_alive() for t in threading.enumerate())
    assert len(prepared) < 12


def test_cpu_decoder_thread_transforms_a_batch_only_when_the_one_before_is_taken(make_video, monkeypatch):
    """A transformed 10-crop float32 clip is 96 MB: however slow the network, one batch waits for it, no more."""
    from extractors import decoders

    video = make_video("v.mp4", n_frames=16 * 6)
    spec = decoders.DecodeSpec(clip_len=16, stride=16, tail="pad", fps=None, resize="short256", crops=1,
                               crop_size=224, preset="rtfm", dtype="float32", on_cpu=True, batch_size=1)
    prepared, taken, ahead = [], [], 0
    prepare = decoders._Decoder.prepare
    monkeypatch.setattr(decoders._Decoder, "prepare", lambda self, batch: (prepared.append(1), prepare(self, batch))[1])
    with decoders.DecoderPool(spec, 0) as pool:
        pool.submit(0, video, 0)
        while (msg := pool.get(timeout=10)) is not None and msg[0] != "end":
            assert msg[0] != "error", msg
            if msg[0] == "clips":
                taken.append(1)
                time.sleep(0.1)  # the network at work
                ahead = max(ahead, len(prepared) - len(taken))
    assert msg is not None and len(taken) == 6 and ahead <= 1


def test_unpacked_weights_are_freed_when_the_extractor_is_built(tiny, monkeypatch):
    """Packed, the network keeps no Conv3d; the unpacked ones (held by torch.fx's reference cycles until a garbage
    collection) are freed before the extractor is returned, not at some later collection."""
    import weakref

    convs, load = [], extractor_module.load_model
    monkeypatch.setattr(extractor_module, "load_model",
                        lambda *a, **k: (m := load(*a, **k), convs.append(weakref.ref(m.conv)))[0])
    ext = FeatureExtractor("tiny", weights="random", crops=1, device="cpu")
    assert ext.packed and not any(isinstance(m, nn.Conv3d) for m in ext.network.modules())
    assert convs and convs[0]() is None


def test_decode_errors_reach_the_caller(tiny, make_video, monkeypatch):
    video = make_video("v.mp4", n_frames=40)
    ext = FeatureExtractor("tiny", weights="random", crops=1, device="cpu")

    def broken(clips):
        raise InputError("corrupt frame")

    monkeypatch.setattr(ext, "prepare", broken)
    with pytest.raises(InputError, match="corrupt frame"):
        _run(ext, video)


def test_packed_convolutions_give_the_same_numbers_as_eager():
    """Packed weights + fused ReLU / residual add: the real I3D-R50 graph (small input), float32 and bfloat16."""
    import copy

    from extractors.models import load_model

    torch.manual_seed(0)
    traced, ok = inference_network(load_model("i3d_r50_rtfm", weights="random"))
    assert ok
    for dtype in (torch.float32, torch.bfloat16):
        net = copy.deepcopy(traced).to(memory_format=torch.channels_last_3d).to(dtype)
        x = torch.randn(3, 3, 8, 64, 64).to(dtype).contiguous(memory_format=torch.channels_last_3d)  # [N, 3, T, H, W]
        with torch.inference_mode():
            eager = net(x)
            packed = pack_convolutions(net, x[:1], batch=3)
            assert not any(isinstance(m, nn.Conv3d) for m in packed.modules())
            assert packed(x).float().equal(eager.float())
            assert packed(x[:2]).float().equal(eager[:2].float())  # a last, smaller batch
