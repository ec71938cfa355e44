"""TensoRF VM adapter (architectures/tensorf.py): layout, schedule, upsampling, regularisers,
CP → VM rearrangement, config and io.

Values are checked against references written here independently of ``grid_sample``: a per-point
bilinear/linear evaluation with explicit indices, and tensorly's own CP reconstruction.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tensorly as tl
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import architectures
from architectures import CheckpointError, ConfigError, SceneSpec
from architectures.tensorf import (
    MAT_MODES,
    VEC_MODES,
    TensoRF,
    TensoRFConfig,
    cp_to_vm,
    grid_size_for_voxels,
    total_variation,
    vm_to_dense,
)

#: A small field on a non-cubic box: grid (4, 6, 8) vertices, so a swapped axis shows up.
BOX = (-1.0, -1.5, -2.0, 1.0, 1.5, 2.0)
SMALL = {
    "aabb": BOX,
    "density_components": 3,
    "appearance_components": 4,
    "initial_resolution": 6,
    "final_resolution": 12,
    "upsample_fractions": [0.25, 0.5],
}


def _field(seed: int = 0, **changes: object) -> TensoRF:
    torch.manual_seed(seed)
    field = architectures.build("tensorf", {**SMALL, **changes})
    assert isinstance(field, TensoRF)
    return field


def _inputs(n: int, seed: int, box: tuple[float, ...] = BOX) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(box[:3]), torch.tensor(box[3:])
    x = lo + torch.rand(n, 3, generator=g) * (hi - lo)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return x, d


def _reference_phi1(field: TensoRF, x: torch.Tensor) -> torch.Tensor:
    """φ¹ in float64 with explicit bilinear / linear weights (vertex i at u = i / (n − 1))."""
    lo, hi = field.aabb[0].double(), field.aabb[1].double()
    u = ((x.double() - lo) / (hi - lo)).clamp(0, 1)

    def lerp_index(t: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        f = t * (n - 1)
        i = f.floor().clamp(max=n - 2).long()
        return i, f - i

    def products(planes: nn.ParameterList, lines: nn.ParameterList) -> list[torch.Tensor]:
        out = []
        for m, ((a, b), c) in enumerate(zip(MAT_MODES, VEC_MODES, strict=True)):
            p, v = planes[m][0].double(), lines[m][0, :, :, 0].double()  # [R, nb, na], [R, nc]
            ia, wa = lerp_index(u[:, a], p.shape[2])
            ib, wb = lerp_index(u[:, b], p.shape[1])
            ic, wc = lerp_index(u[:, c], v.shape[1])
            plane = (
                p[:, ib, ia] * (1 - wa) * (1 - wb)
                + p[:, ib, ia + 1] * wa * (1 - wb)
                + p[:, ib + 1, ia] * (1 - wa) * wb
                + p[:, ib + 1, ia + 1] * wa * wb
            )
            line = v[:, ic] * (1 - wc) + v[:, ic + 1] * wc
            out.append(plane * line)  # [R, N]
        return out

    sigma = field.config.density_shift + sum(
        t.sum(0) for t in products(field.density_plane, field.density_line)
    )
    app = torch.cat(products(field.app_plane, field.app_line), dim=0)
    g = app.t() @ field.basis_mat.weight.double().t()
    return torch.cat((sigma[:, None], g), dim=-1)


def _randomise(field: TensoRF, seed: int, scale: float = 1.0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in field.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))


# -- layout and values ------------------------------------------------------------------------
def test_parameter_shapes_follow_tensorf_layout() -> None:
    field = _field()
    # 6³ voxels over extents 2, 3, 4: voxel (24 / 216)^(1/3) = 0.481 → 4.16, 6.24, 8.32.
    assert field.config.grid_size == (4, 6, 8)
    # Plane m is [1, R, n[b], n[a]] and line m is [1, R, n[c], 1] (TensoRF's TensorVMSplit).
    assert [tuple(p.shape) for p in field.density_plane] == [
        (1, 3, 6, 4),
        (1, 3, 8, 4),
        (1, 3, 8, 6),
    ]
    assert [tuple(v.shape) for v in field.density_line] == [
        (1, 3, 8, 1),
        (1, 3, 6, 1),
        (1, 3, 4, 1),
    ]
    assert [tuple(p.shape) for p in field.app_plane] == [(1, 4, 6, 4), (1, 4, 8, 4), (1, 4, 8, 6)]
    assert tuple(field.basis_mat.weight.shape) == (15, 12)
    assert field.basis_mat.bias is None


def test_paper_config_sizes() -> None:
    field = TensoRF(TensoRFConfig())
    assert field.config.grid_size == (128, 128, 128)
    assert field.density_plane[0].shape == (1, 16, 128, 128)
    assert field.app_line[2].shape == (1, 48, 128, 1)
    assert field.basis_mat.weight.shape == (15, 144)
    # Init 0.1·N(0, 1) (TensoRF init_one_svd): the sample std of 786k values is within 1 %.
    assert float(field.app_plane[0].detach().std()) == pytest.approx(0.1, rel=0.01)


def test_phi1_matches_explicit_interpolation() -> None:
    field = _field(seed=1)
    _randomise(field, seed=2)
    x, _ = _inputs(64, seed=3)
    with torch.no_grad():
        out = field.phi1(x)
    assert out.shape == (64, 16)
    torch.testing.assert_close(out.double(), _reference_phi1(field, x), atol=2e-5, rtol=1e-5)


def test_forward_shapes_ranges_and_density_paths() -> None:
    field = _field(seed=4)
    _randomise(field, seed=5, scale=0.7)  # large enough that sigma and rgb spread widely
    x, d = _inputs(300, seed=6)
    with torch.no_grad():
        sigma, rgb = field(x, d)
        v = field.phi1(x)
        assert sigma.shape == (300,) and rgb.shape == (300, 3)
        assert bool((sigma >= 0).all()) and bool((rgb >= 0).all()) and bool((rgb <= 1).all())
        assert float(sigma.max() / sigma.min()) > 100  # not a constant field
        torch.testing.assert_close(field.sigma_raw(x), v[:, 0])  # density-only path
        torch.testing.assert_close(field.density(x), sigma)
        torch.testing.assert_close(sigma, torch.exp(v[:, 0]))


def test_zero_factors_give_the_shift_density() -> None:
    field = _field(density_shift=-4.0)
    with torch.no_grad():
        for p in field.factors():
            p.zero_()
        x, _ = _inputs(10, seed=7)
        assert torch.equal(field.sigma_raw(x), torch.full((10,), -4.0))
        torch.testing.assert_close(field.density(x), torch.full((10,), math.exp(-4.0)))
    assert TensoRFConfig().density_shift == pytest.approx(-10 + math.log(25))


def test_points_outside_the_box_are_clamped_to_its_surface() -> None:
    field = _field(seed=8)
    _randomise(field, seed=9)
    with torch.no_grad():
        outside = field.phi1(torch.tensor([[-1.5, 0.3, 2.7], [3.0, -4.0, 0.5]]))
        surface = field.phi1(torch.tensor([[-1.0, 0.3, 2.0], [1.0, -1.5, 0.5]]))
    assert torch.equal(outside, surface)


# -- CP → VM ----------------------------------------------------------------------------------
def _cp(shape: tuple[int, ...], rank: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=rank), [rng.normal(size=(n, rank)) for n in shape]


def test_cp_to_vm_reconstructs_the_cp_tensor_exactly() -> None:
    weights, factors = _cp((4, 5, 6), rank=7, seed=10)
    dense = tl.cp_to_tensor((weights, factors))  # tensorly's own reconstruction, [4, 5, 6]
    vm = cp_to_vm([torch.from_numpy(f) for f in factors], torch.from_numpy(weights))
    assert [tuple(p.shape) for p in vm.planes] == [(1, 3, 5, 4), (1, 3, 6, 4), (1, 3, 6, 5)]
    assert [tuple(v.shape) for v in vm.lines] == [(1, 3, 6, 1), (1, 3, 5, 1), (1, 3, 4, 1)]
    assert vm.basis is None
    rebuilt = vm_to_dense(vm.planes, vm.lines).sum(0)
    np.testing.assert_allclose(rebuilt.numpy(), dense, rtol=0, atol=1e-12)
    # 7 terms over 3 orientations: slot 2 of orientations 1 and 2 is unused — zero plane, unit
    # line (so the plane still gets gradients in training).
    for m in (1, 2):
        assert torch.equal(vm.planes[m][0, 2], torch.zeros_like(vm.planes[m][0, 2]))
        assert torch.equal(vm.lines[m][0, 2], torch.ones_like(vm.lines[m][0, 2]))
    # Each term's scale is balanced: its line and plane have the same RMS.
    line, plane = vm.lines[0][0, 1, :, 0], vm.planes[0][0, 1]
    assert float(line.pow(2).mean().sqrt()) == pytest.approx(float(plane.pow(2).mean().sqrt()))


def test_cp_to_vm_with_a_channel_factor_gives_the_basis() -> None:
    weights, factors = _cp((3, 4, 5, 15), rank=6, seed=11)
    dense = tl.cp_to_tensor((weights, factors))  # [3, 4, 5, 15]
    vm = cp_to_vm([torch.from_numpy(f) for f in factors], torch.from_numpy(weights), components=4)
    assert vm.basis is not None and vm.basis.shape == (15, 12)
    rebuilt = torch.einsum("cr,rijk->ijkc", vm.basis, vm_to_dense(vm.planes, vm.lines))
    np.testing.assert_allclose(rebuilt.numpy(), dense, rtol=0, atol=1e-12)


def test_field_with_cp_factors_reproduces_the_cp_tensor_at_vertices() -> None:
    """Field evaluation at grid vertices equals the dense tensors (pins the axis conventions)."""
    field = _field(seed=12, density_components=2, appearance_components=3).double()
    nx, ny, nz = field.config.grid_size or ()
    w_sigma, f_sigma = _cp((nx, ny, nz), rank=5, seed=13)
    w_app, f_app = _cp((nx, ny, nz, 15), rank=9, seed=14)
    density = cp_to_vm([torch.from_numpy(f) for f in f_sigma], torch.from_numpy(w_sigma), 2)
    appearance = cp_to_vm([torch.from_numpy(f) for f in f_app], torch.from_numpy(w_app), 3)
    with torch.no_grad():
        for m in range(3):
            field.density_plane[m].copy_(density.planes[m])
            field.density_line[m].copy_(density.lines[m])
            field.app_plane[m].copy_(appearance.planes[m])
            field.app_line[m].copy_(appearance.lines[m])
        field.basis_mat.weight.copy_(appearance.basis)
        idx = torch.stack(
            torch.meshgrid(*(torch.arange(n) for n in (nx, ny, nz)), indexing="ij"), -1
        ).reshape(-1, 3)
        lo, hi = field.aabb[0], field.aabb[1]
        x = lo + idx.double() / (torch.tensor([nx, ny, nz]) - 1) * (hi - lo)
        v = field.phi1(x)
    sigma = tl.cp_to_tensor((w_sigma, f_sigma)).reshape(-1) + field.config.density_shift
    g = tl.cp_to_tensor((w_app, f_app)).reshape(-1, 15)
    np.testing.assert_allclose(v[:, 0].numpy(), sigma, rtol=0, atol=1e-10)
    np.testing.assert_allclose(v[:, 1:].numpy(), g, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("factors", "weights", "components", "message"),
    [
        ([torch.ones(4, 2)] * 2, None, None, "cp_to_vm needs 3 spatial factors"),
        (
            [torch.ones(4, 2), torch.ones(4, 3), torch.ones(4, 2)],
            None,
            None,
            "CP factors must all be [n, 2]",
        ),
        ([torch.ones(4, 2)] * 3, torch.ones(3), None, "CP weights must have shape [2], got [3]"),
        ([torch.ones(4, 7)] * 3, None, 2, "components=2 per orientation cannot hold 7 CP terms"),
    ],
)
def test_cp_to_vm_refuses_bad_input(
    factors: list[torch.Tensor], weights: torch.Tensor | None, components: int | None, message: str
) -> None:
    with pytest.raises(ValueError) as info:
        cp_to_vm(factors, weights, components)
    assert str(info.value).startswith(message)


# -- schedule and upsampling ------------------------------------------------------------------
def test_schedule_is_log_spaced_in_voxels() -> None:
    # (300/128)^(1/5) = 1.1857 per axis: 128, 151.8, 180.0 (179.96), 213.4, 253.0, 300.
    assert TensoRFConfig().schedule() == [(n, n, n) for n in (128, 151, 179, 213, 253, 300)]
    assert TensoRFConfig().upsample_steps(30000) == [2000, 3000, 4000, 5500, 7000]
    cpu = TensoRFConfig(
        initial_resolution=48, final_resolution=96, upsample_fractions=(0.1, 0.2, 0.35)
    )
    assert cpu.schedule() == [(n, n, n) for n in (48, 60, 76, 96)]
    assert cpu.upsample_steps(2000) == [200, 400, 700]
    # Non-cubic boxes get cubic voxels (TensoRF N_to_reso): extents 2, 3, 4 → voxel 0.0601.
    assert grid_size_for_voxels(48**3, BOX) == (33, 49, 66)
    assert grid_size_for_voxels(128**3, (-1.5,) * 3 + (1.5,) * 3) == (128, 128, 128)


def test_on_train_step_upsamples_at_the_boundaries() -> None:
    field = _field(seed=15)
    schedule = field.config.schedule()
    # 216, round(√(216·1728)) = 611 and 1728 voxels over the box.
    assert schedule == [(4, 6, 8), (5, 8, 11), (8, 12, 16)]
    replaced = [step for step in range(8) if field.on_train_step(step / 8)]
    assert replaced == [2, 4]  # fractions 0.25, 0.5 of 8 steps
    assert field.config.grid_size == (8, 12, 16) and field.config.level() == 2
    assert field.density_plane[0].shape == (1, 3, 12, 8)
    assert field.app_line[2].shape == (1, 4, 8, 1)
    # The trainer rebuilds its optimizer from param_groups: it must hold the new tensors.
    grouped = {id(p) for group in field.param_groups(1e-2) for p in group["params"]}
    assert grouped == {id(p) for p in field.parameters()}


def test_on_train_step_catches_up_in_one_upsample() -> None:
    field = _field(seed=16)
    assert field.on_train_step(7 / 8)  # e.g. a resumed run: straight to the final size
    assert field.config.grid_size == (8, 12, 16)
    assert not field.on_train_step(7 / 8)


def test_upsample_on_nested_grids_is_exact() -> None:
    """(n_fine − 1) a multiple of (n − 1): the coarse (bi)linear interpolant is reproduced."""
    field = _field(seed=17)
    _randomise(field, seed=18)
    x, d = _inputs(256, seed=19)
    with torch.no_grad():
        before = field(x, d)
        field.upsample((7, 11, 15))  # (4, 6, 8) - 1 doubled
        after = field(x, d)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_upsample_keeps_values_at_the_new_vertices() -> None:
    field = _field(seed=20)
    _randomise(field, seed=21)
    size = (6, 9, 13)  # not nested with (4, 6, 8)
    idx = torch.stack(torch.meshgrid(*(torch.arange(n) for n in size), indexing="ij"), -1)
    lo, hi = field.aabb[0], field.aabb[1]
    x = lo + idx.reshape(-1, 3) / (torch.tensor(size) - 1) * (hi - lo)
    with torch.no_grad():
        before = field.phi1(x)
        field.upsample(size)
        after = field.phi1(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_upsample_preserves_smooth_fields_to_interpolation_accuracy() -> None:
    """Planes sin(πu_a)·sin(πu_b), lines cos(πu_c / 2): the change of sigma_raw is bounded by
    the (bi)linear interpolation errors of both grids, π²h²/8 per axis (π²h²/32 on lines)."""
    field = _field(seed=22, density_components=1, initial_resolution=10, final_resolution=14)
    coarse = field.config.grid_size or ()
    with torch.no_grad():
        for m, ((a, b), c) in enumerate(zip(MAT_MODES, VEC_MODES, strict=True)):
            ua = torch.linspace(0, 1, coarse[a])[None, :]
            ub = torch.linspace(0, 1, coarse[b])[:, None]
            field.density_plane[m].copy_(torch.sin(math.pi * ua) * torch.sin(math.pi * ub))
            uc = torch.linspace(0, 1, coarse[c])[:, None]
            field.density_line[m].copy_(torch.cos(math.pi * uc / 2))
        x, _ = _inputs(2000, seed=23)
        before = field.sigma_raw(x)
        field.upsample(field.config.schedule()[-1])
        after = field.sigma_raw(x)
    fine = field.config.grid_size or ()
    assert all(f > c for f, c in zip(fine, coarse, strict=True))

    def bound(size: tuple[int, ...]) -> float:
        h2 = [1 / (n - 1) ** 2 for n in size]
        return sum(
            math.pi**2 / 8 * (h2[a] + h2[b]) + math.pi**2 / 32 * h2[c]
            for (a, b), c in zip(MAT_MODES, VEC_MODES, strict=True)
        )

    error = float((after - before).abs().max())
    assert 0 < error < bound(coarse) + bound(fine)


def test_save_load_after_upsample(tmp_path) -> None:
    field = _field(seed=24)
    _randomise(field, seed=25, scale=0.5)
    assert field.on_train_step(2 / 8)
    path = architectures.save(field, tmp_path / "vm.safetensors", scene=SceneSpec(aabb=BOX))
    loaded = architectures.load(path)
    assert isinstance(loaded, TensoRF) and not loaded.training
    assert loaded.config == field.config and loaded.config.grid_size == (5, 8, 11)
    x, d = _inputs(128, seed=26)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(field(x, d), loaded(x, d), strict=True))
        assert torch.equal(field.phi1(x), loaded.phi1(x))
    # The loaded field continues the schedule from where it was: next upsample at step 4.
    assert not loaded.on_train_step(3 / 8) and loaded.on_train_step(4 / 8)


def test_load_refuses_factors_of_another_size(tmp_path) -> None:
    field = _field(seed=27)
    field.upsample((5, 8, 11))
    path = tmp_path / "vm.safetensors"
    architectures.save(field, path, scene=SceneSpec(aabb=BOX))
    # A checkpoint whose config lost its grid size (the start size) cannot take these tensors.
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    config = json.loads(metadata["pvd.config"])
    config["grid_size"] = None
    metadata["pvd.config"] = json.dumps(config)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=r"field\.\S+ has shape \[.*\], the config needs"):
        architectures.load(path)


def test_save_load_gives_identical_outputs(tmp_path) -> None:
    field = _field(seed=28)
    _randomise(field, seed=29, scale=0.5)
    path = architectures.save(field, tmp_path / "vm.safetensors", scene=SceneSpec(aabb=BOX))
    loaded = architectures.load(path)
    x, d = _inputs(128, seed=30)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(field(x, d), loaded(x, d), strict=True))


# -- regularisers and training ----------------------------------------------------------------
def test_l1_weight_switches_after_the_first_upsample() -> None:
    field = _field(seed=31, l1_weight=2.0, l1_weight_rest=0.5)

    def norm() -> float:
        return float(sum(p.abs().mean() for p in (*field.density_plane, *field.density_line)))

    with torch.no_grad():
        assert float(field.regularizer()) == pytest.approx(2.0 * norm(), rel=1e-6)
        field.on_train_step(2 / 8)
        assert float(field.regularizer()) == pytest.approx(0.5 * norm(), rel=1e-6)


def test_total_variation_matches_hand_values() -> None:
    plane = torch.tensor([[[[0.0, 1.0, 3.0], [1.0, 1.0, 1.0]]]])  # [1, 1, 2, 3]
    # rows: diffs 1,0,-2 → mean 5/3; columns: diffs 1,2,0,0 → mean 5/4; TensoRF's 2·(…).
    assert float(total_variation(plane)) == pytest.approx(2 * (5 / 3 + 5 / 4))
    line = torch.tensor([0.0, 2.0, 2.0, 5.0]).view(1, 1, 4, 1)
    assert float(total_variation(line)) == pytest.approx(2 * (4 + 0 + 9) / 3)
    assert float(total_variation(torch.ones(1, 3, 4, 5))) == 0.0


def test_regularizer_is_zero_without_weights_and_weighted_tv_otherwise() -> None:
    field = _field(seed=32, l1_weight=0.0, l1_weight_rest=0.0)
    assert float(field.regularizer()) == 0.0  # TV off by default
    tv = _field(seed=32, l1_weight=0.0, l1_weight_rest=0.0, tv_weight_appearance=3.0)
    with torch.no_grad():
        expected = 3.0 * sum(
            float(total_variation(p)) + 0.1 * float(total_variation(v))
            for p, v in zip(tv.app_plane, tv.app_line, strict=True)
        )
        assert float(tv.regularizer()) == pytest.approx(expected, rel=1e-5)


def test_regularizer_decreases_l1_and_tv_of_noisy_factors() -> None:
    field = _field(seed=33, l1_weight=1.0, tv_weight_density=1.0, tv_weight_appearance=1.0)

    def l1_and_tv() -> tuple[float, float]:
        with torch.no_grad():
            l1 = sum(p.abs().mean() for p in (*field.density_plane, *field.density_line))
            return float(l1), float(sum(total_variation(p) for p in field.factors()))

    l1_start, tv_start = l1_and_tv()
    optimizer = torch.optim.Adam(field.factors(), lr=1e-2)
    values = []
    for _ in range(10):
        loss = field.regularizer()
        values.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert values[0] > 0
    assert all(b < a for a, b in itertools.pairwise(values))
    l1_end, tv_end = l1_and_tv()
    assert l1_end < 0.9 * l1_start and tv_end < 0.8 * tv_start


def test_gradients_reach_every_parameter() -> None:
    field = _field(seed=34)
    x, d = _inputs(256, seed=35)
    sigma, rgb = field(x, d)
    (sigma.sum() + rgb.sum() + field.regularizer()).backward()
    named = dict(field.named_parameters())
    assert len(named) == 12 + 1 + 3  # 12 factors, basis, colour MLP
    for name, parameter in named.items():
        assert parameter.grad is not None, name
        assert bool(parameter.grad.abs().sum() > 0), name


def test_param_groups_use_the_config_rates() -> None:
    field = _field(seed=36, factor_lr_scale=3.0, basis_lr_scale=0.25)
    factors, networks = field.param_groups(1e-2)
    assert factors["lr"] == pytest.approx(3e-2) and networks["lr"] == pytest.approx(2.5e-3)
    assert {id(p) for p in factors["params"]} == {id(p) for p in field.factors()}
    assert field.basis_mat.weight in networks["params"]
    assert len(factors["params"]) + len(networks["params"]) == len(list(field.parameters()))
    assert factors["betas"] == (0.9, 0.99)
    paper = TensoRF(TensoRFConfig()).param_groups(1e-2)
    assert [g["lr"] for g in paper] == pytest.approx([2e-2, 1e-3])  # TensoRF lr_init, lr_basis


def test_same_seed_gives_identical_init() -> None:
    a, b, c = _field(seed=37), _field(seed=37), _field(seed=38)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.density_plane[0], c.density_plane[0])


# -- config -----------------------------------------------------------------------------------
def test_config_round_trips_through_json() -> None:
    field = _field(seed=39)
    field.upsample((5, 8, 11))
    text = field.config.to_json()
    assert json.loads(text)["grid_size"] == [5, 8, 11]
    again = TensoRFConfig.from_json(text)
    assert again == field.config
    assert isinstance(again.grid_size, tuple) and isinstance(again.upsample_fractions, tuple)


def test_replace_restarts_the_grid_only_when_the_start_changes() -> None:
    config = TensoRFConfig.from_dict({**SMALL, "grid_size": [5, 8, 11]})
    assert config.replace(l1_weight=0.0).grid_size == (5, 8, 11)
    assert config.replace(initial_resolution=8).grid_size == grid_size_for_voxels(8**3, BOX)
    assert config.replace(aabb=(0, 0, 0, 1, 1, 1)).grid_size == (6, 6, 6)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("density_components", 0, "density_components must be >= 1, got 0"),
        ("appearance_components", -1, "appearance_components must be >= 1, got -1"),
        ("initial_resolution", 1, "initial_resolution must be >= 2, got 1"),
        ("final_resolution", 5, "final_resolution (5) must be >= initial_resolution (6)"),
        (
            "upsample_fractions",
            [0.5, 0.25],
            "upsample_fractions must increase strictly within (0, 1)",
        ),
        (
            "upsample_fractions",
            [0.0, 0.5],
            "upsample_fractions must increase strictly within (0, 1)",
        ),
        (
            "upsample_fractions",
            [0.5, 1.0],
            "upsample_fractions must increase strictly within (0, 1)",
        ),
        ("grid_size", [4, 4], "grid_size must hold 3 values, got 2"),
        ("grid_size", [4, 1, 4], "grid_size must be 3 integers >= 2, got (4, 1, 4)"),
        ("init_std", 0.0, "init_std must be > 0, got 0.0"),
        ("density_shift", math.nan, "density_shift must be finite, got nan"),
        ("l1_weight", -1e-5, "l1_weight must be >= 0, got -1e-05"),
        ("l1_weight_rest", -1.0, "l1_weight_rest must be >= 0, got -1.0"),
        ("tv_weight_density", -0.1, "tv_weight_density must be >= 0, got -0.1"),
        ("tv_weight_appearance", -0.1, "tv_weight_appearance must be >= 0, got -0.1"),
        ("factor_lr_scale", 0.0, "factor_lr_scale must be > 0, got 0.0"),
        ("basis_lr_scale", -1.0, "basis_lr_scale must be > 0, got -1.0"),
        ("aabb", [0, 0, 0, 1, -1, 1], "aabb must have min < max"),
        ("resolution", 64, "unknown TensoRFConfig key 'resolution'"),
    ],
)
def test_config_errors_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        architectures.build("tensorf", {**SMALL, key: value})
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text


@pytest.mark.parametrize("alias", ["tensorf", "TensoRF", "vm", "tensorf-vm"])
def test_aliases_resolve_to_tensorf(alias: str) -> None:
    assert architectures.get(alias) is TensoRF


def test_recipe_presets_build_and_paper_is_the_default() -> None:
    presets = tomllib.loads((Path(__file__).parents[1] / "recipes" / "tensorf.toml").read_text())
    paper = TensoRFConfig.from_dict(presets["paper"]["model"])
    default = TensoRFConfig()
    for key, value in dataclasses.asdict(default).items():
        expected = value if value is None else pytest.approx(value, rel=1e-4)
        assert getattr(paper, key) == expected, key
    assert paper.upsample_steps(30000) == [2000, 3000, 4000, 5500, 7000]
    cpu = TensoRFConfig.from_dict(presets["cpu"]["model"])
    assert (cpu.density_components, cpu.appearance_components) == (8, 24)
    assert cpu.schedule()[0] == (48, 48, 48) and cpu.schedule()[-1] == (96, 96, 96)
