"""Input transforms inside MGFN and the MIL baseline: `center: median` (each video's clips less its usual clip),
`center: context` (and the usual clip beside them), `normalize: l2`, and inputs prepared once for training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mgfn.checkpoint import load_model, save_checkpoint
from mgfn.data import TestSet, TrainingSet, read_list
from mgfn.features import (TYPICAL_DEVIATION, center_clips, deviation_scale, input_size, normalize_clips,
                           usual_clip)
from mgfn.lstm import ClipSequences
from mgfn.mil import MILConfig, MILRanking
from mgfn.model import MGFN, MGFNConfig
from mgfn.synthetic import SynthConfig, make_dataset
from mgfn.train import TrainConfig, run_training

pytestmark = pytest.mark.usefixtures("one_thread")

NARROW = {"dims": (32, 64, 128), "depths": (1, 1, 1), "dim_head": 32}


def with_magnitude(features):
    return torch.cat([features, features.norm(dim=-1, keepdim=True)], dim=-1)


def test_each_video_and_crop_is_centred_on_its_own_usual_clip():
    rng = np.random.default_rng(0)
    feats = torch.from_numpy(rng.random((3, 2, 7, 5)).astype(np.float32))          # [V, crops, T, D]
    out = center_clips(with_magnitude(feats))
    moved = feats.clone()
    moved[1, 0] += torch.arange(5.0)                      # another scene for one video's one crop only
    out_moved = center_clips(with_magnitude(moved))
    torch.testing.assert_close(out_moved, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., 5], out[..., :5].norm(dim=-1))   # the magnitude of the centred clip
    torch.testing.assert_close(center_clips(with_magnitude(feats), 2.0)[..., :5], 2.0 * out[..., :5])


def test_events_over_most_of_a_video_still_leave_its_scene():
    scene = torch.rand(8)
    clips = scene.repeat(12, 1)
    clips[:7] += torch.linspace(0.5, 3.0, 7)[:, None] * torch.eye(8)[0]          # a ramp over 7 of 12 clips
    out = center_clips(with_magnitude(clips[None, None]))[0, 0, :, :8]
    assert out[7:].abs().max() < 0.1                      # the scene clips: almost nothing left (one event clip of
    assert (out[:7, 0] > 0.4).all()                       # the event is in the nearest half); the event keeps its sign
    plain_median = clips - clips.median(dim=0, keepdim=True).values
    assert (plain_median[7:, 0] < -0.4).all()             # where the median alone would mark every scene clip


def test_an_event_leaves_the_other_clips_alone_where_the_mean_would_not():
    scene = torch.rand(1, 1, 1, 8).expand(1, 1, 9, 8).clone()
    event = scene.clone()
    event[0, 0, 2:5] += 3.0                                             # three of nine clips
    out = center_clips(with_magnitude(event))
    assert torch.allclose(out[0, 0, [0, 1, 5, 6, 7, 8], :8], torch.zeros(6, 8), atol=1e-6)
    assert torch.allclose(out[0, 0, 2:5, :8], torch.full((3, 8), 3.0))
    assert torch.allclose(out[0, 0, 2:5, 8], torch.full((3,), 3.0 * 8 ** 0.5))
    mean_centred = event - event.mean(dim=2, keepdim=True)
    assert mean_centred[0, 0, 0].abs().max() > 0.5                     # why not the mean


def test_clip_sequences_are_centred_over_each_videos_own_length():
    clips = torch.zeros(2, 1, 6, 3)
    clips[0, 0, :4] = torch.tensor([[1.0, 2, 3], [1, 2, 3], [5, 5, 5], [1, 2, 3]])
    clips[1, 0, :6] = torch.arange(18.0).view(6, 3)
    out = center_clips(ClipSequences(clips, torch.tensor([4, 6]), segments=2))
    assert torch.equal(out.clips[0, 0, :4], torch.tensor([[0.0, 0, 0], [0, 0, 0], [4, 3, 2], [0, 0, 0]]))
    assert torch.equal(out.clips[0, 0, 4:], torch.zeros(2, 3))           # padding stays zero
    assert torch.equal(out.clips[1, 0, 2], torch.zeros(3))              # even T: torch's lower median, clip 2
    assert clips[0, 0, 0, 0] == 1.0                                      # the batch itself is not modified


@pytest.mark.parametrize("make", [
    lambda center: MGFN(MGFNConfig(feature_size=16, center=center, **NARROW)),
    lambda center: MILRanking(MILConfig(feature_size=16, center=center)),
], ids=["mgfn", "mil"])
def test_a_centred_model_does_not_see_the_scene(make):
    torch.manual_seed(0)
    model = make("median").eval()
    clips = torch.rand(2, 3, 11, 16)
    scene = 5.0 * torch.rand(2, 3, 1, 16)                               # a different constant per video and crop
    with torch.no_grad():
        plain, moved = model.predict(with_magnitude(clips)), model.predict(with_magnitude(clips + scene))
    torch.testing.assert_close(moved, plain, atol=1e-5, rtol=1e-4)
    torch.manual_seed(0)
    uncentred = make("none").eval()
    with torch.no_grad():
        assert not torch.allclose(uncentred.predict(with_magnitude(clips + scene)),
                                  uncentred.predict(with_magnitude(clips)), atol=1e-3)


def test_center_is_checked_and_recorded(tmp_path):
    with pytest.raises(ValueError, match="center must be one of none, median"):
        MGFNConfig(center="mean")
    with pytest.raises(ValueError, match="center must be one of"):
        MILConfig(center="avg")
    assert "center" not in MGFNConfig().to_dict()                       # a plain model's config is as before
    for model in (MGFN(MGFNConfig(feature_size=16, center="median", **NARROW)),
                  MILRanking(MILConfig(feature_size=16, center="median"))):
        save_checkpoint(tmp_path / "m.pt", model)
        loaded, _ = load_model(tmp_path / "m.pt")
        assert type(loaded) is type(model) and loaded.config.center == "median"


def test_deviation_scale_brings_the_typical_clip_to_the_target():
    rng = np.random.default_rng(1)
    videos = [torch.from_numpy(rng.normal(0, 0.02, (2, 9, 64)).astype(np.float32)) + 5.0 for _ in range(4)]
    scale = deviation_scale(videos)
    centred = [center_clips(with_magnitude(v[None]), scale)[0, ..., :-1] for v in videos]
    rms = torch.cat([(c.norm(dim=-1) / 8.0).flatten() for c in centred])
    assert rms.median() == pytest.approx(TYPICAL_DEVIATION, rel=1e-4)
    assert deviation_scale([torch.ones(1, 5, 3)]) == 1.0              # nothing moves: no scaling


def test_training_records_the_scale_of_its_own_videos(tmp_path):
    paths = make_dataset(tmp_path / "data", SynthConfig(train_normal=4, train_abnormal=4, test_normal=2,
                                                        test_abnormal=2, feature_size=32, l2_normalize=True, seed=2))
    cfg = TrainConfig(epochs=1, batch_size=2, seed=0, select="last", model={"depths": [1, 1, 1]})
    run_training(paths["train"], paths["test"], paths["gt"], tmp_path / "run", cfg, progress=False,
                 log=lambda *_: None)
    model, ckpt = load_model(tmp_path / "run" / "last.pt")
    expected = deviation_scale(TrainingSet(read_list(paths["train"])).videos(), normalize="l2")
    assert ckpt["model_config"]["center"] == "context" and ckpt["model_config"]["normalize"] == "l2"
    assert model.config.center_scale == pytest.approx(expected) and expected > 10   # L2 features: small deviations


def test_context_puts_the_scaled_usual_clip_beside_each_centred_clip():
    rng = np.random.default_rng(3)
    feats = torch.from_numpy(rng.random((2, 3, 9, 6)).astype(np.float32))          # [V, crops, T, D]
    plain = center_clips(with_magnitude(feats), scale=2.0)
    out = center_clips(with_magnitude(feats), scale=2.0, context=True)
    assert out.shape == (2, 3, 9, 13) and input_size(6, "context") == 12
    assert torch.equal(out[..., :6], plain[..., :6]) and torch.equal(out[..., -1], plain[..., -1])
    usual = usual_clip(feats, 2) * 2.0
    assert torch.allclose(out[..., 6:12], usual.expand(-1, -1, 9, -1))


def test_context_of_clip_sequences_equals_that_of_the_pooled_tensor_on_each_videos_length():
    rng = np.random.default_rng(4)
    clips = torch.from_numpy(rng.random((2, 1, 7, 5)).astype(np.float32))
    clips[1, :, 4:] = 0                                                             # video 1: 4 clips, then padding
    batch = ClipSequences(clips, torch.tensor([7, 4]), 32)
    out = center_clips(batch, scale=0.5, context=True).clips
    assert out.shape == (2, 1, 7, 10) and torch.equal(out[1, :, 4:], torch.zeros(1, 3, 10))
    one = center_clips(with_magnitude(clips[1:, :, :4]), scale=0.5, context=True)[..., :-1]
    assert torch.allclose(out[1:, :, :4], one)


def test_l2_normalisation_gives_unit_clips_and_leaves_zero_clips_alone():
    feats = torch.tensor([[[[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]]]])                 # [1, 1, 3, 2]
    out = normalize_clips(with_magnitude(feats))
    assert torch.allclose(out[..., :2], torch.tensor([[[[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]]]]))
    assert torch.allclose(out[..., 2], torch.tensor([[[1.0, 0.0, 1.0]]]))
    assert deviation_scale([feats[0] * 7], normalize="l2") == pytest.approx(deviation_scale([feats[0]], normalize="l2"))


@pytest.mark.parametrize("model_type", ["mgfn", "mil"])
def test_inputs_prepared_once_score_as_inputs_prepared_on_the_fly(model_type):
    torch.manual_seed(0)
    cfg = {"feature_size": 12, "center": "context", "normalize": "l2", "center_scale": 3.0}
    model = (MGFN(MGFNConfig(**cfg, **NARROW)) if model_type == "mgfn" else MILRanking(MILConfig(**cfg))).eval()
    video = with_magnitude(torch.rand(2, 2, 10, 12))
    with torch.no_grad():
        direct = model.predict(video)
        prepared = model.predict(model.prepare_inputs(video), prepared=True)
    assert torch.allclose(direct, prepared, atol=1e-6)


def test_training_and_test_sets_keep_their_videos_prepared(tmp_path):
    paths = make_dataset(tmp_path / "data", SynthConfig(train_normal=2, train_abnormal=2, test_normal=1,
                                                        test_abnormal=1, feature_size=8, seed=5))
    model = MGFN(MGFNConfig(feature_size=8, center="context", normalize="l2", **NARROW)).eval()
    train, test = TrainingSet(read_list(paths["train"])), TestSet(read_list(paths["test"]))
    raw_train, raw_test = train.data.clone(), test.video(0)
    train.prepare(model.prepare_inputs)
    test.prepare(model.prepare_inputs)
    assert train.prepared and test.prepared
    assert torch.allclose(train.data, model.prepare_inputs(raw_train))
    assert torch.allclose(test.video(0), model.prepare_inputs(raw_test))
    with pytest.raises(RuntimeError):
        next(train.videos())
