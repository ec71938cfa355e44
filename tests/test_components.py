"""Shared components (architectures/components.py) against independent references.

The references are written here from the specification (ARCHITECTURES.md, "Shared components"),
not from the implementation: the SH basis from its coefficient list, trilinear interpolation from
the vertex convention ``u = i / (R - 1)``, the positional encoding from NeRF's ordering.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from architectures.components import (
    CanonicalDecoder,
    activate_density,
    positional_encoding,
    sh_encode,
    trilinear_dense,
    trunc_exp,
)


def _random_unit_vectors(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return d / d.norm(dim=-1, keepdim=True)


def _sh_reference(d: torch.Tensor) -> torch.Tensor:
    """Degree-4 real SH, term by term from the list in ARCHITECTURES.md (tcnn sign convention)."""
    rows = []
    for x, y, z in d.tolist():
        rows.append(
            [
                0.28209479,
                -0.48860251 * y,
                0.48860251 * z,
                -0.48860251 * x,
                1.09254843 * x * y,
                -1.09254843 * y * z,
                0.94617470 * z * z - 0.31539157,
                -1.09254843 * x * z,
                0.54627422 * (x * x - y * y),
                0.59004359 * y * (-3 * x * x + y * y),
                2.89061144 * x * y * z,
                0.45704580 * y * (1 - 5 * z * z),
                0.37317633 * z * (5 * z * z - 3),
                0.45704580 * x * (1 - 5 * z * z),
                1.44530572 * z * (x * x - y * y),
                0.59004359 * x * (-x * x + 3 * y * y),
            ]
        )
    return torch.tensor(rows, dtype=torch.float64)


# -- spherical harmonics ----------------------------------------------------------------------
def test_sh_degree4_matches_coefficient_list() -> None:
    d = _random_unit_vectors(256)
    # The listed coefficients have 8 decimals; the code uses tcnn's full-precision values.
    torch.testing.assert_close(sh_encode(d), _sh_reference(d), atol=2e-8, rtol=0)


def test_sh_float32_matches_reference() -> None:
    d = _random_unit_vectors(64, seed=1)
    out = sh_encode(d.float())
    assert out.dtype == torch.float32 and out.shape == (64, 16)
    torch.testing.assert_close(out.double(), _sh_reference(d), atol=1e-6, rtol=0)


def test_sh_lower_degrees_are_prefixes() -> None:
    d = _random_unit_vectors(32, seed=2)
    full = sh_encode(d, degree=4)
    for degree in (1, 2, 3):
        out = sh_encode(d, degree=degree)
        assert out.shape == (32, degree * degree)
        torch.testing.assert_close(out, full[:, : degree * degree], atol=0, rtol=0)


@pytest.mark.parametrize("degree", [0, 5])
def test_sh_degree_out_of_range(degree: int) -> None:
    with pytest.raises(ValueError, match=f"SH degree must be 1..4, got {degree}"):
        sh_encode(_random_unit_vectors(2), degree=degree)


def test_sh_basis_is_orthonormal_on_the_sphere() -> None:
    """∫ Y_i Y_j dΩ = δ_ij, by Gauss-Legendre in cos θ × uniform φ.

    Y_i·Y_j is a polynomial of degree ≤ 8 in (x, y, z): 10 Legendre nodes are exact up to degree
    19 in z and 24 equispaced azimuths are exact for trigonometric degree < 24, so the quadrature
    is exact and the tolerance only covers rounding.
    """
    z_nodes, z_weights = np.polynomial.legendre.leggauss(10)
    n_phi = 24
    phi = 2 * math.pi * np.arange(n_phi) / n_phi
    z = np.repeat(z_nodes, n_phi)
    r = np.sqrt(1 - z * z)
    p = np.tile(phi, len(z_nodes))
    d = torch.tensor(np.stack([r * np.cos(p), r * np.sin(p), z], axis=-1))
    w = torch.tensor(np.repeat(z_weights, n_phi) * (2 * math.pi / n_phi))
    y = sh_encode(d)
    gram = y.t() @ (w[:, None] * y)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=1e-9, rtol=0)


# -- activations ------------------------------------------------------------------------------
def test_trunc_exp_forward_is_exp_and_gradient_is_clamped() -> None:
    x = torch.tensor([-20.0, -15.5, -3.0, 0.0, 2.5, 15.0, 15.5, 20.0], dtype=torch.float64)
    x.requires_grad_(True)
    y = trunc_exp(x)
    torch.testing.assert_close(y, torch.exp(x.detach()), atol=0, rtol=1e-15)
    y.sum().backward()
    expected = torch.exp(x.detach().clamp(-15.0, 15.0))
    torch.testing.assert_close(x.grad, expected, atol=0, rtol=1e-15)
    # Beyond ±15 the gradient is frozen, not exp(x).
    assert x.grad[-1] == x.grad[-2] == math.exp(15.0)
    assert x.grad[0] == math.exp(-15.0)


def test_activate_density_optional_clamp() -> None:
    raw = torch.tensor([-10.0, 0.0, 3.0, 10.0])
    torch.testing.assert_close(activate_density(raw), torch.exp(raw))
    clipped = activate_density(raw, (-2.0, 7.0))
    torch.testing.assert_close(clipped, torch.exp(torch.tensor([-2.0, 0.0, 3.0, 7.0])))


# -- positional encoding ----------------------------------------------------------------------
def test_positional_encoding_shape_and_order() -> None:
    g = torch.Generator().manual_seed(3)
    p = torch.rand(7, 3, generator=g, dtype=torch.float64) * 4 - 2
    n_freq = 4
    enc = positional_encoding(p, n_freq)
    assert enc.shape == (7, 3 + 6 * n_freq)
    torch.testing.assert_close(enc[:, :3], p, atol=0, rtol=0)
    for k in range(n_freq):
        start = 3 + 6 * k
        torch.testing.assert_close(enc[:, start : start + 3], torch.sin(2.0**k * p))
        torch.testing.assert_close(enc[:, start + 3 : start + 6], torch.cos(2.0**k * p))


def test_positional_encoding_nerf_width() -> None:
    # NeRF's 10 frequencies give the 63-d input of the MLP trunk (ARCHITECTURES.md, "MLP").
    assert positional_encoding(torch.zeros(2, 3), 10).shape == (2, 63)


# -- canonical decoder ------------------------------------------------------------------------
def test_canonical_decoder_layout() -> None:
    decoder = CanonicalDecoder()
    linears = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(31, 64), (64, 64), (64, 3)]
    assert all(m.bias is None for m in linears)
    assert sum(p.numel() for p in decoder.parameters()) == 31 * 64 + 64 * 64 + 64 * 3


def test_canonical_decoder_ranges() -> None:
    torch.manual_seed(0)
    decoder = CanonicalDecoder()
    g = torch.Generator().manual_seed(4)
    v = torch.randn(500, 16, generator=g) * 50  # extreme features: sigmoid/exp must still hold
    v[:, 0] = torch.linspace(-200, 80, 500)
    d = _random_unit_vectors(500, seed=5).float()
    sigma, rgb = decoder(v, d)
    assert sigma.shape == (500,) and rgb.shape == (500, 3)
    assert bool((sigma >= 0).all()) and bool(torch.isfinite(sigma).all())
    assert bool((rgb >= 0).all()) and bool((rgb <= 1).all())
    torch.testing.assert_close(sigma, torch.exp(v[:, 0]))


def test_canonical_decoder_input_order_and_sigma_clip() -> None:
    """rgb = sigmoid(mlp([SH(d) (16), g (15)])), checked with the weights split by hand."""
    torch.manual_seed(1)
    decoder = CanonicalDecoder(sigma_clip=(-2.0, 7.0))
    w1, w2, w3 = (m.weight for m in decoder.colour_mlp if isinstance(m, torch.nn.Linear))
    g = torch.Generator().manual_seed(6)
    v = torch.randn(20, 16, generator=g)
    v[0, 0], v[1, 0] = -9.0, 12.0
    d = _random_unit_vectors(20, seed=7).float()
    sigma, rgb = decoder(v, d)
    sh = torch.tensor(_sh_reference(d.double()).tolist())
    h = torch.relu(sh @ w1[:, :16].t() + v[:, 1:] @ w1[:, 16:].t())
    expected = torch.sigmoid(torch.relu(h @ w2.t()) @ w3.t())
    torch.testing.assert_close(rgb, expected, atol=1e-5, rtol=0)
    assert sigma[0].item() == pytest.approx(math.exp(-2.0), rel=1e-6)
    assert sigma[1].item() == pytest.approx(math.exp(7.0), rel=1e-6)


# -- trilinear interpolation ------------------------------------------------------------------
def _trilinear_reference(grid: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Plain trilinear interpolation, vertex ``i`` at ``u = i / (R - 1)``, clamped to the box."""
    sizes = grid.shape[1:]
    out = []
    for point in u.tolist():
        base, frac = [], []
        for axis, size in enumerate(sizes):
            t = min(max(point[axis], 0.0), 1.0) * (size - 1)
            i = min(math.floor(t), size - 2)
            base.append(i)
            frac.append(t - i)
        value = torch.zeros(grid.shape[0], dtype=grid.dtype)
        for offset in itertools.product((0, 1), repeat=3):
            weight = 1.0
            for axis in range(3):
                weight *= frac[axis] if offset[axis] else 1.0 - frac[axis]
            i, j, k = (base[a] + offset[a] for a in range(3))
            value = value + weight * grid[:, i, j, k]
        out.append(value)
    return torch.stack(out)


def test_trilinear_dense_matches_reference_on_anisotropic_grid() -> None:
    g = torch.Generator().manual_seed(8)
    grid = torch.randn(2, 3, 4, 6, generator=g, dtype=torch.float64)  # distinct R per axis
    u = torch.rand(40, 3, generator=g, dtype=torch.float64)
    corners = torch.tensor(list(itertools.product((0.0, 1.0), repeat=3)), dtype=torch.float64)
    outside = torch.tensor([[-0.3, 0.5, 1.2], [1.5, -1.0, 0.25]], dtype=torch.float64)
    u = torch.cat([u, corners, outside])
    torch.testing.assert_close(trilinear_dense(grid, u), _trilinear_reference(grid, u))


def test_trilinear_dense_hits_vertices_exactly() -> None:
    g = torch.Generator().manual_seed(9)
    grid = torch.randn(3, 5, 3, 4, generator=g, dtype=torch.float64)
    index = torch.tensor([[0, 0, 0], [4, 2, 3], [1, 2, 0], [3, 1, 2]])
    u = index.double() / torch.tensor([4.0, 2.0, 3.0])
    expected = grid[:, index[:, 0], index[:, 1], index[:, 2]].t()
    torch.testing.assert_close(trilinear_dense(grid, u), expected, atol=1e-12, rtol=0)


def test_trilinear_dense_accepts_non_contiguous_points() -> None:
    g = torch.Generator().manual_seed(10)
    grid = torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64)
    u = torch.rand(3, 9, generator=g, dtype=torch.float64).t()  # [9, 3], not contiguous
    assert not u.is_contiguous()
    torch.testing.assert_close(trilinear_dense(grid, u), _trilinear_reference(grid, u))
