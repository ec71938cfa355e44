"""Teacher training for every architecture: a few steps on a tiny scene, then save → load gives
an identical field and occupancy grid; recipe handling and the learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

import architectures
from pvd.data import load_dataset
from pvd.errors import UserError
from pvd.model import TrainedModel
from pvd.recipes import build_recipe, parse_assignment
from pvd.train import lr_factor, run_progress, settings_from_recipe, train

from .conftest import TINY_MODELS

TINY_RUN = [
    "render.occupancy_resolution=16",
    "render.step_size=0.05",
    "render.chunk_rays=1024",
    "train.target_samples=4096",
    "train.batch_rays=128",
    "train.steps=8",
    "train.occupancy_warmup_steps=2",
    "train.occupancy_update_every=2",
]


@pytest.mark.parametrize("arch", sorted(TINY_MODELS))
def test_every_architecture_trains_and_reloads_identically(arch, tiny_dataset, tmp_path):
    dataset = load_dataset(tiny_dataset)
    recipe = build_recipe(arch, "cpu", None, [*TINY_MODELS[arch], *TINY_RUN])
    model = train(dataset, arch, recipe)
    history = model.provenance["history"]
    assert (
        model.provenance["steps"] == 8
        and history
        and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    )
    path = model.save(tmp_path / f"{arch}.safetensors")
    again = TrainedModel.load(path)
    assert again.field.arch == architectures.canonical_name(arch)
    assert again.field.config == model.field.config
    x = torch.rand(256, 3) * 3 - 1.5
    d = torch.nn.functional.normalize(torch.randn(256, 3), dim=-1)
    for a, b in zip(model.field(x, d), again.field(x, d), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(model.grid.binary, again.grid.binary)
    assert set(again.cameras) == {"train", "test"}


def test_recipe_precedence_and_errors(tmp_path):
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text("[train]\nsteps = 123\nlr = 0.5\n")
    recipe = build_recipe("hashgrid", "cpu", recipe_file, ["train.lr=0.25"])
    assert recipe["train"]["steps"] == 123 and recipe["train"]["lr"] == 0.25
    assert recipe["model"]["levels"] == 12  # from the cpu preset
    assert parse_assignment("render.step_size=0.1") == ("render", "step_size", 0.1)
    assert parse_assignment("model.sigma_clip=[-2, 7]") == ("model", "sigma_clip", [-2, 7])
    with pytest.raises(UserError, match="--set key 'bogus' must be one of model, train, render"):
        parse_assignment("bogus=1")
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nsteps = 1\n")
    with pytest.raises(UserError, match="unknown recipe section 'training'"):
        build_recipe("hashgrid", "cpu", bad)
    with pytest.raises(UserError, match=r"train.lr = 'fast' must be of type float"):
        settings_from_recipe("hashgrid", build_recipe("hashgrid", "cpu", None, ["train.lr=fast"]))
    with pytest.raises(UserError, match=r"render.step_size = -0.1 is out of range"):
        settings_from_recipe(
            "hashgrid", build_recipe("hashgrid", "cpu", None, ["render.step_size=-0.1"])
        )
    with pytest.raises(UserError, match=r"recipe model section: .*features"):
        settings_from_recipe(
            "hashgrid", build_recipe("hashgrid", "cpu", None, ["model.features=3"])
        )
    with pytest.raises(UserError, match="no such recipe file"):
        build_recipe("hashgrid", "cpu", tmp_path / "missing.toml")


def test_every_shipped_preset_is_valid():
    for arch in architectures.names():
        for preset in ("cpu", "paper"):
            settings_from_recipe(arch, build_recipe(arch, preset))


def test_learning_rate_schedule():
    assert lr_factor(0, 0.0, 100) == pytest.approx(0.01)
    assert lr_factor(100, 0.1, 100) == 1.0
    assert lr_factor(499, 0.499, 0) == 1.0
    assert lr_factor(500, 0.5, 0) == pytest.approx(0.33)
    assert lr_factor(900, 0.9, 0) == pytest.approx(0.33**3)
    assert run_progress(100, 1000, elapsed=30.0, budget=60.0) == 0.5  # time runs out first
    assert run_progress(100, 1000, elapsed=30.0, budget=0.0) == 0.1  # no budget: steps only
    assert run_progress(600, 1000, elapsed=30.0, budget=60.0) == 0.6
