"""Hash grid (Instant-NGP; Müller et al., SIGGRAPH 2022), tiny-cuda-nn compatible.

φ¹ = multiresolution hash encoding (paper §3, eq. 3–4) → density head Linear(L·F→64) ReLU
Linear(64→16), no biases → ``v = [sigma_raw, g(15)]``; φ² = the canonical decoder.

The encoding follows tiny-cuda-nn's ``GridEncodingTemplated`` exactly, so tcnn-trained weights
load as they are (``encodings/grid.h``):

- per-level scale ``scale_l = exp2(l · log2 b) · N_min − 1`` in float32, with
  ``b = exp(ln(N_max / N_min) / (L − 1))``; resolution ``res_l = ceil(scale_l) + 1``;
- table size ``size_l = min(next_multiple_of_8(res_l³), 2^log2T)``; a level is dense when
  ``res_l³ <= size_l`` (index ``x + y·res + z·res²``), else hashed
  (``x·1 ⊕ y·2654435761 ⊕ z·805459861`` in uint32), and the index is taken ``mod size_l``;
- position ``u·scale_l + 0.5`` for ``u`` in [0, 1]³ (the field's AABB), trilinear weights over the
  8 corners (no smoothstep);
- one flat ``params`` tensor, levels in order, features interleaved per entry; output level-major.
  Init U(−1e-4, 1e-4).

pvd's choices: points outside the AABB are clamped to its surface; on CPU the levels are looped
(faster than vectorising all levels at once, measured in a prototype: memory locality). The
tinycudann fast path is not wired in: the pure-torch encoding runs on CUDA as well.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from .base import CanonicalField, FieldConfig, require
from .registry import register

_PRIMES = (1, 2654435761, 805459861)
_UINT32 = 0xFFFFFFFF


def tcnn_level_scales(
    levels: int, base_resolution: int, per_level_scale: float
) -> tuple[float, ...]:
    """Per-level float32 scales as tcnn computes them (``grid_scale`` in ``encodings/grid.h``)."""
    log2_b = np.float32(np.log2(np.float32(per_level_scale)))
    scales = [
        float(np.exp2(np.float32(level) * log2_b) * np.float32(base_resolution) - np.float32(1.0))
        for level in range(levels)
    ]
    return tuple(float(np.float32(s)) for s in scales)


def per_level_scale(levels: int, base_resolution: int, max_resolution: int) -> float:
    """``b = exp(ln(N_max / N_min) / (L − 1))`` (Instant-NGP eq. 3; nerfstudio's formula)."""
    if levels == 1:
        return 1.0
    return math.exp(math.log(max_resolution / base_resolution) / (levels - 1))


@dataclasses.dataclass
class HashGridConfig(FieldConfig):
    """Instant-NGP hash grid. Defaults are the paper's configuration (``paper`` preset).

    ``level_scales`` (float32 per level) is derived from the other values when not given and is
    stored so a checkpoint reproduces tcnn's exact grid; importers may pass tcnn's own.
    """

    levels: int = 16
    features: int = 2
    log2_table_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048
    hidden_width: int = 64
    level_scales: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.level_scales is None and self.levels >= 1 and self.base_resolution >= 1:
            b = per_level_scale(self.levels, self.base_resolution, max(self.max_resolution, 1))
            self.level_scales = tcnn_level_scales(self.levels, self.base_resolution, b)

    def validate(self) -> None:
        super().validate()
        require(1 <= self.levels <= 32, f"levels must be in 1..32, got {self.levels}")
        require(
            self.features in (1, 2, 4, 8), f"features must be 1, 2, 4 or 8, got {self.features}"
        )
        require(
            10 <= self.log2_table_size <= 24,
            f"log2_table_size must be in 10..24, got {self.log2_table_size}",
        )
        require(
            self.base_resolution >= 2, f"base_resolution must be >= 2, got {self.base_resolution}"
        )
        require(
            self.max_resolution >= self.base_resolution,
            f"max_resolution ({self.max_resolution}) must be >= base_resolution "
            f"({self.base_resolution})",
        )
        require(self.hidden_width >= 1, f"hidden_width must be >= 1, got {self.hidden_width}")
        scales = self.level_scales or ()
        require(
            len(scales) == self.levels and all(s > 0 for s in scales),
            f"level_scales must hold {self.levels} positive values, got {list(scales)}",
        )

    def replace(self, **changes: Any) -> Self:
        """As :meth:`FieldConfig.replace`; re-derives ``level_scales`` when the levels change."""
        shape_keys = {"levels", "base_resolution", "max_resolution"}
        if shape_keys & set(changes) and "level_scales" not in changes:
            changes["level_scales"] = None
        return super().replace(**changes)


@dataclasses.dataclass(frozen=True)
class LevelLayout:
    """Where one level lives in the flat table and how it is indexed."""

    scale: float
    resolution: int
    size: int
    offset: int
    dense: bool


def level_layouts(config: HashGridConfig) -> list[LevelLayout]:
    """tcnn's per-level resolution, table size, offset (in entries) and dense/hash choice."""
    table = 1 << config.log2_table_size
    out, offset = [], 0
    for scale in config.level_scales or ():
        resolution = math.ceil(np.float32(scale)) + 1
        dense_entries = resolution**3
        size = min((dense_entries + 7) // 8 * 8, table)
        out.append(LevelLayout(scale, resolution, size, offset, dense_entries <= size))
        offset += size
    return out


@register
class HashGrid(CanonicalField):
    """Instant-NGP hash grid with the canonical decoder (see module docstring)."""

    arch = "hashgrid"
    config_class = HashGridConfig

    def __init__(self, config: HashGridConfig) -> None:
        super().__init__(config)
        self.layouts = level_layouts(config)
        entries = sum(layout.size for layout in self.layouts)
        self.params = nn.Parameter(torch.empty(entries * config.features).uniform_(-1e-4, 1e-4))
        width = config.levels * config.features
        self.density_head = nn.Sequential(
            nn.Linear(width, config.hidden_width, bias=False),
            nn.ReLU(),
            nn.Linear(config.hidden_width, 16, bias=False),
        )

    def encode(self, u: torch.Tensor) -> torch.Tensor:
        """Hash encoding of unit-cube points ``u`` ``[N, 3]`` → ``[N, L·F]`` (level-major).

        Corner ``c`` of a cell is ``(c & 1, c >> 1 & 1, c >> 2 & 1)``; indices and weights are
        built per axis (two values each) and combined by broadcasting over the 2×2×2 corners,
        which is several times cheaper on CPU than working on ``[N, 8, 3]`` corner tensors.
        """
        features = self.config.features
        table = self.params.view(-1, features)
        u = u.clamp(0.0, 1.0)
        n = u.shape[0]
        step = torch.tensor([0, 1], device=u.device)
        out = []
        for layout in self.layouts:
            pos = u * layout.scale + 0.5
            floor = torch.floor(pos)
            frac = pos - floor
            lo = floor.to(torch.int64)
            ix, iy, iz = (lo[:, a, None] + step for a in range(3))  # [N, 2] per axis
            if layout.dense:
                r = layout.resolution
                index = (
                    ix[:, None, None, :]
                    + (iy * r)[:, None, :, None]
                    + (iz * (r * r))[:, :, None, None]
                )
                index = index.reshape(n, 8) % layout.size
            else:  # hashed levels have size 2^log2T, so "mod size" is a mask
                hy = (iy * _PRIMES[1]) & _UINT32
                hz = (iz * _PRIMES[2]) & _UINT32
                index = ix[:, None, None, :] ^ hy[:, None, :, None] ^ hz[:, :, None, None]
                index = index.reshape(n, 8) & (layout.size - 1)
            wx, wy, wz = (torch.stack([1.0 - frac[:, a], frac[:, a]], dim=-1) for a in range(3))
            w = (wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]).reshape(n, 8)
            out.append((table[index + layout.offset] * w[..., None]).sum(1))
        return torch.cat(out, dim=-1)

    def phi1(self, x: torch.Tensor) -> torch.Tensor:
        return self.density_head(self.encode(self.normalize(x)))

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Grid and networks at the same rate; L2 1e-6 on the networks (Instant-NGP §4)."""
        networks = [p for name, p in self.named_parameters() if name != "params"]
        return [
            {"params": [self.params], "lr": base_lr},
            {"params": networks, "lr": base_lr, "weight_decay": 1e-6},
        ]
