"""The φ¹/φ² contract every pvd architecture implements.

PVD (Fang et al., AAAI 2023) views every radiance field as a two-stage cascade: a *volume part*
φ¹ that maps a point to a feature vector ``v``, and a *decoder* φ² that maps ``v`` and a view
direction to density and colour. Distillation aligns teacher and student stage by stage, so each
architecture exposes both stages:

- ``phi1(x) -> v``: ``x`` are model-space points ``[N, 3]`` inside ``field.aabb``.
- ``phi2(v, d) -> (sigma, rgb)``: ``d`` are unit directions ``[N, 3]``; ``sigma >= 0`` ``[N]``,
  ``rgb`` in [0, 1] ``[N, 3]``.
- ``forward(x, d) = phi2(phi1(x), d)``; ``density(x)`` (no colour work); ``sigma_raw(x)``
  (pre-activation density, what distillation clips and compares).
- ``regularizer()`` (TV / L1 where the architecture has one, else 0) and ``param_groups(lr)``.

Each architecture has a ``config`` dataclass (:class:`FieldConfig`) that round-trips through JSON
and rebuilds the module exactly; ``arch`` is its registry name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from abc import abstractmethod
from typing import Any, ClassVar, Self

import torch
from torch import nn

from .components import CanonicalDecoder, activate_density


class ArchitectureError(ValueError):
    """A user-facing problem with an architecture, its config or a checkpoint.

    The message is one line that says what is wrong and what to do; front ends print it
    without a traceback.
    """


class ConfigError(ArchitectureError):
    """A config value is missing, unknown or out of range (the message names the key)."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Turn a JSON value into the dataclass field's declared type (lists → tuples, ints →
    floats), refusing a value of another type with a :class:`ConfigError` naming ``key``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _coerce(key, value, options[0])
    if origin is tuple:
        require(isinstance(value, list | tuple), f"{key} must be a list, got {value!r}")
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(key, v, args[0]) for v in value)
        require(len(value) == len(args), f"{key} must hold {len(args)} values, got {len(value)}")
        return tuple(_coerce(key, v, a) for v, a in zip(value, args, strict=True))
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        require(ok, f"{key} must be a number, got {value!r}")
        return float(value)
    if annotation is int:
        require(
            isinstance(value, int) and not isinstance(value, bool),
            f"{key} must be an integer, got {value!r}",
        )
    elif annotation in (bool, str):
        require(
            isinstance(value, annotation), f"{key} must be a {annotation.__name__}, got {value!r}"
        )
    return value


@dataclasses.dataclass
class FieldConfig:
    """Base of every architecture's config.

    ``aabb`` is the model-space box ``(xmin, ymin, zmin, xmax, ymax, zmax)`` the field covers.
    ``sigma_clip`` is the *optional* forward clamp of raw density used by the reference PVD code
    (``sigma = trunc_exp(clamp(raw, a, b))``). It is off by default: it puts a density floor of
    e^a everywhere (a fog for anyone calling ``field(x, d)``) and stops gradients below ``a``.
    Distillation clips the *teacher's target* instead (see ``pvd.distill``).
    """

    aabb: tuple[float, ...] = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    sigma_clip: tuple[float, float] | None = None

    def validate(self) -> None:
        """Check every value; raise :class:`ConfigError` naming the first bad key."""
        require(
            len(self.aabb) == 6 and all(math.isfinite(v) for v in self.aabb),
            f"aabb must be 6 finite numbers (xmin ymin zmin xmax ymax zmax), got {self.aabb}",
        )
        require(
            all(self.aabb[i] < self.aabb[i + 3] for i in range(3)),
            f"aabb must have min < max on every axis, got {self.aabb}",
        )
        if self.sigma_clip is not None:
            require(
                len(self.sigma_clip) == 2 and self.sigma_clip[0] < self.sigma_clip[1],
                f"sigma_clip must be [low, high] with low < high, got {self.sigma_clip}",
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build and validate a config; an unknown key is refused by name."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} expects a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} key '{unknown[0]}'; known keys: {', '.join(sorted(known))}"
            )
        config = cls(**{k: _coerce(k, v, hints[k]) for k, v in data.items()})
        config.validate()
        return config

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` applied (unknown keys refused by name)."""
        return type(self).from_dict({**self.to_dict(), **changes})


def check_points(x: torch.Tensor, name: str = "x") -> None:
    """Refuse anything but a floating ``[N, 3]`` tensor (explicit checks, as kaolin does)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [N, 3], got {type(x).__name__}")
    if x.ndim != 2 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


class RadianceField(nn.Module):
    """Base class of all pvd architectures (see the module docstring for the contract).

    Subclasses set ``arch`` and ``config_class``, build their modules in ``__init__`` from the
    config, and implement :meth:`phi1` and :meth:`phi2`.
    """

    arch: ClassVar[str]
    config_class: ClassVar[type[FieldConfig]]
    #: Channels of ``v``; 16 for the canonical architectures (``[sigma_raw, g_1..g_15]``). An
    #: instance may differ (Plenoxels' SH degree, importer variants), so it is not a ClassVar.
    feature_dim: int = 16
    #: True when ``phi2`` is the shared canonical decoder (so decoders can be inherited); the
    #: config variants that reproduce other tools' decoders set it False on the instance.
    canonical: bool = True

    def __init__(self, config: FieldConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        config.validate()
        self.config = config
        aabb = torch.tensor(config.aabb, dtype=torch.float32).view(2, 3)
        self.register_buffer("aabb", aabb, persistent=False)

    # -- the contract ---------------------------------------------------------------------
    @abstractmethod
    def phi1(self, x: torch.Tensor) -> torch.Tensor:
        """Volume part: model-space points ``[N, 3]`` → volume features ``v`` ``[N, C]``."""

    @abstractmethod
    def phi2(self, v: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder: features ``[N, C]`` and unit directions ``[N, 3]`` → (sigma ``[N]``, rgb)."""

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_points(x, "x")
        check_points(d, "d")
        if d.shape[0] != x.shape[0]:
            raise ValueError(
                f"x and d must have the same length, got {x.shape[0]} and {d.shape[0]}"
            )
        return self.phi2(self.phi1(x), d)

    def sigma_raw(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activation density ``[N]`` (channel 0 of ``v``)."""
        check_points(x, "x")
        return self.phi1(x)[:, 0]

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Density ``sigma >= 0`` ``[N]`` in inverse model-space units, without colour work."""
        return activate_density(self.sigma_raw(x), self.config.sigma_clip)

    def regularizer(self) -> torch.Tensor:
        """The architecture's own regulariser (TV, L1, …), already weighted by the weights in its
        config (so trainers only add ``recipe_weight · regularizer()``); zero where it has none."""
        return self.aabb.new_zeros(())

    def param_groups(self, base_lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; architectures with mixed parts override the rates."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": base_lr}]

    def on_train_step(self, progress: float) -> bool:
        """Architecture-specific training mechanics, called by trainers before each step with
        the fraction of the run done (``step / steps``, or of the time budget when that is
        further along), so schedules fit runs stopped by steps or by time alike.

        Returns True when the parameter tensors were replaced (e.g. TensoRF upsampling its
        factors), so the trainer must rebuild its optimizer. The default does nothing.
        """
        return False

    # -- helpers --------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map model-space points to the unit cube [0, 1]³ of the field's ``aabb``."""
        lo, hi = self.aabb[0], self.aabb[1]
        return (x - lo) / (hi - lo)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tensors (parameters and persistent buffers)."""
        return sum(t.numel() * t.element_size() for t in self.state_dict().values())

    @classmethod
    def from_config(cls, config: FieldConfig | dict[str, Any]) -> Self:
        if isinstance(config, dict):
            config = cls.config_class.from_dict(config)
        return cls(config)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, parameters={self.num_parameters:,}"


class CanonicalField(RadianceField):
    """An architecture whose φ² is the shared canonical decoder (every one but Plenoxels) —
    unless its config selects a variant reproducing another tool's decoder (importers), which
    sets ``canonical = False`` on the instance.

    φ¹ ends in ``v = [sigma_raw, g_1..g_15]``; φ² is
    :class:`~architectures.components.CanonicalDecoder`.
    Because all canonical architectures meet at the same ``v``, a student can inherit the
    teacher's decoder and the volume loss needs no projection.
    """

    def __init__(self, config: FieldConfig) -> None:
        super().__init__(config)
        self.decoder = CanonicalDecoder(sigma_clip=config.sigma_clip)

    def phi2(self, v: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(v, d)
