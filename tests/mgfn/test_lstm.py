"""I3D-LSTM: the front end's shapes and maths, its two training inputs, training and eval with it, its settings."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import make_split
from mgfn.checkpoint import ours_to_reference
from mgfn.data import magnitude_channel, pool_segments
from mgfn.errors import InputError
from mgfn.lstm import ClipSequences, parse_lstm_option, segment_matrix
from mgfn.model import MGFN, MGFNConfig
from pipeline.cli import main as cli

SMALL = dict(dims=(32, 64, 128), depths=(1, 1, 1), dim_head=32)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py: tiny LSTM ops


def lstm_model(dim=16, **lstm):
    torch.manual_seed(0)
    return MGFN(MGFNConfig(feature_size=dim, lstm={"hidden": 24, **lstm}, **SMALL))


@pytest.mark.parametrize("crops", [1, 5, 10])
@pytest.mark.parametrize("t", [1, 2, 7, 40])
@torch.no_grad()
def test_shapes_for_any_crops_and_t(crops, t):
    model = lstm_model(bidirectional=t % 2 == 0)
    out = model(torch.rand(4, crops, t, 17))                                  # training mode
    assert out.scores.shape == (4, t, 1) and out.crop_scores.shape == (4 * crops, t)
    assert out.abn_feat.shape == (2 * crops, min(3, t), 128)
    model.eval()
    assert model.predict(torch.rand(1, crops, t, 17)).shape == (1, t)
    batch = ClipSequences(torch.rand(4, crops, t, 16), torch.tensor([t, 1, max(1, t // 2), t]), 32)
    assert model(batch).scores.shape == (4, 32, 1) and batch.shape == (4, crops, 32, 17)


@pytest.mark.parametrize("t", [1, 7, 31, 32, 33, 100])
def test_segment_matrix_pools_exactly_like_the_training_set(t):
    x = np.random.default_rng(t).random((t, 3, 5), dtype=np.float32)
    padded = torch.zeros(t + 4, 15)
    padded[:t] = torch.from_numpy(x.reshape(t, 15))
    pooled = segment_matrix([t], 32, t + 4)[0] @ padded
    np.testing.assert_allclose(pooled.numpy().reshape(32, 3, 5), pool_segments(x), rtol=1e-6, atol=1e-6)


def test_clip_training_equals_pooled_training_when_a_video_has_32_clips():
    model = lstm_model(dim=8).eval()
    feats = np.random.default_rng(0).random((32, 2, 8), dtype=np.float32)     # 32 clips: pooling is the identity
    x = np.concatenate([feats, magnitude_channel(feats)], -1).transpose(1, 0, 2)[None]
    with torch.no_grad():
        pooled = model(torch.from_numpy(np.ascontiguousarray(x))).crop_scores
        clips = model(ClipSequences(torch.from_numpy(feats.transpose(1, 0, 2).copy())[None],
                                    torch.tensor([32]), 32)).crop_scores
    torch.testing.assert_close(pooled, clips)


def test_padding_does_not_leak_into_shorter_videos_even_bidirectional():
    model = lstm_model(dim=8, bidirectional=True).eval()
    a, b = torch.rand(2, 40, 8), torch.rand(2, 9, 8)
    batch = torch.zeros(2, 2, 40, 8)
    batch[0], batch[1, :, :9] = a, b
    with torch.no_grad():
        both = model.frontend(ClipSequences(batch, torch.tensor([40, 9]), 32))
        alone = model.frontend(ClipSequences(b[None], torch.tensor([9]), 32))
    torch.testing.assert_close(both[2:], alone)


def test_the_magnitude_channel_is_the_i3d_magnitude_passed_through():
    model = lstm_model(dim=8).eval()
    feats = np.random.default_rng(1).random((11, 3, 8), dtype=np.float32)
    x = np.concatenate([feats, magnitude_channel(feats)], -1).transpose(1, 0, 2)[None]
    with torch.no_grad():
        out = model.frontend(torch.from_numpy(np.ascontiguousarray(x)))
    assert out.shape == (3, 11, 8 + 24 + 1)                                   # the clips, the LSTM's output, magnitude
    np.testing.assert_allclose(out[..., -1].numpy(), magnitude_channel(feats)[..., 0].T, rtol=1e-6)


def test_by_default_mgfn_sees_each_clip_beside_the_lstm_output_in_both_training_inputs():
    model = lstm_model(dim=8).eval()
    assert model.frontend.out_size == 8 + 24 and model.fam.to_tokens.in_channels == 32
    feats = np.random.default_rng(2).random((32, 2, 8), dtype=np.float32)     # 32 clips: pooling is the identity
    x = np.concatenate([feats, magnitude_channel(feats)], -1).transpose(1, 0, 2)[None]
    with torch.no_grad():
        out = model.frontend(torch.from_numpy(np.ascontiguousarray(x)))
        pooled = model.frontend(ClipSequences(torch.from_numpy(feats.transpose(1, 0, 2).copy())[None],
                                              torch.tensor([32]), 32))
    assert out.shape == (2, 32, 8 + 24 + 1)
    np.testing.assert_allclose(out[..., :8].numpy(), feats.transpose(1, 0, 2), rtol=1e-6)   # the clips, as they are
    torch.testing.assert_close(out, pooled)
    plain = lstm_model(dim=8, skip=False).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("fam.")}, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(plain.frontend(torch.from_numpy(np.ascontiguousarray(x))), out[..., 8:])


def test_plain_mgfn_is_unchanged_and_an_lstm_state_dict_has_no_reference_form():
    plain = MGFN(MGFNConfig(feature_size=8, **SMALL))
    assert "lstm" not in plain.config.to_dict() and plain.frontend is None
    assert not any(k.startswith("frontend.") for k in plain.state_dict())
    ours_to_reference(plain.state_dict())
    with pytest.raises(InputError, match="cannot be exported to the reference format") as err:
        ours_to_reference(lstm_model().state_dict())
    assert "\n" not in str(err.value)


def test_lstm_settings_are_validated():
    assert parse_lstm_option("hidden=8,layers=2,bidirectional=true,sequences=clips,dropout=0.1,skip=yes") == \
        {"hidden": 8, "layers": 2, "bidirectional": True, "sequences": "clips", "dropout": 0.1, "skip": True}
    for bad in ("size=3", "hidden=x", "sequences=frames", "bidirectional=maybe", "dropout=1.5", "skip=2"):
        with pytest.raises(InputError, match="--lstm"):
            parse_lstm_option(bad)
    with pytest.raises(ValueError, match="unknown lstm settings"):
        MGFNConfig(feature_size=8, lstm={"hiden": 3})


def train_args(split, out, *extra):
    return ["train", "--train", str(split["train"]), "--test", str(split["test"]), "--gt", str(split["gt"]),
            "--out", str(out), "--config", str(split["config"]), "--quiet", "--epochs", "2", *map(str, extra)]


@pytest.mark.parametrize("sequences", ["pooled", "clips"])
def test_train_and_eval_with_the_lstm_on_cpu(tmp_path, capsys, sequences):
    split = make_split(tmp_path, 2, 24)
    run = tmp_path / "run"
    assert cli(train_args(split, run, "--extractor", "i3d_lstm", "--lstm", f"hidden=16,sequences={sequences}",
                          "--device", "cpu")) == 0
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["model_config"]["lstm"]["hidden"] == 16 and ckpt["model_config"]["lstm"]["sequences"] == sequences
    assert ckpt["train_config"]["extractor"] == "i3d_lstm"
    assert any(k.startswith("frontend.lstm.") for k in ckpt["model"])
    capsys.readouterr()
    assert cli(["eval", "--model", str(run / "best.pt"), "--test", str(split["test"]), "--gt", str(split["gt"]),
                "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["auc"] <= 1.0


def test_train_refuses_mismatched_settings_in_one_line(tmp_path, capsys):
    split = make_split(tmp_path, 1, 8)
    assert cli(train_args(split, tmp_path / "a", "--extractor", "i3d_lstm", "--model", "mil")) == 2
    assert cli(train_args(split, tmp_path / "b", "--lstm", "hidden=0")) == 2
    (split["root"] / "extractor.json").write_text(json.dumps({"extractor_id": "i3d_inception-1", "name": "i3d_inception"}))
    assert cli(train_args(split, tmp_path / "c", "--extractor", "i3d_r50_rtfm")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("mgfn train: error:") for line in err)
    assert "MIL baseline" in err[0] and "hidden" in err[1] and "i3d_inception, not i3d_r50_rtfm" in err[2]


def test_a_checkpoint_from_before_skip_loads_as_the_output_alone_model(tmp_path):
    from mgfn.checkpoint import load_model, save_checkpoint

    old = lstm_model(dim=8, skip=False).eval()
    save_checkpoint(tmp_path / "old.pt", old, epoch=1)
    ckpt = torch.load(tmp_path / "old.pt", weights_only=True)
    del ckpt["model_config"]["lstm"]["skip"]                 # what a checkpoint written before `skip` holds
    torch.save(ckpt, tmp_path / "old.pt")
    model, _ = load_model(tmp_path / "old.pt")
    assert model.config.lstm["skip"] is False
    x = torch.rand(1, 2, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(model.predict(x), old.predict(x))
