"""Our MGFN reproduces the reference code's recorded outputs, losses and gradients (recipe H vectors)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import reference_vectors as recipe_h
from mgfn.checkpoint import load_model, reference_to_ours
from mgfn.data import magnitude_channel
from mgfn.losses import LossConfig, mgfn_loss


@pytest.fixture(scope="module")
def ref(shared_dir):
    root = shared_dir / "reference" / "mgfn" / "variant_H"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    return root


@pytest.fixture(scope="module")
def official_checkpoint(ref, tmp_path_factory):
    """Recipe-H weights under the reference key names, saved as the official `mgfn_ucf.pkl` would be."""
    state = recipe_h.state_dict(ref.parent / "weights_manifest.json")
    path = tmp_path_factory.mktemp("ckpt") / "mgfn_ucf.pkl"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    return path


@pytest.fixture(scope="module")
def train_input(ref):
    feats = recipe_h.inputs((4, 10, 32, 2048))
    mag = magnitude_channel(feats)
    np.testing.assert_allclose(mag[..., 0], np.load(ref / "input_train_mag.npy"), rtol=1e-6)
    return torch.from_numpy(np.concatenate([feats, mag], axis=-1))


@pytest.fixture(scope="module")
def test_input(ref):
    feats = recipe_h.inputs((1, 50, 10, 2048))
    x = np.concatenate([feats, magnitude_channel(feats)], axis=-1)
    return torch.from_numpy(x).permute(0, 2, 1, 3).contiguous()      # [1, crops, T, 2049]


def fresh_model(path):
    model, _ = load_model(path, dropout_rate=0.0)
    return model


def assert_close(ours, ref_path):
    ref = np.load(ref_path)
    ours = ours.detach().cpu().numpy().reshape(ref.shape)
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(ours - ref).max())
    assert err <= 1e-5 * scale, f"{ref_path.name}: max|diff| {err:.3g} > {1e-5 * scale:.3g}"


def check_selection(out, ref, prefix):
    assert_close(out.score_abnormal, ref / f"{prefix}_score_abnormal.npy")
    assert_close(out.score_normal, ref / f"{prefix}_score_normal.npy")
    assert_close(out.abn_feat, ref / f"{prefix}_abn_feat.npy")
    assert_close(out.nor_feat, ref / f"{prefix}_nor_feat.npy")
    assert_close(out.scores, ref / f"{prefix}_scores.npy")


def check_topk(out, details, prefix):
    sel = details[f"{prefix}_selection"]
    n = out.score_normal.shape[0]
    for half, mags in (("normal", out.magnitudes[:n]), ("abnormal", out.magnitudes[-n:])):
        idx = torch.topk(mags, 3, dim=1).indices.tolist()
        assert idx == sel[f"topk_idx_{half}"], f"{prefix} {half} top-k"


def test_import_strips_module_prefix_and_maps_every_key(ref, official_checkpoint):
    state = torch.load(official_checkpoint, weights_only=True)
    ours = reference_to_ours(state)
    model = fresh_model(official_checkpoint)
    assert set(ours) == set(model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(28.65e6, rel=2e-3)


def test_train_mode_forward_losses_and_gradients(ref, official_checkpoint, train_input):
    details = json.loads((ref / "details.json").read_text())
    model = fresh_model(official_checkpoint).train()
    out = model(train_input)
    check_topk(out, details, "train")
    check_selection(out, ref, "train")
    assert_close(out.magnitudes, ref / "train_feat_magnitude.npy")
    assert_close(out.crop_scores, ref / "train_scores_per_crop.npy")

    # BatchNorm running statistics after one train forward
    state = model.state_dict()
    mapped = reference_to_ours({k: torch.zeros(1) for k in details["bn_buffers_after_one_train_forward_sum_norm"]})
    for ref_key, our_key in zip(details["bn_buffers_after_one_train_forward_sum_norm"], mapped):
        want_sum, want_norm = details["bn_buffers_after_one_train_forward_sum_norm"][ref_key]
        t = state[our_key].double()
        assert float(t.sum()) == pytest.approx(want_sum, rel=1e-4, abs=1e-4), ref_key
        assert float(t.norm()) == pytest.approx(want_norm, rel=1e-4, abs=1e-4), ref_key

    want = json.loads((ref / "train_losses.json").read_text())
    head = mgfn_loss(out, crops=10, cfg=LossConfig(form="head"))
    rtfm = mgfn_loss(out, crops=10, cfg=LossConfig(form="rtfm"))
    pairs = [
        (head["bce"], want["loss_cls_bce"]),
        (head["con"], want["loss_con_raw"]),
        (head["con_n"], want["loss_con_n_raw"]),
        (head["con_a"], want["loss_con_a_raw"]),
        (8e-4 * head["smooth"], want["HEAD_loss_smooth(8e-4, per-video time diffs, all 4 videos)"]),
        (8e-3 * head["sparse"], want["HEAD_loss_sparse(8e-3, L2 norm of normal-video scores)"]),
        (head["total"], want["HEAD_cost_total"]),
        (8e-4 * rtfm["smooth"], want["RTFM_loss_smooth(8e-4, flattened abnormal half)"]),
        (8e-3 * rtfm["sparse"], want["RTFM_loss_sparse(8e-3, L2 norm of flattened abnormal half)"]),
        (rtfm["total"], want["RTFM_style_cost_total(mgfn_loss+RTFM smooth+sparse)"]),
        (head["total"] - 8e-4 * head["smooth"] - 8e-3 * head["sparse"], want["mgfn_loss_total(cls+contrastive)"]),
    ]
    for ours, expected in pairs:
        assert float(ours.detach()) == pytest.approx(expected, rel=1e-4)

    head["total"].backward()
    grads = json.loads((ref / "train_grad_stats.json").read_text())
    names = reference_to_ours({k: k for k in grads})
    params = dict(model.named_parameters())
    assert len(grads) == len(params) == 130
    for our_name, ref_name in names.items():
        g = params[our_name].grad.double()
        want_sum, want_norm = grads[ref_name]
        assert float(g.norm()) == pytest.approx(want_norm, rel=1e-3), ref_name
        assert abs(float(g.sum()) - want_sum) <= 2e-3 * want_norm, ref_name


def test_eval_mode_forward(ref, official_checkpoint, train_input):
    details = json.loads((ref / "details.json").read_text())
    with torch.no_grad():
        out = fresh_model(official_checkpoint)(train_input)
    check_topk(out, details, "eval")
    check_selection(out, ref, "eval")
    assert_close(out.magnitudes, ref / "eval_feat_magnitude.npy")
    assert_close(out.crop_scores, ref / "eval_scores_per_crop.npy")


def test_test_style_forward_and_prediction(ref, official_checkpoint, test_input):
    details = json.loads((ref / "details.json").read_text())
    model = fresh_model(official_checkpoint)
    with torch.no_grad():
        out = model(test_input)
        predicted = model.predict(test_input)
    check_topk(out, details, "test")
    check_selection(out, ref, "test")
    assert_close(predicted.reshape(50, 1), ref / "test_pred_per_snippet.npy")
