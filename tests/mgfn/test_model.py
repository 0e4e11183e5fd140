"""Model shapes for any crop count, feature size and T; losses' pairing options; padding at a video's ends."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mgfn.losses import LossConfig, mgfn_loss, same_class_pairs
from mgfn.model import MGFN, MGFNConfig, temporal

SMALL = dict(dims=(32, 64, 128), depths=(1, 1, 1), dim_head=32)


@pytest.mark.parametrize("crops, dim, t", [(1, 4096, 32), (5, 1024, 32), (10, 2048, 7), (3, 16, 2)])
def test_shapes_for_any_crops_feature_size_and_t(crops, dim, t):
    model = MGFN(MGFNConfig(feature_size=dim, **SMALL))
    out = model(torch.rand(4, crops, t, dim + 1))
    k = min(3, t)
    assert out.score_normal.shape == out.score_abnormal.shape == (2, 1)
    assert out.abn_feat.shape == out.nor_feat.shape == (crops * 2, k, 128)
    assert out.scores.shape == (4, t, 1)
    terms = mgfn_loss(out, crops)
    assert torch.isfinite(terms["total"])


def test_single_video_inference_and_predict_agree():
    model = MGFN(MGFNConfig(feature_size=8, **SMALL)).eval()
    x = torch.rand(1, 2, 50, 9)
    with torch.no_grad():
        out, pred = model(x), model.predict(x)
    torch.testing.assert_close(out.scores[..., 0], pred)
    torch.testing.assert_close(out.score_normal, out.score_abnormal)


def test_selection_dropout_only_in_training():
    model = MGFN(MGFNConfig(feature_size=8, dropout_rate=0.7, **SMALL))
    x = torch.rand(4, 1, 32, 9)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a.abn_feat, b.abn_feat)


def test_crop_pairing_is_the_reference_half_split_and_video_pairing_differs():
    crops, b = 4, 3
    rows = torch.arange(crops * b, dtype=torch.float32).unsqueeze(1)     # row = crop*B + video
    left, right = same_class_pairs(rows, crops, "crop")
    assert (left - right).flatten().tolist() == [6.0] * 6                 # crop c+2 vs crop c, same video
    left, right = same_class_pairs(rows, crops, "video")
    assert [int(r) % b for r in left.flatten()] == [(int(r) + 1) % b for r in right.flatten()]


def test_loss_forms_differ_only_in_smoothness_and_sparsity():
    torch.manual_seed(0)
    model = MGFN(MGFNConfig(feature_size=8, dropout_rate=0.0, **SMALL))
    out = model(torch.rand(4, 2, 32, 9))
    head, rtfm = mgfn_loss(out, 2, LossConfig(form="head")), mgfn_loss(out, 2, LossConfig(form="rtfm"))
    for key in ("bce", "con", "con_n", "con_a"):
        assert float(head[key].detach()) == float(rtfm[key].detach())
    assert float(head["sparse"].detach()) != float(rtfm["sparse"].detach())


def test_edge_padding_is_a_convolution_over_the_end_clips_repeated():
    torch.manual_seed(1)
    conv = torch.nn.Conv1d(6, 4, 5, padding=2)
    x = torch.randn(2, 9, 6)                                                       # [N, T, C]
    expected = F.conv1d(F.pad(x.transpose(1, 2), (2, 2), mode="replicate"), conv.weight, conv.bias).transpose(1, 2)
    torch.testing.assert_close(temporal(conv, x, "edge"), expected)
    torch.testing.assert_close(temporal(conv, x), conv(x.transpose(1, 2)).transpose(1, 2))


def test_with_edge_padding_a_video_of_one_repeated_clip_scores_alike_everywhere():
    """Zero padding makes a clip's score depend on its distance to the video's ends (the demo's old ramp)."""
    torch.manual_seed(0)
    clip = torch.rand(1, 1, 1, 16).expand(1, 2, 10, 16)
    video = torch.cat([clip, clip.norm(dim=-1, keepdim=True)], dim=-1)            # [1, crops, T, D+1]
    with torch.no_grad():
        edge = MGFN(MGFNConfig(feature_size=16, padding="edge", **SMALL)).eval().predict(video)
        zeros = MGFN(MGFNConfig(feature_size=16, **SMALL)).eval().predict(video)
    assert float(edge.max() - edge.min()) < 1e-5
    assert float(zeros.max() - zeros.min()) > 1e-3
    assert "padding" not in MGFNConfig().to_dict() and MGFNConfig(padding="edge").to_dict()["padding"] == "edge"
    with pytest.raises(ValueError, match="padding"):
        MGFNConfig(padding="reflect")


def test_input_dropout_drops_clip_channels_in_training_only_and_keeps_the_magnitude():
    model = MGFN(MGFNConfig(feature_size=8, input_dropout=0.5, dropout_rate=0.0, **SMALL))
    seen = []
    model.fam.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    x = torch.rand(2, 1, 32, 9) + 0.1
    torch.manual_seed(0)
    model(x)
    dropped = seen[-1]
    assert 0.3 < float((dropped[..., :-1] == 0).float().mean()) < 0.7          # about half the clip channels
    torch.testing.assert_close(dropped[..., -1], x[..., -1].reshape(2, 32))     # the magnitude channel untouched
    model.eval()
    with torch.no_grad():
        model(x)
    torch.testing.assert_close(seen[-1], x.reshape(2, 32, 9))
    assert MGFNConfig(feature_size=8).to_dict().get("input_dropout") is None   # old model configs stay as they were


def test_bottom_k_term_is_the_bce_of_each_abnormal_videos_lowest_scores():
    torch.manual_seed(0)
    model = MGFN(MGFNConfig(feature_size=8, dropout_rate=0.0, **SMALL))
    out = model(torch.rand(4, 1, 32, 9))
    abnormal = out.scores[2:, :, 0]
    low = abnormal.sort(dim=1).values[:, :3].mean(1)
    want = -torch.log(1 - low).mean()
    terms = mgfn_loss(out, 1, LossConfig(w_bottom=2.0))
    torch.testing.assert_close(terms["bottom"], want)
    without = mgfn_loss(out, 1, LossConfig())
    torch.testing.assert_close(terms["total"] - without["total"], 2.0 * want)
