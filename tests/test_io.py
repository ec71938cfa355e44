"""Checkpoint I/O (architectures/io.py): SceneSpec, atomic save, extra tensors, bad files.

Every bad file is built here with ``safetensors.torch.save_file``; each must be refused with a
one-line :class:`CheckpointError` (or :class:`UnknownArchitectureError`) that names the file and
the problem, never a traceback from deep inside safetensors or torch.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

import architectures
from architectures import (
    SCHEMA_VERSION,
    ArchitectureError,
    CheckpointError,
    ConfigError,
    SceneSpec,
    UnknownArchitectureError,
)
from pvd.cameras import Cameras

SMALL = {
    "levels": 2,
    "log2_table_size": 10,
    "base_resolution": 4,
    "max_resolution": 8,
    "hidden_width": 8,
}


def _field(seed: int = 0) -> architectures.RadianceField:
    torch.manual_seed(seed)
    return architectures.build("hashgrid", SMALL)


def _contents(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """A valid checkpoint of a small hash grid."""
    return architectures.save(_field(), tmp_path / "good.safetensors", scene=SceneSpec())


def _refused(path: Path, error: type[ArchitectureError], *fragments: str) -> str:
    """Load ``path``, expect ``error`` with a one-line message naming the file and ``fragments``."""
    with pytest.raises(error) as info:
        architectures.load(path)
    text = str(info.value)
    assert "\n" not in text
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text
    return text


# -- SceneSpec --------------------------------------------------------------------------------
def test_scene_json_round_trip() -> None:
    scene = SceneSpec(
        aabb=(-1.0, -2.0, -0.5, 1.0, 2.0, 0.5),
        near=0.25,
        far=3.5,
        background=(0.0, 0.5, 1.0),
        world_to_model=((2.0, 0, 0, 0.1), (0, 2.0, 0, 0), (0, 0, 2.0, -0.3), (0, 0, 0, 1.0)),
    )
    scene.validate()
    again = SceneSpec.from_dict(json.loads(json.dumps(scene.to_dict())))
    assert again == SceneSpec.from_dict(scene.to_dict())
    assert again.aabb == scene.aabb and isinstance(again.aabb, tuple)
    assert again.background == scene.background
    assert again.world_to_model[0] == (2.0, 0.0, 0.0, 0.1)
    assert again.scale == pytest.approx(2.0)
    assert SceneSpec.from_dict({}) == SceneSpec()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"near": -1.0}, "scene needs 0 <= near < far, got -1.0, 6.0"),
        ({"near": 4.0, "far": 4.0}, "scene needs 0 <= near < far, got 4.0, 4.0"),
        ({"background": [1.5, 0.0, 0.0]}, "scene background must be 3 values in [0, 1]"),
        ({"background": [1.0, 1.0]}, "scene background must be 3 values in [0, 1]"),
        ({"background": "white"}, "scene background must hold numbers, got 'white'"),
        ({"aabb": [1, -1, -1, -1, 1, 1]}, "scene aabb must have min < max on every axis"),
        ({"aabb": [0, 0, 0, 1, 1, math.inf]}, "scene aabb must be 6 finite numbers"),
        ({"aabb": [0, 0, 0, 1, 1]}, "scene aabb must be 6 finite numbers"),
        ({"world_to_model": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}, "scene world_to_model must be"),
        ({"nearr": 1.0}, "unknown scene key 'nearr'"),
    ],
)
def test_scene_validation_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        SceneSpec.from_dict({**SceneSpec().to_dict(), **changes})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


# -- writing ----------------------------------------------------------------------------------
def test_save_writes_metadata_and_no_temp_files(tmp_path: Path) -> None:
    field = _field()
    render = {"step_size": 0.01, "occupancy_threshold": 0.01}
    provenance = {"source": "test", "seed": 0}
    path = architectures.save(
        field,
        tmp_path / "sub" / "f.safetensors",
        scene=SceneSpec(),
        render=render,
        provenance=provenance,
    )
    assert path == tmp_path / "sub" / "f.safetensors"
    assert [p.name for p in path.parent.iterdir()] == ["f.safetensors"]
    metadata, tensors = _contents(path)
    assert metadata["format"] == "pt"
    assert metadata["pvd.schema"] == str(SCHEMA_VERSION)
    assert metadata["pvd.arch"] == "hashgrid"
    assert json.loads(metadata["pvd.config"]) == field.config.to_dict() | {
        "aabb": list(field.config.aabb),
        "level_scales": list(field.config.level_scales),
    }
    assert set(tensors) == {f"field.{k}" for k in field.state_dict()}
    loaded = architectures.load(path)
    assert loaded.checkpoint.render == render
    assert loaded.checkpoint.provenance == provenance
    assert loaded.checkpoint.arch == "hashgrid" and loaded.checkpoint.schema == SCHEMA_VERSION


def test_save_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "f.safetensors"
    architectures.save(_field(seed=1), path, scene=SceneSpec())
    second = _field(seed=2)
    architectures.save(second, path, scene=SceneSpec(near=1.0))
    assert [p.name for p in tmp_path.iterdir()] == ["f.safetensors"]
    loaded = architectures.load(path)
    assert torch.equal(loaded.params, second.params)
    assert loaded.checkpoint.scene.near == 1.0


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.safetensors"
    architectures.save(_field(seed=1), path, scene=SceneSpec())
    before = path.read_bytes()

    def half_write(tensors: dict[str, torch.Tensor], filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_write)
    with pytest.raises(OSError, match="No space left"):
        architectures.save(_field(seed=2), path, scene=SceneSpec())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.safetensors"]


def test_save_refuses_reserved_names_and_bad_scenes(tmp_path: Path) -> None:
    path = tmp_path / "f.safetensors"
    with pytest.raises(ValueError, match=r"extra tensor name 'field\.extra' uses the reserved"):
        architectures.save(
            _field(), path, scene=SceneSpec(), tensors={"field.extra": torch.ones(3)}
        )
    with pytest.raises(ConfigError, match="near < far"):
        architectures.save(_field(), path, scene=SceneSpec(near=7.0))
    assert list(tmp_path.iterdir()) == []


# -- extra tensors ----------------------------------------------------------------------------
def test_extra_tensors_round_trip(tmp_path: Path) -> None:
    c2w = torch.eye(4).repeat(3, 1, 1)
    c2w[:, :3, 3] = torch.tensor([[0.0, 0.0, 4.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    train = Cameras.from_poses(c2w, 8, 6, 0.7)
    occupancy = torch.rand(4, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5
    extra = {
        **train.to_tensors("cameras.train"),
        **train[1].to_tensors("cameras.test"),
        "occupancy.binary": occupancy,
    }
    path = tmp_path / "f.safetensors"
    architectures.save(_field(), path, scene=SceneSpec(), tensors=extra)
    checkpoint = architectures.load(path).checkpoint
    assert set(checkpoint.tensors) == set(extra)
    group = checkpoint.group("cameras.train")
    assert set(group) == {"c2w", "intrinsics", "sizes"}
    assert group["sizes"].dtype == torch.int64
    cameras = Cameras.from_tensors(group)
    assert torch.equal(cameras.c2w, train.c2w)
    assert torch.equal(cameras.intrinsics, train.intrinsics)
    assert torch.equal(cameras.sizes, train.sizes)
    assert torch.equal(checkpoint.group("cameras.test")["c2w"], train.c2w[1:2])
    binary = checkpoint.group("occupancy")["binary"]
    assert binary.dtype == torch.bool and torch.equal(binary, occupancy)
    assert checkpoint.group("cameras.tra") == {}


def test_read_returns_context_and_state(good: Path) -> None:
    checkpoint, state = architectures.read(good)
    assert checkpoint.path == good and checkpoint.arch == "hashgrid"
    assert checkpoint.tensors == {}
    field = _field()
    assert set(state) == set(field.state_dict())
    assert all(torch.equal(state[k], v) for k, v in field.state_dict().items())


# -- bad files --------------------------------------------------------------------------------
def _rewrite(
    good: Path,
    name: str,
    *,
    metadata: dict[str, str] | None = None,
    drop_metadata: tuple[str, ...] = (),
    tensors: dict[str, torch.Tensor] | None = None,
    drop_tensors: tuple[str, ...] = (),
) -> Path:
    """A copy of ``good`` with metadata and tensors changed, written by safetensors directly."""
    meta, content = _contents(good)
    meta.update(metadata or {})
    content.update(tensors or {})
    for key in drop_metadata:
        del meta[key]
    for key in drop_tensors:
        del content[key]
    path = good.with_name(name)
    safetensors.torch.save_file(content, str(path), metadata=meta)
    return path


def test_missing_file(tmp_path: Path) -> None:
    _refused(tmp_path / "absent.safetensors", CheckpointError, "no such file")


def test_directory(tmp_path: Path) -> None:
    _refused(tmp_path, CheckpointError, "is a folder")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(4096))
    _refused(path, CheckpointError, "not a readable safetensors file")


def test_truncated_in_the_data(good: Path) -> None:
    raw = good.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    data_start = 8 + header_len
    cut = data_start + (len(raw) - data_start) // 2
    path = good.with_name("cut.safetensors")
    path.write_bytes(raw[:cut])
    _refused(path, CheckpointError, "not a readable safetensors file", "truncated")


def test_safetensors_without_pvd_metadata(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    _refused(path, CheckpointError, "not a pvd checkpoint", "pvd.schema")


def test_newer_schema(good: Path) -> None:
    newer = SCHEMA_VERSION + 1
    path = _rewrite(good, "newer.safetensors", metadata={"pvd.schema": str(newer)})
    _refused(path, CheckpointError, f"schema {newer}", "newer", "upgrade pvd")


@pytest.mark.parametrize("schema", ["0", "two"])
def test_unreadable_schema(good: Path, schema: str) -> None:
    path = _rewrite(good, "schema.safetensors", metadata={"pvd.schema": schema})
    _refused(path, CheckpointError, "schema")


def test_unknown_arch(good: Path) -> None:
    path = _rewrite(good, "arch.safetensors", metadata={"pvd.arch": "nerfacto"})
    text = _refused(path, UnknownArchitectureError, "unknown architecture 'nerfacto'")
    assert all(name in text for name in architectures.names())


def test_missing_arch(good: Path) -> None:
    path = _rewrite(good, "noarch.safetensors", drop_metadata=("pvd.arch",))
    _refused(path, CheckpointError, "'pvd.arch'")


def test_config_not_json(good: Path) -> None:
    path = _rewrite(good, "json.safetensors", metadata={"pvd.config": "{levels: 2"})
    _refused(path, CheckpointError, "'pvd.config' is not valid JSON")


def test_config_out_of_range(good: Path) -> None:
    config = json.loads(_contents(good)[0]["pvd.config"]) | {"features": 3}
    path = _rewrite(good, "cfg.safetensors", metadata={"pvd.config": json.dumps(config)})
    _refused(path, CheckpointError, "bad hashgrid config", "features must be 1, 2, 4 or 8")


@pytest.mark.parametrize(
    ("scene", "fragment"),
    [
        ({"near": 5.0, "far": 1.0}, "near < far"),
        ({"background": "white"}, "background must hold numbers"),
        ({"fov": 1.0}, "unknown scene key 'fov'"),
        ([["near", 1.0]], "scene must be a mapping of keys, got list"),
    ],
)
def test_bad_scene(good: Path, scene: object, fragment: str) -> None:
    path = _rewrite(good, "scene.safetensors", metadata={"pvd.scene": json.dumps(scene)})
    _refused(path, CheckpointError, "bad scene metadata", fragment)


def test_tensor_of_wrong_shape(good: Path) -> None:
    path = _rewrite(good, "shape.safetensors", tensors={"field.params": torch.zeros(10)})
    _refused(path, CheckpointError, "field.params has shape [10]", "the config needs [")


def test_missing_tensor(good: Path) -> None:
    path = _rewrite(good, "missing.safetensors", drop_tensors=("field.density_head.2.weight",))
    _refused(path, CheckpointError, "missing field.density_head.2.weight")


def test_unexpected_tensor(good: Path) -> None:
    path = _rewrite(good, "extra.safetensors", tensors={"field.bias": torch.zeros(16)})
    _refused(path, CheckpointError, "unexpected field.bias")
