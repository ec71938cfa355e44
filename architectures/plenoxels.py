"""Plenoxels (Fridovich-Keil, Yu et al., CVPR 2022): a voxel grid of densities and SH colours.

Storage: one dense vertex grid ``grid`` of shape ``[28, R, R, R]`` (channel, x, y, z). Channel 0
is ``sigma_raw``; channels 1..27 are the degree-2 SH coefficients (9 per colour), all 9 of red,
then green, then blue — svox2's ``sh_data.reshape(N, 3, basis_dim)`` order. Vertex ``(i, j, k)``
sits at ``aabb_min + (i, j, k) / (R − 1) · (aabb_max − aabb_min)`` (``align_corners`` semantics,
as the reference PVD code's ``grid_sample(align_corners=True)``); :meth:`Plenoxels.vertex_positions`
lists them in storage order (``k`` fastest).

- φ¹(x) = trilinear interpolation of the raw 28 channels at the 8 surrounding vertices, as
  Plenoxels interpolates its stored opacity and SH coefficients → ``v`` ``[N, 28]``.
- φ²(v, d): ``sigma = trunc_exp(sigma_raw)`` and per colour channel
  ``rgb_c = sigmoid(Σ_k SH_k(d) · c_{c,k})`` with the first 9 real SH of
  :func:`~architectures.components.sh_encode` (one view-dependent SH function per colour
  channel). There is no learned decoder (``canonical = False``): distillation aligns
  ``sigma_raw`` and the colour.
- Regulariser (Plenoxels' TV loss as svox2's ``loss_kernel.cu`` computes it): total variation
  ``TV = Σ_v Σ_c sqrt(1e-5 + (s·Δx)² + (s·Δy)² + (s·Δz)²)``, ``Δ`` the forward differences to the
  +x, +y, +z neighbour, ``s = R / 256`` (svox2's ``calculate_ray_scale``), summed over a fresh
  random subset of cells at every call (svox2's ``tv_sparsity`` = 1 % of the cells). It is a
  *sum* over the drawn cells, not a mean: svox2's ``tv_grad_sparse`` adds ``lambda ·
  ∂TV_cell`` for every drawn cell, so a weight here means what svox2's ``lambda_tv`` (1e-5,
  density) and ``lambda_tv_sh`` (1e-3, all 27 SH channels; ``opt/configs/syn.json``) mean.
  Plus an optional L1 sparsity ``l1_density_weight · Σ sigma`` over the same cells (pvd's, off
  by default). The ``1e-5`` floor makes the value never 0: about 0.2 on a flat cpu-preset grid
  (27 · 2,500 cells · √1e-5 · 1e-3), a constant with no gradient.

pvd's choices (ARCHITECTURES.md "Plenoxels"):

- Activations of the reference PVD code, not svox2's: ``trunc_exp`` instead of ReLU for density
  and ``sigmoid`` instead of ``clamp_min(· + 0.5, 0)`` for colour, so ``sigma_raw`` lives in the
  same log space as every other architecture's and a warm start can fit colours in logit space.
- Dense grid (cpu 64³, paper 128³ as the reference PVD code), no sparse ``links`` and no
  coarse-to-fine upsampling (svox2 goes 256³ → 512³); pruning by occupancy is later work.
- Init: ``sigma_raw = ln(init_sigma)`` with svox2's ``--init_sigma 0.1`` (``sigma_raw ≈ −2.30``:
  space starts nearly empty, transmittance 0.67 over a 4-unit ray, while ``trunc_exp``'s slope of
  0.1 still lets gradients in); SH coefficients 0 (svox2's ``--init_rgb 0.0``: grey, ``rgb = 0.5``).
- TV cells are drawn independently (``torch.randint`` on the default generator, so a seed fixes
  them) among the ``(R − 1)³`` cells that have all three neighbours; svox2 takes one contiguous
  random run of cells for memory locality. ``tv_fraction = 1`` uses every cell.
- Memory layout: ``grid`` has the logical shape ``[28, R, R, R]`` (so checkpoints hold the
  channel-first tensor of the reference PVD code) but is allocated channel-last, each vertex's
  28 values adjacent: interpolation gathers 8 vertices × 28 channels per point and
  ``grid_sample`` reads them through strides. Measured at 64³ on 65,536 points (one CPU thread):
  forward 3.1× faster than channel-first memory (rendering), forward + backward 1.08× (the
  backward's scatter dominates). Adam keeps the layout for its state (``preserve_format``).
- One parameter tensor at the recipe's learning rate (the reference PVD code's single Adam group);
  svox2's separate RMSprop density rate is specific to its optimiser.

Variants for imported teachers (``pvd.importers``; the defaults are the field above, so existing
checkpoints load unchanged):

- ``sh_degree`` (0..3, default 2): the SH degree of the colour, ``(sh_degree + 1)²``
  coefficients per colour channel (svox2's ``basis_dim`` 1, 4, 9, 16; the reference PVD code's
  ``plenoxel_degree`` counts bands, one more). ``v`` has ``1 + 3·(sh_degree + 1)²`` channels.
- ``density_activation``: ``None`` (``trunc_exp``) or ``"relu"`` (svox2: σ = relu of the
  interpolated raw density, ``svox2/svox2.py`` and its CUDA renderer). **Raw density
  convention:** φ¹'s channel 0 is always pvd's log density ``ln σ``; for ``"relu"`` the stored
  value ``s`` is interpolated first (as svox2 does) and φ¹ reports ``ln(max(relu(s), e⁻²⁰))``
  (``architectures.components.log_density``), so the decoder's ``trunc_exp`` gives svox2's σ back
  (to within 2e-9 where svox2 has 0) and distillation's clip range means the same density as for
  every other architecture.
- ``colour``: ``None`` (``sigmoid(SH·c)``) or ``"svox2_clamp"``: ``rgb = max(SH·c + 0.5, 0)``
  (svox2), clamped at 1 per sample for pvd's ``rgb`` ∈ [0, 1] contract (svox2 clamps only the
  composited pixel: identical wherever its sample colours stay within 1).

The grid keeps the stored values (``s`` and SH coefficients), so TV, L1 and warm starts act on
the same tensor in every variant.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from .base import FieldConfig, RadianceField, check_points, require
from .components import SH_COLOURS, activate_density, log_density, sh_colour, trilinear_dense
from .registry import register

#: SH basis functions per colour channel of the default degree 2 (svox2's ``basis_dim = 9``).
SH_BASIS = 9
#: svox2 scales neighbour differences by ``R / 256`` so TV weights mean the same at any resolution.
TV_REFERENCE_RESOLUTION = 256
#: The ``1e-5`` under svox2's TV square root (keeps the gradient finite on flat regions).
TV_EPS = 1e-5
#: Density activations of the variants (module docstring); ``None`` is pvd's ``trunc_exp``.
DENSITY_ACTIVATIONS = ("relu",)
#: Colour modes of the variants (:func:`~architectures.components.sh_colour`); ``None`` is sigmoid.
COLOURS = SH_COLOURS


@dataclasses.dataclass
class PlenoxelsConfig(FieldConfig):
    """Dense Plenoxels grid. Defaults are the ``paper`` preset (the reference PVD code's 128³).

    ``resolution``: vertices per axis; ``init_sigma``: initial density (σ units);
    ``tv_density_weight`` / ``tv_sh_weight``: per-cell TV weights; ``tv_fraction``: share of the
    cells each :meth:`Plenoxels.regularizer` call draws; ``l1_density_weight``: L1 on density;
    ``lr_scale``: factor on the recipe's learning rate (see :meth:`Plenoxels.param_groups`).
    ``sh_degree``, ``density_activation`` and ``colour`` select the variants of imported
    teachers (module docstring).
    """

    resolution: int = 128
    init_sigma: float = 0.1
    tv_density_weight: float = 1e-5
    tv_sh_weight: float = 1e-3
    tv_fraction: float = 0.01
    l1_density_weight: float = 0.0
    lr_scale: float = 10.0
    sh_degree: int = 2
    density_activation: str | None = None
    colour: str | None = None

    @property
    def sh_basis(self) -> int:
        """SH coefficients per colour channel, ``(sh_degree + 1)²``."""
        return (self.sh_degree + 1) ** 2

    def validate(self) -> None:
        super().validate()
        require(
            2 <= self.resolution <= 512,
            f"resolution must be in 2..512, got {self.resolution}",
        )
        require(
            math.isfinite(self.init_sigma) and self.init_sigma > 0,
            f"init_sigma must be a positive density, got {self.init_sigma}",
        )
        for key in ("tv_density_weight", "tv_sh_weight", "l1_density_weight"):
            value = getattr(self, key)
            require(math.isfinite(value) and value >= 0, f"{key} must be >= 0, got {value}")
        require(
            math.isfinite(self.lr_scale) and self.lr_scale > 0,
            f"lr_scale must be > 0, got {self.lr_scale}",
        )
        require(
            0.0 < self.tv_fraction <= 1.0,
            f"tv_fraction must be in (0, 1], got {self.tv_fraction}",
        )
        require(0 <= self.sh_degree <= 3, f"sh_degree must be in 0..3, got {self.sh_degree}")
        require(
            self.density_activation in (None, *DENSITY_ACTIVATIONS),
            f"density_activation must be null (trunc_exp) or one of "
            f"{', '.join(DENSITY_ACTIVATIONS)}, got {self.density_activation!r}",
        )
        require(
            self.colour in (None, *COLOURS),
            f"colour must be null (sigmoid) or one of {', '.join(COLOURS)}, got {self.colour!r}",
        )


@register
class Plenoxels(RadianceField):
    """Dense Plenoxels grid with SH colour and no learned decoder (see module docstring)."""

    arch = "plenoxels"
    config_class = PlenoxelsConfig
    feature_dim = 1 + 3 * SH_BASIS
    canonical = False

    def __init__(self, config: PlenoxelsConfig) -> None:
        super().__init__(config)
        self.feature_dim = 1 + 3 * config.sh_basis
        r = config.resolution
        # Logical shape [28, R, R, R], memory channel-last: see "Memory layout" above.
        grid = torch.zeros(r, r, r, self.feature_dim)
        initial = config.init_sigma if config.density_activation else math.log(config.init_sigma)
        grid[..., 0] = initial
        self.grid = nn.Parameter(grid.permute(3, 0, 1, 2))

    # -- φ¹ / φ² ----------------------------------------------------------------------------
    def _raw(self, stored: torch.Tensor) -> torch.Tensor:
        """Raw density ``ln σ`` of interpolated stored density values (module docstring)."""
        if self.config.density_activation is None:
            return stored
        return log_density(stored, self.config.density_activation)

    def phi1(self, x: torch.Tensor) -> torch.Tensor:
        v = trilinear_dense(self.grid, self.normalize(x))
        if self.config.density_activation is None:
            return v
        return torch.cat((self._raw(v[:, :1]), v[:, 1:]), dim=-1)

    def phi2(self, v: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = activate_density(v[:, 0], self.config.sigma_clip)
        coefficients = v[:, 1:].view(-1, 3, self.config.sh_basis)
        return sigma, sh_colour(coefficients, d, self.config.colour)

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """The grid at ``base_lr · lr_scale``: 10 × the base 1e-2 gives 0.1, DVGO's Adam rate for
        its dense density and colour grids (Sun et al., CVPR 2022); svox2's RMSprop rates (σ: 30,
        SH: 1e-2) do not carry over to Adam. At 1e-2 a 64-px, 5-minute run could not move
        ``sigma_raw`` from its initial −2.3 to an opaque value (17.9 dB test PSNR on
        ``texture``; 24.8 dB at 10×)."""
        return [{"params": [self.grid], "lr": base_lr * self.config.lr_scale}]

    def sigma_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Interpolates the density channel alone (1 of 28 channels: the cheap path)."""
        check_points(x, "x")
        return self._raw(trilinear_dense(self.grid[:1], self.normalize(x))[:, 0])

    # -- training ---------------------------------------------------------------------------
    def regularizer(self) -> torch.Tensor:
        """Weighted TV on density and SH plus L1 on density over random cells (module docstring)."""
        c = self.config
        r = c.resolution
        rows = self.vertex_values()
        cells = self._tv_cells()
        here = rows[cells]
        scale = r / TV_REFERENCE_RESOLUTION
        squared = sum(((rows[cells + step] - here) * scale) ** 2 for step in (r * r, r, 1))
        tv = torch.sqrt(TV_EPS + squared).sum(dim=0)  # per channel, summed over the cells
        total = c.tv_density_weight * tv[0] + c.tv_sh_weight * tv[1:].sum()
        if c.l1_density_weight > 0:
            sigma = activate_density(self._raw(here[:, 0]), c.sigma_clip)
            total = total + c.l1_density_weight * sigma.sum()
        return total

    def _tv_cells(self) -> torch.Tensor:
        """Flat indices of the lower corners of the cells the regulariser visits this call."""
        r = self.config.resolution
        device = self.grid.device
        if self.config.tv_fraction >= 1.0:
            ijk = torch.arange(r - 1, device=device)
            i, j, k = torch.meshgrid(ijk, ijk, ijk, indexing="ij")
            return (i * r * r + j * r + k).flatten()
        count = max(1, round(self.config.tv_fraction * (r - 1) ** 3))
        i, j, k = torch.randint(0, r - 1, (3, count), device=device)
        return i * r * r + j * r + k

    # -- helpers ----------------------------------------------------------------------------
    def vertex_values(self) -> torch.Tensor:
        """The stored values ``[R³, 28]``, one row per vertex in storage order (a view of
        ``grid`` in its channel-last memory; rows match :meth:`vertex_positions`)."""
        return self.grid.permute(1, 2, 3, 0).reshape(-1, self.feature_dim)

    def vertex_positions(self) -> torch.Tensor:
        """Model-space positions ``[R³, 3]`` of the vertices in storage order: row
        ``n = i·R² + j·R + k`` is vertex ``grid[:, i, j, k]`` (``z`` fastest), the row order of
        :meth:`vertex_values` and of the checkpoint's ``grid.reshape(28, -1)`` columns."""
        r = self.config.resolution
        steps = torch.linspace(0.0, 1.0, r, device=self.aabb.device)
        u = torch.stack(torch.meshgrid(steps, steps, steps, indexing="ij"), dim=-1).view(-1, 3)
        lo, hi = self.aabb[0], self.aabb[1]
        return lo + u * (hi - lo)
