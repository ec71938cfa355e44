"""The architecture registry: names, aliases and construction from a config."""

from __future__ import annotations

from typing import Any

from .base import ArchitectureError, FieldConfig, RadianceField


class UnknownArchitectureError(ArchitectureError):
    """A name that is neither a registered architecture nor one of its aliases."""


_REGISTRY: dict[str, type[RadianceField]] = {}

#: Other names people use for the same architecture.
ALIASES: dict[str, str] = {
    "ngp": "hashgrid",
    "instant-ngp": "hashgrid",
    "instant_ngp": "hashgrid",
    "instantngp": "hashgrid",
    "hash": "hashgrid",
    "hash-grid": "hashgrid",
    "nerf": "mlp",
    "plenoxel": "plenoxels",
    "svox2": "plenoxels",
    "tensorf-vm": "tensorf",
    "vm": "tensorf",
    "mfa": "mulfagrid",
    "mulfa": "mulfagrid",
}


def register(cls: type[RadianceField]) -> type[RadianceField]:
    """Class decorator: make ``cls`` buildable and loadable under ``cls.arch``."""
    if cls.arch in _REGISTRY and _REGISTRY[cls.arch] is not cls:
        raise RuntimeError(f"architecture name {cls.arch!r} registered twice")
    _REGISTRY[cls.arch] = cls
    return cls


def names() -> list[str]:
    """Registered architecture names, sorted."""
    return sorted(_REGISTRY)


def canonical_name(name: str) -> str:
    """Resolve ``name`` (case-insensitive, aliases allowed) to a registered name."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownArchitectureError(
            f"unknown architecture '{name}'; choose one of: {', '.join(names())}"
        )
    return key


def get(name: str) -> type[RadianceField]:
    """The class registered under ``name`` (or an alias)."""
    return _REGISTRY[canonical_name(name)]


def build(name: str, config: FieldConfig | dict[str, Any] | None = None) -> RadianceField:
    """A freshly initialised field of architecture ``name``.

    ``config`` is the architecture's config dataclass or a dict of its keys (missing keys take
    the dataclass defaults); ``None`` uses the defaults.
    """
    cls = get(name)
    if config is None:
        config = cls.config_class()
    return cls.from_config(config)
