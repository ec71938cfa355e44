"""TensoRF with the vector-matrix (VM) decomposition (Chen et al., ECCV 2022), canonical decoder.

φ¹. The density and appearance grids are factorised into vector-matrix products (paper §3, VM
decomposition, applied to both grids in §4.2). With the three orientations ``m`` — plane XY with
line Z, plane XZ with line Y, plane YZ with line X (TensoRF's ``matMode = [[0, 1], [0, 2],
[1, 2]]``, ``vecMode = [2, 1, 0]``) —

- density: ``sigma_raw(x) = Σ_m Σ_{r<R_σ} P^σ_{m,r}(x_a, x_b)·L^σ_{m,r}(x_c) + shift``
  (``shift`` = the config's ``density_shift``, a pvd choice, see below);
- appearance: the ``3·R_c`` products ``P^c_{m,r}·L^c_{m,r}``, concatenated orientation-major, go
  through the basis matrix ``B`` (Linear(3·R_c → 15), no bias) to ``g``;
- ``v = [sigma_raw, g]``; φ² is the shared canonical decoder (as in the reference PVD code).

Planes and lines are sampled bilinearly / linearly with ``align_corners=True`` (vertex ``i`` of an
axis with ``n`` vertices sits at ``u = i / (n − 1)`` of the box), in TensoRF's tensor layout, so a
later importer can copy the factors: plane ``m`` is ``[1, R, n[b], n[a]]`` (rows along the
second plane axis) and line ``m`` is ``[1, R, n[c], 1]`` (``models/tensoRF.py::TensorVMSplit``).

Training mechanics, as in TensoRF's ``train.py`` and ``configs/lego.txt``:

- init ``0.1·N(0, 1)`` for every plane and line; the basis has torch's default Linear init;
- coarse-to-fine: the grid starts at ``initial_resolution³`` voxels and is upsampled at the
  ``upsample_fractions`` of the run (lego: steps 2k, 3k, 4k, 5.5k, 7k of 30k) to voxel counts
  spaced evenly in log space up to ``final_resolution³`` (``N_voxel_list``); per-axis sizes come
  from the voxel count and the box shape (``N_to_reso``). Upsampling resizes every plane and
  line by bilinear / linear interpolation with ``align_corners=True`` (``up_sampling_VM``), and
  the trainer rebuilds its optimizer (TensoRF resets the learning rates at each upsample);
- L1 on the density factors, ``Σ_m mean|P^σ_m| + mean|L^σ_m|`` (``density_L1``), weighted by
  ``l1_weight`` (8e-5) and by ``l1_weight_rest`` (4e-5) once the first upsample has happened;
- optional TV (``TVLoss``: twice the mean squared forward difference along each axis) on planes
  and, at a tenth of the weight, on lines (``TV_loss_density``/``TV_loss_app``: 1e-2 and 1e-3);
- learning rates 2e-2 for the factors and 1e-3 for the basis and decoder (``lr_init``,
  ``lr_basis``), Adam with betas (0.9, 0.99).

pvd's choices (where it departs from, or goes beyond, the original):

- The decoder is the canonical φ², not TensoRF's ``softplus(σ − 10)`` and PE-MLP renderer
  (those are the variants below, for imported TensoRF teachers).
- ``density_shift`` (a constant added to ``sigma_raw``; default ``−10 + ln 25 ≈ −6.78``): with
  ``sigma = exp(sigma_raw)``, zero factors would mean a density of 1 everywhere, so the L1 prior
  would pull empty space towards fog. TensoRF shifts by −10 before softplus (≈ exp(f − 10) for
  small f) and multiplies σ by ``distance_scale = 25``; folding both into the shift gives zero
  factors TensoRF's own empty-space density. A warm start fitting ``sigma_raw`` must subtract it.
- The current per-axis vertex counts ``grid_size`` live in the config, so a checkpoint written
  after upsampling rebuilds its shapes exactly; how far the schedule has got is read from it.
- The box is fixed: TensoRF's alpha-mask box shrinking and ray filtering are the renderer's job
  (pvd's occupancy grid), and so is its learning-rate decay (to 0.1 over the run); TV weights do
  not decay. TV on lines skips their singleton axis (TensoRF's ``TVLoss`` divides 0 by 0 there).
- Points outside the box are clamped to its surface (TensoRF masks them out of the ray).
- Voxel counts are turned into per-axis sizes in float64 with a 1e-6 tolerance before flooring,
  so ``128³`` gives 128 (TensoRF's config writes 2097156 instead of 128³ to dodge that floor).

Warm-start helpers: :func:`cp_to_vm` rearranges a CP decomposition exactly into VM factors and
:func:`vm_to_dense` expands VM factors back into a dense grid.

Variants for imported teachers (``pvd.importers``; the defaults are the canonical field above, so
existing checkpoints load unchanged). They reproduce the original tools' forward passes exactly:

- ``density_activation``: ``None`` (pvd's ``trunc_exp``), ``"softplus"`` (official TensoRF,
  ``models/tensorBase.py::feature2density``: ``softplus(f + density_shift)``) or ``"relu"``
  (TensoRF's ``fea2denseAct relu``, nerfstudio's ``tensorf_field.py``: ``relu(f + shift)``), and
  ``density_scale`` multiplies the activated density (TensoRF's ``distance_scale`` 25, which it
  applies to the sample spacing — the same thing). **Raw density convention:** channel 0 of
  ``v`` (``sigma_raw``) is always pvd's log density, ``ln σ``: for ``None`` it is
  ``f + shift + ln(scale)``, for the others ``ln(max(scale · act(f + shift), e^-20))``. So the
  shared decoder's ``trunc_exp`` gives the tool's σ back (to within the floor density e⁻²⁰ ≈ 2e-9
  per unit where the tool has exactly 0), distillation's clip range ``[−2, 7]`` means the same
  densities for every variant, and a canonical student learns channel 0 directly.
- ``decoder``: ``None`` (the canonical φ²); ``"tensorf_mlp"`` (TensoRF's ``MLPRender_Fea`` /
  ``MLPRender`` in ``models/tensoRF.py`` and nerfstudio's ``mlp_head`` + ``field_output_rgb``):
  ``rgb = sigmoid(MLP([f, d, PE(f), PE(d)]))`` with ``f`` the ``app_dim`` basis outputs,
  ``PE(x) = [sin(x·ω), cos(x·ω)]`` over the multipliers ``feature_frequencies`` /
  ``view_frequencies`` (channel-major, all sines first: TensoRF's ``positional_encoding`` with
  ω = 2^k, nerfstudio's ``NeRFEncoding`` with ω = 2π·2^linspace(0, 2, 2)), and the MLP
  ``Linear(in, mlp_width) ReLU Linear(mlp_width, mlp_width) ReLU Linear(mlp_width, 3)`` with
  biases; or ``"tensorf_sh"`` (TensoRF's ``SHRender``): ``rgb = relu(Σ_k SH_k(d)·f_{c,k} + 0.5)``
  with ``f`` read as ``[3, app_dim/3]`` (colour-major). Both set ``canonical = False`` on the
  instance and ``feature_dim = 1 + app_dim`` (``v = [ln σ, f]``), so distillation neither
  inherits their decoder nor compares ``f`` with a canonical student's ``g``. pvd's contract has
  ``rgb`` in [0, 1]: ``tensorf_sh`` is clamped at 1 per sample where TensoRF clamps only the
  composited pixel (identical wherever the original's sample colours stay within 1).
- An alpha mask (``alpha_mask_size``/``alpha_mask_aabb`` and the bool buffer ``alpha_mask``
  ``[x, y, z]``): TensoRF's ``AlphaGridMask`` keeps a sample only where the trilinear
  interpolation of the binary volume (``grid_sample``, ``align_corners=True``, zero padding) is
  > 0; elsewhere the density is 0 (raw ``ln σ`` = the floor). Evaluated exactly, without the
  float copy of the volume: a point is kept when a corner with positive weight is set.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple, Self

import torch
import torch.nn.functional as F
from torch import nn

from .base import CanonicalField, FieldConfig, check_points, require
from .components import LOG_DENSITY_FLOOR, activate_density, log_density, sh_colour
from .registry import register

#: Plane axes ``(a, b)`` of orientation ``m`` (TensoRF's ``matMode``): XY, XZ, YZ.
MAT_MODES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))
#: Line axis ``c`` of orientation ``m`` (TensoRF's ``vecMode``): Z, Y, X.
VEC_MODES: tuple[int, ...] = (2, 1, 0)
#: Weight of a line's TV relative to its plane's (TensoRF ``TV_loss_density``: 1e-3 vs 1e-2).
_LINE_TV_RATIO = 0.1
#: TensoRF's lego schedule: upsampling steps out of a 30k-step run.
_PAPER_UPSAMPLE_STEPS = (2000, 3000, 4000, 5500, 7000)
#: Density activations of the variants (module docstring); ``None`` is pvd's ``trunc_exp``.
DENSITY_ACTIVATIONS = ("softplus", "relu")
#: Decoders of the variants (module docstring); ``None`` is the canonical φ².
DECODERS = ("tensorf_mlp", "tensorf_sh")


def grid_size_for_voxels(n_voxels: float, aabb: Sequence[float]) -> tuple[int, int, int]:
    """Per-axis vertex counts for ``n_voxels`` over the box ``aabb`` (TensoRF's ``N_to_reso``).

    Cubic voxels: ``voxel = (volume / n_voxels)^(1/3)`` and ``size_i = floor(extent_i / voxel)``
    (in float64, with a 1e-6 tolerance so an exact cube is not floored one short).
    """
    extent = [aabb[i + 3] - aabb[i] for i in range(3)]
    voxel = (math.prod(extent) / n_voxels) ** (1.0 / 3.0)
    a, b, c = (max(2, math.floor(e / voxel + 1e-6)) for e in extent)
    return a, b, c


@dataclasses.dataclass
class TensoRFConfig(FieldConfig):
    """TensoRF VM. Defaults are the paper's configuration (``paper`` preset, lego config).

    ``grid_size`` is the *current* per-axis vertex count; left out it is the schedule's start
    (``initial_resolution³`` voxels over the box) and it grows as the field is upsampled.
    ``upsample_fractions`` are the upsampling points as fractions of the training run.
    The keys from ``density_activation`` on describe the variants of imported teachers (module
    docstring); their defaults are pvd's canonical TensoRF.
    """

    density_components: int = 16
    appearance_components: int = 48
    initial_resolution: int = 128
    final_resolution: int = 300
    upsample_fractions: tuple[float, ...] = tuple(s / 30000 for s in _PAPER_UPSAMPLE_STEPS)
    grid_size: tuple[int, int, int] | None = None
    init_std: float = 0.1
    density_shift: float = -10.0 + math.log(25.0)
    l1_weight: float = 8e-5
    l1_weight_rest: float = 4e-5
    tv_weight_density: float = 0.0
    tv_weight_appearance: float = 0.0
    factor_lr_scale: float = 2.0
    basis_lr_scale: float = 0.1
    density_activation: str | None = None
    density_scale: float = 1.0
    decoder: str | None = None
    app_dim: int = 27
    feature_frequencies: tuple[float, ...] = (1.0, 2.0)
    view_frequencies: tuple[float, ...] = (1.0, 2.0)
    mlp_width: int = 128
    alpha_mask_size: tuple[int, int, int] | None = None
    alpha_mask_aabb: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        box_ok = len(self.aabb) == 6 and all(self.aabb[i] < self.aabb[i + 3] for i in range(3))
        if self.grid_size is None and self.initial_resolution >= 2 and box_ok:
            self.grid_size = grid_size_for_voxels(self.initial_resolution**3, self.aabb)

    def validate(self) -> None:
        super().validate()
        for key in ("density_components", "appearance_components"):
            value = getattr(self, key)
            require(value >= 1, f"{key} must be >= 1, got {value}")
        require(
            self.initial_resolution >= 2,
            f"initial_resolution must be >= 2, got {self.initial_resolution}",
        )
        require(
            self.final_resolution >= self.initial_resolution,
            f"final_resolution ({self.final_resolution}) must be >= initial_resolution "
            f"({self.initial_resolution})",
        )
        fractions = self.upsample_fractions
        require(
            all(0.0 < f < 1.0 for f in fractions)
            and all(a < b for a, b in itertools.pairwise(fractions)),
            f"upsample_fractions must increase strictly within (0, 1), got {list(fractions)}",
        )
        size = self.grid_size or ()
        require(
            len(size) == 3 and all(isinstance(n, int) and n >= 2 for n in size),
            f"grid_size must be 3 integers >= 2, got {self.grid_size}",
        )
        require(self.init_std > 0, f"init_std must be > 0, got {self.init_std}")
        require(
            math.isfinite(self.density_shift),
            f"density_shift must be finite, got {self.density_shift}",
        )
        for key in ("l1_weight", "l1_weight_rest", "tv_weight_density", "tv_weight_appearance"):
            value = getattr(self, key)
            require(value >= 0, f"{key} must be >= 0, got {value}")
        for key in ("factor_lr_scale", "basis_lr_scale"):
            value = getattr(self, key)
            require(value > 0, f"{key} must be > 0, got {value}")
        self._validate_variant()

    def _validate_variant(self) -> None:
        require(
            self.density_activation in (None, *DENSITY_ACTIVATIONS),
            f"density_activation must be null (trunc_exp) or one of "
            f"{', '.join(DENSITY_ACTIVATIONS)}, got {self.density_activation!r}",
        )
        require(
            math.isfinite(self.density_scale) and self.density_scale > 0,
            f"density_scale must be > 0, got {self.density_scale}",
        )
        require(
            self.decoder in (None, *DECODERS),
            f"decoder must be null (canonical) or one of {', '.join(DECODERS)}, "
            f"got {self.decoder!r}",
        )
        require(self.app_dim >= 1, f"app_dim must be >= 1, got {self.app_dim}")
        if self.decoder == "tensorf_sh":
            basis = self.app_dim // 3
            require(
                self.app_dim % 3 == 0 and basis in (1, 4, 9, 16),
                f"app_dim must be 3 × 1, 4, 9 or 16 SH coefficients for the tensorf_sh decoder, "
                f"got {self.app_dim}",
            )
        for key in ("feature_frequencies", "view_frequencies"):
            values = getattr(self, key)
            require(
                all(math.isfinite(v) and v > 0 for v in values),
                f"{key} must be positive numbers, got {list(values)}",
            )
        require(self.mlp_width >= 1, f"mlp_width must be >= 1, got {self.mlp_width}")
        mask_size, mask_box = self.alpha_mask_size, self.alpha_mask_aabb
        require(
            (mask_size is None) == (mask_box is None),
            "alpha_mask_size and alpha_mask_aabb must be given together",
        )
        if mask_size is not None and mask_box is not None:
            require(
                len(mask_size) == 3 and all(n >= 2 for n in mask_size),
                f"alpha_mask_size must be 3 integers >= 2, got {mask_size}",
            )
            require(
                len(mask_box) == 6 and all(mask_box[i] < mask_box[i + 3] for i in range(3)),
                f"alpha_mask_aabb must be 6 numbers with min < max, got {mask_box}",
            )

    def replace(self, **changes: Any) -> Self:
        """As :meth:`FieldConfig.replace`; restarts ``grid_size`` when the box or start changes."""
        if {"aabb", "initial_resolution"} & set(changes) and "grid_size" not in changes:
            changes["grid_size"] = None
        return super().replace(**changes)

    def schedule(self) -> list[tuple[int, int, int]]:
        """Grid sizes of the coarse-to-fine schedule: the start, then one per upsample.

        Voxel counts spaced evenly in log space from ``initial_resolution³`` to
        ``final_resolution³`` and rounded (TensoRF's ``N_voxel_list``), then sized to the box.
        """
        k = len(self.upsample_fractions)
        lo, hi = 3 * math.log(self.initial_resolution), 3 * math.log(self.final_resolution)
        counts = [
            round(math.exp(lo + (hi - lo) * i / k)) if k else round(math.exp(lo))
            for i in range(k + 1)
        ]
        return [grid_size_for_voxels(n, self.aabb) for n in counts]

    def upsample_steps(self, total_steps: int) -> list[int]:
        """The training steps at which the grid is upsampled in a run of ``total_steps``."""
        return [round(f * total_steps) for f in self.upsample_fractions]

    def level(self) -> int:
        """How many scheduled upsamples ``grid_size`` has reached (0 = still at the start)."""
        size = self.grid_size or (0, 0, 0)
        return sum(
            all(n >= m for n, m in zip(size, target, strict=True)) for target in self.schedule()[1:]
        )


class VMFactors(NamedTuple):
    """VM factors in the field's layout: per orientation ``m`` (see :data:`MAT_MODES`), a plane
    ``[1, R, n[b], n[a]]`` and a line ``[1, R, n[c], 1]``; ``basis`` ``[C, 3R]`` maps the
    concatenated component features to ``C`` channels (``None`` for a single summed channel)."""

    planes: list[torch.Tensor]
    lines: list[torch.Tensor]
    basis: torch.Tensor | None = None


def vm_to_dense(planes: Sequence[torch.Tensor], lines: Sequence[torch.Tensor]) -> torch.Tensor:
    """Every component of VM factors at every vertex: ``[3R, nx, ny, nz]`` (orientation-major).

    Summing over the first axis gives the density grid (before the shift); ``basis`` applied
    over the first axis gives the appearance channels. Vertex ``(i, j, k)`` is where the field
    samples ``u = (i, j, k) / (n − 1)``.
    """
    out = []
    for m, (plane, line) in enumerate(zip(planes, lines, strict=True)):
        (a, b), c = MAT_MODES[m], VEC_MODES[m]
        p, v = plane[0], line[0, :, :, 0]  # [R, n_b, n_a], [R, n_c]
        axis = "ijk"  # einsum letters of the grid axes x, y, z
        out.append(torch.einsum(f"r{axis[b]}{axis[a]},r{axis[c]}->rijk", p, v))
    return torch.cat(out, dim=0)


def cp_to_vm(
    factors: Sequence[torch.Tensor],
    weights: torch.Tensor | None = None,
    components: int | None = None,
) -> VMFactors:
    """Rearrange a CP decomposition exactly into VM factors (DESIGN.md, warm starts).

    ``factors`` are tensorly's CP factor matrices ``[nx, K]``, ``[ny, K]``, ``[nz, K]`` and
    optionally a channel factor ``[C, K]``; ``weights`` ``[K]`` (tensorly's CP weights). Each CP
    term ``w·(a ⊗ b ⊗ c)`` becomes one VM component: the factor along the orientation's line axis
    is the line and the outer product of the other two is a rank-1 plane. Terms are dealt
    round-robin to the orientations XY-Z, XZ-Y, YZ-X (term ``k`` to orientation ``k mod 3``, slot
    ``k // 3``); with a channel factor, its column becomes the component's basis column.

    ``components`` slots per orientation (default ``ceil(K / 3)``); unused slots get a zero
    plane, a line of ones and a zero basis column, so they add nothing and their planes still
    receive gradients when trained. Each term's scale is spread evenly over its line, plane (and
    basis column) by RMS, which leaves the product unchanged but keeps the factors balanced.
    """
    if len(factors) not in (3, 4):
        raise ValueError(
            f"cp_to_vm needs 3 spatial factors and an optional channel factor, got {len(factors)}"
        )
    rank = factors[0].shape[1]
    if any(f.ndim != 2 or f.shape[1] != rank for f in factors):
        raise ValueError(
            f"CP factors must all be [n, {rank}], got {[list(f.shape) for f in factors]}"
        )
    if weights is not None and weights.shape != (rank,):
        raise ValueError(f"CP weights must have shape [{rank}], got {list(weights.shape)}")
    slots = math.ceil(rank / 3) if components is None else components
    if slots * 3 < rank:
        raise ValueError(
            f"components={slots} per orientation cannot hold {rank} CP terms "
            f"(needs {math.ceil(rank / 3)})"
        )
    sizes = [f.shape[0] for f in factors[:3]]
    like = factors[0]
    planes = [like.new_zeros(1, slots, sizes[b], sizes[a]) for a, b in MAT_MODES]
    lines = [like.new_ones(1, slots, sizes[c], 1) for c in VEC_MODES]
    basis = like.new_zeros(factors[3].shape[0], 3 * slots) if len(factors) == 4 else None
    for k in range(rank):
        m, slot = k % 3, k // 3
        (a, b), c = MAT_MODES[m], VEC_MODES[m]
        line = factors[c][:, k] * (1.0 if weights is None else weights[k])
        plane = torch.outer(factors[b][:, k], factors[a][:, k])
        parts = [line, plane] + ([factors[3][:, k]] if basis is not None else [])
        rms = [p.pow(2).mean().sqrt() for p in parts]
        if all(r > 0 for r in rms):
            target = torch.stack(rms).prod() ** (1.0 / len(parts))
            parts = [p * (target / r) for p, r in zip(parts, rms, strict=True)]
        lines[m][0, slot, :, 0] = parts[0]
        planes[m][0, slot] = parts[1]
        if basis is not None:
            basis[:, m * slots + slot] = parts[2]
    return VMFactors(planes, lines, basis)


def total_variation(t: torch.Tensor) -> torch.Tensor:
    """TensoRF's ``TVLoss`` of a ``[1, R, H, W]`` factor: ``2 Σ_axis mean(forward difference²)``
    over the last two axes, skipping an axis of length 1 (a line's)."""
    total = t.new_zeros(())
    for dim in (2, 3):
        if t.shape[dim] > 1:
            total = total + t.diff(dim=dim).pow(2).mean()
    return 2.0 * total


def frequency_encoding(x: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """``[sin(x·ω), cos(x·ω)]`` of ``x`` ``[N, C]`` over multipliers ``ω`` ``[F]`` → ``[N, 2CF]``,
    channel-major within each half, all sines first (TensoRF's ``positional_encoding``)."""
    scaled = (x[:, :, None] * frequencies).flatten(1)
    return torch.cat((torch.sin(scaled), torch.cos(scaled)), dim=-1)


class FeatureMLPDecoder(nn.Module):
    """The ``tensorf_mlp`` φ²: ``v = [ln σ, f]`` → (σ, ``sigmoid(MLP([f, d, PE(f), PE(d)]))``).

    TensoRF's ``MLPRender_Fea`` (``mlp.{0,2,4}``) and nerfstudio's ``mlp_head`` +
    ``field_output_rgb`` (module docstring); ``self.mlp`` keeps TensoRF's layer indices.
    """

    def __init__(self, config: TensoRFConfig) -> None:
        super().__init__()
        self.sigma_clip = config.sigma_clip
        self.register_buffer(
            "feature_frequencies", torch.tensor(config.feature_frequencies), persistent=False
        )
        self.register_buffer(
            "view_frequencies", torch.tensor(config.view_frequencies), persistent=False
        )
        f, w = config.app_dim, config.mlp_width
        width_in = f + 3 + 2 * f * len(config.feature_frequencies)
        width_in += 2 * 3 * len(config.view_frequencies)
        self.mlp = nn.Sequential(
            nn.Linear(width_in, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 3)
        )

    def forward(self, v: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = v[:, 1:]
        parts = [f, d]
        if self.feature_frequencies.numel():
            parts.append(frequency_encoding(f, self.feature_frequencies))
        if self.view_frequencies.numel():
            parts.append(frequency_encoding(d, self.view_frequencies))
        rgb = torch.sigmoid(self.mlp(torch.cat(parts, dim=-1)))
        return activate_density(v[:, 0], self.sigma_clip), rgb


class SHDecoder(nn.Module):
    """The ``tensorf_sh`` φ²: ``rgb = relu(Σ_k SH_k(d)·f_{c,k} + 0.5)`` clamped at 1 (TensoRF's
    ``SHRender``; :func:`~architectures.components.sh_colour` ``"svox2_clamp"``, svox2's colour
    too), no parameters."""

    def __init__(self, config: TensoRFConfig) -> None:
        super().__init__()
        self.sigma_clip = config.sigma_clip
        self.basis = config.app_dim // 3

    def forward(self, v: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = sh_colour(v[:, 1:].view(-1, 3, self.basis), d, "svox2_clamp")
        return activate_density(v[:, 0], self.sigma_clip), rgb


@register
class TensoRF(CanonicalField):
    """TensoRF VM with the canonical decoder, or an imported variant (see module docstring)."""

    arch = "tensorf"
    config_class = TensoRFConfig

    def __init__(self, config: TensoRFConfig) -> None:
        super().__init__(config)
        self._schedule = config.schedule()
        self._level = config.level()
        size = config.grid_size or ()
        self.density_plane, self.density_line = self._init_factors(config.density_components, size)
        self.app_plane, self.app_line = self._init_factors(config.appearance_components, size)
        channels = 15
        if config.decoder is not None:
            # Variant decoders read the tool's app_dim features: v = [ln σ, f] (module docstring).
            channels = config.app_dim
            self.canonical = False
            self.feature_dim = 1 + channels
            decoders = {"tensorf_mlp": FeatureMLPDecoder, "tensorf_sh": SHDecoder}
            self.decoder = decoders[config.decoder](config)
        self.basis_mat = nn.Linear(3 * config.appearance_components, channels, bias=False)
        if config.alpha_mask_size is not None:
            self.register_buffer("alpha_mask", torch.ones(config.alpha_mask_size, dtype=torch.bool))

    def _init_factors(
        self, rank: int, size: Sequence[int]
    ) -> tuple[nn.ParameterList, nn.ParameterList]:
        std = self.config.init_std
        planes = [nn.Parameter(std * torch.randn(1, rank, size[b], size[a])) for a, b in MAT_MODES]
        lines = [nn.Parameter(std * torch.randn(1, rank, size[c], 1)) for c in VEC_MODES]
        return nn.ParameterList(planes), nn.ParameterList(lines)

    # -- φ¹ -------------------------------------------------------------------------------
    def _coordinates(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``grid_sample`` coordinates in [−1, 1] per orientation: planes ``(x_a, x_b)`` and
        lines ``(0, x_c)`` (a line is a ``[n_c, 1]`` image), each ``[1, N, 1, 2]``."""
        s = self.normalize(x).clamp(0.0, 1.0) * 2.0 - 1.0
        planes = [s[:, [a, b]].view(1, -1, 1, 2) for a, b in MAT_MODES]
        lines = [
            torch.stack((torch.zeros_like(s[:, c]), s[:, c]), dim=-1).view(1, -1, 1, 2)
            for c in VEC_MODES
        ]
        return planes, lines

    @staticmethod
    def _sample(factor: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Bilinear sample of a ``[1, R, H, W]`` factor → ``[R, N]``."""
        out = F.grid_sample(factor, coords, mode="bilinear", align_corners=True)
        return out.view(factor.shape[1], -1)

    def _raw(self, x: torch.Tensor, shifted: torch.Tensor) -> torch.Tensor:
        """Raw density ``ln σ`` from the shifted factor sum (module docstring, variants)."""
        config = self.config
        raw = log_density(shifted, config.density_activation, config.density_scale)
        if config.alpha_mask_size is not None:
            raw = torch.where(self._alpha_mask_at(x), raw, raw.new_tensor(LOG_DENSITY_FLOOR))
        return raw

    def _alpha_mask_at(self, x: torch.Tensor) -> torch.Tensor:
        """Whether TensoRF's alpha mask keeps each point: its ``grid_sample`` (trilinear,
        ``align_corners=True``, zero padding) of the binary volume is > 0, i.e. some corner with
        a positive weight is inside the volume and set."""
        box = torch.tensor(self.config.alpha_mask_aabb, device=x.device, dtype=x.dtype).view(2, 3)
        sizes = torch.tensor(self.alpha_mask.shape, device=x.device)
        u = (x - box[0]) / (box[1] - box[0]) * (sizes - 1)
        low = u.floor()
        frac = u - low
        low = low.long()
        keep = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for corner in itertools.product((0, 1), repeat=3):
            offset = torch.tensor(corner, device=x.device)
            index = low + offset
            weight = torch.where(offset.bool(), frac, 1.0 - frac).prod(-1)
            valid = ((index >= 0) & (index < sizes)).all(-1) & (weight > 0)
            index = torch.minimum(index.clamp_min(0), sizes - 1)
            keep |= valid & self.alpha_mask[index[:, 0], index[:, 1], index[:, 2]]
        return keep

    def phi1(self, x: torch.Tensor) -> torch.Tensor:
        plane_xy, line_xy = self._coordinates(x)
        rank = self.config.density_components
        shifted = x.new_full((x.shape[0],), self.config.density_shift)
        appearance = []
        for m in range(3):
            # Density and appearance factors share the coordinates: one sample of both.
            plane = torch.cat((self.density_plane[m], self.app_plane[m]), dim=1)
            line = torch.cat((self.density_line[m], self.app_line[m]), dim=1)
            product = self._sample(plane, plane_xy[m]) * self._sample(line, line_xy[m])
            shifted = shifted + product[:rank].sum(0)
            appearance.append(product[rank:])
        g = self.basis_mat(torch.cat(appearance, dim=0).t())
        return torch.cat((self._raw(x, shifted)[:, None], g), dim=-1)

    def sigma_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Raw density (``ln σ``) from the density factors alone (no appearance work)."""
        check_points(x, "x")
        plane_xy, line_xy = self._coordinates(x)
        shifted = x.new_full((x.shape[0],), self.config.density_shift)
        for m in range(3):
            product = self._sample(self.density_plane[m], plane_xy[m]) * self._sample(
                self.density_line[m], line_xy[m]
            )
            shifted = shifted + product.sum(0)
        return self._raw(x, shifted)

    # -- training -------------------------------------------------------------------------
    def factors(self) -> list[nn.Parameter]:
        """Every plane and line (density, then appearance)."""
        return [
            *self.density_plane,
            *self.density_line,
            *self.app_plane,
            *self.app_line,
        ]

    def regularizer(self) -> torch.Tensor:
        """L1 on the density factors plus the optional TV terms, with the config's weights."""
        config = self.config
        total = self.aabb.new_zeros(())
        l1 = config.l1_weight if self._level == 0 else config.l1_weight_rest
        if l1 > 0:
            norm = sum(p.abs().mean() for p in (*self.density_plane, *self.density_line))
            total = total + l1 * norm
        for weight, planes, lines in (
            (config.tv_weight_density, self.density_plane, self.density_line),
            (config.tv_weight_appearance, self.app_plane, self.app_line),
        ):
            if weight > 0:
                tv = sum(total_variation(p) for p in planes)
                tv = tv + _LINE_TV_RATIO * sum(total_variation(v) for v in lines)
                total = total + weight * tv
        return total

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Factors at ``base_lr · factor_lr_scale``, basis and decoder at ``base_lr ·
        basis_lr_scale`` (TensoRF: 2e-2 and 1e-3), Adam betas (0.9, 0.99) as in TensoRF."""
        networks = [*self.basis_mat.parameters(), *self.decoder.parameters()]
        betas = (0.9, 0.99)
        return [
            {"params": self.factors(), "lr": base_lr * self.config.factor_lr_scale, "betas": betas},
            {"params": networks, "lr": base_lr * self.config.basis_lr_scale, "betas": betas},
        ]

    def on_train_step(self, progress: float) -> bool:
        """Upsample when the run's ``progress`` (fraction done) has passed the next boundary of
        the schedule (see module doc); returns True when the factors were replaced (the trainer
        rebuilds its optimizer)."""
        target = sum(progress >= f for f in self.config.upsample_fractions)
        if target <= self._level:
            return False
        current = self.config.grid_size or ()
        size = tuple(max(n, m) for n, m in zip(current, self._schedule[target], strict=True))
        self.upsample(size)  # type: ignore[arg-type]
        return True

    @torch.no_grad()
    def upsample(self, grid_size: tuple[int, int, int]) -> None:
        """Resize every plane and line to ``grid_size`` vertices per axis by bilinear / linear
        interpolation with ``align_corners=True`` (TensoRF's ``up_sampling_VM``), replacing the
        parameters, and record the new size in the config (so checkpoints rebuild it)."""
        self.config = self.config.replace(grid_size=tuple(grid_size))
        size = self.config.grid_size or ()
        for planes, lines in (
            (self.density_plane, self.density_line),
            (self.app_plane, self.app_line),
        ):
            for m, ((a, b), c) in enumerate(zip(MAT_MODES, VEC_MODES, strict=True)):
                planes[m] = nn.Parameter(
                    F.interpolate(
                        planes[m].data, size=(size[b], size[a]), mode="bilinear", align_corners=True
                    )
                )
                lines[m] = nn.Parameter(
                    F.interpolate(
                        lines[m].data, size=(size[c], 1), mode="bilinear", align_corners=True
                    )
                )
        self._level = self.config.level()
