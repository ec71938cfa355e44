"""The grid tangent kernel (GTK) of a radiance field: its spectrum, effective rank and Δ.

Definitions (Zhao, Fan, Liao & Yan, "Grounding and Enhancing Grid-based Models for Neural
Fields", CVPR 2024: the MulFAGrid paper). For a model ``g`` with parameters ``w`` and points
``X_1..X_N``

    G[i, j] = ⟨∂g(X_i)/∂w, ∂g(X_j)/∂w⟩.

Under gradient flow on a squared loss the outputs ``O = g(X)`` follow ``dO/dt = −G(O − Y)``:
eigen-directions of ``G`` with large eigenvalues are learned first, so a wide spectrum means many
directions are learned at comparable speed. For a grid whose interpolation kernel is fixed
(trilinear) ``G`` does not depend on ``w`` and stays the same during training (the paper's
stationarity result); a learned kernel (MulFAGrid) or an MLP changes it. The paper's
generalisation measure is ``Δ = Yᵀ G⁻¹ Y``: small when the labels ``Y`` lie along the kernel's
strong directions.

What pvd computes (and the choices it makes):

- ``g`` is the pre-activation output of φ¹: ``output="sigma"`` is ``sigma_raw`` (channel 0 of
  ``v``); ``output="feature"`` is every channel of ``v`` (16, or Plenoxels' 28) with
  ``G = Σ_c J_c J_cᵀ`` (``J_c = ∂v_c(X)/∂w``, ``N × P``): the channel sum, never the
  ``CN × CN`` matrix. Activations (``trunc_exp``, ``sigmoid``) are left out: through them ``G``
  would depend on the parameters even for a fixed-kernel grid. φ² does not affect ``v``, so
  decoder parameters contribute nothing and are not counted.
- ``params="grid"``: the grid tensors only (hash tables, dense vertex grids, TensoRF planes and
  lines, MulFAGrid's vertex features: the paper's ``w``). ``params="all"`` adds the dense parts of
  φ¹ (hash-grid and MFLOD networks, TensoRF's basis matrix, MulFAGrid's kernel network, the whole
  NeRF MLP). An MLP has no grid, so ``params="grid"`` is refused for it.
- Normalisation: ``Ĝ = G / tr(G)`` (eigenvalues sum to 1) before spectra and Δ are compared
  across architectures (Δ scales as ``1/‖G‖``).
- ``Δ = Yᵀ (Ĝ + λI)⁻¹ Y`` (summed over channels for a multi-channel ``Y``) with the ridge
  ``λ = ridge · mean diag(Ĝ) = ridge / N``, default ``ridge = 1e-3``: ``G`` of a grid is singular
  or nearly so wherever points share all their vertices, and a label component along such a
  direction then costs ``|·|² / λ`` instead of infinity.
- Effective rank: ``exp`` of the Shannon entropy of the normalised eigenvalues ``p_i = μ_i / Σμ``
  (Roy & Vetterli, 2007): ``N`` for a flat spectrum, 1 for rank one.
- Condition number: of the matrix Δ solves with, ``(μ_max + λ) / (μ_min + λ)`` (finite for
  ``λ > 0``; ``μ_min`` is clipped at 0 against round-off).

How ``G`` is built without a dense Jacobian of a grid (4M parameters at N = 1024 would be
~17 GB). Every grid tensor ``T`` enters φ¹ through an interpolation
``e_p(x) = Σ_k w_k(x) T[idx_k(x)]`` over ``K`` corners (8 trilinear, 4 bilinear, 2 linear); the
rest of φ¹ is a small dense function of the ``e_p``. With ``A_p(x) = ∂g(x)/∂e_p`` (``C × F``, by
autograd on that small part), the Jacobian row of point ``n`` wrt table entry ``(j, f)`` is
``Σ_k [idx_nk = j] w_nk A_p(x_n)[:, f]``: the rows of ``S_p = Φ_p • A_p`` (row-wise Kronecker
product of the sparse ``N × rows`` interpolation matrix ``Φ_p`` and ``A_p`` flattened to
``N × CF``), and

    S_p S_pᵀ = (Φ_p Φ_pᵀ) ⊙ (A_p A_pᵀ)

(``⊙`` elementwise), where ``Φ_p Φ_pᵀ`` is a sparse-sparse product (hash collisions add up, as
they do in the model). The grid part of ``G`` is ``Σ_p`` of that; for a fixed-kernel grid with a
linear readout (Plenoxels) ``A`` is constant and ``G = C · ΦΦᵀ``. The dense part uses per-point
gradients (``torch.func.vmap`` of ``grad``), one output channel at a time, ``J Jᵀ`` accumulated in
float64 over blocks of parameters. Before trusting the decomposition, φ¹ is recomputed from the
sparse weights and compared with the architecture's own φ¹; a field it does not reproduce (a
variant of an imported teacher: another hash layout, a density activation, an alpha mask) is
refused with a :class:`~pvd.errors.UserError`.

Memory: ``GTKReport.memory`` gives the bytes of the largest instance of each piece built
(interpolation indices and weights, ``A``, the ``N × N`` products, the dense Jacobian of one
channel) and ``peak_bytes`` the largest total held at once; tensors inside torch's own kernels
(the sparse product's workspace, autograd's saved activations) are not counted.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import architectures
from architectures import RadianceField, SceneSpec
from architectures.hashgrid import HashGrid
from architectures.mflod import _LAYERNORM_EPS, MFLOD, spatial_hash
from architectures.mlp import MLP
from architectures.mulfagrid import MulFAGrid
from architectures.plenoxels import Plenoxels
from architectures.tensorf import MAT_MODES, VEC_MODES, TensoRF

from .errors import UserError
from .model import TrainedModel
from .recipes import load_preset, resolve_preset
from .render import OccupancyGrid, RenderSettings
from .scenes import ProceduralScene, get_scene

OUTPUTS = ("sigma", "feature")
PARAMS = ("all", "grid")
MAX_POINTS = 4096
DEFAULT_POINTS = 1024
#: λ relative to mean diag(Ĝ) (module docstring).
DEFAULT_RIDGE = 1e-3
#: Scene labels are ``max(log σ, SCENE_TARGET_FLOOR)``: distillation's clip floor (DESIGN.md,
#: "Density clipping": below it every raw density renders as empty). The scene's own floor, −20,
#: only stands in for ``log 0`` and would make a 26-unit step at every surface dominate Δ.
SCENE_TARGET_FLOOR = -2.0
#: Occupancy grid of a procedural scene (its exact density, pvd's default render threshold).
SCENE_OCCUPANCY_RESOLUTION = 64
#: Largest float32 Jacobian of one output channel wrt the dense parameters (``N × P``).
DENSE_JACOBIAN_BUDGET = 2 * 2**30
#: Largest difference, relative to ``max|φ¹|``, between φ¹ rebuilt from the decomposition and
#: the field's own (see :func:`_check`).
_CHECK_TOLERANCE = 2e-5
#: Config keys of imported-teacher variants that gtk refuses (see :func:`_refuse_variants`).
_UNSUPPORTED_VARIANTS = ("density_activation", "alpha_mask_size")
#: Spectra plots stop at this fraction of the largest eigenvalue (see :func:`plot_spectra`).
PLOT_FLOOR = 1e-12
#: Points per vmap call and parameters per float64 block when forming ``J Jᵀ``.
_POINT_CHUNK = 256
_PARAM_BLOCK = 4096
_PLANE_NAMES = ("XY", "XZ", "YZ")
_LINE_NAMES = ("Z", "Y", "X")


# -- bookkeeping -------------------------------------------------------------------------------
def _nbytes(t: torch.Tensor) -> int:
    if t.is_sparse:
        return _nbytes(t._indices()) + _nbytes(t._values())
    return t.numel() * t.element_size()


class _Ledger:
    """Bytes of the pieces held at once: ``peak`` and the largest size seen per piece name."""

    def __init__(self) -> None:
        self.live: dict[str, int] = {}
        self.largest: dict[str, int] = {}
        self.peak = 0

    def hold(self, name: str, *tensors: torch.Tensor) -> None:
        size = sum(_nbytes(t) for t in tensors)
        self.live[name] = size
        self.largest[name] = max(self.largest.get(name, 0), size)
        self.peak = max(self.peak, sum(self.live.values()))

    def release(self, *names: str) -> None:
        for name in names:
            self.live.pop(name, None)


# -- the decomposition of φ¹ into interpolated grid pieces and a dense part -------------------
@dataclasses.dataclass
class _Piece:
    """One grid tensor as φ¹ reads it: ``e(x) = Σ_k weight[:, k] · table[index[:, k]]``."""

    name: str
    index: torch.Tensor  # [N, K] rows of ``table``
    weight: torch.Tensor  # [N, K]
    table: torch.Tensor  # [rows, F] (detached values)

    def features(self) -> torch.Tensor:
        return (self.weight[..., None] * self.table[self.index]).sum(1)

    def gram(self) -> torch.Tensor:
        """``Φ Φᵀ`` (float64, dense ``N × N``) from the sparse ``N × rows`` matrix ``Φ``."""
        n, k = self.index.shape
        rows = torch.arange(n, device=self.index.device).repeat_interleave(k)
        phi = torch.sparse_coo_tensor(
            torch.stack([rows, self.index.reshape(-1)]),
            self.weight.reshape(-1).double(),
            (n, self.table.shape[0]),
            check_invariants=False,
        ).coalesce()
        with warnings.catch_warnings():  # torch's sparse product goes through its "beta" CSR
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse.mm(phi, phi.t()).to_dense()


@dataclasses.dataclass
class _Decomposition:
    """φ¹ at the points as grid pieces plus dense functions of them.

    ``head(features)`` is φ¹ from the pieces' features (dense parameters as they are).
    ``dense_fn(inputs)`` is φ¹ from per-point ``inputs`` (``[N, ...]`` each) whose gradient wrt
    the ``dense`` parameters is the dense part of the Jacobian; it is evaluated with those
    parameters swapped in by ``torch.func.functional_call`` on the field.
    """

    pieces: list[_Piece]
    head: Callable[[list[torch.Tensor]], torch.Tensor]
    dense: dict[str, nn.Parameter]
    dense_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    dense_inputs: dict[str, torch.Tensor]


def _corner_offsets(dims: int, device: torch.device) -> torch.Tensor:
    """``[2^D, D]`` 0/1 offsets of a cell's corners: corner ``c`` moves along axis ``a`` when bit
    ``a`` of ``c`` is set (the corner order of the hash grid, MFLOD and MulFAGrid)."""
    c = torch.arange(2**dims, device=device)
    return torch.stack([(c >> a) & 1 for a in range(dims)], dim=-1)


def _lattice(
    pos: torch.Tensor, sizes: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell corners ``[N, 2^D, D]`` (int64) and multilinear weights ``[N, 2^D]`` of continuous
    lattice positions ``pos`` ``[N, D]`` (corners in :func:`_corner_offsets` order). With
    ``sizes`` (vertices per axis of an ``align_corners`` grid) the lower corner is clamped to
    ``size − 2``, so a point on the last vertex gets weight 1 there, as ``grid_sample`` does."""
    offsets = _corner_offsets(pos.shape[-1], pos.device)
    base = pos.floor()
    if sizes is not None:
        base = torch.minimum(base, pos.new_tensor([s - 2 for s in sizes]))
    frac = pos - base
    corners = base.to(torch.int64)[:, None, :] + offsets
    weight = torch.where(offsets.bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(-1)
    return corners, weight


def _unit(field: RadianceField, x: torch.Tensor) -> torch.Tensor:
    """Points in the field's unit cube, clamped as every architecture clamps them."""
    return field.normalize(x).clamp(0.0, 1.0)


def _named(module: nn.Module, prefix: str) -> dict[str, nn.Parameter]:
    return {f"{prefix}.{name}": p for name, p in module.named_parameters()}


def _features_head(count: int, head: Callable[[list[torch.Tensor]], torch.Tensor]):
    """``dense_fn`` for architectures whose dense part only reads the pieces' features."""
    return lambda inputs: head([inputs[f"e{i}"] for i in range(count)])


def _decompose_hashgrid(field: HashGrid, x: torch.Tensor) -> _Decomposition:
    """Levels of the hash encoding (tcnn layout, see ``architectures.hashgrid``) → density head."""
    u = _unit(field, x)
    table = field.params.detach().view(-1, field.config.features)
    pieces = []
    for level, layout in enumerate(field.layouts):
        corners, weight = _lattice(u * layout.scale + 0.5)
        if layout.dense:
            r = layout.resolution
            index = (corners[..., 0] + corners[..., 1] * r + corners[..., 2] * r * r) % layout.size
        else:  # hashed levels hold 2^log2T entries: "mod size" is a mask
            index = spatial_hash(corners) & (layout.size - 1)
        pieces.append(_Piece(f"level {level}", index + layout.offset, weight, table))

    def head(features: list[torch.Tensor]) -> torch.Tensor:
        return field.density_head(torch.cat(features, dim=-1))

    dense = _named(field.density_head, "density_head")
    return _Decomposition(pieces, head, dense, _features_head(len(pieces), head), {})


def _decompose_mflod(field: MFLOD, x: torch.Tensor) -> _Decomposition:
    """Levels of MFLOD's grid → LayerNorm, filters, multiplicative recursion, finest head."""
    u = _unit(field, x)
    pieces = []
    for number, level in enumerate(field.levels):
        r = level.resolution
        corners, weight = _lattice(u * (r - 1), (r, r, r))
        if level.dense:  # grid [F, R, R, R] indexed [f, x, y, z]
            index = (corners[..., 0] * r + corners[..., 1]) * r + corners[..., 2]
            table = level.grid.detach().permute(1, 2, 3, 0).reshape(r**3, -1)
        else:
            table = level.grid.detach()
            index = spatial_hash(corners) % table.shape[0]
        pieces.append(_Piece(f"level {number}", index, weight, table))

    def head(features: list[torch.Tensor]) -> torch.Tensor:
        z = None
        for level, e in zip(field.levels, features, strict=True):
            s = torch.sin(level.filter(F.layer_norm(e, e.shape[-1:], eps=_LAYERNORM_EPS)))
            z = s if z is None else level.transform(z) * s
        return field.levels[-1].head(z)

    dense: dict[str, nn.Parameter] = {}
    for number, level in enumerate(field.levels):
        dense.update(_named(level.filter, f"levels.{number}.filter"))
        if level.transform is not None:
            dense.update(_named(level.transform, f"levels.{number}.transform"))
    dense.update(_named(field.levels[-1].head, f"levels.{len(field.levels) - 1}.head"))
    return _Decomposition(pieces, head, dense, _features_head(len(pieces), head), {})


def _decompose_tensorf(field: TensoRF, x: torch.Tensor) -> _Decomposition:
    """Planes (bilinear, 4 corners) and lines (linear, 2 corners) of density and appearance →
    products, sums and the basis matrix."""
    s = _unit(field, x)
    pieces = []
    groups = (
        ("density", field.density_plane, field.density_line),
        ("appearance", field.app_plane, field.app_line),
    )
    for m, ((a, b), c) in enumerate(zip(MAT_MODES, VEC_MODES, strict=True)):
        n_b, n_a = field.density_plane[m].shape[2:]
        n_c = field.density_line[m].shape[2]
        corners, plane_weight = _lattice(
            s[:, [a, b]] * s.new_tensor([n_a - 1, n_b - 1]), (n_a, n_b)
        )
        plane_index = corners[..., 1] * n_a + corners[..., 0]  # plane [1, R, n_b, n_a]
        corners, line_weight = _lattice(s[:, [c]] * (n_c - 1), (n_c,))
        line_index = corners[..., 0]  # line [1, R, n_c, 1]
        for kind, planes, lines in groups:
            plane = planes[m].detach()[0].permute(1, 2, 0).reshape(n_b * n_a, -1)
            line = lines[m].detach()[0, :, :, 0].t()
            name = f"{kind} plane {_PLANE_NAMES[m]}"
            pieces.append(_Piece(name, plane_index, plane_weight, plane))
            pieces.append(_Piece(f"{kind} line {_LINE_NAMES[m]}", line_index, line_weight, line))

    def head(features: list[torch.Tensor]) -> torch.Tensor:
        sigma_raw = features[0].new_full(features[0].shape[:1], field.config.density_shift)
        appearance = []
        for m in range(3):
            density_plane, density_line, app_plane, app_line = features[4 * m : 4 * m + 4]
            sigma_raw = sigma_raw + (density_plane * density_line).sum(-1)
            appearance.append(app_plane * app_line)
        g = field.basis_mat(torch.cat(appearance, dim=-1))
        return torch.cat([sigma_raw[:, None], g], dim=-1)

    dense = _named(field.basis_mat, "basis_mat")
    return _Decomposition(pieces, head, dense, _features_head(len(pieces), head), {})


def _decompose_plenoxels(field: Plenoxels, x: torch.Tensor) -> _Decomposition:
    """One trilinear piece, read out as it is: a fixed kernel and a linear readout."""
    r = field.config.resolution
    corners, weight = _lattice(_unit(field, x) * (r - 1), (r, r, r))
    index = (corners[..., 0] * r + corners[..., 1]) * r + corners[..., 2]
    piece = _Piece("vertex grid", index, weight, field.vertex_values().detach())

    def head(features: list[torch.Tensor]) -> torch.Tensor:
        return features[0]

    return _Decomposition([piece], head, {}, _features_head(1, head), {})


def _decompose_mulfagrid(field: MulFAGrid, x: torch.Tensor) -> _Decomposition:
    """The vertex grid read with the learned kernel's weights; the dense part is the kernel
    network: ``v = Σ_k softmax_k(m_k + log t_k) · w_k`` (``architectures.mulfagrid``: ``k̃ = t·e^m
    / Σ t·e^m``, ``t`` the trilinear weights, ``m`` the network's log-kernels)."""
    with torch.no_grad():
        index, weight = field.kernel_weights(x)
    table = field.grid.detach()
    piece = _Piece("vertex features", index, weight, table)
    r = field.config.resolution
    u = _unit(field, x)
    corners, trilinear = _lattice(u * (r - 1), (r, r, r))
    step = 2.0 / (r - 1)
    offsets = _corner_offsets(3, u.device).to(u.dtype) * step  # [8, 3], in [−1, 1] units
    inputs = {
        "p": 2.0 * u - 1.0,
        "vertex": corners[:, 0].to(u.dtype) * step - 1.0,
        "log_t": trilinear.log(),
        "rows": table[index],
    }

    def head(features: list[torch.Tensor]) -> torch.Tensor:
        return features[0]

    def dense_fn(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        m = field.kernel(inputs["p"], inputs["vertex"], offsets)
        kernel = torch.softmax(m + inputs["log_t"], dim=-1)
        return (kernel[..., None] * inputs["rows"]).sum(-2)

    return _Decomposition([piece], head, _named(field.kernel, "kernel"), dense_fn, inputs)


def _decompose_mlp(field: MLP, x: torch.Tensor) -> _Decomposition:
    """No grid: everything is the dense part."""
    dense = {**_named(field.trunk, "trunk"), **_named(field.head, "head")}
    return _Decomposition([], field.phi1, dense, lambda inputs: field.phi1(inputs["x"]), {"x": x})


_DECOMPOSE: dict[type, Callable[[Any, torch.Tensor], _Decomposition]] = {
    HashGrid: _decompose_hashgrid,
    MFLOD: _decompose_mflod,
    TensoRF: _decompose_tensorf,
    Plenoxels: _decompose_plenoxels,
    MulFAGrid: _decompose_mulfagrid,
    MLP: _decompose_mlp,
}


def _decompose(field: RadianceField, x: torch.Tensor) -> _Decomposition:
    for cls, decompose in _DECOMPOSE.items():
        if isinstance(field, cls):
            return decompose(field, x)
    raise UserError(
        f"no grid tangent kernel for architecture '{field.arch}'; "
        f"supported: {', '.join(sorted(c.arch for c in _DECOMPOSE))}"
    )


def _check(arch: str, value: torch.Tensor, reference: torch.Tensor) -> None:
    """Refuse a decomposition that does not reproduce the architecture's own φ¹ to within
    ``_CHECK_TOLERANCE`` of its largest value (measured on pvd's 18 trained teachers and the six
    cpu presets at init, float32: at most 2.1e-6)."""
    scale = float(reference.abs().max())
    error = float((value - reference).abs().max())
    if not error <= _CHECK_TOLERANCE * scale:
        raise UserError(
            f"pvd gtk cannot decompose this {arch} field: its phi1 differs from the sparse "
            f"reconstruction by {error:.3g} (gtk follows pvd's own {arch}; variants of imported "
            f"teachers, such as other hash layouts, density activations or alpha masks, are not "
            f"supported)"
        )


def _refuse_variants(field: RadianceField) -> None:
    """Refuse imported-teacher variants with a nonlinearity or mask after the grid by name (the
    φ¹ check alone can miss one where it is nearly linear, e.g. ``log softplus`` far below 0)."""
    layout = getattr(field.config, "layout", "tcnn")
    if layout != "tcnn":  # the sparse weights follow tiny-cuda-nn's indexing and offsets
        raise UserError(
            f"pvd gtk does not support {field.arch} fields with layout={layout!r} (a variant "
            f"of an imported teacher); convert it to a pvd {field.arch} first"
        )
    for key in _UNSUPPORTED_VARIANTS:
        value = getattr(field.config, key, None)
        if value is not None:
            raise UserError(
                f"pvd gtk does not support {field.arch} fields with {key}={value!r} (a variant "
                f"of an imported teacher); convert it to a pvd {field.arch} first"
            )


# -- the kernel --------------------------------------------------------------------------------
class _Bound(nn.Module):
    """``fn`` as the forward of a module holding ``field``, so ``functional_call`` can swap the
    field's parameters while ``fn`` runs."""

    def __init__(self, field: RadianceField, fn: Callable[[dict[str, torch.Tensor]], torch.Tensor]):
        super().__init__()
        self.field = field
        self.fn = fn

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fn(inputs)


def _add_grid_part(
    arch: str,
    decomposition: _Decomposition,
    channels: list[int],
    reference: torch.Tensor,
    gram: torch.Tensor,
    ledger: _Ledger,
) -> dict[str, float]:
    """Add ``Σ_p (Φ_p Φ_pᵀ) ⊙ (A_p A_pᵀ)`` (module docstring) to ``gram``; returns each piece's
    share of the trace, ``Σ_n (Φ_p Φ_pᵀ)_nn (A_p A_pᵀ)_nn``."""
    pieces = decomposition.pieces
    n = reference.shape[0]
    leaves = [p.features().requires_grad_() for p in pieces]
    ledger.hold("interpolation weights", *(t for p in pieces for t in (p.index, p.weight)))
    v = decomposition.head(leaves)
    _check(arch, v.detach(), reference)
    jac = [e.new_zeros(n, len(channels), e.shape[1]) for e in leaves]  # A_p
    for i, c in enumerate(channels):
        grads = torch.autograd.grad(v[:, c].sum(), leaves, retain_graph=True, allow_unused=True)
        for a, g in zip(jac, grads, strict=True):
            if g is not None:
                a[:, i] = g
    ledger.hold("A = dg/de", *jac)
    traces = {}
    for piece, a in zip(pieces, jac, strict=True):
        phi_phi = piece.gram()
        ledger.hold("Phi Phi^T", phi_phi)
        flat = a.reshape(n, -1).double()
        a_a = flat @ flat.t()
        ledger.hold("A A^T", a_a)
        gram.addcmul_(phi_phi, a_a)
        traces[piece.name] = float((phi_phi.diagonal() * a_a.diagonal()).sum())
        ledger.release("Phi Phi^T", "A A^T")
    ledger.release("interpolation weights", "A = dg/de")
    return traces


def _add_dense_part(
    field: RadianceField,
    decomposition: _Decomposition,
    channels: list[int],
    reference: torch.Tensor,
    gram: torch.Tensor,
    ledger: _Ledger,
) -> float:
    """Add ``Σ_c J_c J_cᵀ`` over the dense parameters (per-point gradients) to ``gram``;
    returns its trace."""
    n = reference.shape[0]
    names = list(decomposition.dense)
    size = sum(decomposition.dense[k].numel() for k in names)
    need = n * size * reference.element_size()
    if need > DENSE_JACOBIAN_BUDGET:
        raise UserError(
            f"the dense Jacobian of {field.arch} ({size:,} parameters at {n} points) needs "
            f"{need / 2**30:.1f} GiB (limit {DENSE_JACOBIAN_BUDGET / 2**30:.0f} GiB); "
            f"use fewer --points" + ("" if field.arch == "mlp" else " or --params grid")
        )
    inputs = dict(decomposition.dense_inputs)
    inputs.update({f"e{i}": p.features() for i, p in enumerate(decomposition.pieces)})
    bound = _Bound(field, decomposition.dense_fn)
    params = {f"field.{k}": decomposition.dense[k].detach() for k in names}
    with torch.no_grad():
        _check(field.arch, bound(inputs), reference)

    def one_point(params: dict[str, torch.Tensor], point: dict[str, torch.Tensor], channel: int):
        batch = {k: t[None] for k, t in point.items()}
        return torch.func.functional_call(bound, params, (batch,))[0, channel]

    trace = 0.0
    for channel in channels:
        per_point = torch.func.vmap(
            torch.func.grad(functools.partial(one_point, channel=channel)), in_dims=(None, 0)
        )
        jac = reference.new_empty(n, size)
        ledger.hold("dense Jacobian (one channel)", jac)
        for start in range(0, n, _POINT_CHUNK):
            stop = min(start + _POINT_CHUNK, n)
            grads = per_point(params, {k: t[start:stop] for k, t in inputs.items()})
            jac[start:stop] = torch.cat(
                [grads[f"field.{k}"].reshape(stop - start, -1) for k in names], 1
            )
        for start in range(0, size, _PARAM_BLOCK):
            block = jac[:, start : start + _PARAM_BLOCK].double()
            ledger.hold("Jacobian block (float64)", block)
            gram.addmm_(block, block.t())
            trace += float(block.square().sum())
        ledger.release("dense Jacobian (one channel)", "Jacobian block (float64)")
    return trace


# -- the report --------------------------------------------------------------------------------
@dataclasses.dataclass
class GTKReport:
    """The grid tangent kernel of one field at ``points`` points, and what it says.

    ``eigenvalues`` are those of ``Ĝ = G / tr(G)``, largest first; ``trace_shares`` splits
    ``tr(G)`` between the grid pieces (hash levels, TensoRF planes and lines, …) and the dense
    part; ``matrix`` is ``G`` itself (float64, not normalised; left out of :meth:`to_dict`). The
    module docstring defines every figure.
    """

    arch: str
    output: str
    params: str
    points: int
    channels: int
    grid_parameters: int
    dense_parameters: int
    trace: float
    trace_shares: dict[str, float]
    eigenvalues: list[float]
    effective_rank: float
    condition_number: float
    ridge: float
    ridge_absolute: float
    delta: float
    targets: str
    seconds: float
    peak_bytes: int
    memory: dict[str, int]
    source: str = ""
    matrix: torch.Tensor | None = dataclasses.field(default=None, repr=False)

    def to_dict(self, spectrum: bool = True) -> dict[str, Any]:
        """JSON-ready fields (``spectrum=False`` leaves out the ``N`` eigenvalues); a condition
        number that is not finite (``ridge = 0`` on a singular ``G``) becomes ``None``."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "matrix"}
        if not spectrum:
            del out["eigenvalues"]
        if not math.isfinite(self.condition_number):
            out["condition_number"] = None
        out["definitions"] = {
            "G": "sum over output channels of J_c J_c^T, J_c = d g_c(X) / d w (pre-activation g)",
            "normalised": "G / trace(G)",
            "effective_rank": "exp of the Shannon entropy of the normalised eigenvalues",
            "condition_number": "(max eigenvalue + lambda) / (min eigenvalue + lambda)",
            "delta": "Y^T (G/trace(G) + lambda I)^-1 Y, lambda = ridge * mean diag",
        }
        return out

    def lines(self) -> list[str]:
        """The report as a few human-readable lines."""
        g = "σ_raw" if self.output == "sigma" else f"v ({self.channels} channels, G = Σ_c J_c J_cᵀ)"
        return [
            f"grid tangent kernel of {self.arch}{f' ({self.source})' if self.source else ''}",
            f"  g = {g} at {self.points} points; w = {self.params} parameters "
            f"({self.grid_parameters:,} grid + {self.dense_parameters:,} dense)",
            f"  effective rank (exp of spectral entropy): {self.effective_rank:.2f} "
            f"of {self.points}",
            f"  condition number of Ĝ + λI: {self.condition_number:.4g}",
            f"  Δ = Yᵀ(Ĝ + λI)⁻¹Y = {self.delta:.6g}  (Ĝ = G/tr G, tr G = {self.trace:.4g}; "
            f"λ = {self.ridge:g} × mean diag Ĝ = {self.ridge_absolute:.3g})",
            f"  Y: {self.targets}",
            "  largest shares of tr G: "
            + ", ".join(
                f"{name} {share:.3f}"
                for name, share in sorted(self.trace_shares.items(), key=lambda kv: -kv[1])[:3]
            ),
            f"  {self.seconds:.2f} s; peak memory of the pieces built: "
            f"{self.peak_bytes / 2**20:.1f} MiB",
        ]


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UserError(f"--{name} must be one of {', '.join(choices)}, got '{value}'")


def _check_count(count: int) -> None:
    if not 1 <= count <= MAX_POINTS:
        raise UserError(f"--points must be in 1..{MAX_POINTS}, got {count}")


def _check_ridge(ridge: float) -> None:
    if not (math.isfinite(ridge) and ridge >= 0):
        raise UserError(f"--ridge must be a finite number >= 0, got {ridge}")


@torch.inference_mode(False)  # gradients are needed even if the caller turned them off
@torch.enable_grad()
def gtk(
    field: RadianceField,
    points: torch.Tensor,
    output: str = "sigma",
    params: str = "all",
    targets: torch.Tensor | None = None,
    ridge: float = DEFAULT_RIDGE,
    targets_name: str | None = None,
) -> GTKReport:
    """The grid tangent kernel of ``field`` at model-space ``points`` ``[N, 3]``.

    ``output``: ``"sigma"`` (σ_raw) or ``"feature"`` (every channel of ``v``); ``params``:
    ``"grid"`` or ``"all"`` (module docstring). ``targets``: the labels ``Y`` of Δ, ``[N]`` or
    ``[N, C]`` for the chosen output; ``None`` uses the field's own output at the points
    (``targets_name`` describes them in the report). ``ridge``: λ relative to mean diag(Ĝ).
    Raises :class:`~pvd.errors.UserError` for bad input.
    """
    start = time.perf_counter()
    _check_choice("output", output, OUTPUTS)
    _check_choice("params", params, PARAMS)
    architectures.base.check_points(points, "points")
    n = points.shape[0]
    _check_count(n)
    _check_ridge(ridge)
    # a copy: the caller's points may be inference tensors, which autograd cannot save
    x = points.to(device=field.aabb.device, dtype=next(field.parameters()).dtype).clone()
    _refuse_variants(field)
    decomposition = _decompose(field, x)
    if params == "grid" and not decomposition.pieces:
        raise UserError(
            f"{field.arch} has no grid tensors (all its parameters are dense); use --params all"
        )
    with torch.no_grad():
        reference = field.phi1(x)
    channels = [0] if output == "sigma" else list(range(reference.shape[1]))
    y = (reference[:, channels] if targets is None else targets).to(x.device, torch.float64)
    y = y[:, None] if y.ndim == 1 else y
    if tuple(y.shape) != (n, len(channels)):
        raise UserError(
            f"targets must have shape [{n}] or [{n}, {len(channels)}] for output '{output}', "
            f"got {list(y.shape)}"
        )

    ledger = _Ledger()
    gram = torch.zeros(n, n, dtype=torch.float64, device=x.device)
    ledger.hold("G", gram)
    parts: dict[str, float] = {}
    if decomposition.pieces:
        parts.update(_add_grid_part(field.arch, decomposition, channels, reference, gram, ledger))
    dense_parameters = 0
    if params == "all" and decomposition.dense:
        parts["dense part"] = _add_dense_part(
            field, decomposition, channels, reference, gram, ledger
        )
        dense_parameters = sum(p.numel() for p in decomposition.dense.values())
    trace = float(gram.diagonal().sum())
    if not trace > 0:
        raise UserError(
            f"G is zero: {field.arch}'s {output} output does not depend on its {params} parameters"
        )
    normalised = gram / trace
    ledger.hold("G / tr G", normalised)
    eigenvalues = torch.linalg.eigvalsh(normalised).flip(0)
    lam = ridge / n  # ridge × mean diag(Ĝ), and mean diag(Ĝ) = 1/N
    p = eigenvalues.clamp_min(0.0)
    p = p / p.sum()
    entropy = -float(torch.where(p > 0, p * p.log(), p.new_zeros(())).sum())
    low = max(float(eigenvalues[-1]), 0.0) + lam
    condition = (float(eigenvalues[0]) + lam) / low if low > 0 else math.inf
    system = normalised + lam * torch.eye(n, dtype=torch.float64, device=x.device)
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) != 0:
        raise UserError("G is singular, so Δ = Yᵀ G⁻¹ Y is undefined; use --ridge > 0")
    delta = float((y * torch.cholesky_solve(y, factor)).sum())
    tables = {id(p.table): p.table for p in decomposition.pieces}
    return GTKReport(
        arch=field.arch,
        output=output,
        params=params,
        points=n,
        channels=len(channels),
        grid_parameters=sum(t.numel() for t in tables.values()),
        dense_parameters=dense_parameters,
        trace=trace,
        trace_shares={name: part / trace for name, part in parts.items()},
        eigenvalues=[float(e) for e in eigenvalues],
        effective_rank=math.exp(entropy),
        condition_number=condition,
        ridge=ridge,
        ridge_absolute=lam,
        delta=delta,
        targets=targets_name
        or ("given targets" if targets is not None else f"the field's own {output} output"),
        seconds=time.perf_counter() - start,
        peak_bytes=ledger.peak,
        memory=dict(ledger.largest),
        matrix=gram,
    )


# -- points, targets and whole runs ------------------------------------------------------------
def occupied_points(grid: OccupancyGrid, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` points ``[count, 3]`` drawn uniformly in the occupied cells of ``grid`` (a cell
    chosen uniformly among the occupied ones, then a uniform point inside it), on the grid's
    device; the same ``seed`` gives the same points."""
    cells = grid.binary.reshape(-1).nonzero().squeeze(1).cpu()
    if cells.numel() == 0:
        raise UserError(
            "the occupancy grid has no occupied cell, so there is nowhere to sample points; "
            "pass --scene NAME to sample a procedural scene's occupied cells"
        )
    generator = torch.Generator().manual_seed(seed)
    pick = cells[torch.randint(cells.numel(), (count,), generator=generator)]
    r = grid.resolution
    ijk = torch.stack([pick // (r * r), (pick // r) % r, pick % r], dim=-1).float()
    u = (ijk + torch.rand(count, 3, generator=generator)) / r
    lo, hi = grid.aabb[:3].cpu(), grid.aabb[3:].cpu()
    return (lo + u * (hi - lo)).to(grid.device)


def scene_occupancy(scene: ProceduralScene, seed: int = 0) -> OccupancyGrid:
    """The occupancy grid of a procedural scene from its exact density (64³, pvd's default
    render threshold), built with a private random stream seeded by ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return OccupancyGrid.from_field(
            scene.density,
            scene.aabb,
            SCENE_OCCUPANCY_RESOLUTION,
            RenderSettings().occupancy_threshold,
        )


def _get_scene(name: str) -> ProceduralScene:
    try:
        return get_scene(name)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _world_to_model(spec: SceneSpec) -> tuple[torch.Tensor, torch.Tensor]:
    m = torch.tensor(spec.world_to_model, dtype=torch.float32)
    return m[:3, :3], m[:3, 3]


def sample(
    field: RadianceField,
    spec: SceneSpec,
    count: int,
    grid: OccupancyGrid | None = None,
    scene: str | None = None,
    output: str = "sigma",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Points (model space) and labels for :func:`gtk`: ``(points, targets, description)``.

    With ``scene``, points are drawn in the occupied cells of the procedural scene (so every
    architecture analysed with the same scene and seed sees the same points) and, for
    ``output="sigma"``, ``Y = max(log σ_scene, −2)`` in model units (``SCENE_TARGET_FLOOR``).
    Without it, points come from ``grid`` (a checkpoint's occupancy) and ``Y`` is the field's own
    output (``targets`` is ``None``). The feature output always uses the field's own ``v``: a
    scene has no ``v``.
    """
    _check_count(count)
    if scene is None:
        if grid is None:
            raise UserError("no occupancy to sample points from: pass --scene NAME")
        return occupied_points(grid, count, seed), None, f"the field's own {output} output"
    procedural = _get_scene(scene)
    world = occupied_points(scene_occupancy(procedural, seed), count, seed).cpu()
    rotation, translation = _world_to_model(spec)
    points = (world @ rotation.T + translation).to(field.aabb.device)
    if output != "sigma":
        return points, None, f"the field's own {output} output (scene '{scene}' has no v)"
    # σ_model = σ_world / scale (SceneSpec), so σ_raw shifts by −log(scale)
    raw = procedural.sigma_raw(world.double()) - math.log(spec.scale)
    targets = raw.clamp_min(SCENE_TARGET_FLOOR).to(points.device)
    described = f"scene '{scene}' σ_raw = max(log σ, {SCENE_TARGET_FLOOR:g}) at the points"
    return points, targets, described


def field_at_init(arch: str, preset: str, scene: str, seed: int = 0) -> RadianceField:
    """A freshly initialised field of ``arch`` with the ``preset`` (``cpu`` or ``paper``) model
    section of ``recipes/<arch>.toml``, over the scene's box, initialised from ``seed``."""
    name = architectures.canonical_name(arch)
    model = load_preset(name, resolve_preset(preset))["model"]
    box = _get_scene(scene).aabb
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return architectures.build(name, {**model, "aabb": list(box)})


def analyse(
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    arch: str | None = None,
    preset: str = "cpu",
    scene: str | None = None,
    points: int = DEFAULT_POINTS,
    output: str = "sigma",
    params: str = "all",
    ridge: float = DEFAULT_RIDGE,
    seed: int = 0,
    device: str = "cpu",
) -> GTKReport:
    """``pvd gtk``: the kernel of a checkpoint at its current parameters, or of ``arch`` at
    initialisation (``preset`` config) on ``scene``; see :func:`sample` for points and labels."""
    _check_choice("output", output, OUTPUTS)
    _check_choice("params", params, PARAMS)
    _check_count(points)
    _check_ridge(ridge)
    if (checkpoint is None) == (arch is None):
        raise UserError(
            "give either a checkpoint or --arch NAME (a field at initialisation), not both"
            if checkpoint is not None
            else "give a checkpoint to analyse, or --arch NAME --scene NAME for a field at init"
        )
    if checkpoint is not None:
        model = TrainedModel.load(checkpoint, device)
        field, spec, grid = model.field, model.scene, model.grid
        source = f"checkpoint {Path(checkpoint).name}"
    else:
        if scene is None:
            raise UserError(
                "--arch needs --scene NAME: a field at initialisation has no occupancy of its "
                "own to sample points from"
            )
        chosen = resolve_preset(preset, device)
        field = field_at_init(arch, chosen, scene, seed).to(device)
        spec, grid = _get_scene(scene).scene_spec(), None
        source = f"{chosen} preset at initialisation, seed {seed}"
    x, targets, described = sample(field, spec, points, grid, scene, output, seed)
    report = gtk(field, x, output, params, targets, ridge, described)
    report.source = source
    return report


def gtk_summary(
    model: TrainedModel,
    points: int = 1024,
    scene: str | None = None,
    reference: TrainedModel | None = None,
) -> dict[str, float]:
    """GTK columns for a comparison table: effective rank, condition number, Δ and seconds of
    ``model``'s σ_raw kernel over all its φ¹ parameters (the :func:`analyse` defaults, seed 0).

    With ``reference`` (``pvd compare --gtk``: the teacher) every student is measured on the same
    points — drawn in the reference's occupied cells — and labels: the reference's σ_raw, floored
    at ``SCENE_TARGET_FLOOR`` (distillation's clip floor), so Δ says how well each student's
    kernel suits the field it was distilled from."""
    if reference is None:
        x, targets, described = sample(model.field, model.scene, points, model.grid, scene)
    else:
        x = occupied_points(reference.grid, points, 0).to(model.field.aabb.device)
        with torch.no_grad():
            targets = reference.field.sigma_raw(x).clamp_min(SCENE_TARGET_FLOOR).to(x.device)
        described = f"the {reference.field.arch} teacher's σ_raw (floored at {SCENE_TARGET_FLOOR})"
    report = gtk(model.field, x, "sigma", "all", targets, DEFAULT_RIDGE, described)
    return {
        "effective_rank": report.effective_rank,
        "condition_number": report.condition_number,
        "delta": report.delta,
        "seconds": report.seconds,
    }


# -- outputs -----------------------------------------------------------------------------------
def write_json(data: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def plot_spectra(
    panels: Mapping[str, Mapping[str, tuple[Sequence[int], Sequence[float]]]],
    path: str | os.PathLike[str],
    title: str = "",
    columns: int = 3,
) -> Path:
    """Log-log plots of trace-normalised spectra, one panel per ``panel title → {label →
    (indices, eigenvalues)}`` (1-based indices, largest eigenvalue first; a subset of the
    indices is enough on log axes), written atomically as a PNG. Curves cycle through line
    styles, so coinciding spectra stay visible. Eigenvalues below ``PLOT_FLOOR`` times the
    largest (round-off of a singular ``G``, down to 1e-21 measured) are not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = min(columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    figure, grid = plt.subplots(
        rows, cols, figsize=(5.2 * cols, 3.9 * rows), dpi=110, squeeze=False
    )
    for axes, (name, curves) in zip(grid.flat, panels.items(), strict=False):
        for number, (label, (indices, values)) in enumerate(curves.items()):
            y = torch.tensor(list(values), dtype=torch.float64)
            keep = y > PLOT_FLOOR * y.max()
            index = torch.tensor(list(indices))[keep].numpy()
            style = ("-", "--", "-.", ":")[number % 4]
            axes.loglog(index, y[keep].numpy(), style, label=label)
        axes.set_xlabel("eigenvalue index i (largest first)")
        axes.set_ylabel(r"eigenvalue $\mu_i$ of $G/\mathrm{tr}\,G$ (dimensionless)")
        axes.set_title(name, fontsize=9)
        axes.grid(True, which="major", alpha=0.3)
        axes.legend(fontsize=7)
    for axes in list(grid.flat)[len(panels) :]:
        axes.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    figure.savefig(tmp)
    plt.close(figure)
    os.replace(tmp, path)
    return path


def write_outputs(report: GTKReport, out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``gtk.json`` (the full report with its spectrum) and ``gtk_spectrum.png`` in ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    label = (
        f"{report.arch}, {report.params} params (effective rank {report.effective_rank:.1f}, "
        f"Δ {report.delta:.3g})"
    )
    title = (
        f"GTK spectrum of {report.arch}, g = {report.output}, N = {report.points}\n{report.source}"
    )
    spectrum = (range(1, report.points + 1), report.eigenvalues)
    png = plot_spectra({title: {label: spectrum}}, out / "gtk_spectrum.png")
    return write_json(report.to_dict(), out / "gtk.json"), png
