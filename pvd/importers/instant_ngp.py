"""instant-ngp snapshots (``.ingp`` / ``.msgpack``) → a pvd hash grid with the ``ingp`` decoder.

tiny-cuda-nn's parameter layouts are read with :mod:`pvd.importers.tcnn` (shared with the
torch-ngp and nerfstudio importers).

File (``src/testbed.cu::save_snapshot``, read from its source)
    The network-config JSON as msgpack (``json::to_msgpack``); ``.ingp`` is the same stream through
    ``zstr`` (zlib deflate; pvd accepts the gzip and zlib wrappers alike). Top-level keys:
    ``encoding`` (with the computed ``per_level_scale`` written back by
    ``testbed_nerf.cu::reset_network``), ``network`` (density MLP), ``dir_encoding``,
    ``rgb_network``, ``loss``, ``optimizer``, …, and ``snapshot``: tcnn's
    ``Trainer::serialize`` (``n_params``, ``params_type`` ``"__half"`` or ``"float"``,
    ``params_binary`` = the inference parameters in that type) plus ``aabb`` (``{"min", "max"}``,
    the box the network's inputs are normalised by), ``density_grid_binary``,
    ``background_color`` (linear RGBA), ``nerf.dataset`` (``scale``, ``offset``,
    ``from_mitsuba``, ``n_extra_learnable_dims``, ``is_hdr``, …) and more that pvd does not
    need.

Network (``include/neural-graphics-primitives/nerf_network.h``, read from its source)
    Flat parameter order (``set_params_impl``): density MLP | rgb MLP | position encoding | dir
    encoding (no parameters). The density MLP reads the hash grid's ``L·F`` outputs (padded with
    zeros to a multiple of 16 — ``grid.h`` pads with 0) and writes 16 values; the rgb MLP reads
    ``[density output (16, sigma_raw included), dir encoding (SH degree 4 of (d + 1)/2, i.e. of
    the unit direction — tcnn maps its input by 2u − 1)]`` = 32 and writes 3 (padded to 16).
    tcnn's FullyFusedMLP stores row-major ``(out, in)`` matrices without biases, padded widths
    included (:func:`~pvd.importers.tcnn.tcnn_mlp_matrices`). Activations (``testbed_nerf.cu``,
    not stored in the snapshot, so instant-ngp's defaults are assumed): ``density =
    exp(out[0])`` — equal to pvd's ``trunc_exp`` in the forward pass — and ``rgb =
    sigmoid(out[0:3])``. instant-ngp switches the rgb activation to ``Exponential`` only for HDR
    datasets (``nerf.dataset.is_hdr``), which are refused. Network inputs:
    positions relative to the snapshot's ``aabb`` (``warp_position``), which is the imported
    field's box.

Colour space: instant-ngp loads 8-bit images as linear colour (``read_rgba`` converts
sRGB → linear), but its training kernel (``testbed_nerf.cu``) converts each *target* back with
``linear_to_srgb`` unless ``train_in_linear_colors`` (``nerf.training.linear_colors``, default
false; HDR datasets set it), so the
network's sigmoid output is sRGB colour, composited in sRGB — what pvd renders. The ``ingp``
decoder therefore returns it unchanged. The snapshot's ``background_color`` is instant-ngp's
linear ``m_background_color`` (its training kernel converts it with ``linear_to_srgb`` too
before compositing), so the scene's background is its ``linear_to_srgb`` (:func:`linear_to_srgb`,
instant-ngp's exponent 0.41666).

Scene (``nerf_loader``'s ``nerf_matrix_to_ngp``): world points map to instant-ngp space by
``p ↦ P(scale·p + offset)`` with ``P`` the axis cycle (new x, y, z = old y, z, x) — no cycle for
``from_mitsuba`` datasets — using the snapshot's ``nerf.dataset.scale`` / ``offset`` (instant-ngp's
defaults 0.33 and 0.5 when the snapshot has no dataset). That space is the imported model space;
``SceneSpec.world_to_model`` records the map, and densities stay per instant-ngp unit
(``σ_world = σ_model · scale``).

Rendering: pvd marches with instant-ngp's finest step, ``STEPSIZE() = √3 / NERF_STEPS()`` with
``NERF_STEPS() = 1024`` (``testbed_nerf.cu``), in instant-ngp units: its ``calc_dt`` clamps the
cone step ``t · cone_angle`` to ``[MIN_CONE_STEPSIZE(), MAX_CONE_STEPSIZE()]`` with
``MIN_CONE_STEPSIZE() = STEPSIZE()``, an absolute length not scaled by ``aabb_scale``, and
``cone_angle_constant`` is 0 for ``aabb_scale <= 1`` (fixed steps of √3/1024, as pvd takes
them) and 1/256 for larger scenes, whose steps grow with distance from that minimum. pvd's
renderer has one fixed step, so for ``aabb_scale > 1`` it is instant-ngp's finest (never coarser
than instant-ngp's, at more samples per ray); the provenance records the cone angle.

Refused by name: other encodings or network types (only HashGrid with linear interpolation and
FullyFusedMLP with ReLU), a density MLP with other than one hidden layer, an rgb MLP other than
64 wide with two hidden layers, per-image latent dimensions (``n_extra_learnable_dims``), HDR
snapshots (``is_hdr``: exponential rgb activation, linear colours), a parameter count that does
not match the config, malformed config values, and a truncated or non-msgpack file.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from architectures import CheckpointError
from architectures.hashgrid import HashGridConfig, tcnn_level_scales

from . import Importer
from .common import (
    NGP_AXES,
    build_field,
    build_model,
    field_config,
    integer,
    load_state,
    number,
    require,
    scene_spec,
)
from .tcnn import pad16, tcnn_grid_size, tcnn_mlp_matrices, tcnn_mlp_size

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import TrainedModel

#: instant-ngp's defaults for snapshots without a dataset (``nerf_loader``).
DEFAULT_SCALE = 0.33
DEFAULT_OFFSET = (0.5, 0.5, 0.5)
#: instant-ngp's finest ray-marching step in its units (``testbed_nerf.cu``: ``STEPSIZE() =
#: SQRT3() / NERF_STEPS()``, 1024 steps; ``MIN_CONE_STEPSIZE()``); see the module docstring.
STEP_SIZE = math.sqrt(3.0) / 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")


# -- reading the snapshot ----------------------------------------------------------------------
def _decompress(path: Path, raw: bytes) -> bytes:
    """The msgpack stream of a ``.ingp`` (gzip or zlib) or ``.msgpack`` (as is) file."""
    if not (raw.startswith(_GZIP_MAGIC) or raw[:2] in _ZLIB_HEADERS):
        return raw
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, detected
    try:
        data = inflater.decompress(raw) + inflater.flush()
    except zlib.error as exc:
        raise CheckpointError(f"{path}: corrupt compressed snapshot ({exc})") from None
    if not inflater.eof:
        raise CheckpointError(f"{path}: truncated snapshot (the compressed stream ends early)")
    return data


def read_snapshot(path: Path) -> dict[str, Any]:
    """The snapshot's network-config dict; a truncated or non-msgpack file is refused."""
    import msgpack

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    data = _decompress(path, raw)
    try:
        config = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        what = "truncated" if "incomplete" in str(exc).lower() else "not a valid"
        raise CheckpointError(f"{path}: {what} msgpack snapshot ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("snapshot"), dict):
        raise CheckpointError(f"{path}: msgpack without an instant-ngp 'snapshot' entry")
    return config


def _looks_like_snapshot(head: bytes) -> bool:
    """A msgpack map (fixmap, map16, map32) whose first kilobytes name a ``snapshot`` key."""
    return (
        bool(head)
        and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF))
        and (b"snapshot" in head)
    )


def detect(path: Path) -> bool:
    """Whether ``path`` is an instant-ngp snapshot: a msgpack map with a ``snapshot`` key, bare
    or behind a gzip / zlib header (the config dicts before it are small; keys are sorted)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError:
        return False
    if head.startswith(_GZIP_MAGIC) or head[:2] in _ZLIB_HEADERS:
        try:
            head = zlib.decompressobj(wbits=47).decompress(head, 65536)
        except zlib.error:
            return False
    return _looks_like_snapshot(head)


# -- conversion --------------------------------------------------------------------------------
def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """instant-ngp's ``linear_to_srgb`` (``common_device.cuh``): ``12.92·x`` below 0.0031308,
    else ``1.055·x^0.41666 − 0.055`` (its exponent, not exactly 1/2.4)."""
    return torch.where(x < 0.0031308, 12.92 * x, 1.055 * x.clamp_min(0.0031308) ** 0.41666 - 0.055)


def _table(path: Path, config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    require(path, isinstance(value, dict), f"snapshot config has no '{key}' section")
    return value


def _numbers(path: Path, value: Any, count: int, what: str) -> tuple[float, ...]:
    """``count`` finite numbers from a snapshot list, or a one-line refusal naming ``what``."""
    ok = isinstance(value, list | tuple) and len(value) == count
    values = tuple(value) if ok else ()
    ok = ok and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )
    require(path, ok, f"{what} must be {count} finite numbers, got {value!r}")
    return tuple(float(v) for v in values)


def _mlp_shape(path: Path, network: dict[str, Any], name: str) -> tuple[int, int]:
    """(width, hidden layers) of a FullyFusedMLP config with ReLU and no output activation."""
    otype = str(network.get("otype", "FullyFusedMLP"))
    require(path, otype.lower() == "fullyfusedmlp", f"{name} of type {otype} is not supported")
    for key, allowed in (("activation", "relu"), ("output_activation", "none")):
        value = str(network.get(key, "ReLU" if key == "activation" else "None"))
        require(path, value.lower() == allowed, f"{name} {key} {value} is not supported")
    return integer(path, network, "n_neurons", 64), integer(path, network, "n_hidden_layers", 1)


def _grid_config(path: Path, encoding: dict[str, Any], aabb: tuple[float, ...]) -> HashGridConfig:
    otype = str(encoding.get("otype", "HashGrid"))
    kind = str(encoding.get("type", "Hash"))
    require(
        path,
        otype.lower() in ("hashgrid", "grid") and kind.lower() == "hash",
        f"position encoding {otype}/{kind} is not supported (only the hash grid)",
    )
    interpolation = str(encoding.get("interpolation", "Linear"))
    require(
        path, interpolation.lower() == "linear", f"{interpolation} interpolation is not supported"
    )
    features = integer(path, encoding, "n_features_per_level", 2)
    require(path, features > 0, f"n_features_per_level {features} must be positive")
    if "n_features" in encoding:
        levels = integer(path, encoding, "n_features") // features
    else:
        levels = integer(path, encoding, "n_levels", 16)
    base = integer(path, encoding, "base_resolution", 16)
    require(path, "per_level_scale" in encoding, "encoding without 'per_level_scale'")
    scale = number(path, encoding, "per_level_scale")
    require(path, scale > 0, f"per_level_scale {scale} must be positive")
    require(path, 1 <= levels <= 32, f"{levels} grid levels are not supported (1..32)")
    finest = base * scale ** (levels - 1)
    config = field_config(
        path,
        "hashgrid",
        {
            "aabb": list(aabb),
            "levels": levels,
            "features": features,
            "log2_table_size": integer(path, encoding, "log2_hashmap_size", 19),
            "base_resolution": base,
            "max_resolution": max(base, round(finest)),
            "level_scales": list(tcnn_level_scales(levels, base, scale)),
            "decoder": "ingp",
        },
    )
    assert isinstance(config, HashGridConfig)
    return config


def _parameters(path: Path, snapshot: dict[str, Any]) -> torch.Tensor:
    binary = snapshot.get("params_binary")
    require(path, isinstance(binary, bytes | bytearray), "snapshot without 'params_binary'")
    count = integer(path, snapshot, "n_params", 0)
    kind = snapshot.get("params_type")
    if kind is None:  # snapshots before tcnn recorded the type: infer it from the byte count
        kind = "float" if len(binary) == 4 * count else "__half"
    dtypes = {"__half": np.float16, "float": np.float32}
    require(path, kind in dtypes, f"parameter type {kind!r} is not supported")
    dtype = dtypes[kind]
    require(
        path,
        len(binary) == count * np.dtype(dtype).itemsize,
        f"params_binary holds {len(binary)} bytes, n_params {count} of {kind} needs "
        f"{count * np.dtype(dtype).itemsize} (truncated?)",
    )
    return torch.from_numpy(np.frombuffer(binary, dtype=dtype).astype(np.float32))


def _nerf_dataset(snapshot: dict[str, Any]) -> dict[str, Any] | None:
    """``snapshot["nerf"]["dataset"]`` when the snapshot has one."""
    nerf = snapshot.get("nerf")
    dataset = nerf.get("dataset") if isinstance(nerf, dict) else None
    return dataset if isinstance(dataset, dict) else None


def _world_to_model(
    path: Path, snapshot: dict[str, Any]
) -> tuple[tuple[tuple[float, ...], ...], str]:
    dataset = _nerf_dataset(snapshot)
    if isinstance(dataset, dict):
        scale = number(path, dataset, "scale", DEFAULT_SCALE)
        offset = _numbers(path, dataset.get("offset", DEFAULT_OFFSET), 3, "dataset offset")
        mitsuba = dataset.get("from_mitsuba", False) is True
        source = "from the snapshot's nerf.dataset"
    else:
        scale, offset, mitsuba = DEFAULT_SCALE, DEFAULT_OFFSET, False
        source = "instant-ngp's defaults (the snapshot has no dataset)"
    require(path, scale > 0, f"dataset scale {scale} must be positive")
    rows = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)) if mitsuba else NGP_AXES
    matrix = [
        [scale * r for r in row] + [sum(r * o for r, o in zip(row, offset, strict=True))]
        for row in rows
    ]
    matrix.append([0.0, 0.0, 0.0, 1.0])
    text = (
        f"instant-ngp space: p -> {'' if mitsuba else 'cycle_yzx('}{scale:g} p + "
        f"({', '.join(f'{o:g}' for o in offset)}){'' if mitsuba else ')'} ({source})"
    )
    return tuple(tuple(row) for row in matrix), text


def load(path: Path, data: Dataset | None = None) -> TrainedModel:
    """Import an instant-ngp snapshot as a pvd teacher (see the module docstring)."""
    config = read_snapshot(path)
    snapshot = config["snapshot"]
    mode = snapshot.get("mode", "Nerf")
    require(path, str(mode).lower() == "nerf", f"a {mode} snapshot is not a radiance field")
    box = snapshot.get("aabb")
    require(path, isinstance(box, dict), "snapshot without an 'aabb' {min, max}")
    aabb = _numbers(path, box.get("min"), 3, "aabb min") + _numbers(
        path, box.get("max"), 3, "aabb max"
    )
    dataset = _nerf_dataset(snapshot) or {}
    require(
        path,
        dataset.get("is_hdr", False) is not True,
        "an HDR snapshot (nerf.dataset.is_hdr: rgb activation Exponential, linear colours) is "
        "not supported",
    )
    extra = integer(path, dataset, "n_extra_learnable_dims", 0)
    require(
        path,
        extra == 0,
        f"{extra} per-image latent dims (n_extra_learnable_dims) are not supported",
    )

    grid = _grid_config(path, _table(path, config, "encoding"), aabb)
    network = _table(path, config, "network")
    width, hidden = _mlp_shape(path, network, "density network")
    require(path, hidden == 1, f"a density network with {hidden} hidden layers is not supported")
    outputs = integer(path, network, "n_output_dims", 16)
    require(path, outputs == 16, f"a density network with {outputs} outputs is not supported")
    rgb_width, rgb_hidden = _mlp_shape(path, _table(path, config, "rgb_network"), "rgb network")
    require(
        path,
        (rgb_width, rgb_hidden) == (64, 2),
        f"an rgb network {rgb_width} wide with {rgb_hidden} hidden layers is not supported "
        "(instant-ngp's is 64 wide with 2)",
    )
    _check_dir_encoding(path, _table(path, config, "dir_encoding"))

    n_grid = grid.levels * grid.features
    sizes = (
        tcnn_mlp_size(pad16(n_grid), width, 1, 16),
        tcnn_mlp_size(32, 64, 2, 3),
        tcnn_grid_size(grid),
    )
    params = _parameters(path, snapshot)
    require(
        path,
        params.numel() == sum(sizes),
        f"{params.numel():,} parameters, the config needs {sum(sizes):,} (density MLP "
        f"{sizes[0]:,} + rgb MLP {sizes[1]:,} + hash grid {sizes[2]:,})",
    )
    density_part, rgb_part, grid_part = params.split(list(sizes))
    density = tcnn_mlp_matrices(density_part, pad16(n_grid), width, 1, 16)
    rgb = tcnn_mlp_matrices(rgb_part, 32, 64, 2, 3)
    field = build_field(path, "hashgrid", {**grid.to_dict(), "hidden_width": width})
    load_state(
        path,
        field,
        {
            "params": grid_part,
            "density_head.0.weight": density[0][:, :n_grid],
            "density_head.2.weight": density[1],
            "decoder.colour_mlp.0.weight": rgb[0],
            "decoder.colour_mlp.2.weight": rgb[1],
            "decoder.colour_mlp.4.weight": rgb[2][:3],
        },
    )
    world_to_model, normalisation = _world_to_model(path, snapshot)
    background = snapshot.get("background_color", [0.0, 0.0, 0.0, 1.0])
    require(
        path,
        isinstance(background, list) and len(background) in (3, 4),
        f"bad background_color {background!r}",
    )
    linear = torch.tensor(_numbers(path, background[:3], 3, "background_color"))
    scene = scene_spec(
        path,
        aabb,
        background=linear_to_srgb(linear.clamp(0.0, 1.0)).tolist(),
        world_to_model=world_to_model,
    )
    aabb_scale = dataset.get("aabb_scale")
    return build_model(
        path,
        IMPORTER.name,
        field,
        scene,
        step_size=STEP_SIZE,
        data=data,
        normalisation=normalisation,
        details={
            "training_step": snapshot.get("training_step"),
            "params_type": snapshot.get("params_type", "inferred"),
            "activations": "density exp, rgb sigmoid (instant-ngp defaults; not stored)",
            "colour": "network output is sRGB (used as is); background_color linear -> sRGB",
            "aabb_scale": aabb_scale,
            "render_step": (
                "sqrt(3)/1024, instant-ngp's finest; it cone-steps (angle 1/256) beyond it "
                "for aabb_scale > 1"
            ),
        },
    )


def _check_dir_encoding(path: Path, encoding: dict[str, Any]) -> None:
    """The direction encoding must be SH degree 4 (alone, or nested in a Composite whose other
    parts encode nothing — the per-image latent dims pvd refuses)."""
    otype = str(encoding.get("otype", ""))
    if otype.lower() == "composite":
        nested = encoding.get("nested", [])
        nested = [e for e in nested if isinstance(e, dict)] if isinstance(nested, list) else []
        sh = [e for e in nested if str(e.get("otype", "")).lower() == "sphericalharmonics"]
        require(path, len(sh) == 1, "direction encoding without one SphericalHarmonics part")
        encoding = sh[0]
        otype = "SphericalHarmonics"
    require(
        path,
        otype.lower() == "sphericalharmonics" and integer(path, encoding, "degree", 4) == 4,
        f"direction encoding {otype} (degree {encoding.get('degree')}) is not supported",
    )


IMPORTER = Importer(
    name="instant-ngp",
    description="instant-ngp snapshot (.ingp gzip/zlib msgpack or .msgpack) of a NeRF",
    detect=detect,
    load=load,
)
