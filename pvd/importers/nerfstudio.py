"""nerfstudio ``.ckpt`` of ``nerfacto`` / ``instant-ngp`` without scene contraction → pvd hash grid.

File (``engine/trainer.py::save_checkpoint``)
    ``torch.save({"step", "pipeline": state_dict, "optimizers", "schedulers", "scalers"})`` in
    ``<run>/nerfstudio_models/step-*.ckpt``; ``<run>/config.yml`` (``yaml.dump`` of the trainer
    config, with python tags) and ``<run>/dataparser_transforms.json`` (``{"transform": 3×4,
    "scale"}``) sit in the run folder. Only ``ckpt["pipeline"]`` is used. FORMATS.md guessed that
    ``torch.load(weights_only=True)`` reads the file as is; a checkpoint written by nerfstudio
    1.1.5 (trained here, see below) proved otherwise: the optimizer ``lr`` and scheduler
    ``_last_lr`` values are numpy float64 scalars. pvd therefore also allows numpy's scalar
    reconstruction for plain numeric dtypes (:func:`~pvd.importers.common.load_torch`) — still no
    code and no object dtypes.

Field (``fields/nerfacto_field.py``, nerfstudio 1.1.5, read from the installed package)
    Keys under ``_model.field.`` (``_model.module.`` under DDP): buffers ``aabb [2, 3]``,
    ``max_res``, ``num_levels``, ``log2_hashmap_size``; ``embedding_appearance.embedding.weight
    [images, A]`` (A = 32, or absent); and either the tcnn modules ``mlp_base.model.params``
    (FullyFusedMLP ``L·F → 64 → 16`` then the HashGrid, network first), ``mlp_head.tcnn_encoding
    .params`` (``[SH (16), geo (15), appearance (A)]`` → 64 → 64 → 3, output Sigmoid),
    ``direction_encoding.tcnn_encoding.params`` (empty) — older releases store
    ``mlp_base.params`` / ``mlp_head.params`` / ``direction_encoding.params`` — or the torch
    implementation: ``mlp_base.model.0.hash_table [L·2^T, F]`` (every level hashed, see the
    ``nerfstudio`` layout in :mod:`architectures.hashgrid`), ``mlp_base.model.1.layers.{0,1}``
    and ``mlp_head.layers.{0,1,2}`` (``nn.Linear`` with biases).
    Forward at evaluation: positions normalised by ``aabb`` (scene contraction disabled); points
    outside the open unit cube get density 0 (pvd clamps them to the box surface instead; inside
    the box both agree); ``σ = average_init_density · trunc_exp(h[0])`` (folded into the density
    head as ``+ln a`` on ``h[0]``); ``rgb = mlp_head([SH(d'), h[1:16], appearance])`` with
    ``d' = (d + 1)/2``. The tcnn SH maps ``d'`` back by ``2d' − 1`` (tcnn signs, pvd's
    ``sh_encode``); nerfstudio's torch ``SHEncoding`` evaluates its own real SH (positive signs)
    at ``d'`` as given — a polynomial of degree ≤ 3 in ``d``, hence exactly ``M · SH_tcnn(d)`` on
    the unit sphere for a fixed 16×16 ``M`` (:func:`torch_sh_to_tcnn`), which pvd folds into the
    head's first layer. The appearance input is a constant at evaluation: the mean embedding when
    ``use_average_appearance_embedding`` (nerfacto's default) else zeros (``NerfactoField``'s
    default, which nerfstudio's ``instant-ngp`` model keeps); it is folded into the first bias,
    together with tcnn's constant-1 padding columns. Result: the ``biased`` decoder.

Scene contraction (``models/nerfacto.py``, ``models/instant_ngp.py``): on unless the config sets
``disable_scene_contraction: true`` (older instant-ngp: ``contraction_type`` AABB). The
checkpoint itself does not show it, so ``config.yml`` must be found beside the checkpoint or in a
parent folder; without it (or with contraction on) the file is refused by name: "scene
contraction for unbounded scenes is not representable". Proposal networks (nerfacto's sampler),
the occupancy grid (instant-ngp's sampler), the camera optimizer, the LPIPS metric network and
extra heads that do not affect density or colour (predicted normals, transient and semantic heads)
are not part of the radiance field and are ignored, as provenance records. Other field keys are
refused.

Scene: model space is nerfstudio's (dataparser output); ``dataparser_transforms.json`` gives
``world_to_model = scale · [R | t]`` (identity, recorded as assumed, when absent). Near/far come
from the config's collider (``enable_collider`` with ``collider_params``, else
``near_plane``/``far_plane``); the background from ``background_color`` (``white``/``black``;
``random``/``last_sample`` have no fixed colour and white is used, as Blender data is composited
on white); the render step is ``‖aabb diagonal‖ / 1000`` (nerfstudio instant-ngp's automatic step;
nerfacto samples with proposal networks instead).

Verified against nerfstudio itself (nerfstudio 1.1.5 installed from PyPI in a separate venv):
a nerfacto with ``--pipeline.model.implementation torch --pipeline.model.disable-scene-contraction
True --pipeline.model.average-init-density 0.5`` (8 levels, 2^15, max_res 256), trained 300 steps
on CPU on pvd's ``texture`` scene at 48 px. At 4,096 random points and directions the imported
field matches nerfstudio's ``NerfactoField`` to 2.4e-6 relative in σ and 1.8e-7 in rgb; on four
test views pvd's render and nerfstudio's own are within 0.03 dB PSNR of each other against the
ground truth (46–51 dB apart).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from architectures import CheckpointError
from architectures.components import sh_encode
from architectures.hashgrid import (
    HashGrid,
    HashGridConfig,
    nerfstudio_growth,
    nerfstudio_level_scales,
    tcnn_level_scales,
)

from . import Importer
from .common import (
    STEP_OPACITY_THRESHOLD,
    WHITE,
    build_field,
    build_model,
    dataparser_transform,
    field_config,
    integer,
    load_state,
    number,
    pickle_strings,
    require,
    run_file,
    scene_spec,
    strip_prefix,
    tensor,
    torch_checkpoint,
)
from .tcnn import pad16, tcnn_grid_size, tcnn_mlp_matrices, tcnn_mlp_size

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import TrainedModel

CONTRACTION_REFUSAL = "scene contraction for unbounded scenes is not representable"
#: Opacity per render step below which a nerfacto teacher's occupancy cells are skipped (see
#: :func:`_gentler_occupancy`).
NERFACTO_STEP_OPACITY = 1e-3
#: Model components outside the field that do not define what is rendered (see docstring).
_IGNORED_MODEL_PARTS = {
    "proposal_networks.": "proposal networks (nerfacto's sampler)",
    "occupancy_grid.": "occupancy grid (instant-ngp's sampler; pvd builds its own)",
    "scene_aabb": "scene_aabb (the occupancy grid's box, same as field.aabb)",
    "camera_optimizer.": "camera optimizer (training poses)",
    "lpips.": "LPIPS metric network",
    "device_indicator_param": "device indicator",
}
#: Field heads that do not affect density or colour at evaluation.
_IGNORED_FIELD_PARTS = {
    "mlp_pred_normals.": "predicted-normals head",
    "field_head_pred_normals.": "predicted-normals head",
    "embedding_transient.": "transient embedding (training only)",
    "mlp_transient.": "transient head (training only)",
    "field_head_transient_": "transient head (training only)",
    "mlp_semantics.": "semantic head",
    "field_head_semantics.": "semantic head",
    "position_encoding.": "position encoding of the normals head",
}


# -- files -------------------------------------------------------------------------------------
def detect(path: Path) -> bool:
    """A ``torch.save`` zip whose pickle has a ``pipeline`` entry with a hash-grid field
    (``_model.field.mlp_base…``)."""
    names = pickle_strings(path)
    prefixes = ("_model.field.mlp_base.", "_model.module.field.mlp_base.")
    return "pipeline" in names and any(n.startswith(prefixes) for n in names)


_LINE = re.compile(r"^( *)([A-Za-z_][\w]*):(?: +(.*))?$")


def _scalar(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text.strip("'\"")


def parse_config(text: str) -> dict[str, Any]:
    """The scalar entries of nerfstudio's ``config.yml`` by dotted key path, e.g.
    ``pipeline.model.disable_scene_contraction``. The file is ``yaml.dump`` output with python
    tags that a safe YAML loader refuses, and pvd needs a handful of scalars, so this reads block
    mappings by indentation: ``key: scalar`` lines, nested ``key:`` (or ``key: !!python/object…``)
    mappings, and the arguments of ``key: !!python/object/apply:…`` (a list of scalars, as
    ``[…]``); other list items are skipped."""
    values: dict[str, Any] = {}
    stack: list[tuple[int, str]] = []
    apply_key: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if stripped.startswith("- "):
            if apply_key is not None and not stripped[2:].startswith("!!"):
                values[apply_key].append(_scalar(stripped[2:].strip()))
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        apply_key = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [match.group(2)])
        stack.append((indent, match.group(2)))
        value = (match.group(3) or "").strip()
        if value.startswith("!!python/object/apply:"):
            values[key], apply_key = [], key
        elif value and not value.startswith(("!!python/object:", "&")):
            values[key] = _scalar(value)
    return values


# -- SH conversion -----------------------------------------------------------------------------
def nerfstudio_torch_sh(u: torch.Tensor) -> torch.Tensor:
    """nerfstudio's ``components_from_spherical_harmonics(levels=4, u)`` (``utils/math.py``):
    real SH of degree ≤ 3 with positive signs, evaluated at ``u`` as given."""
    x, y, z = u.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack(
        [
            torch.full_like(x, 0.28209479177387814),
            0.4886025119029199 * y,
            0.4886025119029199 * z,
            0.4886025119029199 * x,
            1.0925484305920792 * x * y,
            1.0925484305920792 * y * z,
            0.9461746957575601 * zz - 0.31539156525251999,
            1.0925484305920792 * x * z,
            0.5462742152960396 * (xx - yy),
            0.5900435899266435 * y * (3 * xx - yy),
            2.890611442640554 * x * y * z,
            0.4570457994644658 * y * (5 * zz - 1),
            0.3731763325901154 * z * (5 * zz - 3),
            0.4570457994644658 * x * (5 * zz - 1),
            1.445305721320277 * z * (xx - yy),
            0.5900435899266435 * x * (xx - 3 * yy),
        ],
        dim=-1,
    )


def torch_sh_to_tcnn() -> torch.Tensor:
    """``M`` [16, 16] with ``nerfstudio_torch_sh((d + 1)/2) = M · sh_encode(d)`` for every unit
    ``d``: a least-squares fit (float64) over 400 directions, exact because polynomials of
    degree ≤ 3 restricted to the sphere are spanned by the SH of degree ≤ 3."""
    i = torch.arange(400, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / 400
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    r = torch.sqrt(1.0 - z * z)
    d = torch.stack((r * torch.cos(phi), r * torch.sin(phi), z), dim=-1)
    basis, target = sh_encode(d), nerfstudio_torch_sh((d + 1.0) / 2.0)
    solution = torch.linalg.lstsq(basis, target).solution  # basis @ solution = target
    residual = float((basis @ solution - target).abs().max())
    if residual > 1e-9:  # cannot happen unless one of the two SH definitions is wrong
        raise RuntimeError(f"SH change of basis is not exact (residual {residual:.2e})")
    return solution.t()


# -- conversion --------------------------------------------------------------------------------
def _model_state(path: Path, pipeline: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The model's state without its prefix, the non-field parts checked against the allowed
    list (returned as notes)."""
    prefix = (
        "_model.module." if any(k.startswith("_model.module.") for k in pipeline) else "_model."
    )
    state = strip_prefix(pipeline, prefix)
    outside = sorted(k for k in pipeline if not k.startswith((prefix, "datamanager.")))
    require(path, not outside, f"unknown pipeline key '{outside[0] if outside else ''}'")
    ignored: set[str] = set()
    for key in state:
        if key.startswith("field."):
            continue
        part = next((p for p in _IGNORED_MODEL_PARTS if key.startswith(p)), None)
        require(path, part is not None, f"unknown model key '{prefix}{key}'; cannot import it")
        ignored.add(_IGNORED_MODEL_PARTS[part])
    return state, sorted(ignored)


def _field_keys(path: Path, field: dict[str, Any], known: set[str]) -> list[str]:
    ignored: set[str] = set()
    for key in field:
        if key in known:
            continue
        part = next((p for p in _IGNORED_FIELD_PARTS if key.startswith(p)), None)
        require(path, part is not None, f"unknown field key 'field.{key}'; cannot import it")
        ignored.add(_IGNORED_FIELD_PARTS[part])
    return sorted(ignored)


def _contraction_disabled(config: dict[str, Any]) -> bool:
    """Whether the config turns scene contraction off (nerfstudio ≥ 0.2's flag, or nerfacc's
    ``ContractionType.AABB`` = 0 in older instant-ngp configs)."""
    if "pipeline.model.disable_scene_contraction" in config:
        return config["pipeline.model.disable_scene_contraction"] is True
    return config.get("pipeline.model.contraction_type") == [0]  # nerfacc ContractionType.AABB


def _grid_shape(path: Path, field: dict[str, Any], config: dict[str, Any]) -> dict[str, int]:
    """The hash grid's shape: the field's buffers where it has them, else ``config.yml``."""
    model = "pipeline.model."
    levels = integer(path, config, model + "num_levels", 16)
    log2_table = integer(path, config, model + "log2_hashmap_size", 19)
    max_res = integer(path, config, model + "max_res", 2048)
    return {
        "levels": integer(path, field, "num_levels", levels),
        "features": integer(path, config, model + "features_per_level", 2),
        "log2_table_size": integer(path, field, "log2_hashmap_size", log2_table),
        "base_resolution": integer(path, config, model + "base_res", 16),
        "max_resolution": integer(path, field, "max_res", max_res),
        "hidden_width": integer(path, config, model + "hidden_dim", 64),
    }


def _appearance(
    path: Path, field: dict[str, Any], average: bool
) -> tuple[torch.Tensor, str, set[str]]:
    for key in ("embedding_appearance.embedding.weight", "appearance_embedding.embedding.weight"):
        if key in field:
            table = tensor(path, field, key, (None, None))
            if average:
                return table.mean(0), f"mean of {table.shape[0]} image embeddings", {key}
            return (
                torch.zeros(table.shape[1]),
                "zeros (nerfstudio's evaluation default here)",
                {key},
            )
    return torch.zeros(0), "none", set()


def _convert_torch(
    path: Path, field: dict[str, Any], grid: dict[str, Any], appearance: torch.Tensor, shift: float
) -> tuple[dict[str, Any], dict[str, torch.Tensor], set[str]]:
    levels, table = grid["levels"], 1 << grid["log2_table_size"]
    hash_table = tensor(path, field, "mlp_base.model.0.hash_table", (levels * table, None))
    grid["features"] = hash_table.shape[1]
    n_in = levels * grid["features"]
    width = grid["hidden_width"]
    names = {"mlp_base.model.0.hash_table"}
    layers = {}
    for key, shape in (
        ("mlp_base.model.1.layers.0.weight", (width, n_in)),
        ("mlp_base.model.1.layers.0.bias", (width,)),
        ("mlp_base.model.1.layers.1.weight", (16, width)),
        ("mlp_base.model.1.layers.1.bias", (16,)),
        ("mlp_head.layers.0.weight", (64, 31 + appearance.numel())),
        ("mlp_head.layers.0.bias", (64,)),
        ("mlp_head.layers.1.weight", (64, 64)),
        ("mlp_head.layers.1.bias", (64,)),
        ("mlp_head.layers.2.weight", (3, 64)),
        ("mlp_head.layers.2.bias", (3,)),
    ):
        layers[key] = tensor(path, field, key, shape).double()
        names.add(key)
    head0 = layers["mlp_head.layers.0.weight"]
    density_bias = layers["mlp_base.model.1.layers.1.bias"].clone()
    density_bias[0] += shift
    config = {
        **grid,
        "layout": "nerfstudio",
        "level_scales": list(
            nerfstudio_level_scales(levels, grid["base_resolution"], grid["max_resolution"])
        ),
        "head_bias": True,
    }
    state = {
        "params": hash_table.reshape(-1),
        "density_head.0.weight": layers["mlp_base.model.1.layers.0.weight"],
        "density_head.0.bias": layers["mlp_base.model.1.layers.0.bias"],
        "density_head.2.weight": layers["mlp_base.model.1.layers.1.weight"],
        "density_head.2.bias": density_bias,
        "decoder.colour_mlp.0.weight": torch.cat(
            [head0[:, :16] @ torch_sh_to_tcnn(), head0[:, 16:31]], dim=1
        ),
        "decoder.colour_mlp.0.bias": layers["mlp_head.layers.0.bias"]
        + head0[:, 31:] @ appearance.double(),
        "decoder.colour_mlp.2.weight": layers["mlp_head.layers.1.weight"],
        "decoder.colour_mlp.2.bias": layers["mlp_head.layers.1.bias"],
        "decoder.colour_mlp.4.weight": layers["mlp_head.layers.2.weight"],
        "decoder.colour_mlp.4.bias": layers["mlp_head.layers.2.bias"],
    }
    return config, state, names


def _convert_tcnn(
    path: Path, field: dict[str, Any], grid: dict[str, Any], appearance: torch.Tensor, shift: float
) -> tuple[dict[str, Any], dict[str, torch.Tensor], set[str]]:
    new = "mlp_base.model.params" in field
    base_key = "mlp_base.model.params" if new else "mlp_base.params"
    head_key = "mlp_head.tcnn_encoding.params" if new else "mlp_head.params"
    dir_key = "direction_encoding.tcnn_encoding.params" if new else "direction_encoding.params"
    levels, base, top = grid["levels"], grid["base_resolution"], grid["max_resolution"]
    n_in, width = levels * grid["features"], grid["hidden_width"]
    mlp_size = tcnn_mlp_size(pad16(n_in), width, 1, 16)
    params = tensor(path, field, base_key, (None,))
    # The grid's per-level scale: nerfstudio's growth factor for the stored max_res; files
    # without the max_res buffer (before 1.0) may also come from the hard-coded fields of
    # nerfstudio 0.1 (instant-ngp: per_level_scale 1.4472692012786865; nerfacto: max_res 1024).
    candidates = [float(nerfstudio_growth(levels, base, top))]
    if not new:
        candidates += [1.4472692012786865, float(nerfstudio_growth(levels, base, 1024))]
    config: dict[str, Any] = {}
    for scale in candidates:
        config = {
            **grid,
            "level_scales": list(tcnn_level_scales(levels, base, scale)),
            "head_bias": shift != 0.0,
        }
        grid_config = field_config(path, "hashgrid", config)
        assert isinstance(grid_config, HashGridConfig)
        if params.numel() == mlp_size + tcnn_grid_size(grid_config):
            break
    else:
        raise CheckpointError(
            f"{path}: 'field.{base_key}' holds {params.numel():,} values, which matches no hash "
            f"grid of {levels} levels from base resolution {base} (max_res {top})"
        )
    n_head = 31 + appearance.numel()
    head = tensor(path, field, head_key, (tcnn_mlp_size(n_head, 64, 2, 3),))
    if dir_key in field:
        tensor(path, field, dir_key, (0,))
    d0, d1 = tcnn_mlp_matrices(params[:mlp_size], pad16(n_in), width, 1, 16)
    h0, h1, h2 = (m.double() for m in tcnn_mlp_matrices(head, n_head, 64, 2, 3))
    padding = h0[:, n_head:].sum(1)  # tcnn pads the head's input with ones
    state = {
        "params": params[mlp_size:],
        "density_head.0.weight": d0[:, :n_in],
        "density_head.2.weight": d1,
        "decoder.colour_mlp.0.weight": h0[:, :31],
        "decoder.colour_mlp.0.bias": h0[:, 31:n_head] @ appearance.double() + padding,
        "decoder.colour_mlp.2.weight": h1,
        "decoder.colour_mlp.2.bias": torch.zeros(64),
        "decoder.colour_mlp.4.weight": h2[:3],
        "decoder.colour_mlp.4.bias": torch.zeros(3),
    }
    if shift != 0.0:
        state["density_head.0.bias"] = torch.zeros(width)
        state["density_head.2.bias"] = torch.zeros(16)
        state["density_head.2.bias"][0] = shift
    return config, state, {base_key, head_key, dir_key}


def load(path: Path, data: Dataset | None = None) -> TrainedModel:
    """Import a nerfstudio nerfacto / instant-ngp checkpoint (see the module docstring)."""
    checkpoint, pipeline = torch_checkpoint(path, "nerfstudio", "pipeline")
    state, ignored = _model_state(path, pipeline)
    field = strip_prefix(state, "field.")
    method = "nerfacto" if any(k.startswith("proposal_networks.") for k in state) else "instant-ngp"
    config_file = run_file(path, "config.yml")
    if config_file is None:
        raise CheckpointError(
            f"{path}: {CONTRACTION_REFUSAL} (no config.yml beside the checkpoint or in its run "
            f"folder, so nerfstudio's {method} default — contraction on — applies)"
        )
    config = parse_config(config_file.read_text())
    if not _contraction_disabled(config):
        raise CheckpointError(
            f"{path}: {CONTRACTION_REFUSAL} ({config_file.name}: {method} trained with scene "
            "contraction; retrain with --pipeline.model.disable-scene-contraction True)"
        )
    torch_impl = "mlp_base.model.0.hash_table" in field
    require(
        path,
        torch_impl or "mlp_base.model.params" in field or "mlp_base.params" in field,
        "no hash-grid field (field.mlp_base) in the checkpoint",
    )
    model = "pipeline.model."
    require(
        path,
        integer(path, config, model + "hidden_dim_color", 64) == 64
        and integer(path, config, model + "num_layers_color", 3) == 3,
        "a colour head other than 64 wide with 3 layers is not supported",
    )
    average = method == "nerfacto" and config.get(model + "use_average_appearance_embedding", True)
    appearance, appearance_note, used = _appearance(path, field, bool(average))
    # nerfacto passes average_init_density to its field; instant-ngp keeps the field's 1.0
    density_scale = (
        number(path, config, model + "average_init_density", 1.0) if method == "nerfacto" else 1.0
    )
    require(path, density_scale > 0, f"average_init_density {density_scale} must be positive")
    shift = math.log(density_scale)
    aabb = tensor(path, field, "aabb", (2, 3)).reshape(-1).tolist()
    grid = {"aabb": aabb, "decoder": "biased", **_grid_shape(path, field, config)}
    convert = _convert_torch if torch_impl else _convert_tcnn
    grid_config, converted, names = convert(path, field, grid, appearance, shift)
    known = names | used | {"aabb", "max_res", "num_levels", "log2_hashmap_size"}
    ignored += _field_keys(path, field, known)
    hashgrid = build_field(path, "hashgrid", grid_config)
    assert isinstance(hashgrid, HashGrid)
    load_state(path, hashgrid, {k: v.float() for k, v in converted.items()})

    world_to_model, normalisation = dataparser_transform(path)
    if config.get(model + "enable_collider", method == "nerfacto"):
        near = number(config_file, config, model + "collider_params.near_plane", 2.0)
        far = number(config_file, config, model + "collider_params.far_plane", 6.0)
    else:
        near = number(config_file, config, model + "near_plane", 0.05)
        far = number(config_file, config, model + "far_plane", 1000.0)
    colour = config.get(
        model + "background_color", "last_sample" if method == "nerfacto" else "random"
    )
    background = {"white": WHITE, "black": (0.0, 0.0, 0.0)}.get(str(colour), WHITE)
    scene = scene_spec(
        path, aabb, near=near, far=far, background=background, world_to_model=world_to_model
    )
    model = build_model(
        path,
        IMPORTER.name,
        hashgrid,
        scene,
        step_size=math.dist(aabb[:3], aabb[3:]) / 1000,
        # nerfacto samples with proposal networks and culls nothing, so its faint haze shows in
        # its renders: the 1 %-per-step grid (right for instant-ngp, whose nerfacc grid and
        # alpha_thre cull at 1 %) dropped it, 0.05-0.13 dB below nerfstudio's own render of the
        # model trained here; 0.003-0.03 dB at 0.1 %
        step_opacity=NERFACTO_STEP_OPACITY if method == "nerfacto" else STEP_OPACITY_THRESHOLD,
        data=data,
        normalisation=normalisation,
        details={
            "method": method,
            "implementation": "torch" if torch_impl else "tcnn",
            "step": checkpoint.get("step"),
            "config": str(config_file),
            "appearance": appearance_note,
            "average_init_density": density_scale,
            "background": f"{colour} -> {list(background)}",
            "ignored": ignored,
        },
    )
    return model


IMPORTER = Importer(
    name="nerfstudio",
    description="nerfstudio .ckpt of nerfacto / instant-ngp (tcnn or torch), scene contraction off",
    detect=detect,
    load=load,
)
