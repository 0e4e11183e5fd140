"""Training recipes: `reference` is exactly the published MGFN recipe, `default` fills what a config leaves out."""
from __future__ import annotations

import argparse

import pytest
import yaml

from mgfn import train
from mgfn.errors import InputError
from mgfn.losses import LossConfig
from mgfn.model import MGFNConfig
from mgfn.train import RECIPES, TrainConfig, config_from_args


def parse(*argv):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(["--train", "t.csv", "--test", "s.csv", "--gt", "gt", "--out", "run", *argv])


def test_reference_recipe_is_the_published_recipe():
    cfg = TrainConfig(recipe="reference")
    assert (cfg.lr, cfg.weight_decay, cfg.shuffle) == (1e-3, 5e-4, False)
    assert MGFNConfig(**cfg.model) == MGFNConfig()          # model defaults are the reference's
    assert LossConfig(**cfg.loss) == LossConfig()           # loss defaults are the reference's
    assert MGFNConfig().select_by == "magnitude" and LossConfig().w_contrastive == 1e-3


def test_default_recipe_is_used_when_nothing_is_said():
    cfg = TrainConfig()
    assert cfg.recipe == "default"
    recipe = RECIPES["default"]
    assert (cfg.lr, cfg.weight_decay, cfg.shuffle) == (recipe["lr"], recipe["weight_decay"], recipe["shuffle"])
    assert cfg.model == recipe["model"] and cfg.loss == recipe["loss"]
    assert cfg != TrainConfig(recipe="reference")


def test_explicit_settings_win_over_the_recipe():
    cfg = TrainConfig(recipe="default", lr=3e-4, model={"select_by": "magnitude", "k": 5}, loss={"w_smooth": 0.0})
    assert cfg.lr == 3e-4
    assert cfg.model["select_by"] == "magnitude" and cfg.model["k"] == 5
    assert cfg.loss == {**RECIPES["default"]["loss"], "w_smooth": 0.0}


def test_resolved_config_round_trips():
    from dataclasses import asdict
    cfg = TrainConfig(recipe="reference", seed=3)
    assert TrainConfig(**asdict(cfg)) == cfg


def test_cli_recipe_refills_what_the_yaml_left_out(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"recipe": "default", "epochs": 7, "lr": 2e-4}))
    cfg = config_from_args(parse("--config", str(path), "--recipe", "reference"))
    assert cfg.recipe == "reference" and cfg.epochs == 7
    assert cfg.lr == 2e-4                                    # the file said it, so it stays
    assert cfg.model == {} and cfg.loss == {} and cfg.shuffle is False
    assert config_from_args(parse("--config", str(path))).model == RECIPES["default"]["model"]


def test_mil_keeps_its_own_settings():
    cfg = TrainConfig(model_type="mil")
    assert cfg.model == {} and cfg.loss == {} and cfg.epochs == train.MIL_EPOCHS == 100


def test_length_is_the_recipe_s_unless_a_config_or_the_command_line_says(tmp_path):
    assert (TrainConfig().epochs, TrainConfig(recipe="reference").epochs) == (20, 100)
    assert TrainConfig(epochs=7).epochs == 7 and TrainConfig(model_type="mil", epochs=7).epochs == 7
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"recipe": "reference", "epochs": 5}))
    assert config_from_args(parse("--config", str(path))).epochs == 5
    assert config_from_args(parse("--config", str(path), "--epochs", "3")).epochs == 3
    assert config_from_args(parse("--recipe", "reference")).epochs == 100
    assert "20 for default, 100 for reference" in " ".join(train_help().split())


def train_help() -> str:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.format_help()


def test_unknown_recipe_is_one_line_error():
    with pytest.raises(InputError, match="recipe must be one of"):
        TrainConfig(recipe="fancy")


def test_default_recipe_centres_normalised_features_beside_their_context_in_a_narrow_mgfn():
    model = TrainConfig().model
    assert model["center"] == "context" and model["normalize"] == "l2" and model["select_by"] == "score"
    assert model["input_dropout"] == 0.5 and TrainConfig().lr_schedule == "constant"
    assert model.get("padding", "zeros") == "zeros"
    assert MGFNConfig(**model).dims == (32, 64, 128)


def test_width_is_filled_as_a_unit():
    cfg = TrainConfig(model={"dims": [64, 128, 1024]})     # the reference's widths, with its dim_head
    assert "dim_head" not in cfg.model and MGFNConfig(**cfg.model).dim_head == 64
    assert cfg.model["center"] == "context"                 # the rest of the recipe still applies
    assert "dims" not in TrainConfig(model={"dim_head": 16}).model
