"""Importer of nerfstudio's ``tensorf`` checkpoints (``nerfstudio_models/step-*.ckpt``).

The file is ``torch.save({"step", "pipeline": state_dict, "optimizers", "schedulers",
"scalers"})`` (``engine/trainer.py``); only ``pipeline`` is read. Model keys are prefixed
``_model.`` (``_model.module.`` under DDP). The field (``fields/tensorf_field.py``,
``field_components/encodings.py``, ``models/tensorf.py``; FORMATS.md, "nerfstudio"):

- ``field.aabb`` ``[2, 3]``: the scene box in nerfstudio's (dataparser-transformed) space;
  positions are normalised to it and mapped to ``[−1, 1]``.
- ``field.density_encoding``/``color_encoding`` (``TensorVMEncoding``): ``plane_coef``
  ``[3, C, R, R]`` and ``line_coef`` ``[3, C, R, 1]`` for planes (xy, xz, yz) with lines
  (z, y, x), ``grid_sample(align_corners=True)``; features orientation-major (``3C``). R is read
  from the shapes (upsampling changes it, nerfstudio#1266). ``TensorCPEncoding`` and
  ``TriplaneEncoding`` (``tensorf_encoding cp/triplane``) are refused by name.
- density ``relu(Σ features)`` per unit of nerfstudio space (no shift, no scale);
- colour: ``B`` (``Linear(3C → appearance_dim)``, no bias), then ``mlp_head`` (``layers.0``,
  ``layers.1``: ``Linear(in, 128)`` ReLU ``Linear(128, 128)`` ReLU) on ``[f, d, PE(f), PE(d)]``
  and ``field_output_rgb.net`` (``Linear(128, 3)``, sigmoid). ``NeRFEncoding(num_frequencies=2,
  min_freq_exp=0, max_freq_exp=2)``: ``sin([2π·x·ω, 2π·x·ω + π/2])`` with ``ω = 2^linspace(0, 2,
  2) = (1, 4)`` — pvd's ``tensorf_mlp`` decoder with multipliers ``(2π, 8π)``. ``use_sh`` is
  hard-wired off in ``models/tensorf.py``.
- background white (``RGBRenderer(background_color=colors.WHITE)``).

Unknown keys under ``field.`` (an appearance embedding, a contraction, another encoding) are
refused. Outside the field only ``lpips.`` (the metric network) and ``camera_optimizer.`` are
expected; the camera optimizer's pose adjustments are not applied to ``--data`` cameras (the
provenance says whether any are non-zero).

Scene: model space is nerfstudio's. ``dataparser_transforms.json`` (``{"transform": 3×4,
"scale"}``, beside the checkpoint or in its run folder, one level up) gives ``world_to_model =
[scale·R | scale·t]`` (:func:`~pvd.importers.common.dataparser_transform`); without it the
dataset's frame is taken as nerfstudio's (identity, as for nerfstudio's Blender parser) and the
provenance says so. Rendering (a pvd choice: nerfstudio
samples 200 + 50 points per ray instead of stepping): TensoRF's step, half a voxel.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from architectures import CheckpointError

from . import Importer
from .common import (
    build_field,
    build_model,
    check_keys,
    dataparser_transform,
    load_state,
    pickle_strings,
    scene_spec,
    strip_prefix,
    tensor,
    torch_checkpoint,
)

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import TrainedModel

NAME = "nerfstudio-tensorf"
#: ``NeRFEncoding``'s multipliers with its 2π: ``2π · 2^linspace(0, 2, 2)``.
_FREQUENCIES = (2.0 * math.pi, 8.0 * math.pi)
_HEAD_WIDTH = 128
#: Non-field model keys that hold no part of the radiance field.
_OUTSIDE_FIELD = ("lpips.", "camera_optimizer.")


def detect(path: Path) -> bool:
    """A ``torch.save`` file with ``pipeline`` whose keys name ``field.density_encoding``."""
    strings = pickle_strings(path)
    return "pipeline" in strings and any(
        s.startswith("_model.") and "field.density_encoding." in s for s in strings
    )


def _model_prefix(path: Path, pipeline: dict[str, Any]) -> str:
    for prefix in ("_model.module.", "_model."):
        if f"{prefix}field.aabb" in pipeline:
            return prefix
    raise CheckpointError(f"{path}: no _model.field.aabb in 'pipeline' (not a nerfstudio model)")


def load(path: Path, data: Dataset | None) -> TrainedModel:
    """Import a nerfstudio tensorf checkpoint (module docstring)."""
    checkpoint, pipeline = torch_checkpoint(path, "nerfstudio", "pipeline")
    prefix = _model_prefix(path, pipeline)
    model = strip_prefix(pipeline, prefix)
    outside = [k for k in model if not k.startswith(("field.", *_OUTSIDE_FIELD))]
    if outside:
        raise CheckpointError(f"{path}: unknown model keys {outside[:4]}; cannot import them")
    field_state = strip_prefix(model, "field.")
    if "density_encoding.plane_coef" not in field_state:
        raise CheckpointError(f"{path}: tensorf_encoding 'cp' (TensorCPEncoding) is not supported")
    if "density_encoding.line_coef" not in field_state:
        raise CheckpointError(
            f"{path}: tensorf_encoding 'triplane' (TriplaneEncoding) is not supported"
        )
    planes = tensor(path, field_state, "density_encoding.plane_coef", (3, None, None, None))
    density_rank, res = planes.shape[1], planes.shape[2]
    app_planes = tensor(path, field_state, "color_encoding.plane_coef", (3, None, res, res))
    app_rank = app_planes.shape[1]
    basis = tensor(path, field_state, "B.weight", (None, 3 * app_rank))
    app_dim = basis.shape[0]
    width_in = app_dim + 3 + 2 * len(_FREQUENCIES) * (app_dim + 3)
    shapes = {
        "mlp_head.layers.0.weight": (_HEAD_WIDTH, width_in),
        "mlp_head.layers.0.bias": (_HEAD_WIDTH,),
        "mlp_head.layers.1.weight": (_HEAD_WIDTH, _HEAD_WIDTH),
        "mlp_head.layers.1.bias": (_HEAD_WIDTH,),
        "field_output_rgb.net.weight": (3, _HEAD_WIDTH),
        "field_output_rgb.net.bias": (3,),
    }
    targets = ("mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias")
    targets += ("mlp.4.weight", "mlp.4.bias")
    converted = {
        f"decoder.{target}": tensor(path, field_state, key, shape)
        for target, (key, shape) in zip(targets, shapes.items(), strict=True)
    }
    converted["basis_mat.weight"] = basis
    for name, rank, group in (
        ("density", density_rank, "density_encoding"),
        ("app", app_rank, "color_encoding"),
    ):
        plane = tensor(path, field_state, f"{group}.plane_coef", (3, rank, res, res))
        line = tensor(path, field_state, f"{group}.line_coef", (3, rank, res, 1))
        for m in range(3):
            converted[f"{name}_plane.{m}"] = plane[m : m + 1]
            converted[f"{name}_line.{m}"] = line[m : m + 1]
    encodings = [
        f"{g}.{k}"
        for g in ("density_encoding", "color_encoding")
        for k in ("plane_coef", "line_coef")
    ]
    check_keys(
        path,
        field_state,
        [*shapes, *encodings, "B.weight", "aabb"],
        what="a nerfstudio tensorf field",
    )
    box = tensor(path, field_state, "aabb", (2, 3)).flatten().tolist()
    config = {
        "aabb": box,
        "density_components": density_rank,
        "appearance_components": app_rank,
        "grid_size": [res, res, res],
        "initial_resolution": res,
        "final_resolution": res,
        "upsample_fractions": [],
        "density_activation": "relu",
        "density_shift": 0.0,
        "decoder": "tensorf_mlp",
        "app_dim": app_dim,
        "feature_frequencies": list(_FREQUENCIES),
        "view_frequencies": list(_FREQUENCIES),
        "mlp_width": _HEAD_WIDTH,
    }
    field = build_field(path, "tensorf", config)
    load_state(path, field, converted)
    world_to_model, normalisation = dataparser_transform(path)
    scene = scene_spec(path, box, world_to_model=world_to_model)
    adjusted = any(
        bool(v.abs().max() > 0)
        for k, v in model.items()
        if k.startswith("camera_optimizer.") and isinstance(v, torch.Tensor) and v.numel()
    )
    step = sum((box[i + 3] - box[i]) / (res - 1) for i in range(3)) / 3 * 0.5
    return build_model(
        path,
        NAME,
        field,
        scene,
        step_size=step,
        data=data,
        normalisation=normalisation,
        details={
            "step": checkpoint.get("step"),
            "camera_pose_adjustments": adjusted,
            "background": "white (nerfstudio tensorf's RGBRenderer)",
        },
    )


IMPORTER = Importer(
    name=NAME,
    description="nerfstudio tensorf .ckpt (TensorVMEncoding, MLP head)",
    detect=detect,
    load=load,
)
