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
- **Initialisation.** ``a = 0``, so ``m ≡ 0`` and the model starts as a plain trilinear grid;
  then its tangent kernel at initialisation equals a plain grid's (the network's Jacobian is
  multiplied by ``a = 0``), so a grid-tangent-kernel comparison must be made after fitting.
  ``A_j`` ~ U(±√(6/fan_in)) and ``c_j = 0`` (BACON, Lindell et al. 2022: keeps ``E[z_j²] = 1/2``
  through the multiplicative layers); ``ψ_j`` ~ U(−π, π) (MFN). The filter frequencies are set
  relative to the grid: ``ω_j`` ~ U(±β(R−1)/(2√n)) per component, so the n filters together turn
  the phase by about ``β`` radians per vertex step (MFN splits its input scale over the layers by
  the same square root). Lower ``β`` makes the 8 corners' filters nearly equal, and their common
  part cancels in ``k̃``; ``β`` is the config's ``filter_bandwidth``.
- **Speed.** The network runs for every (point, corner) pair. The corners of a voxel differ by
  fixed offsets ``δ_i h`` (``h = 2/(R−1)``), so ``sin(ω·(v_0 + δ_i h) + ψ) = sin θ_0 cos φ_i +
  cos θ_0 sin φ_i`` with ``θ_0 = ω·v_0 + ψ`` per point and ``φ_i = h ω·δ_i`` per corner: two
  transcendentals per point and filter instead of eight. The first layer ``A_1 z_0 + c_1``
  depends on the point only and is computed once for its 8 corners.
- **Host and regulariser.** A dense vertex grid (DVGO-style host, as the paper's radiance-field
  experiments), ``align_corners`` layout like :func:`~architectures.components.trilinear_dense`,
  features U(−1e-4, 1e-4) like the hash grid; points outside the AABB are clamped to its surface.
  Total variation on the grid: the mean over vertices and channels of the squared differences to
  the next vertex along each axis, summed over the three axes (the squared form of Plenoxels'
  TV), weighted by ``tv_weight``. No training schedule (no published one; ``on_train_step`` is
  the default no-op).
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
    grid_lr_scale: float = 1.0
    kernel_lr_scale: float = 0.1

    def validate(self) -> None:
        super().validate()
        require(2 <= self.resolution <= 512, f"resolution must be in 2..512, got {self.resolution}")
        require(1 <= self.octaves <= 16, f"octaves must be in 1..16, got {self.octaves}")
        require(
            1 <= self.kernel_width <= 256, f"kernel_width must be in 1..256, got {self.kernel_width}"
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
            0.0 <= self.tv_weight < math.inf, f"tv_weight must be finite and >= 0, got {self.tv_weight}"
        )
        for key in ("grid_lr_scale", "kernel_lr_scale"):
            value = getattr(self, key)
            require(0.0 < value < math.inf, f"{key} must be finite and > 0, got {value}")


class FilterKernelNetwork(nn.Module):
    """The multiplicative filter network that gives each (point, corner) pair its log-kernel ``m``.

    See the module docstring for the equations, the initialisation and the corner-offset
    factorisation used in :meth:`forward`.
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
        self.frequencies = nn.Parameter(torch.empty(layers, width, 3).uniform_(-omega_max, omega_max))
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
            theta = torch.addmm(psi, vertex, omega.t())  # ω·v_0 + ψ  [N, W]
            shift = offsets @ omega.t()  # ω·δ_i h  [8, W]
            sine = torch.addcmul(
                torch.sin(theta)[:, None, :] * torch.cos(shift), torch.cos(theta)[:, None, :],
                torch.sin(shift),
            )
            z = z * sine
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
        trilinear = torch.where(self._offsets.bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(-1)
        step = 2.0 / (r - 1)
        m = self.kernel(2.0 * u - 1.0, base * step - 1.0, self._offsets.to(u.dtype) * step)
        with torch.no_grad():
            shift = (m + trilinear.log()).amax(-1, keepdim=True)
        # t·exp(m − shift) ≤ 1 wherever t > 0; the clamp only guards corners with t = 0 exactly.
        k = trilinear * torch.exp((m - shift).clamp(max=80.0))
        return index, k / k.sum(-1, keepdim=True)

    def phi1(self, x: torch.Tensor) -> torch.Tensor:
        index, weights = self.kernel_weights(x)
        features = self.grid[index]  # [N, 8, 16]
        return torch.bmm(weights[:, None, :], features)[:, 0]

    def sigma_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Channel 0 only: the same kernel weights, one gathered channel instead of 16."""
        index, weights = self.kernel_weights(x)
        return (weights * self.grid[:, 0][index]).sum(-1)

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
