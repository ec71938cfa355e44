"""Importer of the official TensoRF ``.th`` (Chen et al., ECCV 2022; apchenstu/TensoRF).

``models/tensorBase.py::save`` writes ``torch.save({"kwargs": get_kwargs(), "state_dict": …,
["alphaMask.shape", "alphaMask.mask" (np.packbits of the bool volume), "alphaMask.aabb"]})``
(FORMATS.md). The class (``TensorVMSplit``, ``TensorCP``, ``TensorVM``) is not saved; it is read
from the keys:

- ``TensorVMSplit``: ``density_plane.{m}`` ``[1, R_m, n_b, n_a]``, ``density_line.{m}``
  ``[1, R_m, n_c, 1]``, ``app_plane``/``app_line`` likewise, ``basis_mat.weight``
  ``[app_dim, ΣR_m]`` (``models/tensoRF.py``). pvd's TensoRF has the same layout (planes XY, XZ,
  YZ with lines Z, Y, X, ``align_corners=True``); per-orientation ranks that differ
  (``n_comp`` lists) are zero-padded to the largest, which adds nothing.
- ``TensorCP``: ``density_line.{0,1,2}`` (lines along Z, Y, X) and ``app_line``, ``basis_mat``;
  σ-feature ``Σ_r L_z·L_y·L_x``. Rearranged exactly into VM factors by
  :func:`architectures.tensorf.cp_to_vm` (each CP term a line and a rank-1 plane).
- ``TensorVM`` (``plane_coef``/``line_coef``, the paper's first layout) is refused.

Decoding (``tensorBase.py``): coordinates ``(x − aabb₀)·2/(aabb₁ − aabb₀) − 1``;
``σ = feature2density(f) = softplus(f + density_shift)`` (or ``relu(f)`` for ``fea2denseAct
relu``), and the renderer's ``α = 1 − exp(−σ·Δt·distance_scale)`` — pvd's TensoRF variant with
``density_activation``, ``density_shift``, ``density_scale = distance_scale`` (model space is
TensoRF's world: its aabb and near/far are in the dataset's units, poses are used as they are, so
``world_to_model`` is the identity). Colour by ``shadingMode``: ``MLP_Fea`` (``MLPRender_Fea``:
``sigmoid(mlp([f, d, PE(f), PE(d)]))``, PE multipliers ``2^k``, ``k < fea_pe`` / ``view_pe``),
``MLP`` (``MLPRender``: the same without ``PE(f)``) and ``SH`` (``SHRender``: ``relu(SH₂(d)·f +
0.5)``) — the ``tensorf_mlp``/``tensorf_sh`` decoders of :mod:`architectures.tensorf`.
``MLP_PE`` (a PE of the *position*) and ``RGB`` are refused by name. The alpha mask becomes the
field's ``alpha_mask`` (the mask volume ``[D, H, W]`` = ``[z, y, x]`` of ``grid_sample``,
stored ``[x, y, z]``).

Rendering: step ``mean(aabb size / (gridSize − 1)) · step_ratio`` (``update_stepSize``), near/far
from ``near_far``, white background (the Blender default ``white_bg``; not stored in the file).
LLFF models (``near_far`` ``[0, 1]``: rendered in NDC space) are refused by name.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from architectures import CheckpointError
from architectures.tensorf import MAT_MODES, VEC_MODES, cp_to_vm

from . import Importer
from .common import (
    build_field,
    build_model,
    check_keys,
    integer,
    load_state,
    number,
    pickle_strings,
    scene_spec,
    tensor,
    torch_checkpoint,
)

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import TrainedModel

NAME = "tensorf-th"
_SHADING = ("MLP_Fea", "MLP", "SH")


def detect(path: Path) -> bool:
    """A ``torch.save`` file whose pickle names ``kwargs``, ``state_dict`` and ``shadingMode``."""
    return {"kwargs", "state_dict", "shadingMode"} <= pickle_strings(path)


def _int_list(path: Path, kwargs: dict[str, Any], key: str) -> list[int]:
    value = kwargs.get(key)
    if isinstance(value, torch.Tensor | np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not all(isinstance(v, int) for v in value):
        raise CheckpointError(f"{path}: kwargs '{key}' must be a list of integers, got {value!r}")
    return list(value)


def _vm_group(
    path: Path, state: dict[str, Any], name: str, size: tuple[int, int, int]
) -> tuple[int, list[torch.Tensor], list[torch.Tensor], list[int]]:
    """VMSplit factors of ``name`` (``density``/``app``) zero-padded to the largest rank:
    (rank, planes, lines, per-orientation ranks)."""
    ranks = [
        tensor(path, state, f"{name}_plane.{m}", (1, None, None, None)).shape[1] for m in range(3)
    ]
    rank = max(ranks)
    planes, lines = [], []
    for m, ((a, b), c) in enumerate(zip(MAT_MODES, VEC_MODES, strict=True)):
        plane = tensor(path, state, f"{name}_plane.{m}", (1, ranks[m], size[b], size[a]))
        line = tensor(path, state, f"{name}_line.{m}", (1, ranks[m], size[c], 1))
        planes.append(torch.cat((plane, plane.new_zeros(1, rank - ranks[m], *plane.shape[2:])), 1))
        lines.append(torch.cat((line, line.new_zeros(1, rank - ranks[m], *line.shape[2:])), 1))
    return rank, planes, lines, ranks


def _vm_split(
    path: Path, state: dict[str, Any], size: tuple[int, int, int], app_dim: int
) -> tuple[int, int, dict[str, torch.Tensor], list[str]]:
    """``TensorVMSplit`` → pvd factors (ranks, tensors by pvd key, the source keys read)."""
    converted: dict[str, torch.Tensor] = {}
    density_rank, planes, lines, _ = _vm_group(path, state, "density", size)
    for m in range(3):
        converted[f"density_plane.{m}"], converted[f"density_line.{m}"] = planes[m], lines[m]
    app_rank, planes, lines, ranks = _vm_group(path, state, "app", size)
    for m in range(3):
        converted[f"app_plane.{m}"], converted[f"app_line.{m}"] = planes[m], lines[m]
    basis = tensor(path, state, "basis_mat.weight", (app_dim, sum(ranks)))
    padded = basis.new_zeros(app_dim, 3 * app_rank)
    for m, start in enumerate((0, ranks[0], ranks[0] + ranks[1])):
        padded[:, m * app_rank : m * app_rank + ranks[m]] = basis[:, start : start + ranks[m]]
    converted["basis_mat.weight"] = padded
    keys = [f"{g}_{k}.{m}" for g in ("density", "app") for k in ("plane", "line") for m in range(3)]
    return density_rank, app_rank, converted, [*keys, "basis_mat.weight"]


def _cp(
    path: Path, state: dict[str, Any], size: tuple[int, int, int], app_dim: int
) -> tuple[int, int, dict[str, torch.Tensor], list[str]]:
    """``TensorCP`` → pvd VM factors through :func:`cp_to_vm` (exact)."""
    converted: dict[str, torch.Tensor] = {}
    ranks = {}
    for name in ("density", "app"):
        rank = tensor(path, state, f"{name}_line.0", (1, None, None, 1)).shape[1]
        # density_line.{m} runs along VEC_MODES[m] (Z, Y, X); cp_to_vm wants X, Y, Z.
        factors = []
        for axis in range(3):
            m = VEC_MODES.index(axis)
            line = tensor(path, state, f"{name}_line.{m}", (1, rank, size[axis], 1))
            factors.append(line[0, :, :, 0].t())
        if name == "app":
            factors.append(tensor(path, state, "basis_mat.weight", (app_dim, rank)))
        vm = cp_to_vm(factors)
        ranks[name] = vm.planes[0].shape[1]
        for m in range(3):
            converted[f"{name}_plane.{m}"], converted[f"{name}_line.{m}"] = (
                vm.planes[m],
                vm.lines[m],
            )
        if vm.basis is not None:
            converted["basis_mat.weight"] = vm.basis
    keys = [f"{g}_line.{m}" for g in ("density", "app") for m in range(3)]
    return ranks["density"], ranks["app"], converted, [*keys, "basis_mat.weight"]


def _decoder(
    path: Path, state: dict[str, Any], kwargs: dict[str, Any], app_dim: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor], list[str]]:
    """The colour renderer → (config keys, tensors by pvd key, the source keys read)."""
    shading = kwargs.get("shadingMode")
    if shading not in _SHADING:
        raise CheckpointError(
            f"{path}: shadingMode {shading!r} is not supported (pvd imports {', '.join(_SHADING)})"
        )
    if shading == "SH":
        return {"decoder": "tensorf_sh"}, {}, []
    fea_pe = integer(path, kwargs, "fea_pe") if shading == "MLP_Fea" else 0
    view_pe = integer(path, kwargs, "view_pe")
    width = integer(path, kwargs, "featureC")
    width_in = app_dim + 3 + 2 * fea_pe * app_dim + 2 * view_pe * 3
    shapes = {
        0: ((width, width_in), (width,)),
        2: ((width, width), (width,)),
        4: ((3, width), (3,)),
    }
    converted, keys = {}, []
    for index, (weight, bias) in shapes.items():
        for part, shape in (("weight", weight), ("bias", bias)):
            key = f"renderModule.mlp.{index}.{part}"
            converted[f"decoder.mlp.{index}.{part}"] = tensor(path, state, key, shape)
            keys.append(key)
    config = {
        "decoder": "tensorf_mlp",
        "feature_frequencies": [2.0**k for k in range(fea_pe)],
        "view_frequencies": [2.0**k for k in range(view_pe)],
        "mlp_width": width,
    }
    return config, converted, keys


def _alpha_mask(path: Path, checkpoint: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
    """``alphaMask.*`` → (config keys, bool volume ``[x, y, z]``)."""
    shape = checkpoint.get("alphaMask.shape")
    packed = checkpoint.get("alphaMask.mask")
    if isinstance(packed, torch.Tensor):
        packed = packed.numpy()
    if not isinstance(shape, tuple | list) or len(shape) < 3 or not isinstance(packed, np.ndarray):
        raise CheckpointError(f"{path}: alphaMask.shape / alphaMask.mask are not a packed volume")
    dims = [int(v) for v in shape]
    if any(v != 1 for v in dims[:-3]) or packed.dtype != np.uint8:
        raise CheckpointError(f"{path}: alphaMask.shape {tuple(shape)} is not a single volume")
    count = math.prod(dims[-3:])
    bits = np.unpackbits(packed.reshape(-1))
    if bits.size < count:
        raise CheckpointError(f"{path}: alphaMask.mask holds {bits.size} bits, needs {count}")
    volume = torch.from_numpy(bits[:count].reshape(dims[-3:]).astype(bool)).permute(2, 1, 0)
    box = tensor(path, checkpoint, "alphaMask.aabb", (2, 3)).flatten().tolist()
    return {"alpha_mask_size": list(volume.shape), "alpha_mask_aabb": box}, volume.contiguous()


def _near_far(path: Path, kwargs: dict[str, Any]) -> tuple[float, float]:
    """``kwargs["near_far"]`` as two numbers; an LLFF model is refused by name: TensoRF's LLFF
    loader (``dataLoader/llff.py``) sets ``near_far = [0.0, 1.0]`` because it renders in NDC
    space (``ndc_ray``), a projective warp of the scene that pvd's Euclidean box cannot
    represent."""
    value = kwargs.get("near_far", [2.0, 6.0])
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise CheckpointError(f"{path}: kwargs 'near_far' must be [near, far], got {value!r}")
    near, far = (number(path, {"near_far": v}, "near_far") for v in value)
    if kwargs.get("ndc_ray") or (near, far) == (0.0, 1.0):
        raise CheckpointError(
            f"{path}: an LLFF model rendered in NDC space (near_far [0, 1] / ndc_ray) is not "
            "supported; pvd imports TensoRF's Blender-style scenes"
        )
    return near, far


def load(path: Path, data: Dataset | None) -> TrainedModel:
    """Import an official TensoRF checkpoint (module docstring)."""
    checkpoint, kwargs, state = torch_checkpoint(path, "official TensoRF", "kwargs", "state_dict")
    if "plane_coef" in state or "line_coef" in state:
        raise CheckpointError(f"{path}: TensoRF's TensorVM layout (plane_coef) is not supported")
    activation = kwargs.get("fea2denseAct", "softplus")
    if activation not in ("softplus", "relu"):
        raise CheckpointError(f"{path}: fea2denseAct {activation!r} is not supported")
    box = tensor(path, kwargs, "aabb", (2, 3)).flatten().tolist()
    grid = _int_list(path, kwargs, "gridSize")
    if len(grid) != 3:
        raise CheckpointError(f"{path}: kwargs 'gridSize' must hold 3 sizes, got {grid}")
    size = (grid[0], grid[1], grid[2])
    app_dim = integer(path, kwargs, "app_dim")
    if "density_plane.0" in state:
        density_rank, app_rank, converted, keys = _vm_split(path, state, size, app_dim)
        layout = "TensorVMSplit"
    elif "density_line.0" in state:
        density_rank, app_rank, converted, keys = _cp(path, state, size, app_dim)
        layout = "TensorCP"
    else:
        raise CheckpointError(f"{path}: no density_plane.0 / density_line.0: not a TensoRF model")
    decoder_config, decoder_tensors, decoder_keys = _decoder(path, state, kwargs, app_dim)
    check_keys(path, state, [*keys, *decoder_keys], what=f"TensoRF {layout}")
    converted.update(decoder_tensors)
    config: dict[str, Any] = {
        "aabb": box,
        "density_components": density_rank,
        "appearance_components": app_rank,
        "grid_size": list(size),
        "initial_resolution": max(size),
        "final_resolution": max(size),
        "upsample_fractions": [],
        "density_activation": activation,
        "density_shift": number(path, kwargs, "density_shift", -10.0)
        if activation == "softplus"
        else 0.0,
        "density_scale": number(path, kwargs, "distance_scale", 25.0),
        "app_dim": app_dim,
        **decoder_config,
    }
    if "alphaMask.aabb" in checkpoint:
        mask_config, converted["alpha_mask"] = _alpha_mask(path, checkpoint)
        config.update(mask_config)
    field = build_field(path, "tensorf", config)
    load_state(path, field, converted)
    near, far = _near_far(path, kwargs)
    scene = scene_spec(path, box, near=near, far=far)
    extent = [box[i + 3] - box[i] for i in range(3)]
    units = [e / (n - 1) for e, n in zip(extent, size, strict=True)]
    step = sum(units) / 3 * number(path, kwargs, "step_ratio", 0.5)
    return build_model(
        path,
        NAME,
        field,
        scene,
        step_size=step,
        data=data,
        normalisation="identity: TensoRF's aabb and poses are in the dataset's world units",
        details={
            "layout": layout,
            "shadingMode": kwargs.get("shadingMode"),
            "fea2denseAct": activation,
            "alpha_mask": "alphaMask.aabb" in checkpoint,
            "background": "white (TensoRF's Blender default; not stored in the file)",
        },
    )


IMPORTER = Importer(
    name=NAME,
    description="official TensoRF .th (TensorVMSplit or TensorCP; MLP_Fea / MLP / SH shading)",
    detect=detect,
    load=load,
)
