"""tiny-cuda-nn parameter layouts, shared by the hash-grid importers: instant-ngp snapshots,
torch-ngp's ``network_tcnn.py`` and nerfstudio's tcnn path store the same flat vectors.

- FullyFusedMLP (``src/fully_fused_mlp.cu``; tcnn#6 and #510, maintainer answers): row-major
  ``(out, in)`` matrices without biases, the input width padded to a multiple of 16 and the
  output rows likewise (:func:`pad16`, :func:`tcnn_mlp_size`, :func:`tcnn_mlp_matrices`).
- HashGrid (``encodings/grid.h``): one table per level, entries × features
  (:func:`tcnn_grid_size`, from :func:`architectures.hashgrid.level_layouts`).
"""

from __future__ import annotations

import torch

from architectures.hashgrid import HashGridConfig, level_layouts


def pad16(n: int) -> int:
    """FullyFusedMLP's width alignment: ``n`` rounded up to a multiple of 16."""
    return (n + 15) // 16 * 16


def tcnn_mlp_size(n_input: int, width: int, hidden_layers: int, n_output: int) -> int:
    """Parameter count of a tcnn FullyFusedMLP (``src/fully_fused_mlp.cu``): ``W0 [width,
    pad16(in)]``, ``hidden_layers − 1`` × ``[width, width]``, ``Wout [pad16(out), width]``."""
    return width * pad16(n_input) + (hidden_layers - 1) * width * width + pad16(n_output) * width


def tcnn_mlp_matrices(
    params: torch.Tensor, n_input: int, width: int, hidden_layers: int, n_output: int
) -> list[torch.Tensor]:
    """The weight matrices of a flat FullyFusedMLP parameter vector, as torch ``(out, in)``
    weights with their padded shapes (callers drop or fold the padding): row-major, no biases
    (tcnn#6 and #510, maintainer answers). ``params`` must hold exactly
    :func:`tcnn_mlp_size` values."""
    shapes = [(width, pad16(n_input))]
    shapes += [(width, width)] * (hidden_layers - 1)
    shapes += [(pad16(n_output), width)]
    out, offset = [], 0
    for rows, cols in shapes:
        out.append(params[offset : offset + rows * cols].view(rows, cols))
        offset += rows * cols
    if offset != params.numel():
        raise ValueError(f"MLP of {offset} parameters given {params.numel()}")
    return out


def tcnn_grid_size(config: HashGridConfig) -> int:
    """Parameter count of a tcnn hash grid (entries × features)."""
    return sum(layout.size for layout in level_layouts(config)) * config.features
