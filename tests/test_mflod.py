"""MFLOD adapter: the φ¹/φ² contract, levels of detail, grid layout and config checks."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch

import architectures
from architectures import ConfigError, SceneSpec
from architectures.components import trilinear_dense
from architectures.mflod import MFLOD, MFLODConfig, spatial_hash

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mflod.toml"
# 8, 16 dense; 32, 64 hashed into 2^10 entries: both storage paths in a small model.
SMALL = {
    "levels": 4,
    "features": 4,
    "base_resolution": 8,
    "max_dense_resolution": 16,
    "log2_table_size": 10,
    "hidden_width": 16,
    "lod_samples": 256,
    "aabb": (-1.0, -2.0, -1.5, 1.0, 2.0, 1.5),
}


def small_field(seed: int = 0, **changes) -> MFLOD:
    torch.manual_seed(seed)
    return architectures.build("mflod", {**SMALL, **changes})


def points(n: int = 512, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor(SMALL["aabb"][:3])
    hi = torch.tensor(SMALL["aabb"][3:])
    x = lo + (hi - lo) * torch.rand(n, 3, generator=g)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return x, d


def test_shapes_ranges_and_surface():
    field = small_field()
    x, d = points()
    sigma, rgb = field(x, d)
    assert field.phi1(x).shape == (512, 16)
    assert sigma.shape == (512,) and rgb.shape == (512, 3)
    assert (sigma >= 0).all() and sigma.isfinite().all()
    assert (rgb >= 0).all() and (rgb <= 1).all()
    torch.testing.assert_close(field.density(x), sigma)
    torch.testing.assert_close(field.sigma_raw(x), field.phi1(x)[:, 0])
    assert field.aabb.tolist() == [[-1.0, -2.0, -1.5], [1.0, 2.0, 1.5]]
    assert field.nbytes == 4 * field.num_parameters  # no persistent buffers
    assert [level.dense for level in field.levels] == [True, True, False, False]


def test_points_outside_the_box_are_clamped():
    field = small_field()
    x, _ = points(64)
    outside = x * 3.0
    inside = torch.maximum(torch.minimum(outside, field.aabb[1]), field.aabb[0])
    assert torch.equal(field.phi1(outside), field.phi1(inside))


def test_gradients_reach_every_parameter_group():
    field = small_field()
    x, d = points()
    sigma, rgb = field(x, d)
    (sigma.mean() + rgb.mean() + field.regularizer()).backward()
    groups = field.param_groups(1e-2)
    assert [g["lr"] for g in groups] == [1e-2, 1e-2]
    grouped = [p for g in groups for p in g["params"]]
    assert sorted(map(id, grouped)) == sorted(map(id, field.parameters()))
    for group in groups:
        for p in group["params"]:
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_regularizer_trains_the_coarse_heads_only():
    field = small_field()
    field.regularizer().backward()
    for level in field.levels[:-1]:
        assert level.head.weight.grad.abs().sum() > 0 and level.head.bias.grad.abs().sum() > 0
    heads = {id(p) for level in field.levels[:-1] for p in level.head.parameters()}
    for name, p in field.named_parameters():
        if id(p) not in heads:
            assert p.grad is None, name  # trunk, finest head and decoder untouched
    assert field.regularizer() > 0
    assert small_field(lod_weight=0.0).regularizer() == 0


def test_save_load_identical(tmp_path):
    field = small_field()
    x, d = points()
    path = architectures.save(field, tmp_path / "mflod.safetensors", scene=SceneSpec())
    loaded = architectures.load(path)
    assert isinstance(loaded, MFLOD) and loaded.config == field.config
    for a, b in zip(field(x, d), loaded(x, d), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(field.phi1(x, lod=2), loaded.phi1(x, lod=2))


def test_config_json_round_trip():
    config = MFLODConfig.from_dict({**SMALL, "bandwidth": 0.25, "sigma_clip": (-2.0, 7.0)})
    again = MFLODConfig.from_json(config.to_json())
    assert again == config
    assert again.aabb == SMALL["aabb"] and again.sigma_clip == (-2.0, 7.0)


def test_determinism_for_a_seed():
    x, _ = points()
    a, b, c = small_field(seed=3), small_field(seed=3), small_field(seed=4)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert torch.equal(a.phi1(x), b.phi1(x))
    assert not torch.equal(a.phi1(x), c.phi1(x))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("features", 2, "features must be >= 4 (LayerNorm over fewer than 4 values destroys them"),
        ("features", 3, "features must be >= 4"),
        ("levels", 0, "levels must be in 1..12, got 0"),
        ("base_resolution", 1, "base_resolution must be in 2..512, got 1"),
        ("log2_table_size", 30, "log2_table_size must be in 10..24, got 30"),
        ("bandwidth", 0.0, "bandwidth must be > 0, got 0.0"),
        ("bandwidth_growth", 0.5, "bandwidth_growth must be >= 1, got 0.5"),
        ("lod_weight", -1.0, "lod_weight must be >= 0, got -1.0"),
        ("lod_samples", 0, "lod_samples must be >= 1, got 0"),
    ],
)
def test_out_of_range_config_is_refused_by_name(key, value, message):
    with pytest.raises(ConfigError) as info:
        architectures.build("mflod", {**SMALL, key: value})
    assert message in str(info.value)


def test_unknown_key_is_refused_by_name():
    with pytest.raises(ConfigError, match="unknown MFLODConfig key 'octaves'"):
        architectures.build("mflod", {"octaves": 3})


def test_level_output_depends_only_on_coarser_levels():
    field = small_field()
    x, _ = points()
    count = len(field.levels)
    for lod in range(1, count):
        before = field.phi1(x, lod=lod)
        finest = field.phi1(x)
        perturbed = small_field()
        with torch.no_grad():
            for level in perturbed.levels[lod:]:
                for p in level.parameters():
                    p.add_(torch.randn_like(p))
        assert torch.equal(perturbed.phi1(x, lod=lod), before)
        assert not torch.allclose(perturbed.phi1(x), finest, atol=1e-3)
    # and a level's own grid does change its output
    with torch.no_grad():
        field.levels[1].grid.add_(torch.randn_like(field.levels[1].grid))
    assert not torch.allclose(field.phi1(x, lod=2), small_field().phi1(x, lod=2), atol=1e-3)


def test_lod_argument():
    field = small_field()
    x, d = points()
    assert torch.equal(field.phi1(x, lod=4), field.phi1(x))
    assert not torch.allclose(field.phi1(x, lod=1), field.phi1(x), atol=1e-3)
    sigma, rgb = field(x, d, lod=2)
    assert sigma.shape == (512,) and rgb.shape == (512, 3)
    torch.testing.assert_close(sigma, field.density(x, lod=2))
    torch.testing.assert_close(field.sigma_raw(x, lod=3), field.phi1(x, lod=3)[:, 0])
    for bad in (0, 5, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"lod must be an integer level of detail in 1\.\.4"):
            field.phi1(x, lod=bad)
    with pytest.raises(ValueError, match="got 5"):
        field(x, d, lod=5)


def test_hashed_level_matches_a_dense_reference():
    """A hashed level equals trilinear interpolation of the dense grid its table implies."""
    field = small_field()
    level = field.levels[2]  # 32 vertices per axis, hashed into 2^10 entries
    r = level.resolution
    axis = torch.arange(r)
    vertices = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)  # [x, y, z]
    dense = level.grid[spatial_hash(vertices) % level.grid.shape[0]]  # [R, R, R, F]
    u = torch.rand(300, 3, generator=torch.Generator().manual_seed(5))
    u[:4] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.5], [3 / 31, 0, 1]])
    reference = trilinear_dense(dense.permute(3, 0, 1, 2), u)
    torch.testing.assert_close(level.interpolate(u), reference, atol=1e-6, rtol=1e-5)


def test_spatial_hash_is_instant_ngp():
    """Instant-NGP eq. 4, computed with Python integers."""
    corners = torch.tensor([[1, 2, 3], [511, 0, 77], [4000, 4001, 4002]])
    expected = [(x ^ (y * 2654435761) ^ (z * 805459861)) % 2**32 for x, y, z in corners.tolist()]
    assert spatial_hash(corners).tolist() == expected


def test_layernorm_normalises_from_the_start():
    """At initialisation interpolated features vary far more than LayerNorm's eps (1e-5)."""
    field = small_field()
    u = torch.rand(5000, 3, generator=torch.Generator().manual_seed(2))
    for level in field.levels:
        variance = level.interpolate(u).var(dim=-1, unbiased=False)
        assert variance.median() > 40 * 1e-5
        assert (variance < 1e-5).float().mean() < 0.01


def test_presets_layout_and_size():
    recipe = tomllib.loads(RECIPE.read_text())
    paper = MFLODConfig.from_dict(recipe["paper"]["model"])
    assert paper == MFLODConfig()  # the defaults are the paper preset
    assert paper.resolutions == (16, 32, 64, 128, 256, 512, 1024, 2048)
    assert [paper.is_dense(r) for r in paper.resolutions] == [True] * 3 + [False] * 5
    cpu = MFLODConfig.from_dict(recipe["cpu"]["model"])
    field = MFLOD(cpu)
    f, h = cpu.features, cpu.hidden_width
    grid = f * (16**3 + 32**3 + 64**3) + 3 * f * 2**14
    networks = 6 * (f * h + h + h * 16 + 16) + 5 * (h * h + h)
    decoder = 31 * 64 + 64 * 64 + 64 * 3
    assert field.num_parameters == grid + networks + decoder
