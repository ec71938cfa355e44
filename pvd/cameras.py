"""Pinhole cameras, rays through pixel centres, and camera layouts fitted to a scene.

Convention (Blender / NeRF-synthetic, OpenGL): a camera-to-world matrix ``c2w`` whose columns
are the camera's +x (right), +y (up) and +z (backwards) axes and its centre; the camera looks
along −z. Pixel ``(i, j)`` (column, row from the top-left) has its centre at ``(i + 0.5, j + 0.5)``
and the ray ``d_cam = ((i + 0.5 − cx) / fx, −(j + 0.5 − cy) / fy, −1)``. Directions are unit
length, so ray parameters ``t`` are distances. World up is +z (Blender).
"""

from __future__ import annotations

import dataclasses
import math

import torch


@dataclasses.dataclass
class Cameras:
    """A batch of pinhole cameras.

    ``c2w``: ``[N, 4, 4]``; ``intrinsics``: ``[N, 4]`` as ``(fx, fy, cx, cy)`` in pixels;
    ``sizes``: ``[N, 2]`` int64 as ``(width, height)``.
    """

    c2w: torch.Tensor
    intrinsics: torch.Tensor
    sizes: torch.Tensor

    def __post_init__(self) -> None:
        n = self.c2w.shape[0]
        if self.c2w.shape != (n, 4, 4):
            raise ValueError(f"c2w must be [N, 4, 4], got {list(self.c2w.shape)}")
        if self.intrinsics.shape != (n, 4) or self.sizes.shape != (n, 2):
            raise ValueError(
                f"intrinsics must be [N, 4] and sizes [N, 2] for N={n}, got "
                f"{list(self.intrinsics.shape)} and {list(self.sizes.shape)}"
            )
        self.sizes = self.sizes.to(torch.int64)

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index: int | slice | torch.Tensor) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(self.c2w[index], self.intrinsics[index], self.sizes[index])

    @property
    def centers(self) -> torch.Tensor:
        return self.c2w[:, :3, 3]

    def size(self, index: int) -> tuple[int, int]:
        """(width, height) of camera ``index``."""
        w, h = self.sizes[index].tolist()
        return int(w), int(h)

    def rays_at(
        self,
        camera: torch.Tensor,
        px: torch.Tensor,
        py: torch.Tensor,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays of cameras ``camera`` ``[B]`` through image points ``(px, py)`` ``[B]``.

        ``(px, py)`` are continuous pixel coordinates (the centre of pixel ``(i, j)`` is
        ``(i + 0.5, j + 0.5)``). Returns origins and unit directions ``[B, 3]`` in ``dtype``.
        """
        c2w = self.c2w.to(dtype)[camera]
        fx, fy, cx, cy = self.intrinsics.to(dtype)[camera].unbind(-1)
        d_cam = torch.stack(
            [(px.to(dtype) - cx) / fx, -(py.to(dtype) - cy) / fy, -torch.ones_like(fx)], dim=-1
        )
        dirs = torch.einsum("bij,bj->bi", c2w[:, :3, :3], d_cam)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        return c2w[:, :3, 3].expand_as(dirs).contiguous(), dirs

    def pixel_grid(
        self, index: int, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel-centre coordinates ``(px, py)`` ``[H·W]`` of camera ``index``, row-major."""
        w, h = self.size(index)
        py, px = torch.meshgrid(
            torch.arange(h, dtype=dtype) + 0.5, torch.arange(w, dtype=dtype) + 0.5, indexing="ij"
        )
        return px.reshape(-1), py.reshape(-1)

    def image_rays(
        self, index: int, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All pixel-centre rays of camera ``index``: origins, directions ``[H·W, 3]``."""
        px, py = self.pixel_grid(index, dtype)
        camera = torch.full_like(px, index, dtype=torch.int64)
        return self.rays_at(camera, px, py, dtype)

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """Checkpoint tensors ``{prefix}.c2w``, ``.intrinsics``, ``.sizes``."""
        return {
            f"{prefix}.c2w": self.c2w.float(),
            f"{prefix}.intrinsics": self.intrinsics.float(),
            f"{prefix}.sizes": self.sizes,
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> Cameras:
        """Inverse of :meth:`to_tensors` (keys without the prefix)."""
        return cls(tensors["c2w"].float(), tensors["intrinsics"].float(), tensors["sizes"])

    @classmethod
    def from_poses(
        cls, c2w: torch.Tensor, width: int, height: int, camera_angle_x: float
    ) -> Cameras:
        """Cameras with a shared field of view (Blender's ``camera_angle_x``, square pixels)."""
        n = c2w.shape[0]
        fx = 0.5 * width / math.tan(0.5 * camera_angle_x)
        intrinsics = torch.tensor([[fx, fx, width / 2, height / 2]], dtype=torch.float32).repeat(
            n, 1
        )
        sizes = torch.tensor([[width, height]], dtype=torch.int64).repeat(n, 1)
        return cls(c2w.float(), intrinsics, sizes)


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-to-world matrices ``[N, 4, 4]`` of cameras at ``eye`` ``[N, 3]`` looking at
    ``target`` (default the origin), +z up (OpenGL camera axes)."""
    eye = eye.to(torch.float64)
    target = torch.zeros(3, dtype=torch.float64) if target is None else target.to(torch.float64)
    back = eye - target
    back = back / back.norm(dim=-1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(back)
    # Cameras looking straight down/up: use +y as the reference up instead.
    degenerate = back.cross(up, dim=-1).norm(dim=-1, keepdim=True) < 1e-6
    up = torch.where(degenerate, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), up)
    right = up.cross(back, dim=-1)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = back.cross(right, dim=-1)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=torch.float64)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, back, eye
    c2w[:, 3, 3] = 1.0
    return c2w


def hemisphere_positions(n: int, radius: float, min_elevation_deg: float = 5.0) -> torch.Tensor:
    """``n`` points spread evenly (Fibonacci spiral) over the upper hemisphere's band above
    ``min_elevation_deg``, at ``radius`` from the origin. Deterministic."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z_min = math.sin(math.radians(min_elevation_deg))
    z = 1.0 - i / n * (1.0 - z_min)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    phi = golden * i
    r = torch.sqrt(1.0 - z * z)
    return radius * torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


def ring_positions(
    n: int, radius: float, elevation_deg: float, azimuth_offset_deg: float = 0.0
) -> torch.Tensor:
    """``n`` points on a horizontal ring at ``elevation_deg`` above the equator."""
    az = torch.arange(n, dtype=torch.float64) / n * 2 * math.pi + math.radians(azimuth_offset_deg)
    el = math.radians(elevation_deg)
    return radius * torch.stack(
        [
            math.cos(el) * torch.cos(az),
            math.cos(el) * torch.sin(az),
            torch.full_like(az, math.sin(el)),
        ],
        dim=-1,
    )


def fit_radius(aabb: tuple[float, ...], camera_angle_x: float, margin: float = 1.1) -> float:
    """Camera distance at which the AABB's bounding sphere fills the field of view."""
    half = torch.tensor(aabb[3:]) - torch.tensor(aabb[:3])
    sphere = float(half.norm()) / 2
    return margin * sphere / math.sin(camera_angle_x / 2)
