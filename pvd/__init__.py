"""pvd: progressive volume distillation between radiance-field architectures.

The package imports lazily so that ``pvd --help`` starts without loading torch; every name in
``__all__`` is importable as usual (``from pvd import SceneSpec``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name → module that defines it
_LAZY = {
    "SceneSpec": "architectures.io",
    "Cameras": "pvd.cameras",
    "Dataset": "pvd.data",
    "load_dataset": "pvd.data",
    "OccupancyGrid": "pvd.render",
    "RenderSettings": "pvd.render",
    "TrainedModel": "pvd.model",
    "UserError": "pvd.errors",
    "convert": "pvd.distill",
    "ConversionReport": "pvd.distill",
    "import_checkpoint": "pvd.importers",
    "gtk": "pvd.tangent_kernel",
    "GTKReport": "pvd.tangent_kernel",
    "compare": "pvd.comparison",
    "ComparisonTable": "pvd.comparison",
    "StudentRecord": "pvd.comparison",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pvd' has no attribute {name!r}")
