"""ClipTransform: resize presets, crops identical to torchvision's, normalisation presets, output layout."""
from __future__ import annotations

import json

import pytest
import torch
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as F

from extractors.transforms import PRESETS, ClipTransform, center_crop, five_crop, resize_frames, ten_crop

SIZES = [(256, 341), (257, 340), (224, 224), (256, 256), (301, 255), (225, 226)]  # odd margins test rounding


def random_frames(*shape, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("height, width", SIZES)
def test_crops_equal_torchvision_ten_five_and_center_crop(height, width):
    frames = random_frames(2, 3, height, width)
    assert torch.equal(ten_crop(frames, 224), torch.stack(T.TenCrop(224)(frames)))
    assert torch.equal(five_crop(frames, 224), torch.stack(T.FiveCrop(224)(frames)))
    assert torch.equal(center_crop(frames, 224), T.CenterCrop(224)(frames))
    as_float = frames.float()
    assert torch.equal(ten_crop(as_float, 224), torch.stack(T.TenCrop(224)(as_float)))


def test_crops_keep_leading_dims_and_reject_small_frames():
    frames = random_frames(2, 5, 3, 230, 240)  # [B, T, C, H, W]
    assert ten_crop(frames, 224).shape == (10, 2, 5, 3, 224, 224)
    with pytest.raises(ValueError, match="larger than the frames"):
        five_crop(random_frames(3, 200, 300), 224)


@pytest.mark.parametrize("resize, height, width, expected", [
    ("short256", 240, 320, (256, 341)),
    ("short256", 320, 240, (341, 256)),  # portrait
    ("short256", 64, 80, (256, 320)),  # small sources are upscaled
    ("256x256", 240, 320, (256, 256)),
    ("340x256", 240, 320, (256, 340)),  # width 340, height 256, aspect ignored
    ("none", 240, 320, (240, 320)),
])
def test_resize_presets(resize, height, width, expected):
    out = resize_frames(random_frames(2, 3, height, width), resize)
    assert tuple(out.shape[-2:]) == expected and out.dtype == torch.uint8


def test_resize_never_leaves_frames_smaller_than_the_crop():
    assert tuple(resize_frames(random_frames(1, 3, 240, 320), "short256", min_size=288).shape[-2:]) == (288, 384)
    assert tuple(resize_frames(random_frames(1, 3, 240, 320), "340x256", min_size=288).shape[-2:]) == (288, 340)
    assert tuple(resize_frames(random_frames(1, 3, 100, 150), "none", min_size=224).shape[-2:]) == (224, 336)


def test_uint8_resize_is_within_one_level_of_float_resize():
    # torchvision's native uint8 kernel (30x faster than resizing in float here) rounds its fixed-point weights:
    # about 19% of pixels differ by one level from resize-in-float-then-round, none by more.
    frames = random_frames(4, 3, 61, 83)
    fast = resize_frames(frames, "short256").int()
    exact = T.Resize(256, antialias=True)(frames.float()).round().clamp(0, 255).int()
    assert (fast - exact).abs().max().item() <= 1


def reference_transform(clip: torch.Tensor, crops: int, preset: str) -> torch.Tensor:
    """Frame by frame with torchvision's transforms: [T, H, W, 3] uint8 -> [crops, 3, T, 224, 224]."""
    crop = {10: T.TenCrop(224), 5: T.FiveCrop(224), 1: lambda x: (T.CenterCrop(224)(x),)}[crops]
    norm = PRESETS[preset]
    per_frame = []
    for frame in clip.permute(0, 3, 1, 2):  # [3, H, W]
        frame = F.resize(frame, [256], antialias=True)  # v2, uint8 kernel (v1 T.Resize resizes in float)
        per_frame.append(torch.stack(crop(frame)))  # [crops, 3, 224, 224]
    x = torch.stack(per_frame, dim=2).float()  # [crops, 3, T, 224, 224]
    return (x / norm.scale - torch.tensor(norm.mean).view(3, 1, 1, 1)) / torch.tensor(norm.std).view(3, 1, 1, 1)


@pytest.mark.parametrize("crops", [10, 5, 1])
@pytest.mark.parametrize("preset", ["rtfm", "inception", "kinetics"])
def test_clip_transform_matches_frame_by_frame_torchvision(crops, preset):
    clips = random_frames(2, 4, 61, 83, 3)  # [B, T, H, W, 3], odd sizes
    out = ClipTransform(crops=crops, preset=preset)(clips)
    assert out.shape == (2, crops, 3, 4, 224, 224) and out.dtype == torch.float32 and out.is_contiguous()
    for b in range(2):
        torch.testing.assert_close(out[b], reference_transform(clips[b], crops, preset), rtol=1e-6, atol=1e-5)


def test_output_buffer_is_reused():
    clips = random_frames(2, 4, 64, 80, 3)
    transform = ClipTransform(crops=5)
    expected = transform(clips)
    buffer = torch.empty_like(expected)
    assert transform(clips, out=buffer).data_ptr() == buffer.data_ptr() and torch.equal(buffer, expected)
    assert torch.equal(transform(clips[0], out=buffer[1]), expected[0])
    with pytest.raises(ValueError, match="out must be"):
        transform(clips, out=buffer[:1])


def test_single_clip_numpy_input_and_portrait_frames():
    clip = random_frames(16, 90, 50, 3).numpy()  # [T, H, W, 3], portrait, smaller than the crop
    out = ClipTransform()(clip)
    assert out.shape == (10, 3, 16, 224, 224)
    assert out.shape == ClipTransform(resize="340x256")(clip).shape == ClipTransform(resize="256x256")(clip).shape


def test_normalisation_presets_map_pixel_range():
    clip = torch.zeros(1, 1, 256, 256, 3, dtype=torch.uint8)
    clip[..., 128:, :] = 255  # right half white
    for preset, (low, high) in {"rtfm": (-2.0, (255 - 114.75) / 57.375), "inception": (-1.0, 1.0),
                                "kinetics": (-2.0, (1 - 0.45) / 0.225)}.items():
        out = ClipTransform(crops=1, preset=preset)(clip)
        assert out.min().item() == pytest.approx(low) and out.max().item() == pytest.approx(high), preset
    rtfm, kinetics = (ClipTransform(preset=p)(random_frames(1, 2, 240, 320, 3)) for p in ("rtfm", "kinetics"))
    torch.testing.assert_close(rtfm, kinetics)  # the same recipe written on two scales


def test_half_precision_output_is_the_rounded_float32_output():
    clips = random_frames(1, 3, 240, 320, 3)
    full = ClipTransform(crops=5)(clips)
    half = ClipTransform(crops=5, dtype=torch.float16)(clips)
    assert half.dtype == torch.float16 and half.is_contiguous()
    assert torch.equal(half, full.half())


@pytest.mark.parametrize("crops", [10, 5, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_model_input_is_the_output_in_channels_last_3d_bit_for_bit(crops, dtype):
    """Written channels_last_3d directly (no second full-size copy): the very same bits as the transform's output
    made channels_last_3d, which is what the network was given before."""
    clips = random_frames(2, 4, 61, 83, 3)
    transform = ClipTransform(crops=crops, dtype=dtype)
    out = transform(clips)
    expected = out.reshape(2 * crops, *out.shape[2:]).contiguous(memory_format=torch.channels_last_3d)
    got = transform.model_input(clips)
    assert got.shape == expected.shape and got.stride() == expected.stride() and got.dtype == dtype
    as_bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(got.view(as_bits), expected.view(as_bits))
    assert torch.equal(transform.model_input(clips[1].numpy()).view(as_bits), expected[crops:].view(as_bits))


def test_describe_names_everything_that_changes_the_numbers():
    base = ClipTransform().describe()
    json.dumps(base)
    assert base["resize"] == "short256" and base["crops"] == 10 and base["crop_size"] == 224
    assert base["preset"] == "rtfm" and base["dtype"] == "float32"
    others = [ClipTransform(resize="340x256"), ClipTransform(crops=5), ClipTransform(crop_size=160),
              ClipTransform(preset="inception"), ClipTransform(dtype=torch.float16)]
    assert all(t.describe() != base for t in others)


def test_bad_transform_options():
    with pytest.raises(ValueError, match="resize"):
        ClipTransform(resize="short")
    with pytest.raises(ValueError, match="crops"):
        ClipTransform(crops=3)
    with pytest.raises(ValueError, match="preset"):
        ClipTransform(preset="imagenet")
    with pytest.raises(ValueError, match="uint8"):
        ClipTransform()(torch.zeros(1, 16, 64, 64, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_numbers_on_gpu():
    clips = random_frames(2, 4, 240, 320, 3)
    transform = ClipTransform()
    torch.testing.assert_close(transform(clips.cuda()).cpu(), transform(clips), atol=0.05, rtol=0)
