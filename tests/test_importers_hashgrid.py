"""Hash-grid importers: torch-ngp / PVD-hash ``.pth``, instant-ngp snapshots, nerfstudio ``.ckpt``
(``pvd/importers/torch_ngp.py``, ``instant_ngp.py``, ``nerfstudio.py``) and the hash-grid config
variants they need (``architectures/hashgrid.py``).

Every file here is written the way the original tool lays it out — ``torch.save`` of a plain dict
with the original key names, instant-ngp's snapshot dict as msgpack (gzip) with fp16
``params_binary``, nerfstudio's checkpoint with ``config.yml`` and ``dataparser_transforms.json``
in its run folder — by code in this file, independent of pvd's importers. Each imported field is
compared with a re-implementation of the tool's own forward pass, also written here: its level
sizes, corner loop, hash, trilinear weights, MLP storage (tcnn flat row-major padded matrices,
torch ``Linear``), SH and activations, evaluated in float64 at random points and directions.
Tolerance: pvd evaluates the same weights in float32, so σ agrees to 1e-4 relative and rgb to
1e-5 (instant-ngp's fp16 parameters are upcast identically on both sides; instant-ngp and tcnn
themselves compute in fp16, about 1e-3 away from either).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import itertools
import json
import math
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import torch

import architectures
from architectures import CheckpointError
from architectures.hashgrid import (
    HashGrid,
    HashGridConfig,
    gridencoder_level_scales,
    level_layouts,
)
from pvd.data import load_dataset
from pvd.distill import convert, inherit_decoder, same_feature_layout
from pvd.importers import detect_kind, import_checkpoint
from pvd.model import TrainedModel
from pvd.render import OccupancyGrid

from .conftest import TINY_MODELS
from .test_importers import sh_tcnn as sh_reference

PRIMES = (1, 2654435761, 805459861)
RTOL_SIGMA, ATOL_RGB = 1e-4, 1e-5


# -- the original tools' forward passes, written out ------------------------------------------
def hash_index(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
    """Coherent-prime hash in uint32 arithmetic (tcnn ``grid.h``, torch-ngp ``gridencoder.cu``)."""
    mask = np.uint64(0xFFFFFFFF)
    out = np.zeros_like(ix, dtype=np.uint64)
    for coord, prime in zip((ix, iy, iz), PRIMES, strict=True):
        out ^= (coord.astype(np.uint64) * np.uint64(prime)) & mask
    return out


def dense_index(x: np.ndarray, y: np.ndarray, z: np.ndarray, stride: int, size: int) -> np.ndarray:
    """Row of a dense level: ``(x + y·stride + z·stride²) mod size``."""
    return (x + y * stride + z * stride * stride) % size


def hashed_index(x: np.ndarray, y: np.ndarray, z: np.ndarray, size: int) -> np.ndarray:
    """Row of a hashed level: ``hash mod size``."""
    return (hash_index(x, y, z) % np.uint64(size)).astype(np.int64)


def interpolate(table: np.ndarray, pos: np.ndarray, index_of: Any) -> np.ndarray:
    """Trilinear interpolation over the 8 corners ``floor + bit`` of float32 ``pos`` [N, 3]:
    ``index_of(ix, iy, iz)`` gives table rows. Returns float64 [N, F]."""
    cell = np.floor(pos).astype(np.int64)
    frac = (pos - cell).astype(np.float64)
    out = np.zeros((pos.shape[0], table.shape[1]))
    for bits in itertools.product((0, 1), repeat=3):
        weight = np.ones(pos.shape[0])
        for axis, bit in enumerate(bits):
            weight = weight * (frac[:, axis] if bit else 1.0 - frac[:, axis])
        corner = [cell[:, a] + bits[a] for a in range(3)]
        out += weight[:, None] * table[index_of(*corner)].astype(np.float64)
    return out


def tcnn_grid(
    params: np.ndarray,
    u: np.ndarray,
    levels: int,
    features: int,
    log2_table: int,
    base: int,
    per_level_scale: float,
) -> np.ndarray:
    """tcnn's HashGrid (``encodings/grid.h``): float32 ``scale = 2^(l·log2 b)·N_min − 1``,
    ``res = ceil(scale) + 1``, ``size = min(ceil8(res³), 2^T)``, dense when ``res³ ≤ size``
    (stride ``res``), position ``u·scale + 0.5``, levels consecutive in ``params``."""
    log2_b = np.log2(np.float32(per_level_scale))
    out, offset = [], 0
    for level in range(levels):
        scale = np.exp2(np.float32(level) * log2_b) * np.float32(base) - np.float32(1.0)
        res = math.ceil(scale) + 1
        size = min((res**3 + 7) // 8 * 8, 2**log2_table)
        table = params[offset * features : (offset + size) * features].reshape(size, features)
        if res**3 <= size:
            index = functools.partial(dense_index, stride=res, size=size)
        else:
            index = functools.partial(hashed_index, size=size)
        out.append(interpolate(table, u * scale + np.float32(0.5), index))
        offset += size
    return np.concatenate(out, axis=1)


def torch_ngp_offsets(levels: int, desired: float, log2_table: int) -> list[int]:
    """torch-ngp's ``GridEncoder.__init__`` (``gridencoder/grid.py``), float64 python rule."""
    b = np.exp2(np.log2(desired / 16) / (levels - 1))
    offsets = [0]
    for i in range(levels):
        resolution = int(np.ceil(16 * b**i))
        size = min(2**log2_table, (resolution + 1) ** 3)
        offsets.append(offsets[-1] + int(np.ceil(size / 8) * 8))
    return offsets


def gridencoder(
    embeddings: np.ndarray, offsets: list[int], x: np.ndarray, bound: float, desired: float
) -> np.ndarray:
    """torch-ngp's ``GridEncoder.forward`` + ``kernel_grid``: ``u = (x + bound) / (2·bound)``;
    ``S = float(log2 b)``; ``scale = exp2f(l·S)·16 − 1``; ``res = ceil(scale) + 1``; the index
    loop multiplies by ``res + 1`` while ``stride <= hashmap_size`` and hashes when the final
    stride exceeds it; ``index % hashmap_size``; inputs outside [0, 1] give zeros."""
    u = ((x + bound) / (2 * bound)).astype(np.float32)
    s = np.float32(np.log2(np.exp2(np.log2(desired / 16) / (len(offsets) - 2))))
    outside = ((u < 0) | (u > 1)).any(axis=1)
    out = []
    for level in range(len(offsets) - 1):
        size = offsets[level + 1] - offsets[level]
        scale = np.exp2(np.float32(level) * s) * np.float32(16) - np.float32(1.0)
        res = math.ceil(scale) + 1
        stride = 1
        for _ in range(3):  # the kernel's loop: stop growing the stride once it exceeds the size
            if stride <= size:
                stride *= res + 1
        table = embeddings[offsets[level] : offsets[level + 1]]
        if stride > size:
            index = functools.partial(hashed_index, size=size)
        else:
            index = functools.partial(dense_index, stride=res + 1, size=size)
        values = interpolate(table, u * scale + np.float32(0.5), index)
        values[outside] = 0.0
        out.append(values)
    return np.concatenate(out, axis=1)


def nerfstudio_hash(
    hash_table: np.ndarray, u: np.ndarray, levels: int, log2_table: int, base: int, max_res: int
) -> np.ndarray:
    """nerfstudio's torch ``HashEncoding.pytorch_fwd``: ``scalings = floor(min_res·growth^l)``
    (float32 as torch computes it), corners ``ceil``/``floor`` of ``u·scaling``, int64 products
    with the primes, xor, ``% 2^T``, ``+ l·2^T``."""
    growth = np.exp((np.log(max_res) - np.log(base)) / (levels - 1))
    scalings = torch.floor(base * growth ** torch.arange(levels)).numpy()
    table_size = 2**log2_table
    out = []
    for level in range(levels):
        scaled = torch.from_numpy(u) * float(scalings[level])
        ceil, floor = torch.ceil(scaled).long(), torch.floor(scaled).long()
        offset = (scaled - floor).double()
        value = torch.zeros(u.shape[0], hash_table.shape[1], dtype=torch.float64)
        for bits in itertools.product((0, 1), repeat=3):
            corner = torch.stack([ceil[:, a] if bits[a] else floor[:, a] for a in range(3)], 1)
            products = corner * torch.tensor([1, 2654435761, 805459861])
            index = (products[:, 0] ^ products[:, 1] ^ products[:, 2]) % table_size
            weight = torch.ones(u.shape[0], dtype=torch.float64)
            for a in range(3):
                weight = weight * (offset[:, a] if bits[a] else 1 - offset[:, a])
            rows = torch.from_numpy(hash_table[(index + level * table_size).numpy()])
            value += weight[:, None] * rows.double()
        out.append(value.numpy())
    return np.concatenate(out, axis=1)


def sh_tcnn(d: np.ndarray) -> np.ndarray:
    """tcnn's degree-4 SH (``common_device.h::sh_enc``) of unit ``d`` (its input (d+1)/2 is mapped
    back by 2u − 1): the written-out reference of ``test_importers`` in float64."""
    return sh_reference(torch.from_numpy(np.asarray(d, dtype=np.float64)), 16).numpy()


def sh_nerfstudio_torch(u: np.ndarray) -> np.ndarray:
    """nerfstudio's ``components_from_spherical_harmonics(4, u)`` (positive signs) at ``u`` as
    given — nerfacto passes ``(d + 1)/2``."""
    x, y, z = u[:, 0], u[:, 1], u[:, 2]
    xx, yy, zz = x * x, y * y, z * z
    return np.stack(
        [
            np.full_like(x, 0.28209479177387814),
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
        axis=1,
    )


def pad16(n: int) -> int:
    return (n + 15) // 16 * 16


def tcnn_mlp(
    params: np.ndarray,
    x: np.ndarray,
    n_out: int,
    width: int,
    hidden: int,
    pad_value: float,
    out_activation: str = "none",
) -> np.ndarray:
    """tcnn FullyFusedMLP: input padded to a multiple of 16 with ``pad_value`` (0 after a grid
    encoding, 1 after ``tcnn.Network``'s Identity encoding), row-major ``(out, in)`` matrices
    without biases, ReLU between, the first ``n_out`` of the padded outputs."""
    n_in = pad16(x.shape[1])
    h = np.concatenate([x, np.full((x.shape[0], n_in - x.shape[1]), pad_value)], axis=1)
    shapes = [(width, n_in)] + [(width, width)] * (hidden - 1) + [(pad16(n_out), width)]
    offset = 0
    for i, (rows, cols) in enumerate(shapes):
        matrix = params[offset : offset + rows * cols].astype(np.float64).reshape(rows, cols)
        offset += rows * cols
        h = h @ matrix.T
        if i < len(shapes) - 1:
            h = np.maximum(h, 0.0)
    assert offset == params.size
    h = h[:, :n_out]
    return 1 / (1 + np.exp(-h)) if out_activation == "sigmoid" else h


def linear_mlp(layers: list[tuple[np.ndarray, np.ndarray | None]], x: np.ndarray) -> np.ndarray:
    """``nn.Linear`` layers (weight ``(out, in)``, optional bias) with ReLU between."""
    h = x
    for i, (weight, bias) in enumerate(layers):
        h = h @ weight.astype(np.float64).T + (0.0 if bias is None else bias.astype(np.float64))
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def srgb(linear: np.ndarray) -> np.ndarray:
    """instant-ngp's ``linear_to_srgb``."""
    return np.where(linear < 0.0031308, 12.92 * linear, 1.055 * linear**0.41666 - 0.055)


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def coarse_occupancy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importers build the teacher's occupancy grid at 64³ cells × 4 jittered samples
    (``common.build_model``): a million density evaluations, ~17 s for a 16-level grid on one
    core. These tests do not check that grid, so it is built at 8³ with one sample here."""
    original = OccupancyGrid.from_field.__func__  # type: ignore[attr-defined]

    def coarse(
        cls: type,
        density_fn: Any,
        aabb: Any,
        resolution: int,
        threshold: float,
        samples_per_cell: int = 4,
    ) -> OccupancyGrid:
        return original(cls, density_fn, aabb, 8, threshold, 1)

    monkeypatch.setattr(OccupancyGrid, "from_field", classmethod(coarse))


def sample(aabb: tuple[float, ...], n: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points strictly inside the box and unit directions (float32)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.array(aabb[:3]), np.array(aabb[3:])
    x = (lo + (hi - lo) * rng.uniform(0.002, 0.998, (n, 3))).astype(np.float32)
    d = rng.normal(size=(n, 3))
    return x, (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)


def pvd_outputs(model: TrainedModel, x: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    with torch.no_grad():
        sigma, rgb = model.field(torch.from_numpy(x), torch.from_numpy(d))
    return sigma.double().numpy(), rgb.double().numpy()


def assert_matches(
    model: TrainedModel, x: np.ndarray, d: np.ndarray, sigma: np.ndarray, rgb: np.ndarray
) -> None:
    got_sigma, got_rgb = pvd_outputs(model, x, d)
    assert sigma.std() > 0.1 * sigma.mean() and rgb.std() > 0.02  # the comparison means something
    np.testing.assert_allclose(got_sigma, sigma, rtol=RTOL_SIGMA, atol=1e-6)
    np.testing.assert_allclose(got_rgb, rgb, rtol=0, atol=ATOL_RGB)


def one_line_error(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError) as info:
        import_checkpoint(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text and match in text, text


def weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Random layer weights with fan-in scaling (so activations stay O(1) through the MLP)."""
    return (rng.normal(size=shape) * 1.5 / math.sqrt(shape[-1])).astype(np.float32)


def tcnn_weights(
    rng: np.random.Generator, n_in: int, width: int, hidden: int, n_out: int, scale: float = 1.0
) -> np.ndarray:
    """A flat tcnn FullyFusedMLP parameter vector of random fan-in-scaled matrices."""
    shapes = [(width, pad16(n_in))] + [(width, width)] * (hidden - 1) + [(pad16(n_out), width)]
    return np.concatenate([weights(rng, *shape).ravel() * scale for shape in shapes])


# -- torch-ngp / PVD ----------------------------------------------------------------------------
def write_torch_ngp(
    path: Path,
    levels: int,
    log2_table: int,
    bound: float,
    seed: int,
    extra: dict[str, Any] | None = None,
    sigma_gain: float = 1.0,
) -> dict[str, np.ndarray]:
    """A torch-ngp ``save_checkpoint`` dict (``nerf/utils.py``) of a ``nerf/network.py`` model
    (``--cuda_ray`` buffers included); ``sigma_gain`` scales the raw-density row."""
    rng = np.random.default_rng(seed)
    offsets = torch_ngp_offsets(levels, 2048 * bound, log2_table)
    sigma1 = weights(rng, 16, 64)
    sigma1[0] *= sigma_gain
    arrays = {
        "encoder.embeddings": rng.uniform(-1, 1, (offsets[-1], 2)).astype(np.float32),
        "sigma_net.0.weight": weights(rng, 64, 2 * levels),
        "sigma_net.1.weight": sigma1,
        "color_net.0.weight": weights(rng, 64, 31),
        "color_net.1.weight": weights(rng, 64, 64),
        "color_net.2.weight": weights(rng, 3, 64),
    }
    box = torch.tensor([-bound] * 3 + [bound] * 3)
    model = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model.update(
        {
            "encoder.offsets": torch.tensor(offsets, dtype=torch.int32),
            "aabb_train": box,
            "aabb_infer": box.clone(),
            "density_grid": torch.zeros(1, 128**3),
            "density_bitfield": torch.zeros(128**3 // 8, dtype=torch.uint8),
            "step_counter": torch.zeros(16, 2, dtype=torch.int32),
        }
    )
    model.update(extra or {})
    stats = {"loss": [0.1], "valid_loss": [], "results": [], "checkpoints": [], "best_result": None}
    torch.save(
        {
            "epoch": 3,
            "global_step": 300,
            "stats": stats,
            "model": model,
            "mean_count": 12,
            "mean_density": 0.5,
        },
        path,
    )
    arrays["offsets"] = np.array(offsets)
    return arrays


def torch_ngp_reference(
    a: dict[str, np.ndarray],
    x: np.ndarray,
    d: np.ndarray,
    bound: float,
    clip: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """torch-ngp ``NeRFNetwork.forward`` (and PVD's, whose ``h[0]`` is clamped)."""
    enc = gridencoder(a["encoder.embeddings"], list(a["offsets"]), x, bound, 2048 * bound)
    h = linear_mlp([(a["sigma_net.0.weight"], None), (a["sigma_net.1.weight"], None)], enc)
    raw = h[:, 0] if clip is None else np.clip(h[:, 0], *clip)
    colour = [(a[f"color_net.{i}.weight"], None) for i in range(3)]
    return np.exp(raw), sigmoid(linear_mlp(colour, np.concatenate([sh_tcnn(d), h[:, 1:]], 1)))


def test_torch_ngp_gridencoder_matches_torch_ngp_forward(tmp_path: Path) -> None:
    """16 levels, table 2^14 (so both dense and hashed levels occur), bound 2."""
    path = tmp_path / "ngp_ep0003.pth"
    arrays = write_torch_ngp(path, levels=16, log2_table=14, bound=2.0, seed=1)
    assert detect_kind(path) == "torch-ngp"
    model = import_checkpoint(path)
    field = model.field
    assert isinstance(field, HashGrid) and field.config.layout == "gridencoder"
    assert [lay.dense for lay in field.layouts].count(True) == 2
    assert field.config.sigma_clip is None and field.canonical
    x, d = sample(field.config.aabb)
    assert_matches(model, x, d, *torch_ngp_reference(arrays, x, d, 2.0, None))
    # world -> model: torch-ngp's axis cycle at its default scale 0.33 for bound 2
    w = np.array(model.scene.world_to_model)
    np.testing.assert_allclose(w[:3, :3] @ [1.0, 2.0, 3.0], [0.66, 0.99, 0.33])
    assert model.provenance["import"]["variant"].startswith("torch-ngp gridencoder")


def test_pvd_reference_hash_model_at_its_defaults(tmp_path: Path) -> None:
    """The reference PVD code's hash type: 14 levels, 2^19 table, bound 1, forward clamp."""
    path = tmp_path / "pvd_hash.pth"
    arrays = write_torch_ngp(path, levels=14, log2_table=19, bound=1.0, seed=2, sigma_gain=8.0)
    model = import_checkpoint(path)
    assert model.field.config.sigma_clip == (-2.0, 7.0)
    assert model.field.config.log2_table_size == 19
    x, d = sample(model.field.config.aabb, 256)
    sigma, rgb = torch_ngp_reference(arrays, x, d, 1.0, (-2.0, 7.0))
    assert (sigma == math.exp(-2.0)).any() or (sigma == math.exp(7.0)).any()  # the clamp acts
    assert_matches(model, x, d, sigma, rgb)
    np.testing.assert_allclose(np.array(model.scene.world_to_model)[0, 1], 0.8)  # Blender scale
    assert model.scene.near == pytest.approx(0.2)
    assert model.provenance["import"]["options"]["args_file"] is None


def test_pvd_reference_hash_model_reads_its_args_file(tmp_path: Path) -> None:
    """``--sigma_clip_min/max``, ``--scale`` and ``--min_near`` come from the workspace's
    ``args.txt`` (one folder up), as for the reference code's other model types."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "args.txt").write_text(
        "('sigma_clip_min', -3.0)\n('sigma_clip_max', 5)\n('scale', 0.5)\n"
        "('min_near', 0.1)\npsnr: 30.1\n"
    )
    path = tmp_path / "checkpoints" / "pvd_hash.pth"
    arrays = write_torch_ngp(path, levels=14, log2_table=19, bound=1.0, seed=2, sigma_gain=8.0)
    model = import_checkpoint(path)
    assert model.field.config.sigma_clip == (-3.0, 5.0)
    x, d = sample(model.field.config.aabb, 256)
    sigma, rgb = torch_ngp_reference(arrays, x, d, 1.0, (-3.0, 5.0))
    assert (sigma == math.exp(5.0)).any()  # the file's clamp acts, not the default 7
    assert_matches(model, x, d, sigma, rgb)
    np.testing.assert_allclose(np.array(model.scene.world_to_model)[0, 1], 0.5)
    assert model.scene.near == pytest.approx(0.1)
    options = model.provenance["import"]["options"]
    assert options["args_file"] == str(tmp_path / "args.txt")
    assert options["from_args_file"] == ["min_near", "scale", "sigma_clip_max", "sigma_clip_min"]
    (tmp_path / "args.txt").write_text("('sigma_clip_min', 'low')\n")
    with pytest.raises(CheckpointError) as info:
        import_checkpoint(path)
    assert str(info.value).startswith(f"{tmp_path / 'args.txt'}: 'sigma_clip_min' must be a finite")


@pytest.mark.parametrize(("levels", "bound"), [(16, 1.0), (16, 2.0), (14, 1.0), (16, 0.8)])
def test_gridencoder_layout_has_torch_ngp_level_sizes(levels: int, bound: float) -> None:
    """pvd's float32 kernel rule gives torch-ngp's float64 python sizes at the default table."""
    desired = 2048 * bound
    config = HashGridConfig(
        levels=levels,
        max_resolution=round(desired),
        layout="gridencoder",
        level_scales=gridencoder_level_scales(levels, 16, desired),
    )
    offsets = torch_ngp_offsets(levels, desired, 19)
    assert [lay.size for lay in level_layouts(config)] == [
        b - a for a, b in itertools.pairwise(offsets)
    ]


def test_torch_ngp_tcnn_variant_folds_the_padding_column_into_a_bias(tmp_path: Path) -> None:
    """``nerf/network_tcnn.py`` at its fixed sizes (16 levels, 2^19, bound 1)."""
    rng = np.random.default_rng(3)
    b = float(np.exp2(np.log2(2048 * 1.0 / 16) / 15))
    grid_size = 12_196_240  # the paper's count for L16 F2 T19 16 -> 2048 (ARCHITECTURES.md)
    arrays = {
        "encoder.params": rng.uniform(-1, 1, grid_size).astype(np.float32),
        "sigma_net.params": tcnn_weights(rng, 32, 64, 1, 16),
        "color_net.params": tcnn_weights(rng, 31, 64, 2, 3),
    }
    model = {k: torch.from_numpy(v) for k, v in arrays.items()}
    model["encoder_dir.params"] = torch.zeros(0)
    model["aabb_train"] = torch.tensor([-1.0] * 3 + [1.0] * 3)
    model["aabb_infer"] = model["aabb_train"].clone()
    path = tmp_path / "ngp_tcnn.pth"
    torch.save({"epoch": 1, "global_step": 10, "stats": {}, "model": model}, path)
    imported = import_checkpoint(path)
    assert imported.field.config.decoder == "biased" and not imported.field.canonical
    x, d = sample((-1.0,) * 3 + (1.0,) * 3, 256)
    u = ((x + 1.0) / 2.0).astype(np.float32)
    enc = tcnn_grid(arrays["encoder.params"], u, 16, 2, 19, 16, b)
    h = tcnn_mlp(arrays["sigma_net.params"], enc, 16, 64, 1, pad_value=0.0)
    colour_in = np.concatenate([sh_tcnn(d), h[:, 1:]], axis=1)  # 31 inputs, padded with a 1
    rgb = sigmoid(tcnn_mlp(arrays["color_net.params"], colour_in, 3, 64, 2, pad_value=1.0))
    assert_matches(imported, x, d, np.exp(h[:, 0]), rgb)


def test_torch_ngp_bad_files_are_refused_in_one_line(tmp_path: Path) -> None:
    pickled = tmp_path / "pickled.pth"
    write_torch_ngp(pickled, 16, 14, 1.0, 4)
    state = torch.load(pickled, weights_only=True)
    state["opt"] = argparse.Namespace(bound=1.0)  # needs unpickling a class: refused
    torch.save(state, pickled)
    one_line_error(pickled, "weights_only")

    unknown = tmp_path / "unknown.pth"
    write_torch_ngp(unknown, 16, 14, 1.0, 4, extra={"deform_net.0.weight": torch.zeros(4, 4)})
    one_line_error(unknown, "deform_net.0.weight")

    shape = tmp_path / "shape.pth"
    write_torch_ngp(shape, 16, 14, 1.0, 4, extra={"sigma_net.0.weight": torch.zeros(64, 30)})
    one_line_error(shape, "sigma_net.0.weight")

    background = tmp_path / "bg.pth"
    write_torch_ngp(background, 16, 14, 1.0, 4, extra={"bg_net.0.weight": torch.zeros(64, 48)})
    one_line_error(background, "background model")

    offsets = tmp_path / "offsets.pth"
    arrays = write_torch_ngp(offsets, 16, 14, 1.0, 4)
    state = torch.load(offsets, weights_only=True)
    wrong = torch.tensor(torch_ngp_offsets(16, 4096.0, 14), dtype=torch.int32)  # bound 2's grid
    state["model"]["encoder.offsets"] = wrong
    state["model"]["encoder.embeddings"] = torch.zeros(int(wrong[-1]), 2)
    torch.save(state, offsets)
    one_line_error(offsets, "encoder.offsets")
    assert arrays["offsets"][-1] != int(wrong[-1])


# -- instant-ngp ----------------------------------------------------------------------------------
def ngp_snapshot(seed: int, aabb_scale: int = 2) -> tuple[dict[str, Any], dict[str, Any]]:
    """An instant-ngp network config + ``snapshot`` dict (``testbed.cu::save_snapshot``) with the
    base.json networks, an 8-level 2^14 grid and fp16 parameters in tcnn's flat order."""
    rng = np.random.default_rng(seed)
    levels, log2_table, base = 8, 14, 16
    per_level_scale = float(
        np.exp(
            np.log(np.float32(2048 * aabb_scale) / np.float32(base)) / np.float32(levels - 1)
        ).astype(np.float32)
    )
    grid_entries = 0
    for level in range(levels):
        scale = np.exp2(np.float32(level) * np.log2(np.float32(per_level_scale))) * 16 - 1
        res = math.ceil(np.float32(scale)) + 1
        grid_entries += min((res**3 + 7) // 8 * 8, 2**log2_table)
    density = tcnn_weights(rng, 16, 64, 1, 16)
    rgb = tcnn_weights(rng, 32, 64, 2, 3)
    grid = rng.uniform(-1, 1, grid_entries * 2).astype(np.float32)
    params = np.concatenate([density, rgb, grid]).astype(np.float16)
    lo, hi = 0.5 - aabb_scale / 2, 0.5 + aabb_scale / 2
    config = {
        "loss": {"otype": "Huber"},
        "optimizer": {"otype": "Ema", "decay": 0.95},
        "encoding": {
            "otype": "HashGrid",
            "n_levels": levels,
            "n_features_per_level": 2,
            "log2_hashmap_size": log2_table,
            "base_resolution": base,
            "per_level_scale": per_level_scale,
        },
        "network": {
            "otype": "FullyFusedMLP",
            "activation": "ReLU",
            "output_activation": "None",
            "n_neurons": 64,
            "n_hidden_layers": 1,
        },
        "dir_encoding": {
            "otype": "Composite",
            "nested": [
                {"n_dims_to_encode": 3, "otype": "SphericalHarmonics", "degree": 4},
                {"otype": "Identity"},
            ],
        },
        "rgb_network": {
            "otype": "FullyFusedMLP",
            "activation": "ReLU",
            "output_activation": "None",
            "n_neurons": 64,
            "n_hidden_layers": 2,
        },
        "snapshot": {
            "n_params": int(params.size),
            "params_type": "__half",
            "params_binary": params.tobytes(),
            "version": 1,
            "mode": "Nerf",
            "density_grid_size": 128,
            "density_grid_binary": np.zeros(128**3, np.float16).tobytes(),
            "nerf": {
                "aabb_scale": aabb_scale,
                "cam_pos_offset": [],
                "cam_rot_offset": [],
                "extra_dims_opt": [],
                "rgb": {"rays_per_batch": 4096},
                "dataset": {
                    "scale": 0.33,
                    "offset": [0.5, 0.5, 0.5],
                    "from_mitsuba": False,
                    "aabb_scale": aabb_scale,
                    "n_extra_learnable_dims": 0,
                    "n_images": 0,
                },
            },
            "training_step": 1000,
            "loss": 0.01,
            "aabb": {"min": [lo] * 3, "max": [hi] * 3},
            "bounding_radius": 1.0,
            "up_dir": [0.0, 1.0, 0.0],
            "background_color": [0.0, 0.0, 0.0, 1.0],
        },
    }
    parts = {
        "density": params[: density.size],
        "rgb": params[density.size : density.size + rgb.size],
        "grid": params[density.size + rgb.size :],
        "per_level_scale": per_level_scale,
        "aabb": (lo,) * 3 + (hi,) * 3,
    }
    return config, parts


def ngp_reference(parts: dict[str, Any], x: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    """instant-ngp's ``NerfNetwork``: grid of ``aabb.relative_pos(x)`` → density MLP (16 outputs)
    → rgb MLP of ``[density out, SH(d)]``; ``σ = exp(out[0])``, ``rgb = sigmoid(out)`` — already
    sRGB: instant-ngp's training kernel (``testbed_nerf.cu``) converts the *targets* with
    ``linear_to_srgb`` (``linear_colors`` false by default), so the output is not converted."""
    lo, hi = np.array(parts["aabb"][:3]), np.array(parts["aabb"][3:])
    u = ((x - lo) / (hi - lo)).astype(np.float32)
    enc = tcnn_grid(parts["grid"].astype(np.float32), u, 8, 2, 14, 16, parts["per_level_scale"])
    h = tcnn_mlp(parts["density"], enc, 16, 64, 1, pad_value=0.0)
    out = tcnn_mlp(parts["rgb"], np.concatenate([h, sh_tcnn(d)], axis=1), 3, 64, 2, 0.0)
    return np.exp(h[:, 0]), sigmoid(out)


@pytest.mark.parametrize("suffix", [".ingp", ".msgpack"])
def test_instant_ngp_snapshot_matches_nerf_network(tmp_path: Path, suffix: str) -> None:
    config, parts = ngp_snapshot(seed=5)
    config["snapshot"]["background_color"] = [0.2, 0.5, 0.0, 1.0]  # linear, as instant-ngp's
    packed = msgpack.packb(config, use_bin_type=True)
    path = tmp_path / f"fox{suffix}"
    path.write_bytes(gzip.compress(packed) if suffix == ".ingp" else packed)
    assert detect_kind(path) == "instant-ngp"
    model = import_checkpoint(path)
    assert model.field.config.decoder == "ingp" and not model.field.canonical
    assert model.field.config.aabb == parts["aabb"]
    x, d = sample(parts["aabb"])
    assert_matches(model, x, d, *ngp_reference(parts, x, d))
    # world -> model: x_ngp = 0.33·y + 0.5, y_ngp = 0.33·z + 0.5, z_ngp = 0.33·x + 0.5
    w = np.array(model.scene.world_to_model)
    np.testing.assert_allclose(w[:3] @ [1.0, 2.0, 3.0, 1.0], [1.16, 1.49, 0.83], atol=1e-12)
    assert model.scene.scale == pytest.approx(0.33)
    # the background is stored linear and shown as sRGB; the step is instant-ngp's STEPSIZE()
    np.testing.assert_allclose(model.scene.background, srgb(np.array([0.2, 0.5, 0.0])), atol=1e-6)
    assert model.render.step_size == pytest.approx(math.sqrt(3.0) / 1024)


def test_instant_ngp_bad_snapshots_are_refused_in_one_line(tmp_path: Path) -> None:
    config, _ = ngp_snapshot(seed=6)
    packed = msgpack.packb(config, use_bin_type=True)
    truncated = tmp_path / "cut.msgpack"
    truncated.write_bytes(packed[: len(packed) // 2])
    one_line_error(truncated, "truncated")
    cut_gzip = tmp_path / "cut.ingp"
    cut_gzip.write_bytes(gzip.compress(packed)[:5000])
    one_line_error(cut_gzip, "truncated")

    config["snapshot"]["nerf"]["dataset"]["n_extra_learnable_dims"] = 16
    extra = tmp_path / "latent.msgpack"
    extra.write_bytes(msgpack.packb(config, use_bin_type=True))
    one_line_error(extra, "n_extra_learnable_dims")

    config, _ = ngp_snapshot(seed=6)
    config["snapshot"]["n_params"] -= 8
    config["snapshot"]["params_binary"] = config["snapshot"]["params_binary"][:-16]
    short = tmp_path / "short.msgpack"
    short.write_bytes(msgpack.packb(config, use_bin_type=True))
    one_line_error(short, "the config needs")

    config, _ = ngp_snapshot(seed=6)
    config["encoding"]["otype"] = "Frequency"
    other = tmp_path / "freq.msgpack"
    other.write_bytes(msgpack.packb(config, use_bin_type=True))
    one_line_error(other, "Frequency")

    config, _ = ngp_snapshot(seed=6)
    config["snapshot"]["nerf"]["dataset"]["is_hdr"] = True
    hdr = tmp_path / "hdr.msgpack"
    hdr.write_bytes(msgpack.packb(config, use_bin_type=True))
    one_line_error(hdr, "HDR snapshot")

    # malformed JSON values: refused naming the file, no int()/float() traceback
    for name, (section, key, value), message in (
        ("levels", ("encoding", "n_levels", "eight"), "'n_levels' must be a finite number"),
        ("scale", ("encoding", "per_level_scale", None), "'per_level_scale' must be a finite"),
        ("table", ("encoding", "log2_hashmap_size", 30), "log2_table_size must be in 10..24"),
        ("width", ("network", "n_neurons", 64.5), "'n_neurons' must be an integer"),
    ):
        config, _ = ngp_snapshot(seed=6)
        config[section][key] = value
        bad = tmp_path / f"bad_{name}.msgpack"
        bad.write_bytes(msgpack.packb(config, use_bin_type=True))
        one_line_error(bad, message)
    config, _ = ngp_snapshot(seed=6)
    config["snapshot"]["aabb"]["min"] = ["a", 0.0, 0.0]
    bad = tmp_path / "bad_aabb.msgpack"
    bad.write_bytes(msgpack.packb(config, use_bin_type=True))
    one_line_error(bad, "aabb min must be 3 finite numbers")


# -- nerfstudio -----------------------------------------------------------------------------------
NS_LEVELS, NS_TABLE, NS_MAX_RES, NS_IMAGES = 8, 14, 256, 7


def write_run(
    folder: Path,
    method: str,
    contraction_disabled: bool | None,
    implementation: str,
    density: float = 0.5,
) -> Path:
    """A nerfstudio run folder: ``config.yml`` (yaml.dump style, python tags) and
    ``dataparser_transforms.json``; returns the ``nerfstudio_models`` folder."""
    folder.mkdir(parents=True)
    flag = (
        ""
        if contraction_disabled is None
        else (f"    disable_scene_contraction: {str(contraction_disabled).lower()}\n")
    )
    model_class = (
        "nerfacto.NerfactoModelConfig"
        if method == "nerfacto"
        else ("instant_ngp.InstantNGPModelConfig")
    )
    (folder / "config.yml").write_text(
        "!!python/object:nerfstudio.engine.trainer.TrainerConfig\n"
        "_target: !!python/name:nerfstudio.engine.trainer.Trainer ''\n"
        f"method_name: {method}\n"
        "pipeline: !!python/object:nerfstudio.pipelines.base_pipeline.VanillaPipelineConfig\n"
        "  datamanager: !!python/object:nerfstudio.data.datamanagers.base_datamanager.X\n"
        "    dataparser: !!python/object:nerfstudio.data.dataparsers.blender_dataparser.Y\n"
        "      alpha_color: white\n"
        "      scale_factor: 1.0\n"
        f"  model: !!python/object:nerfstudio.models.{model_class}\n"
        "    appearance_embed_dim: 32\n"
        f"    average_init_density: {density}\n"
        "    background_color: white\n"
        "    base_res: 16\n"
        "    collider_params:\n"
        "      far_plane: 6.0\n"
        "      near_plane: 2.0\n"
        f"{flag}"
        f"    enable_collider: {'true' if method == 'nerfacto' else 'false'}\n"
        "    far_plane: 1000.0\n"
        "    features_per_level: 2\n"
        "    hidden_dim: 64\n"
        "    hidden_dim_color: 64\n"
        f"    implementation: {implementation}\n"
        f"    log2_hashmap_size: {NS_TABLE}\n"
        f"    max_res: {NS_MAX_RES}\n"
        "    near_plane: 0.05\n"
        f"    num_levels: {NS_LEVELS}\n"
        "    proposal_net_args_list:\n"
        "    - hidden_dim: 16\n"
        "      log2_hashmap_size: 17\n"
        "    use_average_appearance_embedding: true\n"
    )
    transform = {
        "transform": [[0.0, 1.0, 0.0, 0.1], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.2]],
        "scale": 0.5,
    }
    (folder / "dataparser_transforms.json").write_text(json.dumps(transform))
    models = folder / "nerfstudio_models"
    models.mkdir()
    return models


def nerfstudio_state(implementation: str, method: str, seed: int) -> tuple[dict, dict]:
    """``pipeline`` state dict of a ``NerfactoField`` (nerfstudio 1.1.5 key names) plus
    proposal networks / occupancy grid, and the arrays the reference needs."""
    rng = np.random.default_rng(seed)
    aabb = np.array([[-1.5, -1.0, -1.2], [1.5, 1.0, 1.2]], dtype=np.float32)
    appearance = rng.normal(size=(NS_IMAGES, 32)).astype(np.float32)
    state: dict[str, torch.Tensor] = {
        "_model.device_indicator_param": torch.zeros(0),
        "_model.field.aabb": torch.from_numpy(aabb),
        "_model.field.max_res": torch.tensor(NS_MAX_RES),
        "_model.field.num_levels": torch.tensor(NS_LEVELS),
        "_model.field.log2_hashmap_size": torch.tensor(NS_TABLE),
        "_model.field.embedding_appearance.embedding.weight": torch.from_numpy(appearance),
    }
    arrays: dict[str, Any] = {"aabb": aabb, "appearance": appearance}
    if implementation == "torch":
        arrays["hash"] = rng.uniform(-1, 1, (NS_LEVELS * 2**NS_TABLE, 2)).astype(np.float32)
        arrays["base"] = [
            (weights(rng, 64, 16), weights(rng, 64)),
            (weights(rng, 16, 64), weights(rng, 16)),
        ]
        arrays["head"] = [
            (weights(rng, 64, 63), weights(rng, 64)),
            (weights(rng, 64, 64), weights(rng, 64)),
            (weights(rng, 3, 64), weights(rng, 3)),
        ]
        state["_model.field.mlp_base.model.0.hash_table"] = torch.from_numpy(arrays["hash"])
        for i, (w, b) in enumerate(arrays["base"]):
            state[f"_model.field.mlp_base.model.1.layers.{i}.weight"] = torch.from_numpy(w)
            state[f"_model.field.mlp_base.model.1.layers.{i}.bias"] = torch.from_numpy(b)
        for i, (w, b) in enumerate(arrays["head"]):
            state[f"_model.field.mlp_head.layers.{i}.weight"] = torch.from_numpy(w)
            state[f"_model.field.mlp_head.layers.{i}.bias"] = torch.from_numpy(b)
    else:
        growth = float(np.exp((np.log(NS_MAX_RES) - np.log(16)) / (NS_LEVELS - 1)))
        entries = 0
        for level in range(NS_LEVELS):
            scale = np.exp2(np.float32(level) * np.log2(np.float32(growth))) * 16 - 1
            res = math.ceil(np.float32(scale)) + 1
            entries += min((res**3 + 7) // 8 * 8, 2**NS_TABLE)
        arrays["growth"] = growth
        arrays["mlp"] = tcnn_weights(rng, 16, 64, 1, 16)
        arrays["grid"] = rng.uniform(-1, 1, entries * 2).astype(np.float32)
        arrays["head"] = tcnn_weights(rng, 63, 64, 2, 3)
        state["_model.field.mlp_base.model.params"] = torch.from_numpy(
            np.concatenate([arrays["mlp"], arrays["grid"]])
        )
        state["_model.field.mlp_head.tcnn_encoding.params"] = torch.from_numpy(arrays["head"])
        state["_model.field.direction_encoding.tcnn_encoding.params"] = torch.zeros(0)
    if method == "nerfacto":
        state["_model.proposal_networks.0.encoding.hash_table"] = torch.zeros(5 * 2**10, 2)
        state["_model.proposal_networks.0.mlp_base.1.layers.0.weight"] = torch.zeros(16, 10)
    else:
        state["_model.scene_aabb"] = torch.from_numpy(aabb.reshape(-1))
        state["_model.occupancy_grid.occs"] = torch.zeros(4 * 128**3)
    return state, arrays


def nerfstudio_reference(
    a: dict[str, Any],
    implementation: str,
    x: np.ndarray,
    d: np.ndarray,
    density_scale: float,
    average: bool,
) -> tuple[np.ndarray, ...]:
    """``NerfactoField.get_density`` / ``get_outputs`` at evaluation (contraction disabled)."""
    lo, hi = a["aabb"][0], a["aabb"][1]
    u = ((x - lo) / (hi - lo)).astype(np.float32)
    u = u * ((u > 0) & (u < 1)).all(axis=1, keepdims=True)
    appearance = a["appearance"].mean(0) if average else np.zeros(32)
    appearance = np.broadcast_to(appearance, (x.shape[0], 32))
    if implementation == "torch":
        enc = nerfstudio_hash(a["hash"], u, NS_LEVELS, NS_TABLE, 16, NS_MAX_RES)
        h = linear_mlp(a["base"], enc)
        sh = sh_nerfstudio_torch((d + 1.0) / 2.0)
        rgb = sigmoid(linear_mlp(a["head"], np.concatenate([sh, h[:, 1:], appearance], 1)))
    else:
        enc = tcnn_grid(a["grid"], u, NS_LEVELS, 2, NS_TABLE, 16, a["growth"])
        h = tcnn_mlp(a["mlp"], enc, 16, 64, 1, pad_value=0.0)
        head_in = np.concatenate([sh_tcnn(d), h[:, 1:], appearance], axis=1)  # 63, padded with 1
        rgb = tcnn_mlp(a["head"], head_in, 3, 64, 2, pad_value=1.0, out_activation="sigmoid")
    return density_scale * np.exp(h[:, 0]), rgb


def save_nerfstudio(path: Path, state: dict[str, torch.Tensor]) -> None:
    """``Trainer.save_checkpoint``: nerfstudio's optimizer and scheduler states hold numpy
    float64 learning rates."""
    torch.save(
        {
            "step": 299,
            "pipeline": state,
            "optimizers": {
                "fields": {"state": {}, "param_groups": [{"lr": np.float64(0.01), "params": [0]}]}
            },
            "schedulers": {"fields": {"_last_lr": [np.float64(0.01)], "last_epoch": 299}},
            "scalers": {},
        },
        path,
    )


@pytest.mark.parametrize(
    ("implementation", "method"), [("torch", "nerfacto"), ("tcnn", "nerfacto"), ("tcnn", "ngp")]
)
def test_nerfstudio_field_matches_nerfacto_field(
    tmp_path: Path, implementation: str, method: str
) -> None:
    models = write_run(
        tmp_path / "run",
        "nerfacto" if method == "nerfacto" else "instant-ngp",
        True,
        implementation,
        density=0.5 if method == "nerfacto" else 1.0,
    )
    state, arrays = nerfstudio_state(implementation, method, seed=7)
    path = models / "step-000000299.ckpt"
    save_nerfstudio(path, state)
    assert detect_kind(path) == "nerfstudio"
    model = import_checkpoint(path)
    assert model.field.config.decoder == "biased" and not model.field.canonical
    x, d = sample(tuple(arrays["aabb"].reshape(-1)))
    nerfacto = method == "nerfacto"
    expected = nerfstudio_reference(
        arrays, implementation, x, d, 0.5 if nerfacto else 1.0, average=nerfacto
    )
    assert_matches(model, x, d, *expected)
    record = model.provenance["import"]
    assert record["appearance"].startswith("mean of 7" if nerfacto else "zeros")
    assert any("proposal" in n or "occupancy" in n for n in record["ignored"])
    # dataparser_transforms.json: p_model = 0.5 (R p + t)
    w = np.array(model.scene.world_to_model)
    np.testing.assert_allclose(w[:3] @ [1.0, 2.0, 3.0, 1.0], [1.05, -0.5, 1.6], atol=1e-12)
    assert (model.scene.near, model.scene.far) == ((2.0, 6.0) if nerfacto else (0.05, 1000.0))
    # nerfacto culls nothing (proposal sampling): a gentler occupancy grid than instant-ngp's 1 %
    opacity = 1.0 - math.exp(-model.render.occupancy_threshold * model.render.step_size)
    assert opacity == pytest.approx(1e-3 if nerfacto else 1e-2)


def test_nerfstudio_contraction_and_bad_files_are_refused(tmp_path: Path) -> None:
    state, _ = nerfstudio_state("torch", "nerfacto", seed=8)
    contracted = write_run(tmp_path / "a", "nerfacto", False, "torch") / "step-1.ckpt"
    save_nerfstudio(contracted, state)
    one_line_error(contracted, "scene contraction for unbounded scenes is not representable")
    default = write_run(tmp_path / "b", "nerfacto", None, "torch") / "step-1.ckpt"
    save_nerfstudio(default, state)  # no disable flag: nerfacto's default contraction
    one_line_error(default, "scene contraction for unbounded scenes is not representable")
    alone = tmp_path / "alone" / "step-1.ckpt"
    alone.parent.mkdir()
    save_nerfstudio(alone, state)
    one_line_error(alone, "no config.yml")

    unknown = write_run(tmp_path / "c", "nerfacto", True, "torch") / "step-1.ckpt"
    save_nerfstudio(unknown, {**state, "_model.field.mlp_extra.weight": torch.zeros(2, 2)})
    one_line_error(unknown, "field.mlp_extra.weight")
    shape = write_run(tmp_path / "d", "nerfacto", True, "torch") / "step-1.ckpt"
    bad = {**state, "_model.field.mlp_head.layers.0.weight": torch.zeros(64, 40)}
    save_nerfstudio(shape, bad)
    one_line_error(shape, "mlp_head.layers.0.weight")


def test_nerfstudio_0_1_instant_ngp_layout(tmp_path: Path) -> None:
    """nerfstudio ≤ 0.1 ``TCNNInstantNGPField``: ``field.mlp_base.params`` with the hard-coded
    ``per_level_scale`` 1.4472692012786865 (16 levels, 2^19), no appearance embedding, nerfacc
    ``contract(type=AABB)`` recorded in config.yml as the enum's value."""
    rng = np.random.default_rng(13)
    scale, entries = 1.4472692012786865, 0
    for level in range(16):
        s = np.exp2(np.float32(level) * np.log2(np.float32(scale))) * 16 - 1
        res = math.ceil(np.float32(s)) + 1
        entries += min((res**3 + 7) // 8 * 8, 2**19)
    base = np.concatenate([tcnn_weights(rng, 32, 64, 1, 16), rng.uniform(-1, 1, entries * 2)])
    head = tcnn_weights(rng, 31, 64, 2, 3)
    aabb = np.array([[-1.5] * 3, [1.5] * 3], dtype=np.float32)
    run = tmp_path / "instant-ngp" / "2022-10-01"
    (run / "nerfstudio_models").mkdir(parents=True)
    (run / "config.yml").write_text(
        "pipeline: !!python/object:nerfstudio.pipelines.base_pipeline.VanillaPipelineConfig\n"
        "  model: !!python/object:nerfstudio.models.instant_ngp.InstantNGPModelConfig\n"
        "    contraction_type: !!python/object/apply:nerfacc.contraction.ContractionType\n"
        "    - 0\n"
        "    near_plane: 0.05\n"
    )
    path = run / "nerfstudio_models" / "step-000030000.ckpt"
    state = {
        "_model.field.aabb": torch.from_numpy(aabb),
        "_model.field.mlp_base.params": torch.from_numpy(base.astype(np.float32)),
        "_model.field.mlp_head.params": torch.from_numpy(head),
        "_model.field.direction_encoding.params": torch.zeros(0),
        "_model.occupancy_grid._binary": torch.zeros(128, 128, 128, dtype=torch.bool),
    }
    save_nerfstudio(path, state)
    model = import_checkpoint(path)
    x, d = sample(tuple(aabb.reshape(-1)), 256)
    u = ((x + 1.5) / 3.0).astype(np.float32)
    enc = tcnn_grid(base[3072:].astype(np.float32), u, 16, 2, 19, 16, scale)
    h = tcnn_mlp(base[:3072], enc, 16, 64, 1, pad_value=0.0)
    head_in = np.concatenate([sh_tcnn(d), h[:, 1:]], axis=1)
    rgb = tcnn_mlp(head, head_in, 3, 64, 2, pad_value=1.0, out_activation="sigmoid")
    assert_matches(model, x, d, np.exp(h[:, 0]), rgb)
    assert model.provenance["import"]["appearance"] == "none"
    spherical = tmp_path / "sphere" / "run"
    (spherical / "nerfstudio_models").mkdir(parents=True)
    (spherical / "config.yml").write_text(
        (run / "config.yml").read_text().replace("- 0", "- 2")  # UN_BOUNDED_SPHERE
    )
    save_nerfstudio(spherical / "nerfstudio_models" / "step-1.ckpt", state)
    one_line_error(spherical / "nerfstudio_models" / "step-1.ckpt", "scene contraction")


# -- config variants ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant",
    [
        {"layout": "gridencoder"},
        {"layout": "nerfstudio", "head_bias": True},
        {"decoder": "ingp"},
        {"decoder": "biased", "sigma_clip": [-2.0, 7.0]},
    ],
)
def test_variants_round_trip_through_a_checkpoint(tmp_path: Path, variant: dict) -> None:
    small = {"levels": 4, "log2_table_size": 10, "base_resolution": 4, "max_resolution": 64}
    field = architectures.build("hashgrid", {**small, "hidden_width": 16, **variant})
    with torch.no_grad():
        for p in field.parameters():
            p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(9))
    path = architectures.save(field, tmp_path / "v.safetensors", scene=architectures.SceneSpec())
    loaded = architectures.load(path)
    assert loaded.config == field.config and loaded.canonical == field.canonical
    x = torch.rand(64, 3) * 3 - 1.5
    d = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(field(x, d), loaded(x, d), strict=True))


def test_non_canonical_decoders_are_never_inherited() -> None:
    canonical = architectures.build("hashgrid", {"levels": 2, "log2_table_size": 10})
    for decoder in ("ingp", "biased"):
        teacher = architectures.build(
            "hashgrid", {"levels": 2, "log2_table_size": 10, "decoder": decoder}
        )
        assert not teacher.canonical and HashGrid.canonical
        assert not inherit_decoder(teacher, canonical)
        assert not same_feature_layout(teacher, canonical)
    assert same_feature_layout(canonical, architectures.build("mulfagrid", {"resolution": 8}))


def test_existing_shipped_checkpoint_still_loads_as_canonical_tcnn() -> None:
    field = architectures.load(
        Path(__file__).parent.parent / "checkpoints" / "hashgrid-texture.safetensors"
    )
    assert field.config.layout == "tcnn" and field.config.decoder == "canonical"
    assert field.canonical and not field.config.head_bias


# -- end to end: imported teacher → MulFAGrid -----------------------------------------------------
FAST_DISTILL = [
    "distill.steps=6",
    "distill.stage1_end=0.34",
    "distill.stage2_end=0.67",
    "distill.points=1024",
    "distill.stage3_points=256",
    "distill.pool_rays=512",
    "distill.target_samples=2048",
    "distill.lr_warmup_steps=0",
    "distill.save_every=0",
]


def _teacher_file(folder: Path, kind: str) -> Path:
    """A small teacher file of ``kind``, written as in the tests above."""
    if kind in ("torch-ngp", "pvd-hash"):
        path = folder / f"{kind}.pth"
        write_torch_ngp(path, 14 if kind == "pvd-hash" else 16, 12, 1.0, 10)
        return path
    if kind == "instant-ngp":
        path = folder / "s.ingp"
        config, _ = ngp_snapshot(seed=11, aabb_scale=1)
        path.write_bytes(gzip.compress(msgpack.packb(config, use_bin_type=True)))
        return path
    implementation = kind.split("-")[1]  # nerfstudio-torch, nerfstudio-tcnn
    path = write_run(folder / "run", "nerfacto", True, implementation) / "step-1.ckpt"
    save_nerfstudio(path, nerfstudio_state(implementation, "nerfacto", 12)[0])
    return path


@pytest.mark.parametrize(
    "kind", ["torch-ngp", "pvd-hash", "instant-ngp", "nerfstudio-torch", "nerfstudio-tcnn"]
)
def test_imported_teachers_convert_to_mulfagrid(
    tmp_path: Path, tiny_dataset: Path, kind: str
) -> None:
    path = _teacher_file(tmp_path, kind)
    teacher = import_checkpoint(path, data=load_dataset(tiny_dataset))
    assert set(teacher.cameras) == {"train", "test"}  # the dataset's cameras, in model space
    # coarser rendering than the tool's own step, to keep the test fast on one core
    box = teacher.scene.aabb
    teacher.render.step_size = math.dist(box[:3], box[3:]) / 64
    teacher.render.occupancy_threshold = 0.5
    teacher.grid = OccupancyGrid.from_field(teacher.field.density, box, 16, 0.5)
    out = tmp_path / "student.safetensors"
    sets = [*TINY_MODELS["mulfagrid"], *FAST_DISTILL]
    student, report = convert(teacher, "mulfagrid", overrides=sets, out=out)
    assert student.field.arch == "mulfagrid" and student.scene == teacher.scene
    # torch-ngp's colour net is pvd's canonical decoder; the others' are variants, not inherited
    canonical = kind in ("torch-ngp", "pvd-hash")
    assert bool(report.inherited) == canonical == teacher.field.canonical
    assert report.probe_loss["after"] < report.probe_loss["start"]
    loaded = TrainedModel.load(out)
    image = loaded.render_views(loaded.cameras["test"], [0])[0]
    assert image.shape == (16, 16, 3) and torch.isfinite(image).all()
