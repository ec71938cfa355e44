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

**Variants for imported teachers.** Other tools' hash grids differ from tcnn's in small ways; the
config records which one a field reproduces, so an imported teacher renders what the original
renders and its checkpoint round-trips. The defaults are pvd's own model.

``layout`` — how levels are sized and indexed:

- ``"tcnn"`` (default): as above (``encodings/grid.h``; instant-ngp, nerfstudio's tcnn path).
- ``"gridencoder"``: torch-ngp's CUDA ``gridencoder`` (``gridencoder/src/gridencoder.cu``, also
  the PVD reference code's): same scale rule ``exp2f(l·S)·H − 1`` and ``u·scale + 0.5``, but a
  dense level is indexed with stride ``res + 1`` and stores ``(res + 1)³`` entries (rounded up
  to a multiple of 8, at most 2^log2T) — ``res`` being ``ceil(scale) + 1`` as in tcnn.
  ``S = float32(log2(b))`` with ``b = exp2(log2(N_max / N_min) / (L − 1))`` in float64
  (``gridencoder/grid.py``).
- ``"nerfstudio"``: nerfstudio's pure-torch ``HashEncoding`` (``field_components/encodings.py``,
  ``implementation="torch"``): every level hashed into its own table of 2^log2T entries,
  position ``u·scale_l`` with ``scale_l = floor(N_min·b^l)`` (its ``scalings`` buffer), no
  +0.5 offset; the hash is tcnn's (its int64 products agree with tcnn's uint32 ones modulo 2^T).

``decoder`` — the φ² that reads ``v`` (``canonical`` is a field attribute, False for the others,
so distillation neither inherits such a decoder nor aligns more than ``sigma_raw``):

- ``"canonical"`` (default): :class:`~architectures.components.CanonicalDecoder`.
- ``"ingp"``: instant-ngp's rgb network (``nerf_network.h``): input ``[v (all 16 density-network
  outputs, sigma_raw included), SH₄(d) (16)]`` → 64 → 64 → 3, ReLU, no biases, sigmoid. The
  sigmoid output already is sRGB (display) colour: instant-ngp's training kernel
  (``testbed_nerf.cu``) converts each *target* pixel with ``linear_to_srgb`` unless
  ``linear_colors`` is set (default false; only HDR datasets set it), so the network learns sRGB
  (see :mod:`pvd.importers.instant_ngp`).
- ``"biased"``: the canonical decoder with a bias on every layer
  (:class:`~architectures.components.CanonicalDecoder` with ``bias=True``; input ``[SH₄(d) (16),
  g (15)]`` → 64 → 64 → 3, sigmoid): nerfstudio's nerfacto ``mlp_head`` (its torch MLP has
  biases; the per-image appearance embedding, a constant at evaluation, is folded into the first
  bias by the importer) and tcnn MLPs fed 31 inputs (torch-ngp's ``network_tcnn.py``
  ``color_net``, nerfacto's tcnn head): ``tcnn.Network`` pads its input with a constant 1
  (``encodings/identity.h``), so the padding column of the first matrix is a bias.

``head_bias`` gives the density head biases (nerfstudio's torch MLP has them; the importer also
folds nerfacto's ``average_init_density`` factor ``a`` into channel 0 as ``+ln a``).

Density: every variant uses ``sigma = trunc_exp(sigma_raw)``. instant-ngp's ``exp`` is the same
function in the forward pass (only trunc_exp's backward clamp differs, which a frozen teacher never
uses), so no separate activation is recorded.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from .base import CanonicalField, FieldConfig, require
from .components import CanonicalDecoder, activate_density, sh_encode
from .registry import register

_PRIMES = (1, 2654435761, 805459861)
_UINT32 = 0xFFFFFFFF

#: Level layouts and decoders a hash grid can reproduce (see the module docstring).
LAYOUTS = ("tcnn", "gridencoder", "nerfstudio")
DECODERS = ("canonical", "ingp", "biased")


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


def gridencoder_level_scales(
    levels: int, base_resolution: int, desired_resolution: float
) -> tuple[float, ...]:
    """Per-level float32 scales as torch-ngp's ``gridencoder`` computes them.

    ``gridencoder/grid.py`` sets ``b = exp2(log2(desired / base) / (L − 1))`` in float64 and hands
    ``S = log2(b)`` to the CUDA kernel as a float, which computes ``exp2f(level · S) · H − 1``.
    ``desired_resolution`` is a float because torch-ngp passes ``2048 · bound``.
    """
    if levels == 1:
        log2_b = np.float32(0.0)
    else:
        b = np.exp2(np.log2(desired_resolution / base_resolution) / (levels - 1))
        log2_b = np.float32(np.log2(b))
    base = np.float32(base_resolution)
    return tuple(
        float(np.exp2(np.float32(level) * log2_b) * base - np.float32(1.0))
        for level in range(levels)
    )


def nerfstudio_level_scales(
    levels: int, base_resolution: int, max_resolution: int
) -> tuple[float, ...]:
    """nerfstudio's torch ``HashEncoding.scalings``: ``floor(min_res · growth^l)`` with
    ``growth = exp((ln max_res − ln min_res) / (L − 1))`` in float64 raised to torch's integer
    levels, so float32 (``field_components/encodings.py``; e.g. 2047, not 2048, for 16 levels
    16 → 2048): the same expression, hence the same values."""
    growth = nerfstudio_growth(levels, base_resolution, max_resolution)
    scales = torch.floor(base_resolution * growth ** torch.arange(levels))
    return tuple(float(s) for s in scales)


def nerfstudio_growth(levels: int, base_resolution: int, max_resolution: int) -> np.float64:
    """nerfstudio's ``growth_factor`` (its tcnn ``per_level_scale``), computed as it does."""
    if levels == 1:
        return np.float64(1.0)
    return np.exp((np.log(max_resolution) - np.log(base_resolution)) / (levels - 1))


@dataclasses.dataclass
class HashGridConfig(FieldConfig):
    """Instant-NGP hash grid. Defaults are the paper's configuration (``paper`` preset).

    ``level_scales`` (float32 per level) is derived from the other values by the ``layout``'s
    rule when not given and is stored so a checkpoint reproduces the exact grid; importers pass
    the original tool's own. ``layout``, ``decoder`` and ``head_bias`` select the variants of
    imported teachers (module docstring); the defaults are pvd's model.
    """

    levels: int = 16
    features: int = 2
    log2_table_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048
    hidden_width: int = 64
    level_scales: tuple[float, ...] | None = None
    layout: str = "tcnn"
    decoder: str = "canonical"
    head_bias: bool = False

    def __post_init__(self) -> None:
        if self.level_scales is None and self.levels >= 1 and self.base_resolution >= 1:
            levels, base, top = self.levels, self.base_resolution, max(self.max_resolution, 1)
            if self.layout == "gridencoder":
                self.level_scales = gridencoder_level_scales(levels, base, top)
            elif self.layout == "nerfstudio":
                self.level_scales = nerfstudio_level_scales(levels, base, top)
            else:
                b = per_level_scale(levels, base, top)
                self.level_scales = tcnn_level_scales(levels, base, b)

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
        require(
            self.layout in LAYOUTS,
            f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}",
        )
        require(
            self.decoder in DECODERS,
            f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}",
        )

    def replace(self, **changes: Any) -> Self:
        """As :meth:`FieldConfig.replace`; re-derives ``level_scales`` when the levels change."""
        shape_keys = {"levels", "base_resolution", "max_resolution", "layout"}
        if shape_keys & set(changes) and "level_scales" not in changes:
            changes["level_scales"] = None
        return super().replace(**changes)


@dataclasses.dataclass(frozen=True)
class LevelLayout:
    """Where one level lives in the flat table and how it is indexed.

    Position on the level is ``u·scale + shift``; a dense level indexes ``x + y·stride +
    z·stride²`` (then ``mod size``), a hashed one uses the coherent-prime hash.
    """

    scale: float
    resolution: int
    size: int
    offset: int
    dense: bool
    stride: int
    shift: float


def level_layouts(config: HashGridConfig) -> list[LevelLayout]:
    """Per-level resolution, table size, offset (in entries), dense/hash choice, dense stride and
    position shift, by the config's ``layout`` (module docstring)."""
    table = 1 << config.log2_table_size
    out, offset = [], 0
    for scale in config.level_scales or ():
        resolution = math.ceil(np.float32(scale)) + 1
        if config.layout == "nerfstudio":
            layout = LevelLayout(scale, resolution, table, offset, False, resolution, 0.0)
        else:
            stride = resolution + 1 if config.layout == "gridencoder" else resolution
            dense_entries = stride**3
            size = min((dense_entries + 7) // 8 * 8, table)
            layout = LevelLayout(
                scale, resolution, size, offset, dense_entries <= size, stride, 0.5
            )
        out.append(layout)
        offset += layout.size
    return out


class IngpDecoder(nn.Module):
    """instant-ngp's φ² (``nerf_network.h``): ``rgb = sigmoid(MLP([v (16), SH₄(d) (16)]))``, MLP
    32→64→64→3, ReLU, no biases (tcnn's FullyFusedMLP); ``sigma = exp(v[0])`` (as trunc_exp).
    The sigmoid output is instant-ngp's sRGB colour as it is (module docstring, ``"ingp"``)."""

    def __init__(self, sigma_clip: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.sigma_clip = sigma_clip
        self.colour_mlp = nn.Sequential(
            nn.Linear(32, 64, bias=False),
            nn.ReLU(),
            nn.Linear(64, 64, bias=False),
            nn.ReLU(),
            nn.Linear(64, 3, bias=False),
        )

    def forward(self, v: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = activate_density(v[:, 0], self.sigma_clip)
        rgb = torch.sigmoid(self.colour_mlp(torch.cat([v[:, :16], sh_encode(d)], dim=-1)))
        return sigma, rgb


@register
class HashGrid(CanonicalField):
    """Instant-NGP hash grid with the canonical decoder, or an imported tool's layout and decoder
    (``config.layout`` / ``config.decoder``; see module docstring)."""

    arch = "hashgrid"
    config_class = HashGridConfig

    def __init__(self, config: HashGridConfig) -> None:
        super().__init__(config)
        if config.decoder != "canonical":
            if config.decoder == "ingp":
                self.decoder = IngpDecoder(sigma_clip=config.sigma_clip)
            else:
                self.decoder = CanonicalDecoder(sigma_clip=config.sigma_clip, bias=True)
            #: Instance override of the class attribute: only the canonical decoder is shared.
            self.canonical = False
        self.layouts = level_layouts(config)
        entries = sum(layout.size for layout in self.layouts)
        self.params = nn.Parameter(torch.empty(entries * config.features).uniform_(-1e-4, 1e-4))
        width = config.levels * config.features
        self.density_head = nn.Sequential(
            nn.Linear(width, config.hidden_width, bias=config.head_bias),
            nn.ReLU(),
            nn.Linear(config.hidden_width, 16, bias=config.head_bias),
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
            pos = u * layout.scale + layout.shift
            floor = torch.floor(pos)
            frac = pos - floor
            lo = floor.to(torch.int64)
            ix, iy, iz = (lo[:, a, None] + step for a in range(3))  # [N, 2] per axis
            if layout.dense:
                r = layout.stride
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
