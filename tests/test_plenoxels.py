"""Plenoxels adapter (architectures/plenoxels.py): grid layout, SH colour, TV, contract, io.

Expected values are computed here from the definitions in ARCHITECTURES.md ("Plenoxels") and
svox2's TV formula (per cell and channel ``sqrt(1e-5 + Σ (R/256 · Δ)²)``), not from the module.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import architectures
from architectures import ConfigError, SceneSpec
from architectures.plenoxels import Plenoxels, PlenoxelsConfig

SH_C0, SH_C1 = 0.28209479177387814, 0.48860251190291987


def _field(resolution: int = 8, **changes: object) -> Plenoxels:
    field = architectures.build("plenoxels", {"resolution": resolution, **changes})
    assert isinstance(field, Plenoxels)
    return field


def _noisy(field: Plenoxels, seed: int = 0, scale: float = 1.0) -> Plenoxels:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        field.grid.copy_(torch.randn(field.grid.shape, generator=g) * scale)
    return field


def _inputs(n: int = 200, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g) * 3.0 - 1.5
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return x, d


def _full_tv(grid: torch.Tensor) -> tuple[float, float]:
    """Mean absolute forward difference over the whole grid: (density, SH)."""
    diffs = [torch.diff(grid, dim=axis).abs() for axis in (1, 2, 3)]
    density = sum(float(diff[0].mean()) for diff in diffs)
    sh = sum(float(diff[1:].mean()) for diff in diffs)
    return density, sh


# -- layout and initialisation ----------------------------------------------------------------
def test_layout_and_initial_state() -> None:
    field = _field(resolution=6)
    assert field.arch == "plenoxels" and not field.canonical and field.feature_dim == 28
    assert field.grid.shape == (28, 6, 6, 6)
    assert field.num_parameters == 28 * 6**3 and field.nbytes == 4 * 28 * 6**3
    assert architectures.get("svox2") is Plenoxels
    torch.testing.assert_close(field.grid[0], torch.full((6, 6, 6), math.log(0.1)))
    assert float(field.grid.detach()[1:].abs().max()) == 0.0
    x, d = _inputs()
    sigma, rgb = field(x, d)
    torch.testing.assert_close(sigma, torch.full((200,), 0.1))
    torch.testing.assert_close(rgb, torch.full((200, 3), 0.5))


def test_vertex_positions_in_storage_order() -> None:
    field = _field(resolution=5, aabb=(0.0, -1.0, 2.0, 4.0, 1.0, 3.0))
    positions = field.vertex_positions()
    values = _noisy(field).vertex_values()
    assert positions.shape == (125, 3) and values.shape == (125, 28)
    for i, j, k in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (2, 3, 4), (4, 4, 4)]:
        n = i * 25 + j * 5 + k
        expected = torch.tensor([0.0 + 4.0 * i / 4, -1.0 + 2.0 * j / 4, 2.0 + 1.0 * k / 4])
        torch.testing.assert_close(positions[n], expected)
        torch.testing.assert_close(values[n], field.grid[:, i, j, k].detach())


def test_trilinear_values_at_vertices_equal_stored_values() -> None:
    field = _noisy(_field(resolution=7, aabb=(-1.0, -2.0, -0.5, 1.0, 2.0, 0.5)))
    with torch.no_grad():
        v = field.phi1(field.vertex_positions())
        raw = field.sigma_raw(field.vertex_positions())
    torch.testing.assert_close(v, field.vertex_values().detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(raw, field.grid[0].detach().flatten(), atol=1e-5, rtol=0)


def test_trilinear_between_vertices() -> None:
    field = _noisy(_field(resolution=3, aabb=(0.0, 0.0, 0.0, 2.0, 2.0, 2.0)))
    g = field.grid.detach()
    x = torch.tensor([[0.5, 0.0, 0.0], [1.0, 1.5, 0.25]])
    expected_0 = 0.5 * g[:, 0, 0, 0] + 0.5 * g[:, 1, 0, 0]
    # (1, 1.5, 0.25): x on vertex 1, y halfway 1→2, z a quarter of the way 0→1
    expected_1 = sum(
        wy * wz * g[:, 1, jy, kz]
        for jy, wy in ((1, 0.5), (2, 0.5))
        for kz, wz in ((0, 0.75), (1, 0.25))
    )
    with torch.no_grad():
        v = field.phi1(x)
    torch.testing.assert_close(v, torch.stack([expected_0, expected_1]), atol=1e-5, rtol=0)


# -- φ² ---------------------------------------------------------------------------------------
def test_sh_colour_channel_layout() -> None:
    """Channels 1..9 are red's SH coefficients, 10..18 green's, 19..27 blue's."""
    field = _field()
    v = torch.zeros(4, 28)
    v[:, 0] = torch.tensor([-3.0, 0.0, 1.0, 2.5])
    v[:, 1] = 2.0  # red, SH_0 (constant)
    v[:, 10] = -1.0  # green, SH_0
    v[:, 20] = 3.0  # blue, SH_1 = -C1·y
    d = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    sigma, rgb = field.phi2(v, d)
    torch.testing.assert_close(sigma, torch.exp(v[:, 0]))
    expected = torch.stack(
        [
            torch.full((4,), 2.0 * SH_C0),
            torch.full((4,), -1.0 * SH_C0),
            -SH_C1 * d[:, 1] * 3.0,
        ],
        dim=-1,
    ).sigmoid()
    torch.testing.assert_close(rgb, expected)


def test_shapes_ranges_and_cheap_density() -> None:
    field = _noisy(_field(), scale=4.0)
    x, d = _inputs()
    v = field.phi1(x)
    sigma, rgb = field(x, d)
    assert v.shape == (200, 28) and sigma.shape == (200,) and rgb.shape == (200, 3)
    assert bool((sigma >= 0).all()) and bool(((rgb >= 0) & (rgb <= 1)).all())
    torch.testing.assert_close(field.density(x), sigma)
    clipped = _noisy(_field(sigma_clip=(-2.0, 7.0)), scale=4.0)
    assert float(clipped.density(x).detach().min()) >= math.exp(-2.0) - 1e-6


# -- regulariser ------------------------------------------------------------------------------
def test_tv_matches_svox2_formula_on_a_ramp() -> None:
    r, slope = 6, 0.7
    field = _field(
        resolution=r,
        tv_fraction=1.0,
        tv_density_weight=1.0,
        tv_sh_weight=1.0,
        l1_density_weight=0.5,
    )
    with torch.no_grad():
        field.grid.zero_()
        field.grid[0] = (slope * torch.arange(r, dtype=torch.float32)).view(r, 1, 1)
    cells = (r - 1) ** 3
    scale = r / 256
    density_tv = cells * math.sqrt(1e-5 + (scale * slope) ** 2)
    sh_tv = 27 * cells * math.sqrt(1e-5)
    l1 = 0.5 * (r - 1) ** 2 * sum(math.exp(slope * i) for i in range(r - 1))
    assert field.regularizer().item() == pytest.approx(density_tv + sh_tv + l1, rel=1e-5)


def test_tv_subset_size_and_determinism() -> None:
    """On a ramp every cell has the same TV, so a subset's sum counts its cells."""
    r = 9
    field = _field(resolution=r, tv_fraction=0.05, tv_density_weight=1.0, tv_sh_weight=0.0)
    with torch.no_grad():
        field.grid[0] = torch.arange(r, dtype=torch.float32).view(r, 1, 1)
    per_cell = math.sqrt(1e-5 + (r / 256) ** 2)
    assert field.regularizer().item() == pytest.approx(round(0.05 * 8**3) * per_cell, rel=1e-5)
    noisy = _noisy(_field(resolution=r, tv_fraction=0.05))
    torch.manual_seed(5)
    a = noisy.regularizer().item()
    torch.manual_seed(5)
    b = noisy.regularizer().item()
    c = noisy.regularizer().item()
    assert a == b and a != c


def test_regularizer_is_positive_and_optimising_it_reduces_total_variation() -> None:
    torch.manual_seed(0)
    field = _noisy(_field(resolution=12, tv_fraction=0.2))
    flat = _field(resolution=12, tv_fraction=0.2)
    assert field.regularizer().item() > 0
    assert field.regularizer().item() > 10 * flat.regularizer().item()
    before = _full_tv(field.grid.detach())
    optimizer = torch.optim.Adam(field.param_groups(1e-2), eps=1e-15)
    for _ in range(15):
        optimizer.zero_grad()
        field.regularizer().backward()
        optimizer.step()
    after = _full_tv(field.grid.detach())
    assert after[0] < 0.95 * before[0] and after[1] < 0.95 * before[1]


def test_gradients_reach_every_parameter_group() -> None:
    field = _noisy(_field())
    x, d = _inputs()
    sigma, rgb = field(x, d)
    (sigma.mean() + rgb.mean() + field.regularizer()).backward()
    groups = field.param_groups(3e-2)
    assert [g["lr"] for g in groups] == [pytest.approx(3e-2 * field.config.lr_scale)]
    assert [p for g in groups for p in g["params"]] == [field.grid]
    grad = field.grid.grad
    assert grad is not None and float(grad[0].abs().sum()) > 0 and float(grad[1:].abs().sum()) > 0


# -- config and io ----------------------------------------------------------------------------
def test_config_json_round_trip() -> None:
    config = PlenoxelsConfig(
        resolution=32, init_sigma=0.05, tv_fraction=0.1, l1_density_weight=1e-6
    )
    assert json.loads(config.to_json())["resolution"] == 32
    assert PlenoxelsConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resolution": 1}, "resolution must be in 2..512, got 1"),
        ({"init_sigma": 0.0}, "init_sigma must be a positive density, got 0.0"),
        ({"tv_sh_weight": -1e-3}, "tv_sh_weight must be >= 0, got -0.001"),
        ({"tv_fraction": 0.0}, "tv_fraction must be in (0, 1], got 0.0"),
        ({"tv_fraction": 1.5}, "tv_fraction must be in (0, 1], got 1.5"),
    ],
)
def test_bad_config_is_refused_by_name(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        architectures.build("plenoxels", {"resolution": 8, **changes})
    assert str(info.value) == message


def test_save_load_round_trip(tmp_path) -> None:
    field = _noisy(_field(resolution=10, tv_sh_weight=2e-3))
    path = architectures.save(field, tmp_path / "plx.safetensors", scene=SceneSpec())
    checkpoint, state = architectures.read(path)
    assert checkpoint.arch == "plenoxels" and state["grid"].shape == (28, 10, 10, 10)
    torch.testing.assert_close(state["grid"], field.grid.detach(), atol=0, rtol=0)
    loaded = architectures.load(path)
    assert isinstance(loaded, Plenoxels) and loaded.config == field.config
    x, d = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, d), field(x, d), atol=0, rtol=0)
