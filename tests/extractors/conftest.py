"""Fixtures for the extractor tests: the recipe-H helpers (loaded by path; tests/ is not a package) and reference dirs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("extractors_recipe_h", Path(__file__).with_name("recipe_h.py"))
recipe_h = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipe_h)


@pytest.fixture(scope="session")
def recipe():
    """The recipe-H module: formula_h_input, recipe_h_state_dict, write_caffe2_pkl, to_video_features_names, ..."""
    return recipe_h


@pytest.fixture(scope="session")
def r50_ref(shared_dir) -> Path:
    """shared/reference/i3d_r50_caffe2 (skips when ../shared is absent)."""
    return shared_dir / "reference" / "i3d_r50_caffe2"


@pytest.fixture(scope="session")
def inception_ref(shared_dir) -> Path:
    """shared/reference/i3d_inception (skips when ../shared is absent)."""
    return shared_dir / "reference" / "i3d_inception"


@pytest.fixture(scope="session")
def r50_tushar_state(recipe, r50_ref):
    """Recipe-H I3D-R50 weights under the Tushar-N key names."""
    return recipe.recipe_h_state_dict(r50_ref / "weights_manifest.json")


@pytest.fixture(scope="session")
def inception_piergiaj_state(recipe, inception_ref):
    """Recipe-H Inception-I3D weights under the piergiaj key names."""
    return recipe.recipe_h_state_dict(inception_ref / "weights_manifest.json")


def assert_close_to_reference(actual, expected, what: str = "") -> None:
    """README section 6: max |impl - ref| <= 1e-5 * max(1, max |ref|)."""
    import numpy as np
    import torch

    if isinstance(actual, torch.Tensor):
        actual = actual.detach().float().cpu().numpy()
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = float(np.abs(actual - expected).max())
    bound = 1e-5 * max(1.0, float(np.abs(expected).max()))
    assert err <= bound, f"{what}: max |diff| {err:.3g} > {bound:.3g}"


@pytest.fixture(scope="session")
def assert_close():
    return assert_close_to_reference
