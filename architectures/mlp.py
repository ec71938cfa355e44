"""Pure MLP radiance field (NeRF; Mildenhall et al., ECCV 2020) with the canonical decoder.

φ¹ is NeRF's position trunk: the point, normalised by the field's AABB to ``p`` in [−1, 1]³, is
encoded by ``γ(p)`` with L = 10 frequencies (NeRF eq. 4, 3 + 6·10 = 63 channels), passed through
``depth`` fully connected ReLU layers of ``width`` units, and ``γ(p)`` is concatenated again to
the activation of layer ``depth // 2 + 1`` (1-based), which feeds the next layer (NeRF appendix A:
"a skip connection that concatenates this input to the fifth layer's activation"; its code's
0-based ``skips=[4]`` for D = 8). ARCHITECTURES.md's "after layer D/2" is read in that 0-based
sense, so the paper preset is NeRF's trunk layer for layer.
A linear head ``Linear(width → 16)`` reads ``v = [sigma_raw, g(15)]`` off the last activation;
φ² is the shared canonical decoder (DESIGN.md), so an MLP can inherit or hand over its decoder.

pvd's choices:

- Head: the direct ``Linear(width → 16)`` readout, the faithful NeRF trunk followed by one linear
  map into the canonical ``v``. The reference PVD code instead ends its 8-layer trunk in a 28-d
  "hash-like" vector followed by a 28→64→16 density head (ARCHITECTURES.md accepts either); an
  importer of reference PVD ``mlp`` checkpoints must map that head, it does not load as is.
- View direction: NeRF feeds ``γ(d)`` (4 frequencies) to a 128-unit branch; here colour comes from
  the canonical decoder (SH degree 4 of ``d`` and ``g``), as in the reference PVD code.
- Points outside the AABB are clamped to its surface, as the grid architectures do, so every
  architecture answers the same outside the box.
- Learning rate: :meth:`MLP.param_groups` scales the recipe's ``lr`` by ``config.lr_scale``
  (default 0.1: the reference PVD code trains its MLP at 1e-3 where grids use 1e-2). A scale in
  the model config, rather than a ``[cpu.train] lr`` override, also holds when the MLP is a
  *student* under a conversion recipe, whose learning rate is written for grids.
- Initialisation: PyTorch's default for ``nn.Linear`` (Kaiming-uniform weights, uniform biases);
  NeRF's TensorFlow code uses Glorot-uniform. At init ``v`` is small (``|sigma_raw| < 0.4``
  measured on the cpu preset): density ≈ 1 and near-grey colour, like the grid architectures.

Variants for imported teachers (``pvd.importers.pvd_reference``; the defaults are the field
above, so existing checkpoints load unchanged):

- ``skip``: the 0-based trunk layer whose activation gets ``γ(p)`` appended (default
  ``depth // 2``). The reference PVD code's ``--skip`` (3) with its 8-layer ``nerf_mlp``.
- ``head_width``: 0 is the direct ``Linear(width → 16)`` readout; ``> 0`` is
  ``Linear(width → head_width) ReLU Linear(head_width → 16, no bias)`` (state keys
  ``head.0.*``, ``head.2.weight``). The reference PVD ``mlp`` ends its trunk in
  ``Linear(W → 28)`` (no activation) followed by ``sigma_net`` ``28 → 64 → 16`` (no biases, ReLU
  between, ``just_train_tea/network.py``); two linear maps in a row are one, so its head is
  exactly this form with ``head_width = 64`` (weight ``W₂W₁``, bias ``W₂b₁``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from .base import CanonicalField, FieldConfig, require
from .components import positional_encoding
from .registry import register


@dataclasses.dataclass
class MLPConfig(FieldConfig):
    """NeRF trunk. Defaults are the paper's configuration (``paper`` preset: D = 8, W = 256).

    ``depth`` (D) and ``width`` (W): hidden layers of the trunk; ``frequencies``: L of ``γ``;
    ``lr_scale``: factor on the recipe's learning rate (see the module docstring); ``skip`` and
    ``head_width``: the variants of imported teachers (module docstring).
    """

    depth: int = 8
    width: int = 256
    frequencies: int = 10
    lr_scale: float = 0.1
    skip: int | None = None
    head_width: int = 0

    def validate(self) -> None:
        super().validate()
        require(
            3 <= self.depth <= 32,
            f"depth must be in 3..32 (a layer must follow the skip), got {self.depth}",
        )
        require(1 <= self.width <= 4096, f"width must be in 1..4096, got {self.width}")
        require(
            0 <= self.frequencies <= 16,
            f"frequencies must be in 0..16, got {self.frequencies}",
        )
        require(0.0 < self.lr_scale <= 10.0, f"lr_scale must be in (0, 10], got {self.lr_scale}")
        if self.skip is not None:
            require(
                0 <= self.skip <= self.depth - 2,
                f"skip must be in 0..{self.depth - 2} (a layer must follow it), got {self.skip}",
            )
        require(
            0 <= self.head_width <= 4096, f"head_width must be in 0..4096, got {self.head_width}"
        )

    @property
    def encoding_dim(self) -> int:
        """Channels of ``γ(p)``: the point itself and a sine and cosine per frequency and axis."""
        return 3 + 6 * self.frequencies

    @property
    def skip_after(self) -> int:
        """0-based index of the trunk layer whose activation gets ``γ(p)`` appended."""
        return self.depth // 2 if self.skip is None else self.skip


@register
class MLP(CanonicalField):
    """NeRF position trunk → canonical ``v``; shared decoder (see module docstring)."""

    arch = "mlp"
    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        enc, width = config.encoding_dim, config.width
        in_dims = [enc] + [
            width + enc if i == config.skip_after + 1 else width for i in range(1, config.depth)
        ]
        self.trunk = nn.ModuleList(nn.Linear(n, width) for n in in_dims)
        self.head: nn.Module = nn.Linear(width, 16)
        if config.head_width:
            self.head = nn.Sequential(
                nn.Linear(width, config.head_width),
                nn.ReLU(),
                nn.Linear(config.head_width, 16, bias=False),
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``γ(p)`` of model-space points, ``p`` = the AABB-normalised point in [−1, 1]³."""
        p = self.normalize(x).clamp(0.0, 1.0) * 2.0 - 1.0
        return positional_encoding(p, self.config.frequencies)

    def phi1(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.encode(x)
        h = encoded
        for i, layer in enumerate(self.trunk):
            h = torch.relu(layer(h))
            if i == self.config.skip_after:
                h = torch.cat([h, encoded], dim=-1)
        return self.head(h)

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Trunk, head and decoder at ``lr_scale · base_lr`` (MLPs need a lower rate than grids)."""
        return [{"params": list(self.parameters()), "lr": base_lr * self.config.lr_scale}]
