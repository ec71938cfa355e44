"""pvd's architecture adapters: six radiance-field architectures behind one φ¹/φ² contract.

Downstream editors use this package alone (it imports only torch, numpy, safetensors and,
lazily, tensorly)::

    import architectures
    field = architectures.load("x.safetensors")
    sigma, rgb = field(x, d)          # x: model-space points [N, 3], d: unit directions [N, 3]
    v = field.phi1(x)                 # volume features; field.density(x) for density only
"""

from . import (
    hashgrid,  # noqa: F401  (registers the architecture)
    mflod,  # noqa: F401
    mlp,  # noqa: F401
    mulfagrid,  # noqa: F401
    plenoxels,  # noqa: F401
    tensorf,  # noqa: F401
)
from .base import (
    ArchitectureError,
    CanonicalField,
    ConfigError,
    FieldConfig,
    RadianceField,
)
from .io import SCHEMA_VERSION, Checkpoint, CheckpointError, SceneSpec, load, read, save
from .registry import ALIASES, UnknownArchitectureError, build, canonical_name, get, names

__all__ = [
    "ALIASES",
    "SCHEMA_VERSION",
    "ArchitectureError",
    "CanonicalField",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "FieldConfig",
    "RadianceField",
    "SceneSpec",
    "UnknownArchitectureError",
    "build",
    "canonical_name",
    "get",
    "load",
    "names",
    "read",
    "save",
]
