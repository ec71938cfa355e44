"""Renderer and occupancy grid: the packed CPU path against an independent per-ray reference,
empty-space skipping, early stopping, and the CUDA path against the CPU path (gpu marker)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pvd.render import (
    OccupancyGrid,
    PackedSamples,
    RenderSettings,
    composite_packed,
    ray_aabb,
    render_rays,
    sample_rays,
)

AABB = torch.tensor([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5])


class Ball:
    """A ball of constant density and a colour that varies with position and direction."""

    def __init__(self, radius: float = 0.8, sigma: float = 5.0):
        self.radius, self.sigma = radius, sigma

    def density(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.norm(dim=-1) < self.radius, self.sigma, 0.0).to(x.dtype)

    def __call__(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = torch.sigmoid(torch.cat([x[:, :2], d[:, :1]], dim=-1) * 2)
        return self.density(x), rgb


def _rays(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 4
    target = (torch.rand(n, 3, generator=g) - 0.5) * 1.2
    dirs = torch.nn.functional.normalize(target - origins, dim=-1)
    return origins, dirs


def _reference_render(samples: PackedSamples, sigmas, rgbs, background):
    """Per-ray loop, float64, the textbook quadrature (NeRF eq. 3)."""
    out = torch.zeros(samples.n_rays, 3, dtype=torch.float64)
    opacity = torch.zeros(samples.n_rays, dtype=torch.float64)
    for r in range(samples.n_rays):
        sel = samples.ray_indices == r
        delta = (samples.t_ends[sel] - samples.t_starts[sel]).double()
        s, c = sigmas[sel].double(), rgbs[sel].double()
        transmittance = 1.0
        for i in range(delta.numel()):
            alpha = 1 - torch.exp(-s[i] * delta[i])
            out[r] += transmittance * alpha * c[i]
            opacity[r] += transmittance * alpha
            transmittance = transmittance * (1 - alpha)
    return out + (1 - opacity[:, None]) * background.double(), opacity


def test_cpu_compositing_matches_per_ray_reference():
    origins, dirs = _rays(64)
    settings = RenderSettings(step_size=0.05)
    grid = OccupancyGrid(AABB, 16, 0.5)
    samples = sample_rays(origins, dirs, grid, settings, near=2.0, far=6.0)
    g = torch.Generator().manual_seed(1)
    sigmas = torch.rand(len(samples), generator=g) * 4
    rgbs = torch.rand(len(samples), 3, generator=g)
    background = torch.tensor([0.2, 0.5, 1.0])
    out = composite_packed(samples, sigmas, rgbs, background)
    ref_rgb, ref_opacity = _reference_render(samples, sigmas, rgbs, background)
    torch.testing.assert_close(out.rgb.double(), ref_rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.opacity.double(), ref_opacity, atol=1e-5, rtol=0)


def test_samples_are_packed_sorted_and_inside_the_box():
    origins, dirs = _rays(32)
    samples = sample_rays(
        origins, dirs, OccupancyGrid(AABB, 8, 0.5), RenderSettings(step_size=0.1), 2.0, 6.0
    )
    assert torch.all(samples.ray_indices[1:] >= samples.ray_indices[:-1])
    same_ray = samples.ray_indices[1:] == samples.ray_indices[:-1]
    assert torch.all(samples.t_starts[1:][same_ray] >= samples.t_ends[:-1][same_ray] - 1e-6)
    assert torch.all(samples.t_ends > samples.t_starts)
    x, _ = samples.points(origins, dirs)
    assert torch.all(x.abs() <= 1.5 + 1e-5)
    t_in, t_out = ray_aabb(origins, dirs, AABB)
    assert torch.all(samples.t_starts >= t_in[samples.ray_indices] - 1e-5)
    assert torch.all(samples.t_ends <= t_out[samples.ray_indices] + 1e-5)


def test_empty_cells_are_skipped_and_render_is_unchanged():
    ball = Ball()
    origins, dirs = _rays(128, seed=3)
    settings = RenderSettings(step_size=0.01, early_stop_eps=0.0)
    full = OccupancyGrid(AABB, 32, 0.5)
    culled = OccupancyGrid(AABB, 32, 0.5)
    half_diagonal = 3.0 / 32 * 3**0.5 / 2  # every cell that touches the ball stays occupied
    centres = culled.cell_points(jitter=False)
    culled.binary = (centres.norm(dim=-1) < ball.radius + half_diagonal).view(32, 32, 32)
    assert 0.0 < culled.occupied_fraction < 0.2
    bg = torch.ones(3)
    a = render_rays(ball, origins, dirs, full, settings, 2.0, 6.0, bg)
    b = render_rays(ball, origins, dirs, culled, settings, 2.0, 6.0, bg)
    assert b.n_samples < a.n_samples / 2
    torch.testing.assert_close(a.rgb, b.rgb, atol=1e-6, rtol=0)


def test_early_stop_drops_samples_behind_opaque_surfaces():
    ball = Ball(sigma=200.0)
    origins, dirs = _rays(64, seed=4)
    grid = OccupancyGrid.from_field(ball.density, AABB, 32, 0.5)
    keep_all = RenderSettings(step_size=0.01, early_stop_eps=0.0)
    stop = RenderSettings(step_size=0.01, early_stop_eps=1e-4)
    a = render_rays(ball, origins, dirs, grid, keep_all, 2.0, 6.0, torch.ones(3))
    b = render_rays(ball, origins, dirs, grid, stop, 2.0, 6.0, torch.ones(3))
    assert b.n_samples < a.n_samples / 4
    torch.testing.assert_close(a.rgb, b.rgb, atol=2e-4, rtol=0)


def test_constant_density_slab_matches_closed_form():
    """A homogeneous medium filling the box: opacity must be 1 − exp(−σ·L) for chord length L."""
    sigma = 0.7

    class Fog:
        def density(self, x):
            return torch.full(x.shape[:1], sigma)

        def __call__(self, x, d):
            return self.density(x), torch.full_like(x, 0.5)

    origins, dirs = _rays(32, seed=5)
    grid = OccupancyGrid(AABB, 8, 0.0)
    out = render_rays(
        Fog(),
        origins,
        dirs,
        grid,
        RenderSettings(step_size=0.01, early_stop_eps=0.0),
        0.0,
        100.0,
        torch.zeros(3),
    )
    t_in, t_out = ray_aabb(origins, dirs, AABB)
    expected = 1 - torch.exp(-sigma * (t_out - t_in))
    torch.testing.assert_close(out.opacity, expected, atol=1e-5, rtol=0)


def test_occupancy_grid_update_follows_density_and_roundtrips():
    ball = Ball()
    grid = OccupancyGrid(AABB, 16, 0.5)
    grid.update(ball.density)
    centres = grid.cell_points(jitter=False)
    inside = centres.norm(dim=-1) < 0.8 - 0.2  # cells well inside the ball
    outside = centres.norm(dim=-1) > 0.8 + 0.2
    assert grid.query(centres[inside]).all()
    assert not grid.query(centres[outside]).any()
    assert not grid.query(torch.tensor([[2.0, 0.0, 0.0]])).any()
    again = OccupancyGrid.from_tensors(
        {"binary": grid.to_tensors()["occupancy.binary"]}, tuple(AABB.tolist()), 0.5
    )
    assert torch.equal(again.binary, grid.binary)


def test_cpu_run_never_imports_nerfacc_cuda_backend():
    code = (
        "import sys, torch\n"
        "from pvd.render import OccupancyGrid, RenderSettings, render_rays\n"
        "class F:\n"
        "    def density(self, x): return torch.ones(x.shape[0])\n"
        "    def __call__(self, x, d): return torch.ones(x.shape[0]), torch.ones_like(x) * 0.5\n"
        "o = torch.tensor([[0., 0., 4.]]); d = torch.tensor([[0., 0., -1.]])\n"
        "grid = OccupancyGrid(torch.tensor([-1.5]*3 + [1.5]*3), 8, 0.5)\n"
        "grid.update(F().density)\n"
        "out = render_rays(F(), o, d, grid, RenderSettings(), 2.0, 6.0, torch.ones(3))\n"
        "assert out.n_samples > 0\n"
        "assert 'nerfacc' in sys.modules\n"
        "print('nerfacc.cuda._backend' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_matches_cpu_path_on_the_same_samples():
    from pvd.render import nerfacc_cuda_available

    assert nerfacc_cuda_available(), "nerfacc's CUDA extension did not load"
    origins, dirs = _rays(256)
    samples = sample_rays(
        origins, dirs, OccupancyGrid(AABB, 16, 0.5), RenderSettings(step_size=0.02), 2.0, 6.0
    )
    g = torch.Generator().manual_seed(2)
    sigmas = torch.rand(len(samples), generator=g) * 4
    rgbs = torch.rand(len(samples), 3, generator=g)
    bg = torch.ones(3)
    cpu = composite_packed(samples, sigmas, rgbs, bg)
    cuda_samples = PackedSamples(
        samples.ray_indices.cuda(), samples.t_starts.cuda(), samples.t_ends.cuda(), samples.n_rays
    )
    gpu = composite_packed(cuda_samples, sigmas.cuda(), rgbs.cuda(), bg.cuda())
    torch.testing.assert_close(gpu.rgb.cpu(), cpu.rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(gpu.opacity.cpu(), cpu.opacity, atol=1e-5, rtol=0)
