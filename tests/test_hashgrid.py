"""Hash grid adapter (architectures/hashgrid.py): tcnn layout, encoding values, config, io.

The encoding is checked against a reference written here per point with plain Python integers,
from tiny-cuda-nn's rules as ARCHITECTURES.md ("Hash grid") states them, so a tcnn-trained table
indexes the same entries here.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import architectures
from architectures import ConfigError, SceneSpec, UnknownArchitectureError
from architectures.hashgrid import HashGrid, HashGridConfig, level_layouts

#: Small config with one dense level (scale 3, 4³ = 64 entries) and three hashed levels
#: (scales ≈ 9.08, 24.4, 63: 11³, 26³, 64³ > 2^10 entries).
SMALL = {"levels": 4, "log2_table_size": 10, "base_resolution": 4, "max_resolution": 64}
UNIT_BOX = (0.0, 0.0, 0.0, 1.0, 1.0, 1.0)


def _small_field(seed: int = 0, **changes: object) -> HashGrid:
    torch.manual_seed(seed)
    field = architectures.build("hashgrid", {**SMALL, "hidden_width": 16, **changes})
    assert isinstance(field, HashGrid)
    return field


def _reference_encode(
    params: list[float], config: HashGridConfig, u: tuple[float, float, float]
) -> list[float]:
    """tcnn's multiresolution hash encoding of one point, written out per corner."""
    features = config.features
    table = 2**config.log2_table_size
    primes = (1, 2654435761, 805459861)
    out: list[float] = []
    offset = 0
    for scale in config.level_scales or ():
        s = np.float32(scale)
        res = math.ceil(s) + 1
        size = min((res**3 + 7) // 8 * 8, table)
        dense = res**3 <= size
        pos = [np.float32(c) * s + np.float32(0.5) for c in u]  # float32, as the grid computes
        cell = [math.floor(p) for p in pos]
        frac = [float(p) - c for p, c in zip(pos, cell, strict=True)]
        acc = [0.0] * features
        for corner in itertools.product((0, 1), repeat=3):
            ix, iy, iz = (c + o for c, o in zip(cell, corner, strict=True))
            if dense:
                index = ix + iy * res + iz * res * res
            else:
                index = 0
                for coord, prime in zip((ix, iy, iz), primes, strict=True):
                    index ^= (coord * prime) % 2**32
            index %= size
            weight = 1.0
            for bit, f in zip(corner, frac, strict=True):
                weight *= f if bit else 1.0 - f
            for k in range(features):
                acc[k] += weight * params[(offset + index) * features + k]
        out.extend(acc)
        offset += size
    return out


# -- layout -----------------------------------------------------------------------------------
def test_paper_grid_parameter_count_and_dense_levels() -> None:
    config = HashGridConfig()  # the paper's L=16, F=2, T=2^19, N_min=16, N_max=2048
    field = HashGrid(config)
    assert field.params.numel() == 12_196_240
    layouts = level_layouts(config)
    assert [layout.dense for layout in layouts] == [True] * 5 + [False] * 11
    # ceil(16·b^l − 1) + 1 with b = 128^(1/15), worked out by hand for the dense levels.
    assert [layout.resolution for layout in layouts[:6]] == [16, 23, 31, 43, 59, 81]
    assert [layout.size for layout in layouts] == [4096, 12168, 29792, 79512, 205384] + [2**19] * 11
    assert [layout.offset for layout in layouts[:3]] == [0, 4096, 4096 + 12168]
    assert config.level_scales is not None
    assert config.level_scales[0] == 15.0
    assert config.level_scales[-1] == pytest.approx(2047.0, abs=0.01)
    assert field.density_head[0].weight.shape == (64, 32)


def test_small_layout_sizes() -> None:
    layouts = level_layouts(HashGridConfig(**SMALL))
    assert [(lay.resolution, lay.size, lay.dense) for lay in layouts] == [
        (4, 64, True),
        (11, 1024, False),
        (26, 1024, False),
        (64, 1024, False),
    ]
    assert [lay.offset for lay in layouts] == [0, 64, 1088, 2112]
    assert _small_field().params.numel() == (64 + 3 * 1024) * 2


def test_table_size_rounds_dense_levels_to_multiple_of_8() -> None:
    # scale 4 → res 5 → 125 entries → 128; scale 5.5 → res 7 → 343 → 344; 216 stays.
    config = HashGridConfig(levels=3, log2_table_size=10, level_scales=(4.0, 5.5, 5.0))
    layouts = level_layouts(config)
    assert [(lay.resolution, lay.size) for lay in layouts] == [(5, 128), (7, 344), (6, 216)]
    assert all(lay.dense for lay in layouts)


# -- encoding values --------------------------------------------------------------------------
def _points() -> list[tuple[float, float, float]]:
    corners = list(itertools.product((0.0, 1.0), repeat=3))
    boundaries = [  # u·3 + 0.5 and u·63 + 0.5 are integers: cell faces of levels 0 and 3
        (0.5, 0.5, 0.5),
        (0.5, 0.25, 0.75),
        (0.25, 0.0, 1.0),
        (0.5 / 3.0, 0.5, 1.5 / 3.0),
        (0.5 / 9.079368591308594, 0.5, 0.125),
    ]
    g = torch.Generator().manual_seed(11)
    random = [tuple(p) for p in torch.rand(24, 3, generator=g).tolist()]
    return corners + boundaries + random  # type: ignore[return-value]


@pytest.mark.parametrize("features", [2, 4])
def test_encode_matches_reference(features: int) -> None:
    field = _small_field(features=features)
    with torch.no_grad():
        field.params.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(12))
    points = _points()
    u = torch.tensor(points, dtype=torch.float32)
    params = field.params.detach().double().tolist()
    expected = torch.tensor(
        [_reference_encode(params, field.config, p) for p in points], dtype=torch.float64
    )
    with torch.no_grad():
        out = field.encode(u)
    assert out.shape == (len(points), 4 * features)
    torch.testing.assert_close(out.double(), expected, atol=2e-6, rtol=0)


def test_encode_on_vertices_returns_the_stored_entry() -> None:
    """At an integer grid position the interpolation returns exactly one table entry."""
    field = _small_field()
    with torch.no_grad():
        field.params.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(13))
        out = field.encode(torch.tensor([[0.5, 0.5, 0.5]]))
    table = field.params.detach().view(-1, 2)
    # Dense level 0 (res 4): position 2 on each axis → index 2 + 2·4 + 2·16 = 42.
    assert torch.equal(out[0, 0:2], table[42])
    # Hashed level 3 (scale 63, offset 2112): position 32 on each axis.
    index = (32 ^ ((32 * 2654435761) % 2**32) ^ ((32 * 805459861) % 2**32)) % 1024
    assert torch.equal(out[0, 6:8], table[2112 + index])


def test_points_outside_the_box_are_clamped_to_its_surface() -> None:
    field = _small_field(aabb=UNIT_BOX)
    with torch.no_grad():
        field.params.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(14))
        outside = field.phi1(torch.tensor([[-0.5, 0.3, 1.7], [2.0, -3.0, 0.5]]))
        surface = field.phi1(torch.tensor([[0.0, 0.3, 1.0], [1.0, 0.0, 0.5]]))
    assert torch.equal(outside, surface)


def test_phi1_normalises_by_the_aabb() -> None:
    field = _small_field(aabb=(-2.0, -2.0, -2.0, 2.0, 2.0, 2.0))
    x = torch.tensor([[-2.0, 0.0, 1.0], [1.0, 1.0, -1.0]])
    with torch.no_grad():
        expected = field.density_head(field.encode((x + 2.0) / 4.0))
        torch.testing.assert_close(field.phi1(x), expected)
    assert field.phi1(x).shape == (2, 16)


# -- config -----------------------------------------------------------------------------------
def test_level_scales_are_float32_and_round_trip_through_json() -> None:
    config = HashGridConfig(**SMALL)
    assert config.level_scales is not None and len(config.level_scales) == 4
    assert all(float(np.float32(s)) == s for s in config.level_scales)
    assert json.loads(config.to_json())["level_scales"] == list(config.level_scales)
    again = HashGridConfig.from_json(config.to_json())
    assert again == config
    assert isinstance(again.level_scales, tuple)


def test_given_level_scales_are_kept() -> None:
    # Importers pass tcnn's own scales; they must not be re-derived.
    config = HashGridConfig.from_dict({**SMALL, "level_scales": [3.0, 9.5, 24.0, 60.25]})
    assert config.level_scales == (3.0, 9.5, 24.0, 60.25)
    assert [lay.resolution for lay in level_layouts(config)] == [4, 11, 25, 62]


def test_replace_rederives_scales() -> None:
    config = HashGridConfig(**SMALL)
    more = config.replace(levels=6)
    assert more.level_scales == HashGridConfig(**{**SMALL, "levels": 6}).level_scales
    finer = config.replace(max_resolution=128)
    assert finer.level_scales is not None and finer.level_scales[-1] == 127.0
    assert config.replace(hidden_width=8).level_scales == config.level_scales
    explicit = config.replace(levels=2, level_scales=(3.0, 7.0))
    assert explicit.level_scales == (3.0, 7.0)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("levels", 0, "levels must be in 1..32, got 0"),
        ("levels", -2, "levels must be in 1..32, got -2"),
        ("features", 3, "features must be 1, 2, 4 or 8, got 3"),
        ("features", 0, "features must be 1, 2, 4 or 8, got 0"),
        ("log2_table_size", 0, "log2_table_size must be in 10..24, got 0"),
        ("log2_table_size", -1, "log2_table_size must be in 10..24, got -1"),
        ("base_resolution", 0, "base_resolution must be >= 2, got 0"),
        ("base_resolution", -4, "base_resolution must be >= 2, got -4"),
        ("max_resolution", 2, "max_resolution (2) must be >= base_resolution (4)"),
        ("max_resolution", -8, "max_resolution (-8) must be >= base_resolution (4)"),
        ("hidden_width", 0, "hidden_width must be >= 1, got 0"),
        ("level_scales", [3.0, 9.0], "level_scales must hold 4 positive values, got [3.0, 9.0]"),
        ("level_scales", [3.0, 9.0, 0.0, 63.0], "level_scales must hold 4 positive values, got ["),
        ("aabb", [0, 0, 0, 1, -1, 1], "aabb must have min < max"),
        ("levls", 4, "unknown HashGridConfig key 'levls'"),
    ],
)
def test_config_errors_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        architectures.build("hashgrid", {**SMALL, key: value})
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_config_error_from_dataclass_construction() -> None:
    with pytest.raises(ConfigError, match="features must be 1, 2, 4 or 8, got 16"):
        HashGrid(HashGridConfig(**SMALL, features=16))


# -- training behaviour -----------------------------------------------------------------------
def test_gradients_reach_grid_and_both_mlps() -> None:
    field = _small_field()
    g = torch.Generator().manual_seed(15)
    x = torch.rand(256, 3, generator=g) * 3 - 1.5
    d = torch.nn.functional.normalize(torch.randn(256, 3, generator=g), dim=-1)
    sigma, rgb = field(x, d)
    (sigma.sum() + rgb.sum()).backward()
    named = dict(field.named_parameters())
    assert set(named) == {
        "params",
        "density_head.0.weight",
        "density_head.2.weight",
        "decoder.colour_mlp.0.weight",
        "decoder.colour_mlp.2.weight",
        "decoder.colour_mlp.4.weight",
    }
    for name, parameter in named.items():
        assert parameter.grad is not None, name
        assert bool(parameter.grad.abs().sum() > 0), name


def test_param_groups_cover_every_parameter_once() -> None:
    field = _small_field()
    groups = field.param_groups(1e-2)
    grouped = [p for group in groups for p in group["params"]]
    assert len(grouped) == len(list(field.parameters()))
    assert {id(p) for p in grouped} == {id(p) for p in field.parameters()}
    assert groups[0]["params"] == [field.params] and "weight_decay" not in groups[0]


def test_same_seed_gives_identical_init() -> None:
    a, b, c = _small_field(seed=3), _small_field(seed=3), _small_field(seed=4)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(a.params, c.params)
    assert float(a.params.detach().abs().max()) <= 1e-4  # U(−1e-4, 1e-4), tcnn's init


def test_save_load_gives_identical_outputs(tmp_path) -> None:
    field = _small_field(seed=5)
    with torch.no_grad():
        field.params.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(16))
    path = architectures.save(field, tmp_path / "grid.safetensors", scene=SceneSpec())
    loaded = architectures.load(path)
    assert isinstance(loaded, HashGrid) and not loaded.training
    assert loaded.config == field.config
    g = torch.Generator().manual_seed(17)
    x = torch.rand(128, 3, generator=g) * 3 - 1.5
    d = torch.nn.functional.normalize(torch.randn(128, 3, generator=g), dim=-1)
    with torch.no_grad():
        sigma, rgb = field(x, d)
        sigma2, rgb2 = loaded(x, d)
        assert torch.equal(sigma, sigma2) and torch.equal(rgb, rgb2)
        assert torch.equal(field.phi1(x), loaded.phi1(x))


# -- registry ---------------------------------------------------------------------------------
@pytest.mark.parametrize("alias", ["ngp", "instant-ngp", "Instant-NGP", " hashgrid "])
def test_aliases_resolve_to_hashgrid(alias: str) -> None:
    assert architectures.canonical_name(alias) == "hashgrid"
    assert architectures.get(alias) is HashGrid
    field = architectures.build(alias, SMALL)
    assert isinstance(field, HashGrid) and field.arch == "hashgrid"


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(UnknownArchitectureError) as info:
        architectures.build("nerfacto")
    text = str(info.value)
    assert text.startswith("unknown architecture 'nerfacto'; choose one of: ")
    assert "hashgrid" in architectures.names()
    assert all(name in text for name in architectures.names())
