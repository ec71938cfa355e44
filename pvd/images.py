"""Writing renders to disk: PNG views, turntable GIF/MP4 (atomically: temp file, then rename)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import torch

from .cameras import Cameras, look_at, ring_positions
from .errors import UserError
from .model import TrainedModel


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] → uint8 array."""
    return (image.clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def turntable_cameras(model: TrainedModel, frames: int, elevation_deg: float = 30.0) -> Cameras:
    """A ring of ``frames`` cameras around the scene, at the distance and intrinsics of the
    stored test cameras (or training cameras)."""
    reference = model.cameras.get("test") or model.cameras.get("train")
    if reference is None:
        raise UserError("checkpoint stores no cameras; cannot place a turntable")
    centre = torch.tensor(model.scene.aabb).view(2, 3).mean(0)
    radius = float((reference.centers - centre).norm(dim=-1).mean())
    c2w = look_at(ring_positions(frames, radius, elevation_deg) + centre.double(), centre)
    return Cameras(
        c2w.float(),
        reference.intrinsics[:1].repeat(frames, 1),
        reference.sizes[:1].repeat(frames, 1),
    )


def save_views(model: TrainedModel, folder: Path) -> list[Path]:
    """Render the stored test cameras (else the training cameras) to ``folder/view_XXX.png``."""
    from PIL import Image

    cameras = model.cameras.get("test") or model.cameras.get("train")
    if cameras is None:
        raise UserError(
            "checkpoint stores no cameras; use a .gif/.mp4 turntable or pvd eval --data"
        )
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder}: exists and is not a folder")
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for i, image in enumerate(model.render_views(cameras)):
            Image.fromarray(to_uint8(image)).save(tmp / f"view_{i:03d}.png")
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for item in sorted(tmp.iterdir()):
            target = folder / item.name
            os.replace(item, target)
            paths.append(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def save_turntable(model: TrainedModel, path: Path, frames: int, fps: int = 20) -> Path:
    """Render a turntable and write it as an animated GIF (Pillow) or MP4 (imageio-ffmpeg)."""
    cameras = turntable_cameras(model, frames)
    images = [to_uint8(img) for img in model.render_views(cameras)]
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.suffix.lower() == ".gif":
            from PIL import Image

            pil = [Image.fromarray(img) for img in images]
            pil[0].save(tmp, save_all=True, append_images=pil[1:], duration=1000 // fps, loop=0)
        else:
            try:
                import imageio.v2 as imageio
                import imageio_ffmpeg  # noqa: F401  (the MP4 writer's backend)
            except ImportError:
                raise UserError(
                    "writing .mp4 needs imageio-ffmpeg (pip install 'pvd-nerf[video]'); or use .gif"
                ) from None
            imageio.mimwrite(tmp, images, fps=fps, macro_block_size=1)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
