"""torch-ngp ``.pth`` checkpoints and the PVD reference code's *hash* model → pvd hash grids.

File (``nerf/utils.py::save_checkpoint``)
    ``torch.save({"epoch", "global_step", "stats", "model": state_dict, ["mean_count",
    "mean_density"], ["optimizer", "lr_scheduler", "scaler", "ema"]})``, read with
    ``torch.load(weights_only=True)``; only ``"model"`` is used.

Model (``nerf/network.py``, the CUDA ``gridencoder``; read from torch-ngp's and PVD's source)
    ``encoder.embeddings [Σ size_l, F]``, ``encoder.offsets int32 [L + 1]`` (the
    ``GridEncoder``), ``sigma_net.{0,1}.weight`` (``L·F → 64 → 16``, no biases),
    ``color_net.{0,1,2}.weight`` (``[SH₄(d) (16), geo (15)] → 64 → 64 → 3``, no biases),
    buffers ``aabb_train`` / ``aabb_infer`` (``[−bound, bound]³``) and, with ``--cuda_ray``,
    ``density_grid``, ``density_bitfield``, ``step_counter``. Forward: ``σ = trunc_exp(h[0])``,
    ``rgb = sigmoid(color_net([SH(d), h[1:]]))`` — pvd's canonical decoder exactly; positions
    enter the encoder as ``(x + bound) / (2·bound)``, which is pvd's normalisation by the box.
    The grid is the ``gridencoder`` layout (:mod:`architectures.hashgrid`): ``GridEncoder``
    builds ``b = exp2(log2(desired / 16) / (L − 1))`` with ``desired = 2048·bound``
    (``NeRFNetwork`` passes ``desired_resolution=2048 * bound``, base resolution 16,
    log2 table size 19, ``align_corners=False``), level sizes ``ceil8((ceil(16·b^l) + 1)³)``
    capped at 2^19 in float64 (``grid.py``), while the kernel (``gridencoder.cu``) indexes with
    ``resolution = ceil(exp2f(l·S)·H − 1) + 1`` in float32 and dense stride ``resolution + 1``.
    pvd derives its sizes from the float32 kernel rule and checks them against the file's
    ``encoder.offsets``: the two rules agree except when ``16·b^l`` lies within float32 rounding
    of an integer, which such a file would show as a mismatch (refused, naming the level).
    Points outside the box: the kernel returns zero features, pvd clamps them to the box surface
    (pvd renders only inside the box, where both agree).

PVD reference code (``just_train_tea/network.py``, ``--model_type hash``)
    The same ``GridEncoder`` with **14** levels (``get_encoder(..., num_levels=14)``;
    torch-ngp's ``NeRFNetwork`` keeps the default 16) and the forward clamp
    ``σ = trunc_exp(clamp(h[0], sigma_clip_min, sigma_clip_max))``, imported as the field's
    ``config.sigma_clip``. The level count is how the two are told apart: nothing else in the
    file differs. ``--sigma_clip_min/max``, ``--scale`` and ``--min_near`` are command-line
    options the file does not store: as for the reference code's other model types
    (:mod:`pvd.importers.pvd_reference`) they are read from the workspace's ``args.txt``
    (beside the file or one folder up; :func:`~pvd.importers.common.pvd_options`), else the
    reference defaults (−2, 7, 0.8, 0.2) apply; the provenance lists which values came from
    which.

tcnn variant (``nerf/network_tcnn.py``)
    ``encoder.params`` (tcnn HashGrid: 16 levels, F 2, T 2^19, base 16,
    ``per_level_scale = exp2(log2(2048·bound / 16) / 15)``), ``sigma_net.params`` (FullyFusedMLP
    32 → 64 → 16), ``encoder_dir.params`` (empty), ``color_net.params`` (FullyFusedMLP
    31 → 64 → 64 → 3). ``tcnn.Network`` pads the colour MLP's 31 inputs to 32 with a constant 1
    (tcnn ``encodings/identity.h``), so that column is a bias: the field uses the ``biased``
    decoder. tcnn computes in fp16 from these fp32 master weights, so it agrees with pvd to ~1e-3.

Scene: torch-ngp maps dataset poses by ``nerf_matrix_to_ngp`` (``nerf/provider.py``): world
``(y, z, x)·scale (+ offset)`` → model ``(x, y, z)``. ``scale``/``offset`` are command-line options
that the checkpoint does not store, so for torch-ngp files pvd assumes the documented recipes:
``scale 0.8`` for ``bound 1`` (torch-ngp's Blender setting), else torch-ngp's default ``0.33``;
offset 0; near 0.2 (``--min_near``). PVD ``hash`` files take them from ``args.txt`` (above). This
only matters for mapping a dataset's cameras (``--data``); it is recorded in provenance.
Renders use torch-ngp's ray-marching step ``2√3 / 1024``
(:data:`~pvd.importers.common.TORCH_NGP_STEP`) and a white background.

Refused by name: a background model (``bg_net``, ``bg_radius > 0``), unknown keys, wrong shapes,
a grid whose ``encoder.offsets`` do not match the rule above, and anything ``torch.load``
cannot read with ``weights_only=True``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from architectures import CheckpointError
from architectures.hashgrid import (
    HashGrid,
    HashGridConfig,
    gridencoder_level_scales,
    level_layouts,
    tcnn_level_scales,
)

from . import Importer
from .common import (
    COLOUR_NET_KEYS,
    NGP_AXES,
    TORCH_NGP_STEP,
    build_field,
    build_model,
    check_keys,
    colour_net,
    field_config,
    load_state,
    pickle_strings,
    pvd_options,
    refuse_background_model,
    scene_spec,
    similarity,
    tensor,
    torch_checkpoint,
)
from .tcnn import tcnn_grid_size, tcnn_mlp_matrices, tcnn_mlp_size

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import TrainedModel

#: torch-ngp's ``GridEncoder`` defaults as ``NeRFNetwork`` uses them.
BASE_RESOLUTION = 16
LOG2_TABLE = 19
#: The reference PVD code's level count (``just_train_tea/network.py``).
PVD_LEVELS = 14
#: torch-ngp's ``--min_near`` default (``main_nerf.py``).
MIN_NEAR = 0.2

_BUFFERS = ("aabb_train", "aabb_infer", "density_grid", "density_bitfield", "step_counter")
_GRIDENCODER_KEYS = (
    "encoder.embeddings",
    "encoder.offsets",
    "sigma_net.0.weight",
    "sigma_net.1.weight",
    *COLOUR_NET_KEYS,
)
_TCNN_KEYS = ("encoder.params", "sigma_net.params", "encoder_dir.params", "color_net.params")


def detect(path: Path) -> bool:
    """A ``torch.save`` zip whose pickle names a torch-ngp model: ``encoder.embeddings`` with
    ``encoder.offsets`` (gridencoder), or ``encoder.params`` with ``color_net.params`` (tcnn)."""
    names = pickle_strings(path)
    if "model" not in names:
        return False
    gridencoder = {"encoder.embeddings", "encoder.offsets"} <= names
    return gridencoder or {"encoder.params", "color_net.params"} <= names


def _check_level_sizes(path: Path, config: HashGridConfig, offsets: list[int]) -> None:
    sizes = [b - a for a, b in itertools.pairwise(offsets)]
    expected = [layout.size for layout in level_layouts(config)]
    if sizes != expected:
        level = next(i for i, (a, b) in enumerate(zip(sizes, expected, strict=True)) if a != b)
        raise CheckpointError(
            f"{path}: encoder.offsets give level {level} {sizes[level]} entries, torch-ngp's "
            f"gridencoder with base resolution {config.base_resolution} and desired resolution "
            f"{config.max_resolution} gives {expected[level]}; other encoder settings are not "
            "stored in the file and cannot be imported"
        )


def field_from_gridencoder(
    path: Path,
    state: Mapping[str, Any],
    bound: float,
    sigma_clip: tuple[float, float] | None = None,
) -> HashGrid:
    """A pvd hash grid (``gridencoder`` layout, canonical decoder) from a torch-ngp / PVD model
    state dict holding ``encoder.*``, ``sigma_net.{0,1}.weight`` and ``color_net.{0,1,2}.weight``
    (other keys are ignored here). ``bound`` is the model's box half-size (``aabb_train``);
    ``sigma_clip`` the reference PVD code's forward clamp, if any. Raises
    :class:`~architectures.CheckpointError` naming ``path`` for shapes or a grid layout that do
    not match torch-ngp's ``GridEncoder`` (see the module docstring)."""
    offsets_tensor = state.get("encoder.offsets")
    if not isinstance(offsets_tensor, torch.Tensor) or offsets_tensor.ndim != 1:
        raise CheckpointError(f"{path}: 'encoder.offsets' must be a 1-D tensor of level offsets")
    offsets = [int(v) for v in offsets_tensor.tolist()]
    levels = len(offsets) - 1
    if levels < 1 or offsets[0] != 0:
        raise CheckpointError(f"{path}: 'encoder.offsets' {offsets} are not level offsets")
    embeddings = tensor(path, state, "encoder.embeddings", (offsets[-1], None))
    features = embeddings.shape[1]
    head_in = levels * features
    sigma0 = tensor(path, state, "sigma_net.0.weight", (None, head_in))
    width = sigma0.shape[0]
    sigma1 = tensor(path, state, "sigma_net.1.weight", (16, width))
    largest = max(b - a for a, b in itertools.pairwise(offsets))
    log2_table = int(math.log2(largest)) if largest & (largest - 1) == 0 else LOG2_TABLE
    desired = 2048.0 * bound
    config = {
        "aabb": [-bound] * 3 + [bound] * 3,
        "levels": levels,
        "features": features,
        "log2_table_size": log2_table,
        "base_resolution": BASE_RESOLUTION,
        "max_resolution": round(desired),
        "hidden_width": width,
        "level_scales": list(gridencoder_level_scales(levels, BASE_RESOLUTION, desired)),
        "layout": "gridencoder",
        "sigma_clip": list(sigma_clip) if sigma_clip is not None else None,
    }
    field = build_field(path, "hashgrid", config)
    assert isinstance(field, HashGrid)
    _check_level_sizes(path, field.config, offsets)
    load_state(
        path,
        field,
        {
            "params": embeddings.reshape(-1),
            "density_head.0.weight": sigma0,
            "density_head.2.weight": sigma1,
            **colour_net(path, state),
        },
    )
    return field


def field_from_tcnn(path: Path, state: Mapping[str, Any], bound: float) -> HashGrid:
    """A pvd hash grid (tcnn layout, ``biased`` decoder) from torch-ngp's ``network_tcnn.py``
    state dict (see the module docstring)."""
    scale = float(np.exp2(np.log2(2048 * bound / BASE_RESOLUTION) / 15))
    config = field_config(
        path,
        "hashgrid",
        {
            "aabb": [-bound] * 3 + [bound] * 3,
            "levels": 16,
            "features": 2,
            "log2_table_size": LOG2_TABLE,
            "base_resolution": BASE_RESOLUTION,
            "max_resolution": round(2048 * bound),
            "level_scales": list(tcnn_level_scales(16, BASE_RESOLUTION, scale)),
            "decoder": "biased",
        },
    )
    assert isinstance(config, HashGridConfig)
    grid = tensor(path, state, "encoder.params", (tcnn_grid_size(config),))
    sigma = tensor(path, state, "sigma_net.params", (tcnn_mlp_size(32, 64, 1, 16),))
    tensor(path, state, "encoder_dir.params", (0,))
    colour = tensor(path, state, "color_net.params", (tcnn_mlp_size(31, 64, 2, 3),))
    s0, s1 = tcnn_mlp_matrices(sigma, 32, 64, 1, 16)
    c0, c1, c2 = tcnn_mlp_matrices(colour, 31, 64, 2, 3)
    field = build_field(path, "hashgrid", config.to_dict())
    assert isinstance(field, HashGrid)
    load_state(
        path,
        field,
        {
            "params": grid,
            "density_head.0.weight": s0,
            "density_head.2.weight": s1,
            "decoder.colour_mlp.0.weight": c0[:, :31],
            "decoder.colour_mlp.0.bias": c0[:, 31],  # tcnn's padding input is 1: a bias
            "decoder.colour_mlp.2.weight": c1,
            "decoder.colour_mlp.2.bias": torch.zeros(64),
            "decoder.colour_mlp.4.weight": c2[:3],
            "decoder.colour_mlp.4.bias": torch.zeros(3),
        },
    )
    return field


def _bound(path: Path, model: Mapping[str, Any]) -> float:
    aabb = tensor(path, model, "aabb_train", (6,))
    bound = float(aabb[3])
    if bound <= 0 or not torch.allclose(aabb, torch.tensor([-bound] * 3 + [bound] * 3)):
        raise CheckpointError(
            f"{path}: aabb_train {aabb.tolist()} is not a centred cube [-bound, bound]^3"
        )
    return bound


def load(path: Path, data: Dataset | None = None) -> TrainedModel:
    """Import a torch-ngp / PVD-hash ``.pth`` as a pvd teacher (see the module docstring)."""
    top, model = torch_checkpoint(path, "torch-ngp", "model")
    refuse_background_model(path, model)
    bound = _bound(path, model)
    scale = 0.8 if bound == 1.0 else 0.33
    recipe = "the Blender recipe for bound 1" if scale == 0.8 else "torch-ngp's default"
    near, clip, options = MIN_NEAR, None, None
    if "encoder.embeddings" in model:
        check_keys(path, model, (*_GRIDENCODER_KEYS, "aabb_train"), _BUFFERS, "a torch-ngp model")
        levels = tensor(path, model, "encoder.offsets", (None,)).numel() - 1
        variant = f"torch-ngp gridencoder ({levels} levels)"
        if levels == PVD_LEVELS:
            pvd, _, options = pvd_options(path)
            clip = (pvd["sigma_clip_min"], pvd["sigma_clip_max"])
            scale, near = pvd["scale"], pvd["min_near"]
            options.update(pvd)
            where = options["args_file"] or "no args.txt found"
            recipe = f"the PVD reference code's --scale ({where})"
            variant = f"PVD reference hash model ({levels} levels, forward clamp {clip})"
        field = field_from_gridencoder(path, model, bound, clip)
    else:
        check_keys(path, model, (*_TCNN_KEYS, "aabb_train"), _BUFFERS, "a torch-ngp tcnn model")
        field = field_from_tcnn(path, model, bound)
        variant = "torch-ngp network_tcnn (tcnn parameter layout)"
    scene = scene_spec(
        path, field.config.aabb, near=near, world_to_model=similarity(scale, NGP_AXES)
    )
    return build_model(
        path,
        IMPORTER.name,
        field,
        scene,
        step_size=TORCH_NGP_STEP,
        data=data,
        normalisation=(
            f"torch-ngp nerf_matrix_to_ngp: model (x, y, z) = world (y, z, x) * {scale:g} "
            f"(scale not stored in the file: {recipe})"
        ),
        details={
            "variant": variant,
            "bound": bound,
            "epoch": top.get("epoch"),
            "global_step": top.get("global_step"),
            **({"options": options} if options is not None else {}),
        },
    )


IMPORTER = Importer(
    name="torch-ngp",
    description="torch-ngp .pth (gridencoder or tcnn hash grid) or the PVD reference 'hash' .pth",
    detect=detect,
    load=load,
)
