"""Inception I3D: recipe-H parity with piergiaj and with the video_features port, TF SAME padding for odd sizes,
key mappings, memory formats and shapes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import extractors
from extractors.i3d_inception import (InceptionI3d, MaxPool3dSame, Unit3D, ours_key_to_video_features,
                                      same_padding, video_features_key_to_ours)


@pytest.fixture(scope="module")
def inception_files(tmp_path_factory, recipe, inception_ref, inception_piergiaj_state):
    """The recipe-H weights as piergiaj `rgb_imagenet.pt` and as video_features `i3d_rgb.pt` (original key names)."""
    d = tmp_path_factory.mktemp("inception_weights")
    torch.save(inception_piergiaj_state, d / "rgb_imagenet.pt")
    vf = recipe.to_video_features_names(inception_piergiaj_state, inception_ref / "video_features_keys.txt")
    assert len(vf) == 344
    torch.save(vf, d / "i3d_rgb.pt")
    return {"piergiaj": d / "rgb_imagenet.pt", "video_features": d / "i3d_rgb.pt"}


@pytest.fixture(scope="module")
def piergiaj_model(inception_files):
    return extractors.load_model("i3d_inception", weights=inception_files["piergiaj"])


@pytest.mark.parametrize("T", [16, 64])
def test_inception_matches_piergiaj_recipe_h_reference(T, piergiaj_model, recipe, inception_ref, assert_close):
    ref = inception_ref / "variant_H"
    with torch.inference_mode():
        fmap = piergiaj_model.forward_features(recipe.formula_h_input((1, 3, T, 224, 224)))
        pooled = piergiaj_model.avg_pool(fmap)
        feature = piergiaj_model.pool_features(fmap)
        logits = piergiaj_model.forward_head(fmap, per_time=True)
    assert tuple(fmap.shape) == (1, 1024, T // 8, 7, 7) and feature.shape == (1, 1024)
    assert_close(pooled, np.load(ref / f"extract_features_T{T}.npy"), f"extract_features T={T}")
    assert_close(feature, np.load(ref / f"feature_mean_T{T}.npy"), f"feature_mean T={T}")
    assert_close(logits, np.load(ref / f"logits_T{T}.npy"), f"per-time logits T={T}")


@pytest.mark.parametrize("T", [16, pytest.param(64, marks=pytest.mark.slow)])
def test_video_features_checkpoint_reproduces_the_video_features_port(T, inception_files, recipe, inception_ref,
                                                                       assert_close):
    model = extractors.load_model("i3d_inception", weights=inception_files["video_features"])
    assert model.provenance["weights_format"] == "video_features_pt" and model.provenance["bn_eps"] == 1e-5
    with torch.inference_mode():
        fmap = model.forward_features(recipe.formula_h_input((1, 3, T, 224, 224)))
        feature, logits = model.pool_features(fmap), model.forward_head(fmap)  # logits averaged over time
    ref = inception_ref / "variant_H"
    assert_close(feature, np.load(ref / f"video_features_feature_T{T}.npy"), f"video_features feature T={T}")
    assert_close(logits, np.load(ref / f"video_features_logits_T{T}.npy"), f"video_features logits T={T}")


def test_load_model_attributes(piergiaj_model):
    m = piergiaj_model
    assert not m.training and m.feature_dim == 1024 and m.preset == "inception" and m.name == "i3d_inception"
    assert m.provenance["weights_format"] == "piergiaj_pt" and m.provenance["random"] is False
    assert m.Conv3d_1a_7x7.bn is None and m.Conv3d_1a_7x7.conv3d.bias is not None  # BatchNorm folded


def test_unfolded_contiguous_model_gives_the_same_numbers(piergiaj_model, inception_files, recipe, assert_close):
    plain = extractors.load_model("i3d_inception", weights=inception_files["piergiaj"], channels_last=False,
                                  fold_batchnorm=False)
    assert plain.Conv3d_1a_7x7.bn.eps == 1e-3
    x = recipe.formula_h_input((1, 3, 16, 112, 112))
    with torch.inference_mode():
        expected = plain.forward_features(x)
        got = piergiaj_model.forward_features(x.contiguous(memory_format=torch.channels_last_3d))
    assert_close(got, expected, "folded channels_last vs unfolded contiguous")


def test_bfloat16_autocast_runs_and_stays_close(piergiaj_model, recipe):
    x = recipe.formula_h_input((1, 3, 16, 112, 112))
    with torch.inference_mode():
        ref = piergiaj_model.forward_features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = piergiaj_model.forward_features(x)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    assert (low.float() - ref).norm() / ref.norm() < 0.05


# ---- TF "SAME" padding -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 7, 2, (2, 3)), (16, 7, 2, (2, 3)), (17, 7, 2, (3, 3)), (112, 3, 2, (0, 1)), (113, 3, 2, (1, 1)),
    (28, 3, 1, (1, 1)), (7, 2, 2, (0, 1)), (14, 2, 2, (0, 0)), (9, 1, 1, (0, 0)), (5, 3, 2, (1, 1)),
])
def test_same_padding(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    assert -(-size // stride) == (size + before + after - kernel) // stride + 1  # TF SAME output: ceil(size/stride)


def _piergiaj_pad(x, kernel, stride):
    """piergiaj's padding, written out: pad by the formula, smaller half first, zeros."""
    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride):
        pad = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads.append((pad // 2, pad - pad // 2))
    return F.pad(x, (*pads[2], *pads[1], *pads[0]))


@pytest.mark.parametrize("shape", [(1, 4, 17, 33, 31), (2, 4, 9, 15, 16), (1, 4, 5, 7, 7)])
@pytest.mark.parametrize("kernel, stride", [((7, 7, 7), (2, 2, 2)), ((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)),
                                            ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2)), ((1, 1, 1), (1, 1, 1))])
def test_same_padding_for_odd_sizes_matches_explicit_padding(shape, kernel, stride):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    unit = Unit3D(4, 6, kernel=kernel, stride=stride).eval()
    with torch.no_grad():
        unit.conv3d.weight.copy_(torch.randn(unit.conv3d.weight.shape, generator=g))
        unit.bn.running_var.uniform_(0.5, 1.5, generator=g)
    with torch.inference_mode():
        expected = F.relu(unit.bn(F.conv3d(_piergiaj_pad(x, kernel, stride), unit.conv3d.weight, stride=stride)))
        assert torch.allclose(unit(x), expected, rtol=1e-5, atol=1e-5)
        assert torch.allclose(unit(x.contiguous(memory_format=torch.channels_last_3d)), expected, rtol=1e-5, atol=1e-5)

        pooled = MaxPool3dSame(kernel, stride)(x)
        assert torch.equal(pooled, F.max_pool3d(_piergiaj_pad(x, kernel, stride), kernel, stride))
        assert tuple(pooled.shape[2:]) == tuple(-(-n // s) for n, s in zip(shape[2:], stride))


def test_max_pool_pads_with_zeros_like_piergiaj():
    x = -torch.ones(1, 1, 3, 4, 4)  # all negative: a zero pad shows up in the border maxima
    out = MaxPool3dSame((1, 3, 3), (1, 2, 2))(x)
    assert out.shape == (1, 1, 3, 2, 2)
    assert out[0, 0, 0].tolist() == [[-1.0, 0.0], [0.0, 0.0]]


def test_odd_clip_length_runs():
    model = InceptionI3d().eval()
    with torch.inference_mode():
        fmap = model.forward_features(torch.randn(1, 3, 17, 64, 80))
    assert tuple(fmap.shape) == (1, 1024, 3, 2, 3)  # ceil(17/8), ceil(64/32), ceil(80/32)


def test_traces_with_torch_fx_and_keeps_the_padding_dynamic():
    class Trunk(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.forward_features(x)

    model = InceptionI3d().eval()
    traced = torch.fx.symbolic_trace(Trunk(model))
    assert any(n.op == "call_module" and n.target.endswith("conv3d") for n in traced.graph.nodes)  # convs stay modules
    with torch.inference_mode():
        for shape in [(1, 3, 9, 40, 44), (2, 3, 16, 64, 64)]:
            x = torch.randn(shape)
            assert torch.equal(traced(x), model.forward_features(x))


# ---- keys and shapes -------------------------------------------------------------------------------------------

def test_video_features_key_mapping_matches_the_reference_table(inception_ref):
    lines = [line for line in (inception_ref / "video_features_keys.txt").read_text().splitlines()
             if "->" in line and not line.startswith("#")]
    assert len(lines) == 344
    ours = set(InceptionI3d().state_dict())
    mapped = set()
    for line in lines:
        vf_key, rest = (part.strip() for part in line.split("->"))
        piergiaj_key = rest.split()[0]
        assert video_features_key_to_ours(vf_key) == piergiaj_key
        assert ours_key_to_video_features(piergiaj_key) == vf_key
        mapped.add(piergiaj_key)
    assert mapped == ours
    reference_keys = {line.split()[0] for line in (inception_ref / "keys.txt").read_text().splitlines()
                      if line and not line.startswith("#")}
    assert reference_keys == ours


@pytest.mark.parametrize("T", [16, 32])
def test_features_and_logits_shapes(T):
    model = InceptionI3d(num_classes=400).eval().to("meta")  # shapes only: no compute
    with torch.inference_mode():
        fmap = model.forward_features(torch.empty(2, 3, T, 224, 224, device="meta"))
        features = model.pool_features(fmap)
        logits = model.forward_head(fmap)
        per_time = model.forward_head(fmap, per_time=True)
    assert tuple(fmap.shape) == (2, 1024, T // 8, 7, 7)
    assert features.shape == (2, 1024) and logits.shape == (2, 400) and per_time.shape == (2, 400, T // 8 - 1)
