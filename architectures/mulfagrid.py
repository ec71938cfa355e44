"""MulFAGrid: Multiplicative Fourier Adaptive Grid (CVPR 2024, the grid-tangent-kernel paper).

No official code is published; this follows the paper's description as summarised in
ARCHITECTURES.md ("MulFAGrid"). A grid model computes

    f(x) = Σ_i k̃(x, v_i) · w_{v_i}                      (sum over the 8 corners v_i of x's voxel)

with vertex features ``w``. Classic grids fix the kernel to the trilinear weights; MulFAGrid learns
it with a multiplicative filter network (MFN; Fathony et al., ICLR 2021) that sees both the query
point and the vertex:

    z_0 = γ(x)                                             (K octaves of sin and cos)
    z_j = (A_j z_{j−1} + c_j) ⊙ sin(ω_j · v_i + ψ_j),  j = 1..n   (filters evaluated at the vertex)
    m   = aᵀ z_n

and the kernels are normalised over the active vertices, ``k̃_i = k_i / Σ_j k_j``. The grid has
16 channels, so ``f(x)`` is the canonical ``v = [sigma_raw, g(15)]`` and φ² is the shared decoder.

pvd's choices (the paper is silent or its form was changed):

- **Positive kernel.** The paper's ``k = aᵀz_n + e`` can be negative, and its normaliser can then
  cross zero. pvd uses ``k_i = trilinear(x, v_i) · exp(m_i)``: always ≥ 0 (> 0 inside a voxel),
  equal to trilinear interpolation when ``m = 0``, and ``k̃ = softmax(log trilinear + m)`` over the
  8 corners. It is computed as ``t_i · exp(m_i − M)`` with ``M = max_i(m_i + log t_i)`` taken
  without gradient (the shift cancels in ``k̃``), so the largest term is 1 and the normaliser
  never vanishes or overflows, whatever the network outputs.
- **No output bias.** In this form a bias ``e`` multiplies every corner by ``exp(e)`` and cancels
  in ``k̃``; it would be a parameter without gradient, so it is left out (``m = aᵀz_n``).
- **Vertex input.** The filters see the vertex's normalised coordinate in [−1, 1]³ (vertex ``i``
  of ``R`` at ``2i/(R−1) − 1``), not its integer index; ``γ`` sees the point in the same frame:
  ``γ(p) = [sin(2^k π p), cos(2^k π p)]_{k<K}`` (NeRF's encoding without the identity term).
- **Initialisation.** ``a = 0``, so ``m ≡ 0`` and the model starts as a plain trilinear grid.
  Its tangent kernel at initialisation is then a plain grid's: the Jacobian in the grid features
  is the trilinear weights, the one in ``A_j, c_j, ω_j, ψ_j`` is exactly 0 (it passes through
  ``a = 0``), and the one in ``a`` is proportional to the grid features (U(±1e-4) at init): its
  block of the kernel has about 1e-9 of the grid block's trace (measured on a 16³ grid). A
  grid-tangent-kernel comparison must therefore be made after fitting.
  ``A_j`` ~ U(±√(6/fan_in)) and ``c_j = 0`` (the BACON-style init ARCHITECTURES.md gives for
  MFLOD; it keeps ``E[z_j²] = 1/2`` through the multiplicative layers); ``ψ_j`` ~ U(−π, π) (MFN).
  The filter frequencies are set relative to the grid, ``ω_j`` ~ U(±β(R−1)/(2√n)) per component:
  each filter turns its phase by at most ``β/√n`` per vertex step along an axis, so the sums of
  the n filter frequencies that make up the network's output have a spread of order ``β`` (MFN
  splits its input scale over the layers by the same square root). A small ``β`` makes the 8
  corners' filters nearly equal, and their common part cancels in ``k̃``. ``β`` is the config's
  ``filter_bandwidth``; 1 fitted best of {0.3, 1, 3} in a 3D regression test (below).
- **Rates.** Grid at 10× the base rate (DVGO's 1e-1 for its dense grids, against the base 1e-2:
  the grid feeds ``v`` directly, with no network to amplify its steps); kernel network and
  decoder at the base rate. In a 3D regression test (a 16³ grid fitting a 16-channel field with
  sharp density edges, 800 Adam steps, base rate 1e-2) the learned kernel reached a test MSE of
  0.0057 against 0.0172 for the same grid with the kernel frozen at trilinear; kernel rates of
  0.1×, 0.3×, 1× and 3× the base gave 0.0077, 0.0065, 0.0057 and 0.0057.
- **Speed.** The network runs for every (point, corner) pair (8 per point; the cost driver).
  The first layer ``A_1 z_0 + c_1`` depends on the point only and is computed once for its 8
  corners, and the filter phase is split as ``ω·v_i + ψ = (ω·v_0 + ψ) + h ω·δ_i`` (``v_0`` the
  voxel's first corner, ``δ_i ∈ {0,1}³``, ``h = 2/(R−1)``): a per-point and a per-corner term,
  broadcast-added. (The angle-addition form ``sin θ_0 cos φ_i + cos θ_0 sin φ_i``, two
  transcendentals per point instead of eight, measured 1.4× slower on CPU: it needs more
  full-size temporaries, and memory traffic, not ``sin``, bounds this network.) Density-only
  queries use the same path: gathering 1 channel instead of 16 measured no faster.
- **Host and regulariser.** A dense vertex grid (DVGO-style host, as the paper's radiance-field
  experiments), ``align_corners`` layout like :func:`~architectures.components.trilinear_dense`,
  features U(−1e-4, 1e-4) like the hash grid; points outside the AABB are clamped to its surface.
  Total variation on the grid: the mean over neighbouring vertex pairs and channels of their
  squared difference along each axis, summed over the three axes (Plenoxels' TV without its
  square root), weighted by ``tv_weight`` (small by default; DVGO's default TV weight is 0).
- **No schedule.** None is published, so ``on_train_step`` is the default no-op.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from .base import CanonicalField, FieldConfig, check_points, require
from .components import positional_encoding
from .registry import register

#: Corner ``c`` of a voxel is offset by ``(c & 1, (c >> 1) & 1, (c >> 2) & 1)`` vertices.
_CORNER_OFFSETS = tuple((c & 1, (c >> 1) & 1, (c >> 2) & 1) for c in range(8))


@dataclasses.dataclass
class MulFAGridConfig(FieldConfig):
    """MulFAGrid. Defaults are the paper-like configuration (``paper`` preset).

    ``resolution``: vertices per axis of the dense 16-channel grid; ``octaves``: K of ``γ(x)``;
    ``kernel_width``: width of the filter network; ``filter_layers``: its number n of filters;
    ``filter_bandwidth``: β, the filters' phase turn per vertex step at init (radians);
    ``tv_weight``: weight of the grid's total variation; ``grid_lr_scale`` / ``kernel_lr_scale``:
    learning rates of the grid and of the kernel network relative to the base rate (the decoder
    trains at the base rate).
    """

    resolution: int = 160
    octaves: int = 4
    kernel_width: int = 16
    filter_layers: int = 4
    filter_bandwidth: float = 1.0
    tv_weight: float = 1e-4
    grid_lr_scale: float = 10.0
    kernel_lr_scale: float = 1.0

    def validate(self) -> None:
        super().validate()
        require(2 <= self.resolution <= 512, f"resolution must be in 2..512, got {self.resolution}")
        require(1 <= self.octaves <= 16, f"octaves must be in 1..16, got {self.octaves}")
        require(
            1 <= self.kernel_width <= 256,
            f"kernel_width must be in 1..256, got {self.kernel_width}",
        )
        require(
            1 <= self.filter_layers <= 16,
            f"filter_layers must be in 1..16, got {self.filter_layers}",
        )
        require(
            0.0 < self.filter_bandwidth <= math.pi,
            f"filter_bandwidth must be in (0, pi] radians per vertex step, "
            f"got {self.filter_bandwidth}",
        )
        require(
            0.0 <= self.tv_weight < math.inf,
            f"tv_weight must be finite and >= 0, got {self.tv_weight}",
        )
        for key in ("grid_lr_scale", "kernel_lr_scale"):
            value = getattr(self, key)
            require(0.0 < value < math.inf, f"{key} must be finite and > 0, got {value}")


class FilterKernelNetwork(nn.Module):
    """The multiplicative filter network that gives each (point, corner) pair its log-kernel ``m``.

    See the module docstring for the equations, the initialisation and how :meth:`forward`
    shares work between the 8 corners of a point.
    """

    def __init__(self, config: MulFAGridConfig) -> None:
        super().__init__()
        width, layers = config.kernel_width, config.filter_layers
        self.octaves = config.octaves
        self.linears = nn.ModuleList(
            [nn.Linear(6 * config.octaves, width)]
            + [nn.Linear(width, width) for _ in range(layers - 1)]
        )
        omega_max = config.filter_bandwidth * (config.resolution - 1) / (2 * math.sqrt(layers))
        self.frequencies = nn.Parameter(
            torch.empty(layers, width, 3).uniform_(-omega_max, omega_max)
        )
        self.phases = nn.Parameter(torch.empty(layers, width).uniform_(-math.pi, math.pi))
        self.output = nn.Parameter(torch.zeros(width))
        with torch.no_grad():
            for linear in self.linears:
                bound = math.sqrt(6.0 / linear.in_features)
                linear.weight.uniform_(-bound, bound)
                linear.bias.zero_()

    def forward(self, p: torch.Tensor, vertex: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Log-kernels ``m`` ``[N, 8]``.

        ``p``: points in [−1, 1]³ ``[N, 3]``; ``vertex``: normalised coordinate of each point's
        corner 0 ``[N, 3]``; ``offsets``: the 8 corners' offsets from it ``[8, 3]``.
        """
        z0 = positional_encoding(math.pi * p, self.octaves)[:, 3:]  # drop the identity term
        z = self.linears[0](z0)[:, None, :]  # A_1 z_0 + c_1, shared by the 8 corners
        for j, (omega, psi) in enumerate(zip(self.frequencies, self.phases, strict=True)):
            if j > 0:
                z = self.linears[j](z)
            # ω·v_i + ψ = (ω·v_0 + ψ) per point + ω·δ_i h per corner
            phase = torch.addmm(psi, vertex, omega.t())[:, None, :] + offsets @ omega.t()
            z = z * torch.sin(phase)
        return z @ self.output


@register
class MulFAGrid(CanonicalField):
    """Dense 16-channel vertex grid with a learned, normalised interpolation kernel."""

    arch = "mulfagrid"
    config_class = MulFAGridConfig

    def __init__(self, config: MulFAGridConfig) -> None:
        super().__init__(config)
        r = config.resolution
        self.grid = nn.Parameter(torch.empty(r**3, self.feature_dim).uniform_(-1e-4, 1e-4))
        self.kernel = FilterKernelNetwork(config)
        offsets = torch.tensor(_CORNER_OFFSETS, dtype=torch.int64)
        self.register_buffer("_offsets", offsets, persistent=False)
        strides = torch.tensor([r * r, r, 1], dtype=torch.int64)
        self.register_buffer("_strides", strides, persistent=False)

    def grid_tensor(self) -> torch.Tensor:
        """The vertex features as ``[16, R, R, R]`` (x, y, z), the layout of ``trilinear_dense``."""
        r = self.config.resolution
        return self.grid.view(r, r, r, self.feature_dim).permute(3, 0, 1, 2)

    def kernel_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 8 active vertices of each point and their normalised kernel weights.

        Returns ``(corner_indices [N, 8] int64, weights [N, 8])``: indices are rows of
        ``self.grid`` (vertex ``(i, j, k)`` is row ``(i·R + j)·R + k``); the weights are ≥ 0, sum
        to one per point, and are differentiable in the kernel parameters, so
        ``phi1(x) = Σ_i weights[:, i] · grid[corner_indices[:, i]]``.
        """
        check_points(x, "x")
        r = self.config.resolution
        u = self.normalize(x).clamp(0.0, 1.0)
        position = u * (r - 1)
        base = position.floor().clamp(max=r - 2)
        frac = position - base
        corners = base.to(torch.int64)[:, None, :] + self._offsets  # [N, 8, 3]
        index = (corners * self._strides).sum(-1)
        trilinear = torch.where(
            self._offsets.bool(), frac[:, None, :], 1.0 - frac[:, None, :]
        ).prod(-1)
        step = 2.0 / (r - 1)
        m = self.kernel(2.0 * u - 1.0, base * step - 1.0, self._offsets.to(u.dtype) * step)
        with torch.no_grad():
            shift = (m + trilinear.log()).amax(-1, keepdim=True)
        # t·exp(m − shift) ≤ 1 wherever t > 0; the clamp only acts where t < e^-80 (t = 0 on a
        # voxel face), so 0 · exp(large) can never give inf · 0.
        k = trilinear * torch.exp((m - shift).clamp(max=80.0))
        return index, k / k.sum(-1, keepdim=True)

    def phi1(self, x: torch.Tensor) -> torch.Tensor:
        index, weights = self.kernel_weights(x)
        rows = self.grid.index_select(0, index.view(-1)).view(*index.shape, self.feature_dim)
        return (weights[..., None] * rows).sum(1)

    def regularizer(self) -> torch.Tensor:
        """``tv_weight`` · total variation of the grid (see the module docstring)."""
        if self.config.tv_weight == 0.0:
            return self.grid.new_zeros(())
        r = self.config.resolution
        grid = self.grid.view(r, r, r, self.feature_dim)
        tv = sum(grid.diff(dim=axis).square().mean() for axis in range(3))
        return self.config.tv_weight * tv

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Grid at ``grid_lr_scale``, kernel network at ``kernel_lr_scale``, decoder at base."""
        return [
            {"params": [self.grid], "lr": base_lr * self.config.grid_lr_scale},
            {"params": list(self.kernel.parameters()), "lr": base_lr * self.config.kernel_lr_scale},
            {"params": list(self.decoder.parameters()), "lr": base_lr},
        ]
