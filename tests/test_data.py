"""Dataset readers: Blender and nerfstudio formats, non-square images, and their errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pvd.cameras import look_at
from pvd.data import load_dataset
from pvd.errors import UserError


def _write_png(path: Path, w: int, h: int, alpha: bool, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 4 if alpha else 3
    arr = np.full((h, w, channels), value, dtype=np.uint8)
    if alpha:
        arr[..., 3] = 255
        arr[0, 0, 3] = 0
    Image.fromarray(arr).save(path)


def _poses(n: int, radius: float = 4.0) -> list[list[list[float]]]:
    angles = torch.arange(n, dtype=torch.float64) / n * 2 * math.pi
    eye = torch.stack(
        [radius * torch.cos(angles), radius * torch.sin(angles), torch.full_like(angles, 1.0)], -1
    )
    return look_at(eye).tolist()


def _blender(root: Path, w: int = 24, h: int = 16, n: int = 3, with_ext: bool = False) -> Path:
    """A Blender-format folder pvd did not write: non-square RGBA, extension-less paths."""
    for split in ("train", "test"):
        frames = []
        for i, pose in enumerate(_poses(n)):
            _write_png(root / split / f"img_{i}.png", w, h, alpha=True)
            frames.append(
                {
                    "file_path": f"./{split}/img_{i}" + (".png" if with_ext else ""),
                    "transform_matrix": pose,
                }
            )
        (root / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": 0.8, "frames": frames})
        )
    return root


def test_blender_non_square_defaults_and_intrinsics(tmp_path):
    ds = load_dataset(_blender(tmp_path / "b"))
    train = ds.split("train")
    assert train.rgb.shape == (3, 16, 24, 3)
    assert train.alpha is not None and train.alpha[0, 0, 0] == 0
    fx, fy, cx, cy = train.cameras.intrinsics[0].tolist()
    assert fx == pytest.approx(0.5 * 24 / math.tan(0.4)) and fy == pytest.approx(fx)
    assert (cx, cy) == (12.0, 8.0)
    assert ds.scene.aabb == (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    assert (ds.scene.near, ds.scene.far) == (2.0, 6.0)
    composited = train.composited(torch.tensor([1.0, 0.0, 0.0]))
    assert composited[0, 0, 0].tolist() == [1.0, 0.0, 0.0]  # transparent pixel shows the background


def test_blender_rays_go_through_pixel_centres(tmp_path):
    ds = load_dataset(_blender(tmp_path / "b", with_ext=True))
    cams = ds.split("train").cameras
    origins, dirs = cams.image_rays(0)
    assert origins.shape == (16 * 24, 3)
    # the two central pixels (row 7/8, column 11/12) straddle the optical axis symmetrically
    axis = -cams.c2w[0, :3, 2]
    mid = dirs.view(16, 24, 3)[7:9, 11:13].mean(dim=(0, 1))
    torch.testing.assert_close(torch.nn.functional.normalize(mid, dim=0), axis, atol=1e-5, rtol=0)


def test_aabb_override_and_cameras_inside_the_box(tmp_path):
    root = _blender(tmp_path / "b")
    ds = load_dataset(root, aabb=(-1, -1, -1, 1, 1, 1))
    assert ds.scene.aabb == (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
    with pytest.raises(UserError, match=r"camera 0 at .* lies inside the scene box"):
        load_dataset(root, aabb=(-5, -5, -5, 5, 5, 5))
    with pytest.raises(UserError, match="--aabb needs 6 numbers"):
        load_dataset(root, aabb=(1, 1, 1, 0, 0, 0))


def test_nerfstudio_variant(tmp_path):
    root = tmp_path / "ns"
    frames = []
    for i, pose in enumerate(_poses(9)):
        _write_png(root / "images" / f"frame_{i:05d}.jpg", 20, 10, alpha=False)
        frames.append({"file_path": f"images/frame_{i:05d}.jpg", "transform_matrix": pose})
    meta = {"fl_x": 30.0, "fl_y": 31.0, "cx": 10.5, "cy": 4.5, "w": 20, "h": 10, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    ds = load_dataset(root)
    assert ds.format == "nerfstudio"
    assert len(ds.split("test")) == 2 and len(ds.split("train")) == 7  # every 8th frame held out
    assert ds.split("train").alpha is None
    assert ds.split("train").cameras.intrinsics[0].tolist() == [30.0, 31.0, 10.5, 4.5]
    # the box is inferred from the frusta: centred on the common look-at point (the origin)
    lo, hi = np.array(ds.scene.aabb[:3]), np.array(ds.scene.aabb[3:])
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-4)
    assert 0.3 < (hi - lo)[0] / 2 < 4.1
    assert ds.scene.near < 4.1 - (hi - lo)[0] / 2 < ds.scene.far


def test_nerfstudio_distortion_refused(tmp_path):
    root = tmp_path / "ns"
    _write_png(root / "a.png", 8, 8, alpha=False)
    meta = {
        "fl_x": 8,
        "fl_y": 8,
        "cx": 4,
        "cy": 4,
        "w": 8,
        "h": 8,
        "k1": 0.1,
        "frames": [{"file_path": "a.png", "transform_matrix": _poses(1)[0]}],
    }
    (root / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"lens distortion \(k1=0.1\) is not supported"):
        load_dataset(root)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda r: None, "no such dataset folder"),
        (lambda r: r.mkdir(), "not a dataset"),
        (
            lambda r: (r.mkdir(), (r / "transforms_train.json").write_text("{oops")),
            "not valid JSON",
        ),
        (
            lambda r: (r.mkdir(), (r / "transforms_train.json").write_text('{"frames": []}')),
            "missing 'camera_angle_x'",
        ),
        (
            lambda r: (
                r.mkdir(),
                (r / "transforms_train.json").write_text('{"camera_angle_x": 0.7, "frames": []}'),
            ),
            "no frames",
        ),
        (
            lambda r: (
                r.mkdir(),
                (r / "transforms_train.json").write_text(
                    json.dumps(
                        {
                            "camera_angle_x": 0.7,
                            "frames": [{"file_path": "./x", "transform_matrix": _poses(1)[0]}],
                        }
                    )
                ),
            ),
            "image './x' not found",
        ),
        (
            lambda r: (
                r.mkdir(),
                (r / "transforms_train.json").write_text(
                    json.dumps(
                        {
                            "camera_angle_x": 0.7,
                            "frames": [{"file_path": "./x", "transform_matrix": [[1, 2]]}],
                        }
                    )
                ),
            ),
            "transform_matrix must be a finite 4x4 matrix",
        ),
    ],
)
def test_bad_dataset_folders(tmp_path, setup, message):
    root = tmp_path / "d"
    setup(root)
    with pytest.raises(UserError, match=message):
        load_dataset(root)


def test_a_file_is_not_a_dataset(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(UserError, match="expected a dataset folder, got a file"):
        load_dataset(f)


def test_mixed_image_sizes_refused(tmp_path):
    root = _blender(tmp_path / "b")
    _write_png(root / "train" / "img_1.png", 10, 10, alpha=True)
    with pytest.raises(UserError, match="image is 10x10, others in the 'train' split are 24x16"):
        load_dataset(root)


def test_procedural_dataset_reads_back_its_scene(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    assert ds.format == "blender"
    assert len(ds.split("train")) == 6 and len(ds.split("test")) == 2
    assert ds.split("train").rgb.shape[1:] == (16, 16, 3)
    assert ds.scene.background == (1.0, 1.0, 1.0)
