"""Shared fixtures: a tiny procedural dataset and a tiny trained hash-grid checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

#: A hash grid small enough to train a few steps in a second or two.
TINY_HASHGRID = [
    "model.levels=4",
    "model.log2_table_size=12",
    "model.max_resolution=64",
    "model.hidden_width=16",
    "render.occupancy_resolution=16",
    "render.step_size=0.05",
    "render.chunk_rays=1024",
    "train.target_samples=4096",
    "train.batch_rays=128",
    "train.occupancy_warmup_steps=2",
    "train.occupancy_update_every=2",
]

#: Per-architecture shrinking so each trains in a second or two.
TINY_MODELS = {
    "hashgrid": ["model.levels=4", "model.log2_table_size=12", "model.max_resolution=64"],
    "mlp": ["model.depth=3", "model.width=32"],
    "plenoxels": ["model.resolution=16"],
    "tensorf": [
        "model.initial_resolution=8",
        "model.final_resolution=16",
        "model.density_components=2",
        "model.appearance_components=4",
    ],
    "mflod": [
        "model.levels=2",
        "model.base_resolution=8",
        "model.features=4",
        "model.hidden_width=16",
    ],
    "mulfagrid": ["model.resolution=12", "model.kernel_width=8", "model.filter_layers=2"],
}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `texture` scene at 16 px: 6 training views, 2 test views."""
    from pvd.scenes import make_dataset

    out = tmp_path_factory.mktemp("data") / "texture16"
    return make_dataset("texture", out, size=16, views=6, test_views=2, val_views=1, supersample=1)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hash grid trained for a few steps on the tiny dataset (through the library API)."""
    from pvd.data import load_dataset
    from pvd.recipes import build_recipe
    from pvd.train import evaluate_test, train

    dataset = load_dataset(tiny_dataset)
    recipe = build_recipe("hashgrid", "cpu", None, [*TINY_HASHGRID, "train.steps=6"])
    model = train(dataset, "hashgrid", recipe)
    evaluate_test(model, dataset)
    return model.save(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")
