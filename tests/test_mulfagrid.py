"""MulFAGrid adapter: the φ¹/φ² contract, the learned kernel, checkpoints and config errors."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

import pytest
import torch

import architectures
from architectures import ConfigError, SceneSpec
from architectures.components import trilinear_dense
from architectures.mulfagrid import MulFAGrid, MulFAGridConfig

AABB = (-1.0, -2.0, -0.5, 2.0, 1.0, 1.5)
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mulfagrid.toml"


def small_field(seed: int = 0, **changes: object) -> MulFAGrid:
    torch.manual_seed(seed)
    config = {"resolution": 7, "kernel_width": 8, "filter_layers": 3, "aabb": AABB, **changes}
    field = architectures.build("mulfagrid", config)
    assert isinstance(field, MulFAGrid)
    return field


def points(n: int, seed: int = 1, margin: float = 0.0) -> torch.Tensor:
    """Random model-space points in the AABB grown by ``margin`` on every side."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(AABB[:3]) - margin, torch.tensor(AABB[3:]) + margin
    return lo + torch.rand(n, 3, generator=g) * (hi - lo)


def directions(n: int, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)


def randomise(field: MulFAGrid, scale: float = 1.0, seed: int = 5) -> None:
    """Give every parameter random values (a trained-looking model, kernel away from trilinear)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in field.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def grid_points(field: MulFAGrid) -> torch.Tensor:
    """Points on vertices, faces and edges of the grid, and some outside the box."""
    lo, hi = field.aabb[0], field.aabb[1]
    r = field.config.resolution
    vertex_step = (hi - lo) / (r - 1)
    on_vertices = lo + torch.tensor([[0, 0, 0], [r - 1, r - 1, r - 1], [2, 3, 1]]) * vertex_step
    on_faces = lo + torch.tensor([[0.5, 2.0 / (r - 1), 0.25], [1.0, 0.3, 0.7]]) * (hi - lo)
    outside = torch.tensor([[-5.0, 0.0, 0.0], [3.0, 2.0, 9.0]])
    return torch.cat([on_vertices, on_faces, outside])


def test_shapes_and_ranges() -> None:
    field = small_field()
    randomise(field, 2.0)
    x, d = points(300, margin=0.5), directions(300)
    v = field.phi1(x)
    sigma, rgb = field(x, d)
    assert v.shape == (300, 16)
    assert sigma.shape == (300,) and rgb.shape == (300, 3)
    assert torch.isfinite(v).all()
    assert (sigma >= 0).all()
    assert (rgb >= 0).all() and (rgb <= 1).all()
    torch.testing.assert_close(field.density(x), sigma)
    torch.testing.assert_close(field.sigma_raw(x), v[:, 0])


def test_zero_kernel_output_is_trilinear_interpolation() -> None:
    field = small_field()
    assert torch.count_nonzero(field.kernel.output) == 0  # a = 0 at init: m ≡ 0
    with torch.no_grad():
        field.grid.normal_()  # features of order one, so a mismatch would show
    x = torch.cat([points(500, margin=0.3), grid_points(field)])
    expected = trilinear_dense(field.grid_tensor(), field.normalize(x))
    torch.testing.assert_close(field.phi1(x), expected, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(field.sigma_raw(x), expected[:, 0], atol=2e-6, rtol=1e-5)


def test_kernel_weights_match_an_independent_float64_computation() -> None:
    field = small_field()
    randomise(field, 1.0)
    x = points(400)
    index, weights = field.kernel_weights(x)
    r = field.config.resolution
    # independent corner bookkeeping: grid coordinates, corner c at (c&1, c>>1&1, c>>2&1)
    pos = field.normalize(x).double() * (r - 1)
    base = pos.floor().clamp(max=r - 2)
    frac = pos - base
    offsets = torch.tensor([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)])
    corners = base.long()[:, None, :] + offsets
    assert torch.equal(index, (corners[..., 0] * r + corners[..., 1]) * r + corners[..., 2])
    tri = torch.where(offsets.bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)
    step = 2.0 / (r - 1)
    kernel = copy.deepcopy(field.kernel).double()
    m = kernel(field.normalize(x).double() * 2 - 1, base * step - 1, offsets.double() * step)
    k = tri * torch.exp(m)
    torch.testing.assert_close(weights.double(), k / k.sum(-1, keepdim=True), atol=1e-5, rtol=1e-4)
    assert m.abs().max() > 1.0  # the kernel is far from trilinear here
    features = field.grid.double()[index]
    torch.testing.assert_close(
        field.phi1(x).double(),
        (weights.double()[..., None] * features).sum(1),
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.parametrize("scale", [0.3, 3.0, 1e4])
def test_kernel_weights_are_positive_and_sum_to_one(scale: float) -> None:
    field = small_field()
    randomise(field, scale, seed=int(scale * 10))
    x = points(2000, margin=0.2)
    _, weights = field.kernel_weights(x)
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(x)), atol=1e-5, rtol=0)
    u = field.normalize(x)
    inner = (u > 0).all(-1) & (u < 1).all(-1)
    if scale < 1:  # every corner of a point inside the box keeps a share
        assert (weights[inner] > 0).all()
    else:  # huge log-kernels: shares may underflow to 0 in float32, never below or NaN
        assert (weights >= 0).all()
    _, on_grid = field.kernel_weights(grid_points(field))  # trilinear weights of exactly 0 and 1
    assert torch.isfinite(on_grid).all() and (on_grid >= 0).all()
    torch.testing.assert_close(on_grid.sum(-1), torch.ones(len(on_grid)), atol=1e-5, rtol=0)


def test_fitting_moves_the_kernel_away_from_trilinear() -> None:
    field = small_field(resolution=6)
    r = field.config.resolution
    optimizer = torch.optim.Adam(field.param_groups(1e-2))
    x = points(384, seed=7)  # small tensors: no intra-op threading, quick on a busy machine
    target = torch.sin(3.0 * x.sum(-1, keepdim=True) + torch.arange(16.0))  # finer than the grid
    losses = []
    for _ in range(30):
        loss = (field.phi1(x) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert field.kernel.output.abs().max() > 1e-3  # a ≠ 0, so m ≠ 0
    x_test = points(500, seed=8)
    u = field.normalize(x_test)
    with torch.no_grad():
        index, weights = field.kernel_weights(x_test)
        # plain trilinear weights of the same corners: interpolate a one-hot grid per vertex
        one_hot = torch.eye(r**3).view(r**3, r, r, r)
        plain = trilinear_dense(one_hot, u).gather(1, index)
        assert (weights - plain).abs().max() > 5e-3
        same_w = trilinear_dense(field.grid_tensor(), u)
        assert (field.phi1(x_test) - same_w).abs().max() > 1e-2


def test_gradients_reach_every_parameter_group() -> None:
    field = small_field()
    groups = field.param_groups(1e-2)
    grouped = [p for group in groups for p in group["params"]]
    assert len(grouped) == len(list(field.parameters()))
    assert {id(p) for p in grouped} == {id(p) for p in field.parameters()}
    assert [group["lr"] for group in groups] == pytest.approx(
        [1e-2 * field.config.grid_lr_scale, 1e-2 * field.config.kernel_lr_scale, 1e-2]
    )
    x, d = points(256), directions(256)

    def grads() -> dict[str, torch.Tensor | None]:
        field.zero_grad(set_to_none=True)
        sigma, rgb = field(x, d)
        (sigma.mean() + rgb.mean() + field.regularizer()).backward()
        return {name: p.grad for name, p in field.named_parameters()}

    at_init = grads()  # a = 0: only a itself sees the loss among the kernel parameters
    assert at_init["kernel.output"] is not None and at_init["kernel.output"].abs().sum() > 0
    assert at_init["kernel.frequencies"].abs().sum() == 0
    with torch.no_grad():
        field.grid.normal_()
        field.kernel.output.normal_()
    for name, grad in grads().items():
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name


def test_gradients_are_exact_despite_the_detached_normaliser_shift() -> None:
    field = small_field(resolution=3, kernel_width=4, filter_layers=2).double()
    randomise(field, 0.7)
    x, d = points(12).double(), directions(12).double()
    names = [
        "grid",
        "kernel.output",
        "kernel.frequencies",
        "kernel.phases",
        "kernel.linears.1.weight",
    ]
    values = dict(field.named_parameters())

    def outputs(*tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.func.functional_call(field, dict(zip(names, tensors, strict=True)), (x, d))

    inputs = tuple(values[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(outputs, inputs, eps=1e-6, atol=1e-5, fast_mode=True)


def test_regularizer_is_weighted_total_variation() -> None:
    field = small_field(resolution=3, tv_weight=0.5)
    with torch.no_grad():
        field.grid.zero_()
        field.grid[13, 2] = 1.0  # centre vertex (1, 1, 1), channel 2: 6 neighbour edges
    # each axis: 2 edges of squared difference 1 among 2·3·3·16 = 288 pairs
    assert field.regularizer().item() == pytest.approx(0.5 * 3 * 2 / 288)
    with torch.no_grad():
        field.grid.fill_(3.0)
    assert field.regularizer().item() == 0.0
    assert small_field(tv_weight=0.0).regularizer().item() == 0.0


def test_save_load_gives_identical_outputs(tmp_path: Path) -> None:
    field = small_field()
    randomise(field, 0.5)
    path = architectures.save(field, tmp_path / "mfa.safetensors", scene=SceneSpec(aabb=AABB))
    loaded = architectures.load(path)
    assert isinstance(loaded, MulFAGrid)
    assert loaded.config == field.config
    x, d = points(300, margin=0.2), directions(300)
    with torch.no_grad():
        for a, b in zip(field(x, d), loaded(x, d), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(field.kernel_weights(x)[1], loaded.kernel_weights(x)[1])


def test_config_json_round_trip() -> None:
    config = MulFAGridConfig(
        aabb=AABB,
        resolution=33,
        octaves=3,
        kernel_width=12,
        filter_layers=2,
        filter_bandwidth=0.5,
        tv_weight=1e-3,
        grid_lr_scale=4.0,
        kernel_lr_scale=0.2,
        sigma_clip=(-2.0, 7.0),
    )
    again = MulFAGridConfig.from_json(config.to_json())
    assert again == config
    assert architectures.get("mfa") is MulFAGrid and architectures.get("MulFA") is MulFAGrid


def test_same_seed_same_model_other_seed_differs() -> None:
    a, b, c = small_field(seed=3), small_field(seed=3), small_field(seed=4)
    for (name, p), q, r in zip(
        a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
        if name in ("grid", "kernel.frequencies", "kernel.phases"):
            assert not torch.equal(p, r), name


def test_presets_validate() -> None:
    presets = tomllib.loads(RECIPE.read_text())
    cpu = MulFAGridConfig.from_dict(presets["cpu"]["model"])
    paper = MulFAGridConfig.from_dict(presets["paper"]["model"])
    assert paper == MulFAGridConfig()  # the defaults are the paper-like preset
    assert paper.resolution == 160 and paper.octaves == 4
    assert paper.kernel_width == 16 and paper.filter_layers == 4
    assert 48 <= cpu.resolution <= 64
    field = MulFAGrid(cpu)
    kernel = sum(p.numel() for p in field.kernel.parameters())
    decoder = sum(p.numel() for p in field.decoder.parameters())
    assert field.num_parameters == cpu.resolution**3 * 16 + kernel + decoder
    assert field.nbytes == 4 * field.num_parameters


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resolution": 1}, "resolution must be in 2..512, got 1"),
        ({"octaves": 0}, "octaves must be in 1..16, got 0"),
        ({"kernel_width": 0}, "kernel_width must be in 1..256, got 0"),
        ({"filter_layers": 17}, "filter_layers must be in 1..16, got 17"),
        ({"filter_bandwidth": 0.0}, r"filter_bandwidth must be in \(0, pi\]"),
        ({"tv_weight": -1.0}, "tv_weight must be finite and >= 0, got -1.0"),
        ({"grid_lr_scale": 0.0}, "grid_lr_scale must be finite and > 0, got 0.0"),
        ({"kernel_lr_scale": math.inf}, "kernel_lr_scale must be finite and > 0, got inf"),
        ({"kernel_size": 3}, "unknown MulFAGridConfig key 'kernel_size'"),
    ],
)
def test_bad_config_is_refused_by_name(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        architectures.build("mulfagrid", changes)
