"""MLP (NeRF) adapter (architectures/mlp.py): trunk layout, skip connection, contract, config, io.

Layer sizes and parameter counts are worked out here from NeRF's description (ARCHITECTURES.md,
"MLP (NeRF)"), not read back from the module.
"""

from __future__ import annotations

import json

import pytest
import torch

import architectures
from architectures import ConfigError, SceneSpec
from architectures.mlp import MLP, MLPConfig

SMALL = {"depth": 4, "width": 32}


def _field(seed: int = 0, **changes: object) -> MLP:
    torch.manual_seed(seed)
    field = architectures.build("mlp", {**SMALL, **changes})
    assert isinstance(field, MLP)
    return field


def _inputs(n: int = 256, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g) * 3.0 - 1.5  # the default AABB [-1.5, 1.5]^3
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return x, d


# -- layout -----------------------------------------------------------------------------------
def test_paper_trunk_layout_and_parameter_count() -> None:
    field = architectures.build("mlp")  # paper: D=8, W=256, 10 frequencies
    assert [layer.in_features for layer in field.trunk] == [63, 256, 256, 256, 256, 319, 256, 256]
    assert all(layer.out_features == 256 for layer in field.trunk)
    assert (field.head.in_features, field.head.out_features) == (256, 16)
    trunk = (63 + 1) * 256 + 6 * (256 + 1) * 256 + (319 + 1) * 256
    head = (256 + 1) * 16
    decoder = 31 * 64 + 64 * 64 + 64 * 3
    assert field.num_parameters == trunk + head + decoder == 503_440
    assert field.nbytes == 4 * 503_440
    assert architectures.get("nerf") is MLP


def test_registry_build_and_contract_flags() -> None:
    field = _field()
    assert field.arch == "mlp" and field.canonical and field.feature_dim == 16
    assert field.config == MLPConfig(**SMALL)
    torch.testing.assert_close(field.aabb, torch.tensor([[-1.5] * 3, [1.5] * 3]))


# -- contract ---------------------------------------------------------------------------------
def test_shapes_and_ranges() -> None:
    field = _field()
    x, d = _inputs()
    v = field.phi1(x)
    sigma, rgb = field(x, d)
    assert v.shape == (256, 16) and sigma.shape == (256,) and rgb.shape == (256, 3)
    assert bool((sigma >= 0).all()) and bool(((rgb >= 0) & (rgb <= 1)).all())
    torch.testing.assert_close(field.density(x), sigma)
    torch.testing.assert_close(field.sigma_raw(x), v[:, 0])
    torch.testing.assert_close(torch.log(sigma), v[:, 0], atol=1e-5, rtol=0)


def test_encoding_uses_the_aabb_normalised_point() -> None:
    field = _field(aabb=(0.0, 0.0, 0.0, 2.0, 4.0, 8.0))
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 4.0], [2.0, 4.0, 8.0], [3.0, -1.0, 4.0]])
    encoded = field.encode(x)
    assert encoded.shape == (4, 63)
    # the box corners map to -1 and +1, its centre to 0; outside points are clamped to the box
    expected = torch.tensor([[-1.0] * 3, [0.0] * 3, [1.0] * 3, [1.0, -1.0, 0.0]])
    torch.testing.assert_close(encoded[:, :3], expected)
    torch.testing.assert_close(encoded[:, 3:6], torch.sin(expected))


def test_skip_connection_is_used() -> None:
    """With the layers before the skip silenced, the output still depends on x through γ(x)."""
    field = _field()
    x, _ = _inputs(64)
    with torch.no_grad():
        for layer in field.trunk[: field.config.skip_after + 1]:
            layer.weight.zero_()
            layer.bias.zero_()
        v = field.phi1(x)
    assert float(v.std(dim=0).max()) > 1e-4
    # ... and cutting the γ(x) columns of the layer after the skip makes it constant.
    with torch.no_grad():
        field.trunk[field.config.skip_after + 1].weight[:, SMALL["width"] :].zero_()
        v = field.phi1(x)
    assert float(v.std(dim=0).max()) < 1e-6


def test_gradients_reach_every_parameter_group() -> None:
    field = _field()
    x, d = _inputs()
    sigma, rgb = field(x, d)
    (sigma.mean() + rgb.mean() + field.regularizer()).backward()
    groups = field.param_groups(1e-2)
    assert sum(len(g["params"]) for g in groups) == len(list(field.parameters()))
    for group in groups:
        for p in group["params"]:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0


def test_learning_rate_is_scaled() -> None:
    groups = _field(lr_scale=0.25).param_groups(1e-2)
    assert [g["lr"] for g in groups] == [pytest.approx(2.5e-3)]
    assert architectures.build("mlp").param_groups(1e-2)[0]["lr"] == pytest.approx(1e-3)
    assert float(_field().regularizer()) == 0.0


def test_same_seed_same_field() -> None:
    x, d = _inputs(32)
    a, b, c = _field(seed=3), _field(seed=3), _field(seed=4)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    torch.testing.assert_close(a(x, d), b(x, d), atol=0, rtol=0)
    assert not torch.equal(a.phi1(x), c.phi1(x))


# -- config and io ----------------------------------------------------------------------------
def test_config_json_round_trip() -> None:
    config = MLPConfig(depth=5, width=48, frequencies=6, lr_scale=0.2, sigma_clip=(-2.0, 7.0))
    text = config.to_json()
    assert json.loads(text)["depth"] == 5
    assert MLPConfig.from_json(text) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"depth": 2}, "depth must be in 3..32 (a layer must follow the skip), got 2"),
        ({"width": 0}, "width must be in 1..4096, got 0"),
        ({"frequencies": 17}, "frequencies must be in 0..16, got 17"),
        ({"lr_scale": 0.0}, "lr_scale must be in (0, 10], got 0.0"),
        ({"widht": 64}, "unknown MLPConfig key 'widht'"),
    ],
)
def test_bad_config_is_refused_by_name(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        architectures.build("mlp", changes)
    assert str(info.value).startswith(message)


def test_save_load_round_trip(tmp_path) -> None:
    field = _field(frequencies=8, aabb=(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0))
    x, d = _inputs(64)
    x = x / 1.5
    path = architectures.save(field, tmp_path / "mlp.safetensors", scene=SceneSpec())
    loaded = architectures.load(path)
    assert isinstance(loaded, MLP) and loaded.config == field.config
    with torch.no_grad():
        expected = field(x, d)
        got = loaded(x, d)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
