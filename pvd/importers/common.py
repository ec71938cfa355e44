"""Helpers shared by the format modules of :mod:`pvd.importers`.

- Reading files safely: :func:`pickle_strings` lists the string constants of a ``torch.save``
  file's pickle *without* unpickling it (detectors use it to look for key names), and
  :func:`load_torch` is the only way importers unpickle: ``torch.load(path, map_location="cpu",
  weights_only=True)``. The one addition to torch's weights-only allow-list is numpy's array and
  scalar reconstruction with numeric dtypes (official TensoRF stores its alpha mask as
  ``np.packbits`` output, nerfstudio its learning rates as numpy scalars); object dtypes stay
  refused. Anything else a file needs (custom classes, code) is
  refused with one line naming the file and the global it needs. :func:`torch_checkpoint` reads
  such a file and the entries (``model``, ``pipeline``, …) an importer needs.
- Checking values: :func:`check_keys`, :func:`tensor` (shape messages ``"{file}: key 'x' has
  shape [..], expected [..]"``), :func:`number` / :func:`integer` (scalars of any source),
  :func:`require` (a one-line refusal naming the file), :func:`field_config` (a pvd config whose
  refusal names the file).
- Files beside a checkpoint (:func:`run_file`: beside it or one folder up): nerfstudio's
  ``dataparser_transforms.json`` (:func:`dataparser_transform`) and the PVD reference code's
  ``args.txt`` (:func:`read_args`, :func:`pvd_options`).
- torch-ngp-family models (torch-ngp, the PVD reference code): their ``color_net``
  (:func:`colour_net`), the background-model refusal (:func:`refuse_background_model`) and
  their render step :data:`TORCH_NGP_STEP`.
- Scenes: :func:`similarity` builds a world→model matrix, :data:`NGP_AXES` is instant-ngp's and
  torch-ngp's axis cycle, :func:`scene_spec` a validated :class:`~architectures.SceneSpec`,
  :meth:`pvd.data.Dataset.in_model_space` maps a dataset's cameras into model
  space (what the engine must do before it renders a dataset's views with an imported teacher).
- :func:`build_model` turns an imported field into a :class:`~pvd.model.TrainedModel`: occupancy
  grid from the field's density, render settings at the tool's step size, cameras from ``--data``
  (mapped into model space) or none (pvd then fits its own), and provenance recording the source
  format, the file's sha256 and the normalisation.

Model space of an imported teacher is the source tool's own space (its fields are evaluated
there, unchanged), so densities need no rescaling; ``SceneSpec.world_to_model`` records the tool's
normalisation of the dataset's world frame, and ``σ_world = σ_model · scale``.
"""

from __future__ import annotations

import ast
import datetime
import functools
import json
import math
import os
import pickle
import pickletools
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import architectures
from architectures import CheckpointError, ConfigError, FieldConfig, RadianceField, SceneSpec

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import TrainedModel

#: instant-ngp's ``nerf_matrix_to_ngp`` (``nerf_loader.h``) and torch-ngp's copy of it
#: (``nerf/provider.py``; also the reference PVD code's ``just_train_tea/provider.py``): model
#: axes ``(x, y, z)`` are world ``(y, z, x)``.
NGP_AXES = ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 0.0, 0.0))
#: torch-ngp's smallest ray-marching step (``raymarching/src/raymarching.cu``: ``dt_min =
#: 2·√3 / max_steps`` with ``max_steps`` 1024, ``dt_gamma`` 0 for Blender scenes), also the
#: PVD reference code's.
TORCH_NGP_STEP = 2.0 * math.sqrt(3.0) / 1024
#: The reference PVD code's defaults (``main_just_train_tea.py``) of the options the ``.pth``
#: does not store and :func:`pvd_options` reads from ``args.txt``.
PVD_DEFAULT_OPTIONS = {"scale": 0.8, "sigma_clip_min": -2.0, "sigma_clip_max": 7.0, "min_near": 0.2}
#: Opacity of one render step below which pvd's occupancy grid skips a cell (nerfacc's
#: ``alpha_thre`` 0.01 in nerfstudio; pvd's own default, σ 0.5 at step 0.02, is the same).
STEP_OPACITY_THRESHOLD = 0.01
#: Blender-format scenes of every tool render on white unless the file says otherwise.
WHITE = (1.0, 1.0, 1.0)

_ZIP_MAGIC = b"PK\x03\x04"
_STRING_OPCODES = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
)


def read_head(path: Path, size: int = 16) -> bytes:
    """The first ``size`` bytes of ``path`` (empty when unreadable): for magic-byte checks."""
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def is_zip(path: Path) -> bool:
    """Whether ``path`` is a zip archive (``torch.save`` files since torch 1.6, ``.npz``)."""
    return read_head(path, 4) == _ZIP_MAGIC


@functools.lru_cache(maxsize=16)
def _pickle_strings(path: str, size: int, mtime_ns: int) -> frozenset[str]:
    del size, mtime_ns  # part of the cache key only: a rewritten file is read again
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                return frozenset()
            payload = archive.read(names[0])
    except (OSError, zipfile.BadZipFile):
        return frozenset()
    found: set[str] = set()
    try:
        for opcode, argument, _ in pickletools.genops(payload):
            if opcode.name in _STRING_OPCODES:
                found.add(argument if isinstance(argument, str) else repr(argument))
            elif opcode.name == "GLOBAL":
                found.add(str(argument).replace(" ", "."))
    except (ValueError, EOFError):  # a damaged pickle: report what was read before the damage
        pass
    return frozenset(found)


def pickle_strings(path: Path) -> frozenset[str]:
    """String constants (dict keys, values, global names) of a ``torch.save`` zip file's pickle,
    read with ``pickletools`` — nothing is unpickled or executed. Empty for any other file.
    Cached per file version, so every detector can ask."""
    if not is_zip(path):
        return frozenset()
    stat = path.stat()
    return _pickle_strings(str(path), stat.st_size, stat.st_mtime_ns)


def _numpy_globals() -> list[Any]:
    """numpy's plain-array and scalar reconstruction of numeric dtypes, under the names numpy 1.x
    and 2.x pickles use (official TensoRF stores its alpha mask as an ``np.packbits`` array;
    nerfstudio's optimizer and scheduler states and torch-ngp's metrics hold numpy scalars).
    Object dtypes stay disallowed."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x (pyproject allows >= 1.24) names it numpy.core
        from numpy.core import multiarray

    reconstruct, scalar = multiarray._reconstruct, multiarray.scalar
    # the unpickler builds dtypes through their numeric DType classes (numpy.dtypes.UInt8DType, …)
    numeric = (np.bool_, np.uint8, np.int8, np.int16, np.int32, np.int64)
    numeric += (np.float16, np.float32, np.float64)
    return [
        np.ndarray,
        np.dtype,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        *(type(np.dtype(t)) for t in numeric),
    ]


def load_torch(path: Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` (plus numeric numpy arrays and
    scalars, :func:`_numpy_globals`, allowed through ``torch.serialization.safe_globals``, which
    needs torch ≥ 2.5: pyproject's pin); a file that needs more pickle is refused in one line."""
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc)
        what = ""
        for marker in ("Unsupported global: GLOBAL ", "but got <class '"):
            if marker in detail:
                what = detail[detail.index(marker) + len(marker) :].split()[0].rstrip("'>")
        reason = f" (it needs {what})" if what else ""
        raise CheckpointError(
            f"{path}: needs pickle beyond plain tensors{reason}; pvd reads foreign checkpoints "
            "only with torch.load(weights_only=True)"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0].split(". ")[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {reason}") from None
    return value


def torch_checkpoint(path: Path, tool: str, *entries: str) -> tuple[dict[str, Any], ...]:
    """The ``torch.save`` dict of ``path`` (:func:`load_torch`), then each of its ``entries`` as
    a dict; a file without one of them is refused as not a ``tool`` checkpoint."""
    checkpoint = mapping(path, load_torch(path), "the checkpoint")
    missing = [entry for entry in entries if entry not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: no '{missing[0]}' entry (not a {tool} checkpoint)")
    return (checkpoint, *(mapping(path, checkpoint[entry], f"'{entry}'") for entry in entries))


def mapping(path: Path, value: Any, what: str) -> dict[str, Any]:
    """``value`` as a dict, or a one-line error saying ``what`` was expected."""
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{path}: {what} is a {type(value).__name__}, expected a mapping")
    return dict(value)


def strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Entries whose key starts with ``prefix``, with it removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _shown(keys: Iterable[str], limit: int = 4) -> str:
    keys = sorted(keys)
    text = ", ".join(f"'{k}'" for k in keys[:limit])
    return text + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_keys(
    path: Path,
    state: Mapping[str, Any],
    required: Iterable[str],
    optional: Iterable[str] = (),
    what: str = "",
) -> None:
    """Refuse a state dict with keys outside ``required ∪ optional`` (pvd will not drop what it
    cannot represent) or without one of ``required``; ``what`` names the model in the message."""
    required = set(required)
    unknown = set(state) - required - set(optional)
    suffix = f" of {what}" if what else ""
    if unknown:
        raise CheckpointError(f"{path}: unknown keys {_shown(unknown)}{suffix}; cannot import them")
    missing = required - set(state)
    if missing:
        raise CheckpointError(f"{path}: missing key {_shown(missing)}{suffix}")


def tensor(
    path: Path,
    state: Mapping[str, Any],
    key: str,
    shape: Sequence[int | None] | None = None,
) -> torch.Tensor:
    """``state[key]`` as a float32 tensor, checked against ``shape`` (``None`` = any size)."""
    if key not in state:
        raise CheckpointError(f"{path}: missing key '{key}'")
    value = state[key]
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{path}: key '{key}' is a {type(value).__name__}, not a tensor")
    if shape is not None:
        ok = len(shape) == value.ndim and all(
            s is None or s == n for s, n in zip(shape, value.shape, strict=True)
        )
        if not ok:
            expected = ", ".join("*" if s is None else str(s) for s in shape)
            raise CheckpointError(
                f"{path}: key '{key}' has shape {list(value.shape)}, expected [{expected}]"
            )
    return value.float()


def number(path: Path, table: Mapping[str, Any], key: str, default: float | None = None) -> float:
    """``table[key]`` as a float (tensors of one element, numpy scalars and ints accepted)."""
    value = table.get(key, default)
    if isinstance(value, torch.Tensor | np.ndarray | np.generic):
        count = value.numel() if isinstance(value, torch.Tensor) else value.size
        value = value.item() if count == 1 else value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CheckpointError(f"{path}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def integer(path: Path, table: Mapping[str, Any], key: str, default: int | None = None) -> int:
    """``table[key]`` as an int (:func:`number`, which must be integral)."""
    value = number(path, table, key, default)
    if not value.is_integer():
        raise CheckpointError(f"{path}: '{key}' must be an integer, got {value!r}")
    return int(value)


def require(path: Path, condition: bool, message: str) -> None:
    """Refuse ``path`` with the one-line ``"{path}: {message}"`` unless ``condition`` holds."""
    if not condition:
        raise CheckpointError(f"{path}: {message}")


def run_file(path: Path, name: str) -> Path | None:
    """The file ``name`` beside the checkpoint ``path`` or one folder up (nerfstudio's run folder
    above ``nerfstudio_models/``, the PVD reference code's workspace above ``checkpoints/``);
    None when neither has it."""
    for folder in (path.parent, path.parent.parent):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def dataparser_transform(path: Path) -> tuple[tuple[tuple[float, ...], ...] | None, str]:
    """(world→model, description) from nerfstudio's ``dataparser_transforms.json``
    (``{"transform": 3×4, "scale"}``, :func:`run_file`); without the file, ``(None, …)``: the
    dataset's frame is taken as nerfstudio's (identity, as for nerfstudio's Blender parser).
    nerfstudio applies ``transform`` to the poses, then multiplies their positions by ``scale``,
    so world→model is ``[scale·R | scale·t]``; ``R`` must be orthonormal (a rotation, as
    nerfstudio's ``auto_orient_and_center_poses`` makes it), else the file is refused, as is an
    unreadable one."""
    found = run_file(path, "dataparser_transforms.json")
    if found is None:
        return None, "identity: no dataparser_transforms.json beside the checkpoint or one up"
    try:
        content = json.loads(found.read_text())
        transform = torch.tensor(content["transform"], dtype=torch.float64)
        scale = float(content["scale"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{found}: not a dataparser_transforms.json ({exc})") from None
    if transform.shape != (3, 4) or not scale > 0:
        raise CheckpointError(f"{found}: expected a 3x4 'transform' and a positive 'scale'")
    rotation = transform[:, :3]
    if not torch.allclose(rotation @ rotation.t(), torch.eye(3, dtype=torch.float64), atol=1e-5):
        raise CheckpointError(f"{found}: 'transform' is not a rotation and translation")
    translation = (scale * transform[:, 3]).tolist()
    description = f"nerfstudio dataparser: p -> {scale:g} (R p + t) from {found}"
    return similarity(scale, rotation.tolist(), translation), description


def read_args(path: Path) -> tuple[dict[str, Any], Path | None]:
    """The PVD reference code's ``args.txt`` (one ``('name', value)`` tuple per line, written
    into its workspace; :func:`run_file`) parsed with ``ast.literal_eval`` (no code runs);
    ``({}, None)`` when there is none."""
    found = run_file(path, "args.txt")
    if found is None:
        return {}, None
    values: dict[str, Any] = {}
    try:
        text = found.read_text(errors="replace")
    except OSError as exc:
        raise CheckpointError(f"{found}: cannot read ({exc.strerror})") from None
    for line in text.splitlines():
        try:
            item = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError):
            continue  # the reference code appends metric lines after the arguments
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            values[item[0]] = item[1]
    return values, found


def pvd_options(path: Path) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """The PVD reference code's ``--scale``, ``--sigma_clip_min/max`` and ``--min_near`` for the
    checkpoint ``path``: from its ``args.txt`` (:func:`read_args`) where given, else
    :data:`PVD_DEFAULT_OPTIONS` (a value that is not a number is refused naming ``args.txt``).
    Returns (options, every entry of ``args.txt``, provenance: the file, and which options came
    from it and which are the reference defaults)."""
    args, found = read_args(path)
    options = {key: number(found or path, args, key, d) for key, d in PVD_DEFAULT_OPTIONS.items()}
    from_file = sorted(key for key in PVD_DEFAULT_OPTIONS if key in args)
    provenance = {
        "args_file": str(found) if found else None,
        "from_args_file": from_file,
        "reference_defaults": sorted(set(PVD_DEFAULT_OPTIONS) - set(from_file)),
    }
    return options, args, provenance


_COLOUR_NET_SHAPES = {
    "color_net.0.weight": (64, 31),
    "color_net.1.weight": (64, 64),
    "color_net.2.weight": (3, 64),
}
#: torch-ngp's / the PVD reference code's ``color_net`` keys.
COLOUR_NET_KEYS = tuple(_COLOUR_NET_SHAPES)


def colour_net(path: Path, state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """torch-ngp's ``color_net`` (``[SH₄(d) (16), geo (15)]`` → 64 → 64 → 3, no biases;
    ``nerf/network.py``, the PVD reference code's ``just_train_tea/network.py``) as pvd's
    canonical decoder's ``decoder.colour_mlp.{0,2,4}.weight`` — the same function."""
    return {
        f"decoder.colour_mlp.{2 * i}.weight": tensor(path, state, key, shape)
        for i, (key, shape) in enumerate(_COLOUR_NET_SHAPES.items())
    }


def refuse_background_model(path: Path, state: Mapping[str, Any]) -> None:
    """Refuse a torch-ngp-family model with a background model (``bg_radius > 0``: keys
    ``encoder_bg.*``, ``bg_net.*``): pvd's scenes have a constant background."""
    background = sorted(k for k in state if k.startswith(("bg_net.", "encoder_bg.")))
    if background:
        raise CheckpointError(
            f"{path}: has a background model ('{background[0]}', bg_radius > 0); "
            "pvd's scenes have a constant background"
        )


def similarity(
    scale: float,
    rotation: Sequence[Sequence[float]] | None = None,
    translation: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[tuple[float, ...], ...]:
    """The 4×4 world→model matrix ``p ↦ scale · R p + t`` (``R`` a rotation, default identity)."""
    r = torch.eye(3, dtype=torch.float64) if rotation is None else torch.tensor(rotation).double()
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = scale * r
    m[:3, 3] = torch.tensor(translation, dtype=torch.float64)
    return tuple(tuple(float(v) for v in row) for row in m.tolist())


def scene_spec(
    path: Path,
    aabb: Sequence[float],
    *,
    near: float = 0.0,
    far: float = 1000.0,
    background: Sequence[float] = WHITE,
    world_to_model: tuple[tuple[float, ...], ...] | None = None,
) -> SceneSpec:
    """A validated scene in model units (a bad box or range is refused naming the file).
    ``near = 0, far = 1000`` (the defaults) let the box alone bound the rays, as tools without a
    stored near/far plane do (svox2's box, nerfstudio's ``AABBBoxCollider``)."""
    values: dict[str, Any] = {
        "aabb": [float(v) for v in aabb],
        "near": float(near),
        "far": float(far),
        "background": [float(v) for v in background],
    }
    if world_to_model is not None:
        values["world_to_model"] = world_to_model
    try:
        return SceneSpec.from_dict(values)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def field_config(path: Path, arch: str, config: dict[str, Any]) -> FieldConfig:
    """The validated config of a pvd ``arch`` field from an importer's values; a config pvd
    refuses is reported in one line naming the file."""
    try:
        return architectures.get(arch).config_class.from_dict(config)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: cannot be represented as a pvd {arch}: {exc}") from None


def build_field(path: Path, arch: str, config: dict[str, Any]) -> RadianceField:
    """A pvd field of ``arch`` from an importer's config (:func:`field_config`)."""
    return architectures.build(arch, field_config(path, arch, config))


def load_state(path: Path, field: RadianceField, state: Mapping[str, torch.Tensor]) -> None:
    """Copy converted tensors into ``field`` (every parameter and buffer must be given, with
    its shape: a mismatch here is an importer bug, reported naming the file)."""
    expected = field.state_dict()
    if set(expected) != set(state):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise CheckpointError(
            f"{path}: converted tensors do not match the pvd {field.arch} field "
            f"(missing {missing}, extra {extra})"
        )
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: converted '{key}' has shape {list(value.shape)}, the pvd {field.arch} "
                f"field needs {list(expected[key].shape)}"
            )
    field.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def occupancy_threshold(step_size: float, step_opacity: float = STEP_OPACITY_THRESHOLD) -> float:
    """The density (σ per model unit) whose opacity over one step is ``step_opacity``: pvd's
    occupancy grid skips cells below it."""
    return -math.log1p(-step_opacity) / step_size


def build_model(
    path: Path,
    kind: str,
    field: RadianceField,
    scene: SceneSpec,
    *,
    step_size: float,
    data: Dataset | None,
    normalisation: str,
    details: dict[str, Any] | None = None,
    occupancy_resolution: int = 64,
    step_opacity: float = STEP_OPACITY_THRESHOLD,
) -> TrainedModel:
    """The imported teacher: ``field`` (eval mode) with its occupancy grid (built from its
    density at the opacity ``step_opacity`` per step), render settings at the tool's ``step_size``,
    the train/test cameras of ``data`` mapped into model space (none without ``--data``: pvd then
    fits cameras to the box) and provenance (``source = "pvd import"``, the format, the file's
    sha256, ``normalisation`` — how the tool placed the dataset's world frame in model space —
    and the importer's ``details``)."""
    from ..distill import file_sha256
    from ..model import TrainedModel
    from ..render import OccupancyGrid, RenderSettings
    from ..train import _versions

    field.eval().requires_grad_(False)
    render = RenderSettings(
        step_size=float(step_size),
        occupancy_resolution=occupancy_resolution,
        occupancy_threshold=occupancy_threshold(step_size, step_opacity),
    )
    render.validate()
    grid = OccupancyGrid.from_field(
        field.density, scene.aabb, render.occupancy_resolution, render.occupancy_threshold
    )
    cameras = {}
    if data is not None:
        mapped = data.in_model_space(scene)
        cameras = {s: mapped.split(s).cameras for s in ("train", "test") if s in mapped.splits}
    provenance = {
        "source": "pvd import",
        "import": {
            "format": kind,
            "file": str(path),
            "sha256": file_sha256(path),
            "bytes": os.path.getsize(path),
            "normalisation": normalisation,
            "world_to_model": [list(row) for row in scene.world_to_model],
            **(details or {}),
        },
        "dataset": str(data.root) if data is not None else None,
        "arch": field.arch,
        "versions": _versions(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return TrainedModel(field, grid, scene, render, cameras, provenance)
