"""Checkpoint I/O and the scene description every checkpoint carries.

A pvd checkpoint is one ``.safetensors`` file (never pickle), self-contained: a field can be
loaded, rendered and converted without the dataset it came from.

Tensors
    ``field.*``        the field's ``state_dict``
    ``occupancy.*``    the occupancy grid (``occupancy.binary``: bool ``[R, R, R]``, x-major)
    ``cameras.train.*`` / ``cameras.test.*``  poses and intrinsics (see ``pvd.cameras``)
Metadata (string → string, JSON where nested)
    ``format = "pt"``, ``pvd.schema`` (integer), ``pvd.arch``, ``pvd.config``, ``pvd.scene``,
    ``pvd.render`` (step size, occupancy threshold in σ units, resolution, …) and
    ``pvd.provenance`` (source, recipe, steps, seed, versions, time, metrics).

Files are written to a temporary file in the destination folder and renamed into place, so an
interrupted write never leaves a half-written checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from .base import ArchitectureError, ConfigError, RadianceField, require
from .registry import UnknownArchitectureError, get

#: Version of the checkpoint layout written by this code. Bump it when the layout changes and
#: keep reading (or refuse by name) the older ones.
SCHEMA_VERSION = 1


class CheckpointError(ArchitectureError):
    """A checkpoint file is missing, corrupt, of another tool or of a newer schema."""


@dataclasses.dataclass
class SceneSpec:
    """Where a field lives and how it is viewed.

    ``aabb``: the model-space box ``(xmin, ymin, zmin, xmax, ymax, zmax)``; ``near``/``far``:
    ray range in model units; ``background``: RGB in [0, 1] composited behind the field;
    ``world_to_model``: 4×4 similarity transform from the dataset's world frame to model space
    (identity for pvd's own scenes; importers record the source tool's normalisation here).
    Densities are stored per model-space unit; with ``s = scale`` of ``world_to_model``,
    ``σ_world = σ_model · s`` (density scales as 1/length).
    """

    aabb: tuple[float, ...] = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    near: float = 2.0
    far: float = 6.0
    background: tuple[float, ...] = (1.0, 1.0, 1.0)
    world_to_model: tuple[tuple[float, ...], ...] = (
        (1.0, 0.0, 0.0, 0.0),
        (0.0, 1.0, 0.0, 0.0),
        (0.0, 0.0, 1.0, 0.0),
        (0.0, 0.0, 0.0, 1.0),
    )
    density_units: str = "per model-space unit"

    def validate(self) -> None:
        require(
            len(self.aabb) == 6 and all(math.isfinite(v) for v in self.aabb),
            f"scene aabb must be 6 finite numbers, got {self.aabb}",
        )
        require(
            all(self.aabb[i] < self.aabb[i + 3] for i in range(3)),
            f"scene aabb must have min < max on every axis, got {self.aabb}",
        )
        require(
            0.0 <= self.near < self.far, f"scene needs 0 <= near < far, got {self.near}, {self.far}"
        )
        require(
            len(self.background) == 3 and all(0.0 <= c <= 1.0 for c in self.background),
            f"scene background must be 3 values in [0, 1], got {self.background}",
        )
        require(
            len(self.world_to_model) == 4 and all(len(r) == 4 for r in self.world_to_model),
            "scene world_to_model must be a 4x4 matrix",
        )

    @property
    def scale(self) -> float:
        """Uniform scale of ``world_to_model`` (cube root of the 3×3 determinant)."""
        m = torch.tensor(self.world_to_model, dtype=torch.float64)[:3, :3]
        return float(torch.linalg.det(m).abs() ** (1.0 / 3.0))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSpec:
        if not isinstance(data, dict):
            raise ConfigError(f"scene must be a mapping of keys, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown scene key '{unknown[0]}'; known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        converters = {
            "aabb": lambda v: tuple(float(c) for c in v),
            "background": lambda v: tuple(float(c) for c in v),
            "world_to_model": lambda v: tuple(tuple(float(c) for c in row) for row in v),
        }
        for key, convert in converters.items():
            if key in values:
                try:
                    values[key] = convert(values[key])
                except (TypeError, ValueError):
                    message = f"scene {key} must hold numbers, got {values[key]!r}"
                    raise ConfigError(message) from None
        scene = cls(**values)
        scene.validate()
        return scene


@dataclasses.dataclass
class Checkpoint:
    """Everything in a checkpoint file except the field's own tensors."""

    path: Path | None
    arch: str
    config: dict[str, Any]
    scene: SceneSpec
    render: dict[str, Any]
    provenance: dict[str, Any]
    #: Tensors outside ``field.*`` (``occupancy.*``, ``cameras.*``), by full name.
    tensors: dict[str, torch.Tensor]
    schema: int = SCHEMA_VERSION

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors whose name starts with ``prefix + '.'``, with that prefix removed."""
        head = prefix + "."
        return {k[len(head) :]: v for k, v in self.tensors.items() if k.startswith(head)}


def save(
    field: RadianceField,
    path: str | os.PathLike[str],
    *,
    scene: SceneSpec,
    render: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``field`` and its context to ``path`` atomically; returns the path.

    ``tensors`` are extra tensors by full name (``occupancy.binary``, ``cameras.train.c2w``, …);
    names under ``field.`` are reserved.
    """
    from safetensors.torch import save_file

    scene.validate()
    path = Path(path)
    out: dict[str, torch.Tensor] = {
        f"field.{k}": v.detach().cpu().contiguous().clone() for k, v in field.state_dict().items()
    }
    for name, value in (tensors or {}).items():
        if name.startswith("field."):
            raise ValueError(f"extra tensor name {name!r} uses the reserved prefix 'field.'")
        out[name] = value.detach().cpu().contiguous().clone()
    metadata = {
        "format": "pt",
        "pvd.schema": str(SCHEMA_VERSION),
        "pvd.arch": field.arch,
        "pvd.config": field.config.to_json(),
        "pvd.scene": json.dumps(scene.to_dict()),
        "pvd.render": json.dumps(render or {}),
        "pvd.provenance": json.dumps(provenance or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(out, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read_file(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a .safetensors checkpoint")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as exc:  # safetensors raises its own error types for every corruption
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or corrupt?): {reason}"
        ) from None
    return metadata, tensors


def _parse_schema(path: Path, metadata: dict[str, str]) -> int:
    if "pvd.schema" not in metadata:
        raise CheckpointError(
            f"{path}: a safetensors file but not a pvd checkpoint (no 'pvd.schema' metadata)"
        )
    try:
        schema = int(metadata["pvd.schema"])
    except ValueError:
        raise CheckpointError(f"{path}: unreadable pvd.schema {metadata['pvd.schema']!r}") from None
    if schema > SCHEMA_VERSION:
        raise CheckpointError(
            f"{path}: written with checkpoint schema {schema}, newer than this pvd reads "
            f"({SCHEMA_VERSION}); upgrade pvd"
        )
    if schema < 1:
        raise CheckpointError(f"{path}: checkpoint schema {schema} is not a pvd schema")
    return schema


def _json_meta(path: Path, metadata: dict[str, str], key: str, required: bool = True) -> Any:
    if key not in metadata:
        if required:
            raise CheckpointError(f"{path}: pvd checkpoint without '{key}' metadata")
        return {}
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: metadata '{key}' is not valid JSON") from None


def read(path: str | os.PathLike[str]) -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    """Read a checkpoint without building its field: (context, field state_dict)."""
    path = Path(path)
    metadata, tensors = _read_file(path)
    schema = _parse_schema(path, metadata)
    arch = metadata.get("pvd.arch")
    if not arch:
        raise CheckpointError(f"{path}: pvd checkpoint without 'pvd.arch' metadata")
    try:
        scene = SceneSpec.from_dict(_json_meta(path, metadata, "pvd.scene"))
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path}: bad scene metadata: {exc}") from None
    checkpoint = Checkpoint(
        path=path,
        arch=arch,
        config=_json_meta(path, metadata, "pvd.config"),
        scene=scene,
        render=_json_meta(path, metadata, "pvd.render", required=False),
        provenance=_json_meta(path, metadata, "pvd.provenance", required=False),
        tensors={k: v for k, v in tensors.items() if not k.startswith("field.")},
        schema=schema,
    )
    state = {k[len("field.") :]: v for k, v in tensors.items() if k.startswith("field.")}
    return checkpoint, state


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> RadianceField:
    """Load a pvd checkpoint as a ready field (eval mode); its context is ``field.checkpoint``.

    Raises :class:`CheckpointError` (or :class:`~architectures.registry.UnknownArchitectureError`,
    :class:`~architectures.base.ConfigError`) with a one-line message for every bad file.
    """
    checkpoint, state = read(path)
    try:
        cls = get(checkpoint.arch)
    except UnknownArchitectureError as exc:
        raise UnknownArchitectureError(f"{checkpoint.path}: {exc}") from None
    try:
        field = cls.from_config(checkpoint.config)
    except ConfigError as exc:
        raise CheckpointError(f"{checkpoint.path}: bad {checkpoint.arch} config: {exc}") from None
    expected = field.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing field.{missing[0]}" if missing else f"unexpected field.{unexpected[0]}"
        raise CheckpointError(
            f"{checkpoint.path}: tensors do not match the {checkpoint.arch} config ({what})"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{checkpoint.path}: field.{key} has shape {list(value.shape)}, the config needs "
                f"{list(expected[key].shape)}"
            )
    field.load_state_dict(state)
    field.checkpoint = checkpoint
    return field.to(map_location).eval()
