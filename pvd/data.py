"""Datasets on disk: the Blender / NeRF-synthetic format and nerfstudio's ``transforms.json``.

Blender (Mildenhall et al. 2020, the NeRF-synthetic release): ``transforms_{train,val,test}.json``
with ``camera_angle_x`` (horizontal field of view; square pixels, principal point at the image
centre) and ``frames`` of ``{"file_path", "transform_matrix"}`` (camera-to-world, OpenGL axes).
``file_path`` may omit the extension (``./train/r_0`` → ``train/r_0.png``). RGBA images are kept
with their alpha so training can composite on any background; evaluation composites on the scene's.
Box: [−1.5, 1.5]³ with near/far 2/6 unless ``--aabb`` overrides (pvd's own datasets also store
``aabb``, ``near``, ``far`` and ``background`` keys, which other readers ignore).

nerfstudio (``transforms.json``, docs "Data conventions"): intrinsics ``fl_x``, ``fl_y``, ``cx``,
``cy``, ``w``, ``h`` at the top level or per frame, OpenGL camera axes as Blender. Splits come from
``train_filenames`` / ``val_filenames`` / ``test_filenames`` when present, else every 8th frame is
held out for test (pvd's choice, the LLFF convention). The box is inferred from the camera
frusta: centred on the least-squares intersection of the optical axes, with the half-size of the
largest sphere around it that every camera sees whole (pvd's choice; ``--aabb`` overrides).

Bounded scenes only: a camera inside the box is refused with a clear error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from architectures.io import SceneSpec

from .cameras import Cameras
from .errors import UserError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


@dataclasses.dataclass
class Split:
    """One split: cameras and images ``[N, H, W, 3]`` (straight, not premultiplied) in [0, 1],
    with ``alpha`` ``[N, H, W]`` when the images had an alpha channel."""

    cameras: Cameras
    rgb: torch.Tensor
    alpha: torch.Tensor | None
    names: list[str]

    def __len__(self) -> int:
        return self.rgb.shape[0]

    def composited(self, background: torch.Tensor) -> torch.Tensor:
        """Images on ``background`` ``[3]``: ``rgb·α + background·(1 − α)``."""
        if self.alpha is None:
            return self.rgb
        a = self.alpha[..., None]
        return self.rgb * a + background * (1 - a)


@dataclasses.dataclass
class Dataset:
    root: Path
    format: str
    scene: SceneSpec
    splits: dict[str, Split]

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise UserError(
                f"{self.root}: dataset has no '{name}' split "
                f"(has: {', '.join(self.splits) or 'none'})"
            )
        return self.splits[name]

    def in_model_space(self, scene: SceneSpec) -> Dataset:
        """This dataset in the model space of ``scene`` (a teacher imported from another tool
        lives in that tool's space, recorded in ``scene.world_to_model``): every split's cameras
        mapped by :func:`cameras_to_model`, and the scene (box, near/far, transform) taken from
        ``scene`` with this dataset's background. Idempotent: a dataset already in that space
        (the same ``world_to_model``, e.g. pvd's own scenes and the identity) is returned as is."""
        if self.scene.world_to_model == scene.world_to_model:
            return self
        if self.scene.world_to_model != SceneSpec().world_to_model:
            raise UserError(
                f"{self.root}: dataset is already in another model space; load it again"
            )
        splits = {
            name: dataclasses.replace(split, cameras=cameras_to_model(split.cameras, scene))
            for name, split in self.splits.items()
        }
        frame = dataclasses.replace(scene, background=self.scene.background)
        return dataclasses.replace(self, scene=frame, splits=splits)


def cameras_to_model(cameras: Cameras, scene: SceneSpec) -> Cameras:
    """Dataset cameras (world frame) in the scene's model space: ``c2w ↦ W·c2w`` with the scale
    taken out of the rotation (so camera axes stay unit vectors); intrinsics unchanged. The
    identity for pvd's own scenes."""
    w = torch.tensor(scene.world_to_model, dtype=torch.float64)
    if torch.equal(w, torch.eye(4, dtype=torch.float64)):
        return cameras
    c2w = w @ cameras.c2w.double()
    c2w[:, :3, :3] /= scene.scale
    return Cameras(c2w.float(), cameras.intrinsics.clone(), cameras.sizes.clone())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object at the top level")
    return data


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a number, got {value!r}") from None


def _resolve_image(root: Path, file_path: str) -> Path:
    path = root / file_path
    if path.suffix in _IMAGE_SUFFIXES and path.exists():
        return path
    for suffix in _IMAGE_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            return candidate
    raise UserError(f"{root}: image '{file_path}' not found (tried {path.name} with .png/.jpg)")


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            has_alpha = "A" in img.getbands() or "transparency" in img.info
            arr = np.asarray(img.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path}: not a readable image ({exc})") from None
    return arr / 255.0


def _frame_matrix(frame: dict[str, Any], where: str) -> torch.Tensor:
    matrix = frame.get("transform_matrix")
    if matrix is None:
        raise UserError(f"{where}: missing 'transform_matrix'")
    try:
        m = torch.tensor(matrix, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"{where}: transform_matrix must be a 4x4 list of numbers") from None
    if m.shape == (3, 4):
        m = torch.cat([m, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)])
    if m.shape != (4, 4) or not torch.isfinite(m).all():
        raise UserError(f"{where}: transform_matrix must be a finite 4x4 matrix")
    return m


IntrinsicsFn = Callable[[int, int], tuple[float, float, float, float]]


def _stack_split(
    root: Path, entries: list[tuple[str, torch.Tensor, IntrinsicsFn]], split: str
) -> Split:
    """Load the images of one split; ``entries`` are (file_path, c2w, intrinsics(width, height))."""
    images, c2ws, intrinsics, names, size = [], [], [], [], None
    for file_path, c2w, intrinsics_of in entries:
        path = _resolve_image(root, file_path)
        img = _load_image(path)
        h, w = img.shape[:2]
        if size is None:
            size = (w, h)
        elif (w, h) != size:
            raise UserError(
                f"{path}: image is {w}x{h}, others in the '{split}' split are {size[0]}x{size[1]}"
            )
        images.append(img)
        c2ws.append(c2w)
        intrinsics.append(intrinsics_of(w, h))
        names.append(str(path.relative_to(root)))
    rgb = torch.from_numpy(np.stack([img[..., :3] for img in images]))
    alpha = None
    if any(img.shape[-1] == 4 for img in images):  # images without alpha are fully opaque
        alpha = torch.from_numpy(
            np.stack(
                [
                    img[..., 3] if img.shape[-1] == 4 else np.ones(img.shape[:2], np.float32)
                    for img in images
                ]
            )
        )
    cameras = Cameras(
        torch.stack(c2ws).float(),
        torch.tensor(intrinsics, dtype=torch.float32),
        torch.tensor([size] * len(images), dtype=torch.int64),
    )
    return Split(cameras, rgb, alpha, names)


def _check_bounded(scene: SceneSpec, cameras: Cameras, root: Path) -> None:
    lo = torch.tensor(scene.aabb[:3])
    hi = torch.tensor(scene.aabb[3:])
    inside = ((cameras.centers > lo) & (cameras.centers < hi)).all(-1)
    if bool(inside.any()):
        k = int(inside.nonzero()[0])
        c = ", ".join(f"{v:.3g}" for v in cameras.centers[k].tolist())
        raise UserError(
            f"{root}: camera {k} at ({c}) lies inside the scene box {list(scene.aabb)}; "
            "pvd handles "
            "bounded scenes only (pass an --aabb that excludes the cameras)"
        )


def _scene_from(data: dict[str, Any], aabb: tuple[float, ...] | None) -> SceneSpec:
    values: dict[str, Any] = {}
    for key in ("aabb", "near", "far", "background"):
        if key in data:
            values[key] = data[key]
    if aabb is not None:
        values["aabb"] = aabb
    try:
        return SceneSpec.from_dict(values)
    except (ValueError, TypeError) as exc:
        raise UserError(f"bad scene description: {exc}") from None


def _frames(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    frames = data.get("frames")
    if not isinstance(frames, list) or not frames:
        raise UserError(f"{path}: no frames (expected a non-empty 'frames' list)")
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or "file_path" not in frame:
            raise UserError(f"{path}: frame {i} has no 'file_path'")
    return frames


def _load_blender(root: Path, aabb: tuple[float, ...] | None) -> Dataset:
    splits: dict[str, Split] = {}
    first: dict[str, Any] | None = None
    for split in ("train", "val", "test"):
        path = root / f"transforms_{split}.json"
        if not path.exists():
            continue
        data = _read_json(path)
        first = first or data
        if "camera_angle_x" not in data:
            raise UserError(f"{path}: missing 'camera_angle_x'")
        angle = _number(data["camera_angle_x"], f"{path}: camera_angle_x")
        if not 0 < angle < math.pi:
            raise UserError(f"{path}: camera_angle_x must be in (0, pi), got {angle}")

        def intrinsics(w: int, h: int, angle: float = angle) -> tuple[float, float, float, float]:
            f = 0.5 * w / math.tan(0.5 * angle)
            return (f, f, w / 2, h / 2)

        entries = [
            (frame["file_path"], _frame_matrix(frame, f"{path} frame {i}"), intrinsics)
            for i, frame in enumerate(_frames(data, path))
        ]
        splits[split] = _stack_split(root, entries, split)
    if "train" not in splits:
        raise UserError(f"{root}: no transforms_train.json (not a Blender-format dataset)")
    scene = _scene_from(first or {}, aabb)
    for split in splits.values():
        _check_bounded(scene, split.cameras, root)
    return Dataset(root, "blender", scene, splits)


def _nerfstudio_intrinsics(data: dict[str, Any], frame: dict[str, Any], where: str):
    def value(key: str) -> float:
        if key in frame:
            return _number(frame[key], f"{where}: {key}")
        if key in data:
            return _number(data[key], f"{where}: {key}")
        raise UserError(f"{where}: missing intrinsic '{key}'")

    for key in ("k1", "k2", "k3", "k4", "p1", "p2"):
        v = frame.get(key, data.get(key, 0.0))
        if _number(v, f"{where}: {key}") != 0.0:
            raise UserError(
                f"{where}: lens distortion ({key}={v}) is not supported; undistort the images first"
            )
    fx, fy, cx, cy = value("fl_x"), value("fl_y"), value("cx"), value("cy")
    w, h = value("w"), value("h")

    def intrinsics(width: int, height: int) -> tuple[float, float, float, float]:
        sx, sy = width / w, height / h  # images may be stored downscaled
        return (fx * sx, fy * sy, cx * sx, cy * sy)

    return intrinsics


def infer_box(cameras: Cameras) -> tuple[tuple[float, ...], float, float]:
    """Box and near/far from camera frusta (see module docstring). Returns (aabb, near, far)."""
    origins = cameras.centers.double()
    axes = -cameras.c2w[:, :3, 2].double()
    axes = axes / axes.norm(dim=-1, keepdim=True)
    # least squares: minimise Σ |(I − a aᵀ)(p − o)|²
    eye = torch.eye(3, dtype=torch.float64)
    proj = eye - axes[:, :, None] * axes[:, None, :]
    centre = torch.linalg.lstsq(proj.sum(0), (proj @ origins[:, :, None]).sum(0)).solution[:, 0]
    fx, fy = cameras.intrinsics[:, 0].double(), cameras.intrinsics[:, 1].double()
    w, h = cameras.sizes[:, 0].double(), cameras.sizes[:, 1].double()
    half_fov = torch.minimum(torch.atan(w / (2 * fx)), torch.atan(h / (2 * fy)))
    dist = (origins - centre).norm(dim=-1)
    radius = float((dist * torch.sin(half_fov)).min())
    aabb = tuple((centre - radius).tolist() + (centre + radius).tolist())
    near = max(0.01, float(dist.min()) - radius * math.sqrt(3))
    far = float(dist.max()) + radius * math.sqrt(3)
    return aabb, near, far


def _load_nerfstudio(root: Path, aabb: tuple[float, ...] | None) -> Dataset:
    path = root / "transforms.json"
    data = _read_json(path)
    frames = _frames(data, path)
    entries = [
        (
            frame["file_path"],
            _frame_matrix(frame, f"{path} frame {i}"),
            _nerfstudio_intrinsics(data, frame, f"{path} frame {i}"),
        )
        for i, frame in enumerate(frames)
    ]
    names = [Path(frame["file_path"]).name for frame in frames]
    if "train_filenames" in data:
        chosen = {
            s: {Path(p).name for p in data.get(f"{s}_filenames", [])}
            for s in ("train", "val", "test")
        }
        index = {s: [i for i, n in enumerate(names) if n in chosen[s]] for s in chosen}
    else:
        test = [i for i in range(len(frames)) if i % 8 == 0]
        index = {"train": [i for i in range(len(frames)) if i % 8 != 0], "test": test}
    splits = {
        s: _stack_split(root, [entries[i] for i in idx], s) for s, idx in index.items() if idx
    }
    if "train" not in splits:
        raise UserError(f"{path}: no training frames")
    if aabb is None:
        all_cams = Cameras(
            torch.cat([s.cameras.c2w for s in splits.values()]),
            torch.cat([s.cameras.intrinsics for s in splits.values()]),
            torch.cat([s.cameras.sizes for s in splits.values()]),
        )
        box, near, far = infer_box(all_cams)
        scene = _scene_from({"aabb": box, "near": near, "far": far, **data}, None)
    else:
        scene = _scene_from(data, aabb)
    for split in splits.values():
        _check_bounded(scene, split.cameras, root)
    return Dataset(root, "nerfstudio", scene, splits)


def load_dataset(path: str | Path, aabb: tuple[float, ...] | None = None) -> Dataset:
    """Read a Blender-format or nerfstudio dataset folder (detected from its files)."""
    root = Path(path)
    if not root.exists():
        raise UserError(f"{root}: no such dataset folder")
    if not root.is_dir():
        raise UserError(f"{root}: expected a dataset folder, got a file")
    if aabb is not None and (len(aabb) != 6 or any(aabb[i] >= aabb[i + 3] for i in range(3))):
        raise UserError(
            f"--aabb needs 6 numbers xmin ymin zmin xmax ymax zmax with min < max, got {aabb}"
        )
    if (root / "transforms_train.json").exists():
        return _load_blender(root, aabb)
    if (root / "transforms.json").exists():
        return _load_nerfstudio(root, aabb)
    raise UserError(
        f"{root}: not a dataset (expected transforms_train.json (Blender) "
        "or transforms.json (nerfstudio))"
    )
