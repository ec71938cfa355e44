"""Importer of Plenoxels checkpoints: svox2's ``.npz`` (Fridovich-Keil, Yu et al., CVPR 2022;
sxyu/svox2, ``svox2/svox2.py::SparseGrid.save``/``load``).

Layout (``np.savez``; FORMATS.md, "Plenoxels svox2"): ``radius`` f32[3], ``center`` f32[3] (both
optional, default 1 and 0), ``links`` int32 ``[Rx, Ry, Rz]`` (−1 = empty, else a row of the
data), ``density_data`` f32 ``[N, 1]``, ``sh_data`` **f16** ``[N, 3·basis_dim]`` (per row all
red coefficients, then green, then blue), ``basis_type`` (1 = SH), or the legacy ``data``
``[N, 1 + 3·basis_dim]``. Read with ``np.load(allow_pickle=False)``: nothing is unpickled.

Semantics (``SparseGrid.world2grid`` and the CUDA renderer): grid coordinates
``g = ((p − center)/(2·radius) + 0.5)·R − 0.5`` put voxel centres at integers; values are
trilinear in the stored raw density and SH coefficients, empty links count as 0, and ``g`` is
clamped to ``[0, R − 1]`` (border); ``σ = relu(density)`` per unit of svox2's world;
``rgb = max(Σ_k SH_k(d)·c_k + 0.5, 0)`` with tcnn-sign SH (``eval_sh_bases``).

pvd's Plenoxels grid is dense, so links are expanded (empty vertices get zeros: the same
interpolation). Its vertices span the field's ``aabb`` with ``align_corners`` semantics, so the
field's box is the span of svox2's voxel centres, ``center ± radius·(1 − 1/R)``, and pvd's
border padding is svox2's clamp; the scene box (where rays march) is svox2's ``center ±
radius``. Variants: ``density_activation = "relu"``, ``colour = "svox2_clamp"``, ``sh_degree``
from ``basis_dim`` (1, 4, 9 or 16; :mod:`architectures.plenoxels`).

Refused by name: ``basis_type`` 4 (learned 3D-texture basis) and 255 (MLP basis), an MSI
background (``background_links``/``background_data``), ``basis_dim`` 25, a non-cubic grid (pvd's
grid has one resolution) and grids whose dense expansion exceeds :data:`MAX_DENSE_BYTES`.

Scene: model space is svox2's world. svox2's NeRF-synthetic loader (``opt/util/nerf_dataset.py``)
scales camera positions by ``scene_scale = 2/3``; the file does not record which loader or scale
was used, so ``world_to_model = (2/3)·I`` is assumed (the provenance says so; the LLFF / NSVF /
CO3D loaders normalise differently). Rendering: svox2's step of half a voxel
(``opt.step_size = 0.5``), white background (``background_brightness`` 1), no near/far.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from architectures import CheckpointError

from . import Importer
from .common import build_field, build_model, is_zip, load_state, scene_spec, similarity

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import TrainedModel

NAME = "svox2"
#: svox2's ``BASIS_TYPE_SH``; 4 is ``BASIS_TYPE_3D_TEXTURE``, 255 ``BASIS_TYPE_MLP``.
_BASIS_SH = 1
_BASIS_NAMES = {4: "a learned 3D-texture basis", 255: "an MLP basis"}
#: svox2's ``scene_scale`` for NeRF-synthetic data (``opt/util/nerf_dataset.py``).
SCENE_SCALE = 2.0 / 3.0
#: The largest dense grid pvd builds from a sparse svox2 grid (a 256³ grid of 28 channels is
#: 1.9 GB; svox2's final 512³ would be 15 GB). pvd has no sparse Plenoxels layout yet.
MAX_DENSE_BYTES = 4 << 30
_KNOWN = {"radius", "center", "links", "density_data", "sh_data", "basis_type", "data"}


def detect(path: Path) -> bool:
    """An ``.npz`` (zip) archive holding ``links.npy`` and svox2's data arrays."""
    if not is_zip(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return "links.npy" in names and (
        {"density_data.npy", "sh_data.npy"} <= names or "data.npy" in names
    )


def _arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise CheckpointError(
            f"{path}: holds arrays that need pickle ({exc}); not svox2 data"
        ) from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable .npz archive: {exc}") from None


def _refuse_unsupported(path: Path, arrays: dict[str, np.ndarray]) -> None:
    basis = arrays.get("basis_type", np.array(_BASIS_SH))
    if basis.size != 1 or not np.issubdtype(basis.dtype, np.integer):
        raise CheckpointError(f"{path}: key 'basis_type' must be one integer, got {basis!r}")
    basis_type = int(basis)
    if (
        basis_type != _BASIS_SH
        or "basis_data" in arrays
        or any(k.startswith("basis_mlp") for k in arrays)
    ):
        what = _BASIS_NAMES.get(basis_type, "a non-SH basis")
        raise CheckpointError(
            f"{path}: svox2 basis_type {basis_type} ({what}) is not supported; pvd imports SH "
            "grids (basis_type 1)"
        )
    if "background_links" in arrays or "background_data" in arrays:
        raise CheckpointError(
            f"{path}: has an MSI background (background_links/background_data), which pvd "
            "cannot represent"
        )
    unknown = sorted(set(arrays) - _KNOWN)
    if unknown:
        raise CheckpointError(f"{path}: unknown keys {unknown[:4]}; cannot import them")


def _data(path: Path, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(density ``[N]``, SH ``[N, 3·basis_dim]``) as float32, from the split or legacy layout."""
    if "density_data" in arrays and "sh_data" in arrays:
        density, sh = arrays["density_data"], arrays["sh_data"]
    elif "data" in arrays:
        legacy = arrays["data"]
        if legacy.ndim != 2 or legacy.shape[1] < 2:
            raise CheckpointError(
                f"{path}: key 'data' has shape {list(legacy.shape)}, expected [N, 1 + 3·basis_dim]"
            )
        density, sh = legacy[:, :1], legacy[:, 1:]
    else:
        raise CheckpointError(f"{path}: missing key 'density_data'/'sh_data' (or legacy 'data')")
    if density.ndim != 2 or density.shape[1] != 1:
        raise CheckpointError(
            f"{path}: key 'density_data' has shape {list(density.shape)}, expected [N, 1]"
        )
    if sh.ndim != 2 or sh.shape[0] != density.shape[0] or sh.shape[1] % 3:
        raise CheckpointError(
            f"{path}: key 'sh_data' has shape {list(sh.shape)}, "
            f"expected [{density.shape[0]}, 3·basis_dim]"
        )
    for key, value in (("density_data", density), ("sh_data", sh)):
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(f"{path}: key '{key}' has dtype {value.dtype}, expected floats")
    return density[:, 0].astype(np.float32), sh.astype(np.float32)


def _vector(path: Path, arrays: dict[str, np.ndarray], key: str, default: float) -> np.ndarray:
    value = arrays.get(key, np.full(3, default, dtype=np.float32))
    if value.shape != (3,) or not np.all(np.isfinite(value)):
        raise CheckpointError(f"{path}: key '{key}' has shape {list(value.shape)}, expected [3]")
    return value.astype(np.float64)


def load(path: Path, data: Dataset | None) -> TrainedModel:
    """Import an svox2 SH grid (module docstring)."""
    arrays = _arrays(path)
    _refuse_unsupported(path, arrays)
    if "links" not in arrays:
        raise CheckpointError(f"{path}: missing key 'links'")
    links = arrays["links"]
    if links.ndim != 3 or not np.issubdtype(links.dtype, np.integer):
        raise CheckpointError(
            f"{path}: key 'links' has shape {list(links.shape)} and dtype {links.dtype}, "
            "expected integers [Rx, Ry, Rz]"
        )
    if len(set(links.shape)) != 1 or links.shape[0] < 2:
        raise CheckpointError(
            f"{path}: key 'links' has shape {list(links.shape)}: pvd's Plenoxels grid is cubic"
        )
    density, sh = _data(path, arrays)
    basis_dim = sh.shape[1] // 3
    if basis_dim not in (1, 4, 9, 16):
        raise CheckpointError(
            f"{path}: basis_dim {basis_dim} (SH degree {math.isqrt(basis_dim) - 1}) is not "
            "supported; pvd's Plenoxels has SH degree 0..3 (basis_dim 1, 4, 9, 16)"
        )
    res = links.shape[0]
    channels = 1 + sh.shape[1]
    if channels * res**3 * 4 > MAX_DENSE_BYTES:
        raise CheckpointError(
            f"{path}: a {res}³ grid expands to {channels * res**3 * 4 / 2**30:.1f} GiB as pvd's "
            f"dense Plenoxels grid (limit {MAX_DENSE_BYTES / 2**30:.0f} GiB; no sparse layout yet)"
        )
    links_t = torch.from_numpy(links.astype(np.int64))
    occupied = links_t >= 0
    if bool((links_t[occupied] >= density.shape[0]).any()) or bool((links_t < -1).any()):
        raise CheckpointError(
            f"{path}: key 'links' points outside the {density.shape[0]} data rows"
        )
    rows = torch.cat((torch.from_numpy(density)[:, None], torch.from_numpy(sh)), dim=1)
    grid = torch.zeros(channels, res, res, res)
    grid[:, occupied] = rows[links_t[occupied]].t()
    center, radius = _vector(path, arrays, "center", 0.0), _vector(path, arrays, "radius", 1.0)
    if np.any(radius <= 0):
        raise CheckpointError(f"{path}: key 'radius' must be positive, got {radius.tolist()}")
    inset = radius * (1.0 - 1.0 / res)
    config = {
        "aabb": [*(center - inset).tolist(), *(center + inset).tolist()],
        "resolution": res,
        "sh_degree": math.isqrt(basis_dim) - 1,
        "density_activation": "relu",
        "colour": "svox2_clamp",
    }
    field = build_field(path, "plenoxels", config)
    load_state(path, field, {"grid": grid})
    box = [*(center - radius).tolist(), *(center + radius).tolist()]
    scene = scene_spec(path, box, world_to_model=similarity(SCENE_SCALE))
    step = 0.5 * float(np.mean(2.0 * radius / res))
    return build_model(
        path,
        NAME,
        field,
        scene,
        step_size=step,
        data=data,
        normalisation=(
            "assumed svox2 NeRF-synthetic loader: model = (2/3) · world (scene_scale, not "
            "recorded in the file)"
        ),
        details={
            "basis_dim": basis_dim,
            "occupied_vertices": int(occupied.sum()),
            "background": "white (svox2's background_brightness 1; not stored in the file)",
        },
    )


IMPORTER = Importer(
    name=NAME,
    description="Plenoxels svox2 .npz (SH basis, sparse links)",
    detect=detect,
    load=load,
)
