"""I3D ResNet-50: recipe-H parity with the Tushar-N reference through every checkpoint format, key mappings,
pytorchvideo equivalence, memory formats and shapes."""
from __future__ import annotations

import hashlib
import re
import warnings

import numpy as np
import pytest
import torch

import extractors
from extractors.i3d_resnet import (TemporalMaxPool, i3d_r50_caffe2, i3d_r50_ptv, ours_key_to_ptv, ours_key_to_tushar,
                                   ptv_key_to_ours, tushar_key_to_ours)
from extractors.weights import read_weights


@pytest.fixture(scope="module")
def r50_files(tmp_path_factory, recipe, r50_ref, r50_tushar_state, shared_dir):
    """The recipe-H weights saved in each original format, under the original key names."""
    d = tmp_path_factory.mktemp("r50_weights")
    pth = d / "i3d_r50_kinetics.pth"
    torch.save(r50_tushar_state, pth)
    pyth = d / "I3D_8x8_R50.pyth"
    ptv_state = recipe.to_ptv_names(r50_tushar_state, shared_dir / "reference" / "pytorchvideo_i3d_r50_keys.txt")
    assert len(ptv_state) == 320
    torch.save({"model_state": ptv_state}, pyth)
    pkl = recipe.write_caffe2_pkl(r50_tushar_state, r50_ref / "caffe2_blobs.txt", d / "caffe2_baseline.pkl")
    return {"caffe2_pkl": pkl, "tushar_pth": pth, "ptv_pyth": pyth}


@pytest.fixture(scope="module")
def r50_model(r50_files):
    """`load_model("i3d_r50_rtfm", weights=<synthetic Caffe2 pickle>)`: the default format of the default extractor."""
    return extractors.load_model("i3d_r50_rtfm", weights=r50_files["caffe2_pkl"])


@pytest.mark.parametrize("T", [16, 32])
def test_caffe2_r50_matches_recipe_h_reference(T, r50_model, recipe, r50_ref, assert_close):
    with torch.inference_mode():
        fmap = r50_model.forward_features(recipe.formula_h_input((1, 3, T, 224, 224)))
        feature, logits = r50_model.pool_features(fmap), r50_model.forward_head(fmap)
    assert tuple(fmap.shape) == (1, 2048, T // 8, 7, 7)
    assert_close(feature, np.load(r50_ref / "variant_H" / f"feature_T{T}.npy"), f"feature T={T}")
    assert_close(logits, np.load(r50_ref / "variant_H" / f"logits_T{T}.npy"), f"logits T={T}")


def test_every_r50_format_gives_the_same_tensors(r50_files, r50_tushar_state):
    # the forward pass is checked once (Caffe2 pickle); the other formats must load to bit-identical tensors
    loaded = {fmt: read_weights(path) for fmt, path in r50_files.items()}
    assert {fmt: lw.format for fmt, lw in loaded.items()} == {fmt: fmt for fmt in r50_files}
    expected = {tushar_key_to_ours(k): v for k, v in r50_tushar_state.items() if "num_batches_tracked" not in k}
    for fmt, lw in loaded.items():
        got = {k: v for k, v in lw.state_dict.items() if "num_batches_tracked" not in k}
        assert got.keys() == expected.keys(), fmt
        assert all(torch.equal(got[k], expected[k]) and got[k].dtype == torch.float32 for k in expected), fmt


def test_unfolded_batchnorm_model_matches_the_reference_too(r50_files, recipe, r50_ref, assert_close):
    model = extractors.load_model("i3d_r50_rtfm", weights=r50_files["tushar_pth"], fold_batchnorm=False)
    assert isinstance(model.blocks[0].norm, torch.nn.BatchNorm3d) and model.blocks[0].norm.eps == 1e-5
    with torch.inference_mode():
        fmap = model.forward_features(recipe.formula_h_input((1, 3, 16, 224, 224)))
    assert_close(model.pool_features(fmap), np.load(r50_ref / "variant_H" / "feature_T16.npy"), "unfolded feature")
    assert_close(model.forward_head(fmap), np.load(r50_ref / "variant_H" / "logits_T16.npy"), "unfolded logits")


def test_contiguous_and_channels_last_give_the_same_numbers(r50_model, r50_files, recipe, assert_close):
    contiguous = extractors.load_model("i3d_r50_rtfm", weights=r50_files["caffe2_pkl"], channels_last=False)
    assert r50_model.blocks[0].conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not contiguous.blocks[0].conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = recipe.formula_h_input((2, 3, 16, 112, 112))
    with torch.inference_mode():
        expected = contiguous.features(x)
        got = r50_model.features(x.contiguous(memory_format=torch.channels_last_3d))
        got_from_contiguous_input = r50_model.features(x)
    assert_close(got, expected, "channels_last vs contiguous")
    assert_close(got_from_contiguous_input, expected, "channels_last model, contiguous input")


def test_load_model_attributes_and_provenance(r50_model, r50_files):
    model = r50_model
    assert not model.training and model.feature_dim == 2048 and model.preset == "rtfm" and model.name == "i3d_r50_rtfm"
    prov = model.provenance
    assert prov["random"] is False and prov["weights_format"] == "caffe2_pkl" and prov["extractor"] == "i3d_r50_rtfm"
    assert prov["sha256"] == hashlib.sha256(r50_files["caffe2_pkl"].read_bytes()).hexdigest()
    assert prov["weights_path"] == str(r50_files["caffe2_pkl"].resolve())
    assert next(model.parameters()).device.type == "cpu"


def test_bfloat16_autocast_runs_and_stays_close(r50_model, recipe):
    x = recipe.formula_h_input((1, 3, 16, 112, 112))
    with torch.inference_mode():
        ref = r50_model.features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = r50_model.features(x)
    assert low.shape == (1, 2048) and torch.isfinite(low).all()
    rel = (low.float() - ref).norm() / ref.norm()
    assert rel < 0.05, f"bf16 relative L2 error {rel:.3g}"


# ---- key mappings ------------------------------------------------------------------------------------------------

def _ptv_lines(shared_dir):
    text = (shared_dir / "reference" / "pytorchvideo_i3d_r50_keys.txt").read_text()
    return [re.match(r"^(\S+) \[[\d,]*\] <- (\S+)$", line).groups() for line in text.splitlines()
            if line and not line.startswith("#")]


def test_tushar_and_ptv_key_mappings_match_the_reference_table(shared_dir, r50_ref):
    pairs = _ptv_lines(shared_dir)
    assert len(pairs) == 320
    ours = set(i3d_r50_caffe2().state_dict())
    assert ours == set(i3d_r50_ptv().state_dict())
    for ptv_key, tushar_key in pairs:
        assert tushar_key_to_ours(tushar_key) == ptv_key_to_ours(ptv_key)
        assert ours_key_to_tushar(tushar_key_to_ours(tushar_key)) == tushar_key
        assert ours_key_to_ptv(ptv_key_to_ours(ptv_key)) == ptv_key
    assert {ptv_key_to_ours(p) for p, _ in pairs} == ours
    reference_keys = [line.split()[0] for line in (r50_ref / "keys.txt").read_text().splitlines()
                      if line and not line.startswith("#")]
    assert {tushar_key_to_ours(k) for k in reference_keys} == ours


def test_unknown_key_is_refused():
    with pytest.raises(KeyError):
        tushar_key_to_ours("layer1.0.nl.theta.weight")


# ---- pytorchvideo equivalence --------------------------------------------------------------------------------------

def test_pytorchvideo_checkpoint_loads_and_matches_pytorchvideo(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from pytorchvideo.models.hub.resnet import i3d_r50

    torch.manual_seed(0)
    reference = i3d_r50(pretrained=False).eval()
    with torch.no_grad():  # pytorchvideo zero-initialises the last BN of each block; make every path count
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "I3D_8x8_R50.pyth"
    torch.save({"model_state": reference.state_dict(), "epoch": 196}, path)

    model = extractors.load_model("i3d_r50_ptv", weights=path)
    assert model.provenance["weights_format"] == "ptv_pyth" and model.preset == "kinetics"
    x = torch.randn(1, 3, 8, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        trunk = x
        for block in reference.blocks[:-1]:
            trunk = block(trunk)
        expected = reference.blocks[-1](trunk)  # = reference(x)
        fmap = model.forward_features(x)
        logits = model.forward_head(fmap)
    assert tuple(fmap.shape) == (1, 2048, 4, 7, 7)
    scale = expected.abs().max().item()
    assert (logits - expected).abs().max().item() <= 1e-5 * max(1.0, scale)
    assert torch.allclose(model.pool_features(fmap), trunk.mean(dim=(2, 3, 4)), rtol=0, atol=1e-5 * trunk.abs().max())


# ---- shapes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [16, 32])
@pytest.mark.parametrize("build, t_div", [(i3d_r50_caffe2, 8), (i3d_r50_ptv, 2)])
def test_features_and_logits_shapes(build, t_div, T):
    model = build().eval().to("meta")  # shapes only: no compute
    with torch.inference_mode():
        fmap = model.forward_features(torch.empty(2, 3, T, 224, 224, device="meta"))
        features, logits = model.pool_features(fmap), model.forward_head(fmap)
    assert tuple(fmap.shape) == (2, 2048, T // t_div, 7, 7)
    assert features.shape == (2, 2048) and logits.shape == (2, 400)


@pytest.mark.parametrize("T", [2, 3, 4, 5])
def test_temporal_max_pool_equals_max_pool3d(T):
    x = torch.randn(2, 8, T, 5, 6)
    expected = torch.nn.functional.max_pool3d(x, (2, 1, 1), (2, 1, 1))
    assert torch.equal(TemporalMaxPool()(x), expected)
    assert torch.equal(TemporalMaxPool()(x.contiguous(memory_format=torch.channels_last_3d)), expected)


def test_traces_with_torch_fx():
    class Features(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.features(x)

    model = i3d_r50_caffe2().eval()
    traced = torch.fx.symbolic_trace(Features(model))
    with torch.inference_mode():
        for T in (16, 17):  # odd T: the temporal pool drops the last frame, as MaxPool3d does
            x = torch.randn(1, 3, T, 32, 32)
            assert torch.equal(traced(x), model.features(x))


def test_features_run_on_small_real_input():
    model = i3d_r50_caffe2().eval().fold_batchnorm().to(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        features = model.features(torch.randn(2, 3, 16, 64, 64))
    assert features.shape == (2, 2048) and features.dtype == torch.float32 and torch.isfinite(features).all()
