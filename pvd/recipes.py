"""Recipes: TOML presets for models, training and rendering, with validated overrides.

A training recipe (``pvd train``) has sections ``model`` (the architecture's config keys),
``train`` and ``render``: ``recipes/train.toml`` holds the shared ``[<preset>.train]`` /
``[<preset>.render]`` defaults and ``recipes/<arch>.toml`` the architecture's ``[<preset>.model]``
plus any overrides. A conversion recipe (``pvd convert``) has sections ``model`` (the student's
config) and ``distill``: ``recipes/distill.toml`` holds the shared ``[<preset>.distill]`` and
the student's ``recipes/<arch>.toml`` its ``[<preset>.model]`` and ``[<preset>.distill]``
overrides. Precedence: command-line flags > ``--set section.key=value`` > ``--recipe FILE`` >
preset. An unknown section or key, or a value of the wrong type, is refused with the key named;
ranges are checked by the dataclasses that consume each section (``FieldConfig``,
``TrainSettings``, ``RenderSettings``, ``DistillSettings``).

``--preset auto`` picks ``paper`` only when CUDA is available and nerfacc's CUDA path loads.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from .errors import UserError

PRESETS = ("cpu", "paper")
SECTIONS = ("model", "train", "render", "distill")
#: Which sections each kind of recipe has, and the shared file its defaults come from.
KINDS = {
    "train": (("model", "train", "render"), "train.toml"),
    "distill": (("model", "distill"), "distill.toml"),
}
Recipe = dict[str, dict[str, Any]]


def recipes_dir() -> Path:
    """The folder of shipped recipes (inside the wheel, or ``recipes/`` in a source checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_recipes", here.parent / "recipes"):
        if candidate.is_dir():
            return candidate
    raise UserError("pvd's recipes folder is missing from this installation; reinstall pvd")


def resolve_preset(name: str, device: str = "cpu") -> str:
    """``cpu``, ``paper``, or ``auto`` → ``paper`` when ``device`` is CUDA and nerfacc's CUDA
    path loads, else ``cpu``."""
    key = name.strip().lower()
    if key == "auto":
        from .render import nerfacc_cuda_available

        return "paper" if device.startswith("cuda") and nerfacc_cuda_available() else "cpu"
    if key not in PRESETS:
        raise UserError(f"unknown preset '{name}'; choose one of: auto, {', '.join(PRESETS)}")
    return key


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such recipe file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None


def _merge(
    base: Recipe, extra: dict[str, Any], origin: str, sections: tuple[str, ...] = SECTIONS
) -> Recipe:
    out = copy.deepcopy(base)
    for section, values in extra.items():
        if section not in sections:
            raise UserError(
                f"{origin}: unknown recipe section '{section}' (known: {', '.join(sections)})"
            )
        if not isinstance(values, dict):
            raise UserError(f"{origin}: recipe section '{section}' must be a table")
        out.setdefault(section, {}).update(values)
    return out


def load_preset(arch: str, preset: str, kind: str = "train") -> Recipe:
    """The shipped ``kind`` recipe (``train`` or ``distill``) for ``arch`` (a registered name)
    under ``preset`` (``cpu``/``paper``); the architecture file's other sections are skipped."""
    sections, shared_name = KINDS[kind]
    folder = recipes_dir()
    shared = _read_toml(folder / shared_name).get(preset, {})
    arch_file = folder / f"{arch}.toml"
    specific = _read_toml(arch_file).get(preset, {}) if arch_file.exists() else {}
    _merge({}, specific, str(arch_file))  # a misspelt section is refused, not skipped
    specific = {k: v for k, v in specific.items() if k in sections}
    recipe: Recipe = {section: {} for section in sections}
    recipe = _merge(recipe, shared, str(folder / shared_name), sections)
    return _merge(recipe, specific, str(arch_file), sections)


def parse_assignment(
    text: str, sections: tuple[str, ...] = KINDS["train"][0]
) -> tuple[str, str, Any]:
    """``section.key=value`` → (section, key, value); the value is read as TOML when it parses
    (numbers, booleans, arrays), else kept as a string."""
    if "=" not in text:
        raise UserError(f"--set expects section.key=value, got '{text}'")
    name, raw = text.split("=", 1)
    parts = name.strip().split(".")
    if len(parts) != 2 or parts[0] not in sections or not parts[1]:
        raise UserError(
            f"--set key '{name.strip()}' must be one of {', '.join(sections)} followed by .key"
        )
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts[0], parts[1], value


def build_recipe(
    arch: str,
    preset: str,
    recipe_file: str | Path | None = None,
    assignments: list[str] | None = None,
    kind: str = "train",
) -> Recipe:
    """Preset, then the recipe file (its top-level sections), then ``--set`` assignments."""
    recipe = load_preset(arch, preset, kind)
    if recipe_file is not None:
        path = Path(recipe_file)
        recipe = merge_recipe(recipe, _read_toml(path), str(path), kind)
    return build_recipe_overrides(recipe, assignments, kind)


def merge_recipe(recipe: Recipe, extra: dict[str, Any], origin: str, kind: str = "train") -> Recipe:
    """``recipe`` updated by the tables of ``extra`` (a recipe file's or a dict's sections);
    a section this ``kind`` of recipe does not have is refused by name."""
    return _merge(recipe, extra, origin, KINDS[kind][0])


def build_recipe_overrides(
    recipe: Recipe, assignments: list[str] | None, kind: str = "train"
) -> Recipe:
    """``recipe`` with ``section.key=value`` assignments applied (a copy)."""
    out = copy.deepcopy(recipe)
    for text in assignments or []:
        section, key, value = parse_assignment(text, KINDS[kind][0])
        out[section][key] = value
    return out


def check_keys(section: str, values: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Refuse keys not in ``defaults`` and values whose type differs from the default's."""
    for key, value in values.items():
        if key not in defaults:
            raise UserError(
                f"unknown recipe key '{section}.{key}'; known: {', '.join(sorted(defaults))}"
            )
        default = defaults[key]
        if default is None:
            continue
        expected = float if isinstance(default, float) else type(default)
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        if isinstance(value, bool) and expected is not bool:
            ok = False
        if not ok:
            raise UserError(
                f"recipe value {section}.{key} = {value!r} must be of type {expected.__name__}"
            )
