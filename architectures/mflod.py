"""MFLOD: Multiplicative Fourier Level of Detail (Dou et al., CVPR 2023).

No official code is published; this follows the paper's description as summarised in
ARCHITECTURES.md ("MFLOD"). φ¹ (``u`` = the point normalised to the unit cube of the AABB):

1. a multi-level feature grid, one level per level of detail ``l = 1..L`` (tree-structured as in
   NGLOD / Instant-NGP): level ``l`` has ``R_l = base_resolution · 2^(l−1)`` vertices per axis,
   each holding ``F`` features, trilinearly interpolated to ``e_l(u)``;
2. LayerNorm after interpolation, ``f_l = LN(e_l)``;
3. a sinusoidal filter per level, ``s_l = sin(Ω_l f_l + φ_l)`` (``Ω_l``: ``h × F``);
4. the multiplicative "transform-combine" recursion (the multiplicative filter network of
   Fathony et al., ICLR 2021, with grid features in place of coordinates):
   ``z_1 = s_1``, ``z_l = (W_l z_{l−1} + b_l) ⊙ s_l``;
5. a linear head per level, ``y_l = U_l z_l + c_l`` (16 channels), so ``y_l`` is a sum of sines
   whose count grows with ``l`` and depends on levels ``<= l`` only.

φ² is the canonical decoder (DESIGN.md). Initialisation (paper, BACON style): ``W_l, U_l ~
U(±√(6/h))``, ``φ_l ~ U(−π, π)``, ``Ω_l ~ U(±B_l/√F)`` with ``B_l`` geometric across levels. With
``E[s²] = 1/2`` these keep ``E[z_l²]`` near 1/2 at every level and give ``y`` unit variance.

pvd's choices (the paper is silent or its code unpublished). Figures quoted come from a
micro-fit: φ¹ regressing a 16-channel analytic target (a density step on two solids and 15
sinusoids) at ``cpu`` sizes, 2,048 random points per step, 300 Adam steps at lr 1e-2; error =
held-out MSE / channel variance ("relative MSE"), one seed per setting (seeds differed by up to
3× on the non-density channels, so only large gaps count):

- ``v = y_L``, the finest head; ``phi1(x, lod=l)`` / ``forward(x, d, lod=l)`` return ``y_l``, a
  coarser level of detail, computed from levels ``1..l`` only (finer levels are not evaluated).
- Coarse heads would get no gradient from a loss on ``v`` alone. :meth:`MFLOD.regularizer`
  therefore fits them, at ``lod_samples`` uniform points of the box, to the finest output with
  the trunk's states and the target gradient-stopped: only the coarse heads learn from it, so
  the levels of detail cost ``v`` nothing, whatever the scale of the trainer's main loss (a
  photometric MSE of ~1e-3 would otherwise be swamped by errors on ``v``). BACON (Lindell et al.,
  CVPR 2022) instead supervises every output jointly; in the micro-fit (``F = 8``) that joint
  form gave no better levels of detail (level 3 of 6: relative MSE 0.063/0.280 density/other
  channels, against 0.061/0.254 for heads only) in 54 s of fitting against 22 s. The gradient
  reaches the heads alone, so under Adam ``lod_weight`` only switches the term on (> 0) and
  sets what it adds to a logged loss; 1e-3 keeps that near a 30 dB photometric MSE. MFLOD has
  no training schedule, so ``on_train_step`` keeps the base class's no-op.
- Vertex ``i`` of a level sits at ``u = i / (R_l − 1)`` (``align_corners=True``, so every level
  spans the box exactly); points outside the box are clamped to its surface.
- A level is a dense grid when ``R_l <= max_dense_resolution`` (64: "hashed above 64³") or when its
  ``R_l³`` vertices fit in the table anyway; otherwise a table of ``T = 2^log2_table_size``
  entries indexed by the Instant-NGP spatial hash (Müller et al. 2022, eq. 4: ``x·1 ⊕
  y·2654435761 ⊕ z·805459861`` in uint32, ``mod T``). Dense levels run through ``grid_sample``
  (:func:`~architectures.components.trilinear_dense`), hashed ones gather their 8 corners.
- LayerNorm has no affine parameters: a gain ``γ`` and bias ``β`` would enter the filter as
  ``Ω(γ ⊙ n + β) + φ = (Ω diag γ) n + (Ωβ + φ)``, which ``Ω`` and ``φ`` already express.
- LayerNorm eps stays at PyTorch's 1e-5 and the grid is initialised ``U(±0.1)`` (variance
  3.3e-3 per value), so LN normalises from the first step instead of changing regime as features
  grow (with Instant-NGP's ``U(±1e-4)`` the variance, ~3e-9, is eps-dominated). Measured over
  200k points at init: the median per-point variance of an interpolated feature vector is 57×
  eps for ``F = 4`` (0.2% of points below eps) and 75× for ``F = 8`` (none below). LN makes the
  field invariant to the scale of a level's features, so under Adam the grid's relative step is
  ``lr / |feature|``; a spread of 0.1 keeps it near 0.1 at the default rate 1e-2 (a spread of 1
  fitted worse in the micro-fit: relative MSE 0.73 vs 0.43 on the non-density channels).
- ``F >= 4``: LayerNorm over 2 values maps every pair to ±(1, −1) and destroys the features. LN
  removes two degrees of freedom (mean and scale) from each level, so ``F = 8`` leaves 6 where
  ``F = 4`` leaves 2; the ``cpu`` preset uses 8 (see recipes/mflod.toml).
- ``B_l = bandwidth · bandwidth_growth^(l−1)`` with defaults 0.1 and √2: ``B = 0.1, 0.14, 0.2,
  0.28, 0.4, 0.57, 0.8, 1.13`` for levels 1..8. Because LN's output has unit scale whatever the
  grid's, the filter phase ``Ω_l f_l`` starts as spatial noise at the level's vertex spacing with
  standard deviation ``B_l/√3`` rad, and a product of noisy levels is noise. A small ``B`` starts
  every level near ``s_l ≈ sin φ_l`` (a smooth field, as Instant-NGP's near-zero grid is) and
  lets training grow ``Ω`` where detail is needed. In the micro-fit ``bandwidth = 1`` learned
  nothing (relative MSE 1.00 with ``F = 4`` and ``F = 8``) where 0.1 reached 0.06 on density.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import CanonicalField, FieldConfig, check_points, require
from .components import activate_density, trilinear_dense
from .registry import register

#: Instant-NGP's hash primes (Müller et al. 2022, eq. 4).
_HASH_PRIMES = (1, 2654435761, 805459861)
_UINT32 = 0xFFFFFFFF
#: Half-width of the uniform grid initialisation (see the module docstring, LayerNorm eps).
_GRID_INIT = 0.1
#: PyTorch's LayerNorm default, kept (see the module docstring).
_LAYERNORM_EPS = 1e-5


@dataclasses.dataclass
class MFLODConfig(FieldConfig):
    """MFLOD. Defaults are the paper-like configuration (``paper`` preset): 8 levels doubling from
    16 to 2048 vertices per axis, ``F = 4``, dense up to 64³, hashed above with ``T = 2^19``,
    hidden width 64."""

    levels: int = 8
    features: int = 4
    base_resolution: int = 16
    max_dense_resolution: int = 64
    log2_table_size: int = 19
    hidden_width: int = 64
    bandwidth: float = 0.1
    bandwidth_growth: float = math.sqrt(2.0)
    lod_weight: float = 1e-3
    lod_samples: int = 4096

    def validate(self) -> None:
        super().validate()
        require(1 <= self.levels <= 12, f"levels must be in 1..12, got {self.levels}")
        require(
            self.features >= 4,
            f"features must be >= 4 (LayerNorm over fewer than 4 values destroys them: it maps "
            f"every pair to ±(1, -1)), got {self.features}",
        )
        require(self.features <= 64, f"features must be <= 64, got {self.features}")
        require(
            2 <= self.base_resolution <= 512,
            f"base_resolution must be in 2..512, got {self.base_resolution}",
        )
        require(
            self.base_resolution * 2 ** (self.levels - 1) <= 2**16,
            f"base_resolution · 2^(levels − 1) must be <= 65536, got "
            f"{self.base_resolution * 2 ** (self.levels - 1)}",
        )
        require(
            0 <= self.max_dense_resolution <= 256,
            f"max_dense_resolution must be in 0..256, got {self.max_dense_resolution}",
        )
        require(
            10 <= self.log2_table_size <= 24,
            f"log2_table_size must be in 10..24, got {self.log2_table_size}",
        )
        require(self.hidden_width >= 1, f"hidden_width must be >= 1, got {self.hidden_width}")
        require(
            math.isfinite(self.bandwidth) and self.bandwidth > 0,
            f"bandwidth must be > 0, got {self.bandwidth}",
        )
        require(
            math.isfinite(self.bandwidth_growth) and self.bandwidth_growth >= 1,
            f"bandwidth_growth must be >= 1, got {self.bandwidth_growth}",
        )
        require(
            math.isfinite(self.lod_weight) and self.lod_weight >= 0,
            f"lod_weight must be >= 0, got {self.lod_weight}",
        )
        require(self.lod_samples >= 1, f"lod_samples must be >= 1, got {self.lod_samples}")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Vertices per axis of each level, coarse to fine."""
        return tuple(self.base_resolution * 2**level for level in range(self.levels))

    def is_dense(self, resolution: int) -> bool:
        """Whether a level of ``resolution`` vertices per axis is stored dense (else hashed)."""
        return resolution <= self.max_dense_resolution or resolution**3 <= 2**self.log2_table_size


def spatial_hash(corner: torch.Tensor) -> torch.Tensor:
    """Instant-NGP's spatial hash of integer vertices ``[..., 3]`` (uint32 arithmetic, as int64)."""
    return (
        corner[..., 0]
        ^ ((corner[..., 1] * _HASH_PRIMES[1]) & _UINT32)
        ^ ((corner[..., 2] * _HASH_PRIMES[2]) & _UINT32)
    )


class MFLODLevel(nn.Module):
    """One level of detail: feature grid, LayerNorm, sinusoidal filter, transform and head.

    ``grid`` is ``[F, R, R, R]`` (x-major, as :func:`trilinear_dense` reads it) when dense, else a
    hash table ``[T, F]``. ``filter`` holds ``Ω_l`` (weight) and ``φ_l`` (bias); ``transform``
    (``W_l``, ``b_l``) is absent on the first level; ``head`` is ``U_l``, ``c_l``. Biases ``b_l``
    and ``c_l`` keep PyTorch's default ``U(±1/√h)``.
    """

    def __init__(
        self,
        resolution: int,
        table_size: int | None,
        features: int,
        hidden: int,
        bandwidth: float,
        first: bool,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.dense = table_size is None
        shape = (features, *(resolution,) * 3) if table_size is None else (table_size, features)
        self.grid = nn.Parameter(torch.empty(shape).uniform_(-_GRID_INIT, _GRID_INIT))
        self.filter = nn.Linear(features, hidden)
        omega = bandwidth / math.sqrt(features)
        nn.init.uniform_(self.filter.weight, -omega, omega)
        nn.init.uniform_(self.filter.bias, -math.pi, math.pi)
        bound = math.sqrt(6.0 / hidden)
        self.transform = None if first else nn.Linear(hidden, hidden)
        if self.transform is not None:
            nn.init.uniform_(self.transform.weight, -bound, bound)
        self.head = nn.Linear(hidden, 16)
        nn.init.uniform_(self.head.weight, -bound, bound)
        corners = torch.tensor([[(c >> k) & 1 for k in range(3)] for c in range(8)])
        self.register_buffer("_corners", corners, persistent=False)

    def interpolate(self, u: torch.Tensor) -> torch.Tensor:
        """Trilinear interpolation of the level's features at ``u`` in [0, 1]³ → ``[N, F]``."""
        if self.dense:
            return trilinear_dense(self.grid, u)
        pos = u * (self.resolution - 1)
        floor = pos.floor().clamp(max=self.resolution - 2)
        frac = pos - floor
        corner = floor.to(torch.int64)[:, None, :] + self._corners  # [N, 8, 3]
        index = spatial_hash(corner) % self.grid.shape[0]
        weight = torch.where(self._corners.bool(), frac[:, None, :], 1.0 - frac[:, None, :])
        return (self.grid[index] * weight.prod(-1)[..., None]).sum(1)

    def combine(self, u: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """``z_l = (W_l z_{l−1} + b_l) ⊙ sin(Ω_l LN(e_l(u)) + φ_l)``; ``z_1 = s_1``."""
        e = self.interpolate(u)
        s = torch.sin(self.filter(F.layer_norm(e, e.shape[-1:], eps=_LAYERNORM_EPS)))
        if self.transform is None or z is None:  # level 1: z_1 = s_1
            return s
        return self.transform(z) * s


@register
class MFLOD(CanonicalField):
    """Multiplicative Fourier Level of Detail with the canonical decoder (see module docstring)."""

    arch = "mflod"
    config_class = MFLODConfig

    def __init__(self, config: MFLODConfig) -> None:
        super().__init__(config)
        table_size = 2**config.log2_table_size
        self.levels = nn.ModuleList(
            MFLODLevel(
                resolution,
                None if config.is_dense(resolution) else table_size,
                config.features,
                config.hidden_width,
                config.bandwidth * config.bandwidth_growth**level,
                first=level == 0,
            )
            for level, resolution in enumerate(config.resolutions)
        )

    def check_lod(self, lod: int | None) -> int:
        """``lod`` as a level count in ``1..L`` (``None`` = the finest level, ``L``)."""
        count = len(self.levels)
        if lod is None:
            return count
        if isinstance(lod, bool) or not isinstance(lod, numbers.Integral) or not 1 <= lod <= count:
            raise ValueError(f"lod must be an integer level of detail in 1..{count}, got {lod!r}")
        return int(lod)

    def _state(self, x: torch.Tensor, lod: int) -> torch.Tensor:
        """``z_lod`` at model-space points ``x`` (levels ``1..lod`` only)."""
        u = self.normalize(x).clamp(0.0, 1.0)
        z = self.levels[0].combine(u, None)
        for level in self.levels[1:lod]:
            z = level.combine(u, z)
        return z

    def phi1(self, x: torch.Tensor, lod: int | None = None) -> torch.Tensor:
        """``v = y_lod`` ``[N, 16]``: the finest head ``y_L`` unless ``lod`` is given."""
        lod = self.check_lod(lod)
        return self.levels[lod - 1].head(self._state(x, lod))

    def forward(
        self, x: torch.Tensor, d: torch.Tensor, lod: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``phi2(phi1(x, lod), d)``: density and colour at level of detail ``lod``."""
        check_points(x, "x")
        check_points(d, "d")
        if d.shape[0] != x.shape[0]:
            raise ValueError(
                f"x and d must have the same length, got {x.shape[0]} and {d.shape[0]}"
            )
        return self.phi2(self.phi1(x, lod), d)

    def sigma_raw(self, x: torch.Tensor, lod: int | None = None) -> torch.Tensor:
        """Channel 0 of ``y_lod``, computing only that row of the head."""
        check_points(x, "x")
        lod = self.check_lod(lod)
        head = self.levels[lod - 1].head
        return F.linear(self._state(x, lod), head.weight[:1], head.bias[:1])[:, 0]

    def density(self, x: torch.Tensor, lod: int | None = None) -> torch.Tensor:
        """``sigma >= 0`` ``[N]`` at level of detail ``lod`` (the finest by default)."""
        return activate_density(self.sigma_raw(x, lod), self.config.sigma_clip)

    def regularizer(self) -> torch.Tensor:
        """Training of the coarse heads: ``lod_weight`` times the mean over ``l < L`` of
        ``mean((U_l sg(z_l) + c_l − sg(y_L))²)`` at ``lod_samples`` uniform points of the box
        (``sg``: stop gradient), so only the coarse heads learn from it (module docstring)."""
        config = self.config
        if config.lod_weight == 0 or len(self.levels) == 1:
            return self.aabb.new_zeros(())
        u = torch.rand(config.lod_samples, 3, device=self.aabb.device)
        with torch.no_grad():
            states = [self.levels[0].combine(u, None)]
            for level in self.levels[1:]:
                states.append(level.combine(u, states[-1]))
            target = self.levels[-1].head(states[-1])
        errors = [
            F.mse_loss(level.head(z), target)
            for level, z in zip(self.levels[:-1], states[:-1], strict=True)
        ]
        return config.lod_weight * torch.stack(errors).mean()

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Grids, then networks (filters, transforms, heads, decoder), both at ``base_lr``: in the
        micro-fit of the module docstring, networks at 0.3× fitted worse (relative MSE 0.16 vs
        0.08 on the 15 non-density channels, one seed)."""
        grids = [level.grid for level in self.levels]
        ids = {id(p) for p in grids}
        networks = [p for p in self.parameters() if id(p) not in ids]
        return [{"params": grids, "lr": base_lr}, {"params": networks, "lr": base_lr}]
