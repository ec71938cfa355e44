"""A Blender-format dataset pvd did not write — non-square images, another camera layout and
field of view, file names with extensions, no pvd keys — trains, evaluates and renders."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from pvd.cameras import Cameras, look_at, ring_positions
from pvd.scenes import get_scene

from .conftest import TINY_HASHGRID


def _write_foreign(root, width=20, height=12, angle=0.9):
    scene = get_scene("glossy")
    layout = {"train": (8, 5.0, 15.0, 0.0), "test": (2, 5.0, 35.0, 17.0)}
    for split, (n, radius, elevation, offset) in layout.items():
        c2w = look_at(ring_positions(n, radius, elevation, offset)).float()
        cams = Cameras.from_poses(c2w, width, height, angle)
        frames = []
        for i in range(n):
            rgb, alpha = scene.render_image(cams, i, supersample=1)
            straight = torch.where(
                alpha[..., None] > 0, rgb / alpha.clamp_min(1e-12)[..., None], 0.0
            )
            rgba = torch.cat([straight.clamp(0, 1), alpha[..., None]], -1).view(height, width, 4)
            path = root / "images" / split / f"frame_{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rgba.numpy() * 255 + 0.5).astype(np.uint8)).save(path)
            frames.append(
                {
                    "file_path": f"images/{split}/frame_{i:03d}.png",
                    "transform_matrix": c2w[i].tolist(),
                    "rotation": 0.0,
                }
            )
        (root / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": angle, "frames": frames})
        )
    return root


def test_train_eval_render_on_a_foreign_blender_dataset(tmp_path):
    data = _write_foreign(tmp_path / "foreign")
    out = tmp_path / "model.safetensors"
    sets = [arg for s in TINY_HASHGRID for arg in ("--set", s)]
    pvd = [sys.executable, "-m", "pvd"]
    result = subprocess.run(
        [
            *pvd,
            "train",
            str(data),
            "--preset",
            "cpu",
            "--steps",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--json",
            *sets,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["test"]["images"] == 2 and math.isfinite(report["test"]["psnr"])
    evaluated = subprocess.run(
        [*pvd, "eval", str(out), "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["quality"]["psnr"] == report["test"]["psnr"]
    views = tmp_path / "views"
    rendered = subprocess.run(
        [*pvd, "render", str(out), "--out", str(views)], capture_output=True, text=True, timeout=300
    )
    assert rendered.returncode == 0, rendered.stderr
    with Image.open(views / "view_000.png") as img:
        assert img.size == (20, 12)
