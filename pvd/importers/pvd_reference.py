"""Importer of the PVD reference code's ``.pth`` (Fang et al., AAAI 2023;
megvii-research/AAAI2023-PVD, a torch-ngp fork): model types ``mlp``, ``vm`` and ``tensors``.

The file (``torch.save`` of ``{"epoch", "global_step", "stats", "model": state_dict, …}``) does
not store the model type (``--model_type``); it is read from the keys (FORMATS.md, "PVD"). The
``hash`` type holds torch-ngp's ``encoder.embeddings``: :mod:`pvd.importers.torch_ngp` claims
those files (its detector; this one never does). Facts below are from
``just_train_tea/network.py`` (forward passes), ``just_train_tea/renderer.py`` (buffers, box) and
``just_train_tea/provider.py`` (poses), as cited.

Shared by all types
    Buffers ``aabb_train``/``aabb_infer`` ``[6]`` (the box ``[−bound, bound]³``), and with
    ``cuda_ray`` ``density_grid``, ``density_bitfield``, ``step_counter`` (ignored: pvd builds its
    own occupancy grid from the field). σ = ``trunc_exp(clamp(σ_raw, sigma_clip_min,
    sigma_clip_max))`` in the forward pass — the pvd field's ``sigma_clip`` option, so the
    imported field clamps exactly as the original; rgb = sigmoid. Background models
    (``bg_radius > 0``: ``encoder_bg``, ``bg_net``) are refused
    (:func:`~pvd.importers.common.refuse_background_model`).
``vm``
    ``sigma_mat.{m}`` ``[1, R, n_b, n_a]``, ``sigma_vec.{m}`` ``[1, R, n_c, 1]``,
    ``color_mat``/``color_vec`` likewise, ``basis_mat.weight`` ``[15, 3R_c]``, ``color_net``: the
    pvd TensoRF layout and canonical decoder (``get_sigma_feat``/``get_color_feat``), with
    ``density_shift = 0``. Coordinates ``2(x − aabb_min)/(aabb_max − aabb_min) − 1``.
``mlp``
    ``nerf_mlp.{i}`` (``FreqEncoder``: ``[x, sin(2^k x), cos(2^k x)]`` of the *unnormalised*
    point, ``tools/encoding.py``) → ReLU layers, the encoding concatenated to the output of
    layer ``--skip`` *after* its ReLU (``cat([in_pts, x])`` on the activated ``x``), a last
    ``Linear(W → 28)`` without activation, then ``sigma_net`` ``28 → 64 → 16`` (no biases).
    pvd's MLP appends ``γ`` after the activation too and takes the trunk as is (the skip
    layer's weight columns reordered to pvd's ``[h, γ]``), folding the last trunk layer into
    the head (``head_width = 64``, :mod:`architectures.mlp`). Only ``bound = 1`` is
    representable (pvd's MLP encodes the box-normalised point, PVD the raw one).
``tensors``
    ``tensor_volume.0`` ``[1, 1 + 3·deg², V, V, V]`` sampled by ``grid_sample(align_corners=True)``
    with ``(x, y, z)`` indexing ``(W, H, D)``: pvd's Plenoxels grid ``[C, x, y, z]`` (a permute),
    with ``sh_degree = deg − 1`` (``--plenoxel_degree`` counts SH bands) and sigmoid colour.

Scene: model space is torch-ngp's (the box ``aabb_infer``); poses went through
``nerf_matrix_to_ngp(pose, scale)`` — ``(x, y, z)_model = scale·(y, z, x)_world`` with ``--scale``
0.8 by default (``main_just_train_tea.py``). ``--scale``, ``--sigma_clip_min/max``, ``--skip`` and
``--min_near`` are command-line options the ``.pth`` does not store: they are read from the
``args.txt`` the reference code writes into its workspace (looked for beside the file and one
folder up; :func:`~pvd.importers.common.pvd_options`, shared with the ``hash`` type's importer),
else the reference defaults (0.8, −2, 7, 0.2; ``--skip`` 3) are used, and the provenance lists
which values came from which. Rendering: step ``2√3/1024``
(:data:`~pvd.importers.common.TORCH_NGP_STEP`), white background (``bg_color = 1``), near
``--min_near``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from architectures import CheckpointError
from architectures.tensorf import MAT_MODES, VEC_MODES

from . import Importer
from .common import (
    COLOUR_NET_KEYS,
    NGP_AXES,
    TORCH_NGP_STEP,
    build_field,
    build_model,
    check_keys,
    colour_net,
    integer,
    load_state,
    pickle_strings,
    pvd_options,
    refuse_background_model,
    scene_spec,
    similarity,
    tensor,
    torch_checkpoint,
)

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import TrainedModel

NAME = "pvd-pth"
#: A key that only each model type has.
_MARKERS = {"mlp": "nerf_mlp.0.weight", "vm": "sigma_mat.0", "tensors": "tensor_volume.0"}
#: The renderer's buffers (``cuda_ray``) that pvd does not need.
_BUFFERS = ("aabb_infer", "density_grid", "density_bitfield", "step_counter")


def detect(path: Path) -> bool:
    """A ``torch.save`` file whose pickle names ``model``, ``aabb_train`` and the key of one of
    the ``mlp``/``vm``/``tensors`` types — and no ``encoder.embeddings`` (hash: torch-ngp's)."""
    strings = pickle_strings(path)
    return (
        {"model", "aabb_train"} <= strings
        and "encoder.embeddings" not in strings
        and any(marker in strings for marker in _MARKERS.values())
    )


def _model_type(path: Path, state: dict[str, Any]) -> str:
    found = [kind for kind, marker in _MARKERS.items() if marker in state]
    if "encoder.embeddings" in state:
        raise CheckpointError(
            f"{path}: a PVD 'hash' model (encoder.embeddings); import it with --from torch-ngp"
        )
    refuse_background_model(path, state)
    if len(found) != 1:
        raise CheckpointError(
            f"{path}: cannot tell the PVD model type from its keys (expected one of "
            f"{', '.join(_MARKERS.values())})"
        )
    return found[0]


Converted = tuple[str, dict[str, Any], dict[str, torch.Tensor], list[str]]


def _vm(path: Path, state: dict[str, Any], box: list[float], clip: list[float]) -> Converted:
    """``vm`` → pvd TensoRF (same layout and decoder, ``density_shift = 0``)."""
    ranks = {
        g: tensor(path, state, f"{g}_mat.0", (1, None, None, None)).shape[1]
        for g in ("sigma", "color")
    }
    plane = tensor(path, state, "sigma_mat.0", (1, ranks["sigma"], None, None))
    line = tensor(path, state, "sigma_vec.0", (1, ranks["sigma"], None, 1))
    size = (plane.shape[3], plane.shape[2], line.shape[2])
    config = {
        "aabb": box,
        "density_components": ranks["sigma"],
        "appearance_components": ranks["color"],
        "grid_size": list(size),
        "initial_resolution": max(size),
        "final_resolution": max(size),
        "upsample_fractions": [],
        "density_shift": 0.0,
        "sigma_clip": clip,
    }
    converted: dict[str, torch.Tensor] = {}
    for group, name in (("sigma", "density"), ("color", "app")):
        r = ranks[group]
        for m, ((a, b), c) in enumerate(zip(MAT_MODES, VEC_MODES, strict=True)):
            plane_shape, line_shape = (1, r, size[b], size[a]), (1, r, size[c], 1)
            converted[f"{name}_plane.{m}"] = tensor(path, state, f"{group}_mat.{m}", plane_shape)
            converted[f"{name}_line.{m}"] = tensor(path, state, f"{group}_vec.{m}", line_shape)
    basis_shape = (15, 3 * ranks["color"])
    converted["basis_mat.weight"] = tensor(path, state, "basis_mat.weight", basis_shape)
    converted.update(colour_net(path, state))
    keys = [f"{g}_{k}.{m}" for g in ("sigma", "color") for k in ("mat", "vec") for m in range(3)]
    return "tensorf", config, converted, [*keys, "basis_mat.weight", *COLOUR_NET_KEYS]


def _mlp(
    path: Path, state: dict[str, Any], box: list[float], clip: list[float], skip_option: int | None
) -> Converted:
    """``mlp`` → pvd MLP with ``skip`` and ``head_width`` (module docstring); ``skip_option`` is
    ``args.txt``'s ``--skip``, checked against the skip layer the weights show."""
    if any(abs(abs(v) - 1.0) > 1e-6 for v in box):
        raise CheckpointError(
            f"{path}: a PVD 'mlp' model with aabb_train {box} (bound != 1) is not supported: "
            "pvd's MLP encodes box-normalised points, PVD's the raw ones"
        )
    count = sum(1 for k in state if k.startswith("nerf_mlp.") and k.endswith(".weight"))
    first = tensor(path, state, "nerf_mlp.0.weight", (None, None))
    width, encoding = first.shape
    if count < 4 or (encoding - 3) % 6:
        raise CheckpointError(
            f"{path}: nerf_mlp has {count} layers and a {encoding}-wide input; expected >= 4 "
            "layers and a 3 + 6·PE encoding"
        )
    last = tensor(path, state, f"nerf_mlp.{count - 1}.weight", (None, width))
    features = last.shape[0]
    wide = [
        i
        for i in range(1, count - 1)
        if tensor(path, state, f"nerf_mlp.{i}.weight", (width, None)).shape[1] == width + encoding
    ]
    if len(wide) != 1:
        raise CheckpointError(
            f"{path}: nerf_mlp has no single skip layer (input {width + encoding})"
        )
    skip = wide[0] - 1
    if skip_option is not None and skip_option != skip:
        raise CheckpointError(f"{path}: args.txt says --skip {skip_option}, the weights say {skip}")
    converted: dict[str, torch.Tensor] = {}
    for i in range(count - 1):
        width_in = encoding if i == 0 else width + encoding if i == skip + 1 else width
        weight = tensor(path, state, f"nerf_mlp.{i}.weight", (width, width_in))
        if i == skip + 1:  # PVD concatenates [γ, h]; pvd's MLP [h, γ]
            weight = torch.cat((weight[:, encoding:], weight[:, :encoding]), dim=1)
        converted[f"trunk.{i}.weight"] = weight
        converted[f"trunk.{i}.bias"] = tensor(path, state, f"nerf_mlp.{i}.bias", (width,))
    bias = tensor(path, state, f"nerf_mlp.{count - 1}.bias", (features,)).double()
    head_in = tensor(path, state, "sigma_net.0.weight", (None, features)).double()
    head_width = head_in.shape[0]
    # Linear(W → 28) then Linear(28 → 64, no bias) with nothing between is one Linear(W → 64).
    converted["head.0.weight"] = (head_in @ last.double()).float()
    converted["head.0.bias"] = (head_in @ bias).float()
    converted["head.2.weight"] = tensor(path, state, "sigma_net.1.weight", (16, head_width))
    converted.update(colour_net(path, state))
    config = {
        "aabb": box,
        "depth": count - 1,
        "width": width,
        "frequencies": (encoding - 3) // 6,
        "skip": skip,
        "head_width": head_width,
        "sigma_clip": clip,
    }
    keys = [f"nerf_mlp.{i}.{p}" for i in range(count) for p in ("weight", "bias")]
    return (
        "mlp",
        config,
        converted,
        [*keys, "sigma_net.0.weight", "sigma_net.1.weight", *COLOUR_NET_KEYS],
    )


def _tensors(path: Path, state: dict[str, Any], box: list[float], clip: list[float]) -> Converted:
    """``tensors`` → pvd Plenoxels: the dense grid, ``[C, z, y, x]`` → ``[C, x, y, z]``."""
    volume = tensor(path, state, "tensor_volume.0", (1, None, None, None, None))
    channels, res = volume.shape[1], volume.shape[2:]
    bands = math.isqrt(max(channels - 1, 0) // 3)
    if len(set(res)) != 1 or channels != 1 + 3 * bands * bands or not 1 <= bands <= 4:
        raise CheckpointError(
            f"{path}: key 'tensor_volume.0' has shape {list(volume.shape)}: pvd needs a cubic "
            "grid of 1 + 3·deg² channels (deg 1..4)"
        )
    config = {
        "aabb": box,
        "resolution": res[0],
        "sh_degree": bands - 1,
        "sigma_clip": clip,
    }
    return "plenoxels", config, {"grid": volume[0].permute(0, 3, 2, 1)}, ["tensor_volume.0"]


def load(path: Path, data: Dataset | None) -> TrainedModel:
    """Import a PVD ``mlp``/``vm``/``tensors`` checkpoint (module docstring)."""
    _, state = torch_checkpoint(path, "PVD / torch-ngp", "model")
    kind = _model_type(path, state)
    box = tensor(path, state, "aabb_train", (6,)).tolist()
    options, args, provenance = pvd_options(path)
    clip = [options["sigma_clip_min"], options["sigma_clip_max"]]
    args_file = Path(provenance["args_file"] or path)
    skip_option = integer(args_file, args, "skip") if "skip" in args else None
    if kind == "vm":
        arch, config, converted, keys = _vm(path, state, box, clip)
    elif kind == "mlp":
        arch, config, converted, keys = _mlp(path, state, box, clip, skip_option)
    else:
        arch, config, converted, keys = _tensors(path, state, box, clip)
    check_keys(path, state, [*keys, "aabb_train"], _BUFFERS, what=f"a PVD '{kind}' model")
    field = build_field(path, arch, config)
    load_state(path, field, converted)
    scale = options["scale"]
    infer_box = tensor(path, state, "aabb_infer", (6,)).tolist() if "aabb_infer" in state else box
    scene = scene_spec(
        path,
        infer_box,
        near=options["min_near"],
        world_to_model=similarity(scale, NGP_AXES),
    )
    return build_model(
        path,
        NAME,
        field,
        scene,
        step_size=TORCH_NGP_STEP,
        data=data,
        normalisation=(
            f"torch-ngp's nerf_matrix_to_ngp: model (x, y, z) = {scale:g} · world (y, z, x) "
            "(Blender poses, --scale)"
        ),
        details={"model_type": kind, "options": {**options, **provenance}},
    )


IMPORTER = Importer(
    name=NAME,
    description="PVD (AAAI 2023) reference code .pth, model types mlp / vm / tensors",
    detect=detect,
    load=load,
)
