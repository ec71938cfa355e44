"""Importers: other tools' trained checkpoints → pvd :class:`~pvd.model.TrainedModel` teachers.

``pvd import FILE [--from KIND]`` reads a foreign checkpoint and writes a self-contained pvd
checkpoint; ``pvd convert``/``info``/``eval`` accept the foreign file directly through
:func:`load_any`. ``architectures.load`` stays pvd-only: importers live in the engine.

The interface (stable; every format module follows it)
------------------------------------------------------
Each format is one module ``pvd/importers/<module>.py`` holding a module-level ``IMPORTER``:

``Importer(name, description, detect, load)``
    ``name``: the ``--from`` kind (e.g. ``"tensorf-th"``); ``description``: one line for help
    and error messages; ``detect(path: Path) -> bool``: whether the file is this format, decided
    from its *content* (magic bytes, zip / gzip structure, key names — see
    :func:`pvd.importers.common.pickle_strings`), cheap and never raising for a file of another
    format; ``load(path: Path, data: Dataset | None) -> TrainedModel``: the imported teacher (in
    eval mode, on CPU), or :class:`architectures.CheckpointError` /
    :class:`pvd.errors.UserError` with one line naming the file and what is unsupported.

Modules are listed explicitly in :func:`_registered` and imported on first use (lazily: they
import this package's :class:`Importer`, and torch-heavy code need not load for ``--help``); a
missing or renamed module fails loudly there. Detection tries them in that order and the first
``detect`` that says yes wins, so detectors must claim disjoint files:

- ``pvd_reference`` (PVD AAAI 2023 reference ``.pth``): model types ``mlp``, ``vm``,
  ``tensors`` (keys ``nerf_mlp.*``, ``sigma_mat.*``, ``tensor_volume.*``);
- ``torch_ngp``: torch-ngp ``.pth`` *and* the reference PVD ``hash`` type (both hold
  ``encoder.embeddings``: the same gridencoder);
- ``instant_ngp``: ``.ingp`` / ``.msgpack`` snapshots;
- ``nerfstudio``: nerfstudio ``.ckpt`` of instant-ngp / nerfacto (``field.mlp_base``);
- ``nerfstudio_tensorf``: nerfstudio ``.ckpt`` of tensorf (``field.density_encoding``);
- ``tensorf_official``: the official TensoRF ``.th`` (``kwargs`` + ``state_dict``);
- ``svox2``: Plenoxels ``.npz``.

Shared helpers for format modules are in :mod:`pvd.importers.common` (safe ``torch.load``,
key / shape checks, scene and world→model normalisation, building the ``TrainedModel`` with its
occupancy grid, render settings, cameras and provenance).

Entry points
------------
:func:`import_checkpoint` (``kind`` overrides detection) and :func:`load_any` (a pvd
``.safetensors`` goes through :meth:`TrainedModel.load`, anything else through
:func:`import_checkpoint`). :func:`detect_kind` names the format of a file.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from ..data import Dataset
    from ..model import TrainedModel


@dataclasses.dataclass(frozen=True)
class Importer:
    """One foreign checkpoint format (see the module docstring for the contract)."""

    name: str
    description: str
    detect: Callable[[Path], bool]
    load: Callable[[Path, Dataset | None], TrainedModel]


@functools.cache
def _registered() -> tuple[Importer, ...]:
    """Every format module's ``IMPORTER``, in detection order (module docstring)."""
    from . import (
        instant_ngp,
        nerfstudio,
        nerfstudio_tensorf,
        pvd_reference,
        svox2,
        tensorf_official,
        torch_ngp,
    )

    modules = (
        pvd_reference,
        torch_ngp,
        instant_ngp,
        nerfstudio,
        nerfstudio_tensorf,
        tensorf_official,
        svox2,
    )
    return tuple(module.IMPORTER for module in modules)


def __getattr__(name: str) -> Any:
    if name == "IMPORTERS":
        return list(_registered())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def kinds() -> list[str]:
    """The ``--from`` kinds of every available importer, in detection order."""
    return [importer.name for importer in _registered()]


def get_importer(kind: str) -> Importer:
    """The importer called ``kind`` (case-insensitive); a one-line error lists the known kinds."""
    for importer in _registered():
        if importer.name == kind.strip().lower():
            return importer
    raise UserError(f"unknown checkpoint kind '{kind}'; known kinds: {', '.join(kinds())}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a checkpoint file")


def detect_kind(path: str | os.PathLike[str]) -> str | None:
    """The kind of the first importer whose detector claims ``path``, or None."""
    path = Path(path)
    _check_file(path)
    for importer in _registered():
        if importer.detect(path):
            return importer.name
    return None


def import_checkpoint(
    path: str | os.PathLike[str], kind: str | None = None, data: Dataset | None = None
) -> TrainedModel:
    """Read a foreign checkpoint as a pvd teacher (CPU, eval mode).

    ``kind`` names the format (``--from``) and skips detection; ``data`` (a loaded dataset)
    gives the teacher its cameras, mapped into model space with the scene's world→model
    transform. An unknown kind or a file no importer claims is refused in one line that lists
    the known kinds.
    """
    path = Path(path)
    _check_file(path)
    if kind is not None:
        return get_importer(kind).load(path, data)
    detected = detect_kind(path)
    if detected is None:
        raise UserError(
            f"{path}: not a checkpoint of any known format; known kinds: {', '.join(kinds())} "
            "(pvd's own checkpoints are .safetensors)"
        )
    return get_importer(detected).load(path, data)


def is_pvd_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether pvd's own loader should read ``path``: its content is a safetensors file (an
    8-byte little-endian header length, then a JSON header), or it is named ``*.safetensors``
    (so a damaged or missing pvd checkpoint gets pvd's own error message)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


def load_any(
    path: str | os.PathLike[str],
    kind: str | None = None,
    device: str = "cpu",
    data: Dataset | None = None,
) -> TrainedModel:
    """A pvd ``.safetensors`` checkpoint through :meth:`TrainedModel.load`; anything else (or
    any file when ``kind`` is given) through :func:`import_checkpoint`, moved to ``device``."""
    from ..model import TrainedModel

    if kind is None and is_pvd_checkpoint(path):
        return TrainedModel.load(path, device)
    model = import_checkpoint(path, kind, data)
    model.field.to(device)
    model.grid.to(device)
    return model


__all__ = [
    "IMPORTERS",
    "Importer",
    "detect_kind",
    "get_importer",
    "import_checkpoint",
    "is_pvd_checkpoint",
    "kinds",
    "load_any",
]
