"""A trained field with everything needed to render and evaluate it.

:class:`TrainedModel` bundles an ``architectures`` field with its occupancy grid, scene, render
settings, cameras and provenance — exactly what a pvd checkpoint stores — and knows how to save,
load, render and evaluate itself. Checkpoints written by other pvd versions without an occupancy
grid get one built from the field's density.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

import architectures
from architectures import RadianceField, SceneSpec

from .cameras import Cameras, fit_radius, look_at, ring_positions
from .data import Dataset
from .errors import UserError
from .metrics import ImageScores, score_images
from .render import OccupancyGrid, RenderSettings, render_image


@dataclasses.dataclass
class TrainedModel:
    field: RadianceField
    grid: OccupancyGrid
    scene: SceneSpec
    render: RenderSettings
    cameras: dict[str, Cameras]
    provenance: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return self.grid.device

    @property
    def background(self) -> torch.Tensor:
        return torch.tensor(self.scene.background, dtype=torch.float32, device=self.device)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the checkpoint atomically (see ``architectures.io``)."""
        tensors = dict(self.grid.to_tensors())
        for split, cams in self.cameras.items():
            tensors.update(cams.to_tensors(f"cameras.{split}"))
        return architectures.save(
            self.field,
            path,
            scene=self.scene,
            render=self.render.to_dict(),
            provenance=self.provenance,
            tensors=tensors,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TrainedModel:
        field = architectures.load(path, map_location=device)
        checkpoint = field.checkpoint
        try:
            render = RenderSettings.from_dict(dict(checkpoint.render))
        except (TypeError, ValueError) as exc:
            raise UserError(f"{path}: bad render settings: {exc}") from None
        occupancy = checkpoint.group("occupancy")
        if "binary" in occupancy:
            grid = OccupancyGrid.from_tensors(
                occupancy, checkpoint.scene.aabb, render.occupancy_threshold
            )
            grid = grid.to(device)
        else:
            grid = OccupancyGrid.from_field(
                field.density,
                torch.tensor(checkpoint.scene.aabb, device=device),
                render.occupancy_resolution,
                render.occupancy_threshold,
            )
        cameras = {}
        for split in ("train", "test"):
            group = checkpoint.group(f"cameras.{split}")
            if group:
                try:
                    cameras[split] = Cameras.from_tensors(group)
                except (KeyError, ValueError) as exc:
                    raise UserError(f"{path}: bad cameras.{split} tensors ({exc})") from None
        return cls(field, grid, checkpoint.scene, render, cameras, dict(checkpoint.provenance))

    @torch.no_grad()
    def render_views(
        self, cameras: Cameras, indices: list[int] | None = None
    ) -> list[torch.Tensor]:
        """Images ``[H, W, 3]`` (on the scene background, CPU) of the given cameras."""
        self.field.eval()
        images = []
        for i in indices if indices is not None else range(len(cameras)):
            w, h = cameras.size(i)
            out = render_image(
                self.field,
                cameras,
                i,
                self.grid,
                self.render,
                self.scene.near,
                self.scene.far,
                self.background,
            )
            images.append(out.rgb.view(h, w, 3).clamp(0, 1).cpu())
        return images

    def evaluate(self, cameras: Cameras, targets: list[torch.Tensor]) -> ImageScores:
        """PSNR/SSIM of this model's renders against ``targets`` (composited, ``[H, W, 3]``)."""
        return score_images(self.render_views(cameras), [t.cpu() for t in targets])


def held_out_cameras(model: TrainedModel, other: TrainedModel | None = None) -> Cameras:
    """The cameras fidelity is measured on (DESIGN.md): the stored test cameras of ``model``
    (else of ``other``), else a ring of 8 views at 25° elevation whose distance makes the scene
    box fill Blender's field of view, at 64 px."""
    for candidate in (model, other):
        if candidate is not None and "test" in candidate.cameras:
            return candidate.cameras["test"]
    angle = 0.6911112070083618  # Blender's default camera_angle_x
    centre = torch.tensor(model.scene.aabb).view(2, 3).mean(0).double()
    radius = fit_radius(model.scene.aabb, angle)
    c2w = look_at(ring_positions(8, radius, 25.0, azimuth_offset_deg=11.25) + centre, centre)
    return Cameras.from_poses(c2w, 64, 64, angle)


def quality_scores(model: TrainedModel, dataset: Dataset, split: str = "test") -> dict[str, Any]:
    """Quality (DESIGN.md, "Evaluation"): ``model`` vs the ground truth of ``dataset``'s ``split``
    (its cameras in the model's space), composited on the model's scene background — what
    ``pvd eval --data`` prints."""
    part = dataset.in_model_space(model.scene).split(split)
    targets = list(part.composited(torch.tensor(model.scene.background)))
    scores = model.evaluate(part.cameras, targets)
    return {"split": split, "images": len(part), **scores.to_dict()}


def fidelity_scores(model: TrainedModel, reference: TrainedModel) -> dict[str, Any]:
    """Fidelity (DESIGN.md, "Evaluation"): ``model`` vs ``reference`` renders on the held-out
    cameras, both with ``model``'s render settings and each with its own occupancy grid — what
    ``pvd eval --against`` prints."""
    reference = dataclasses.replace(reference, render=model.render)
    cameras = held_out_cameras(model, reference)
    scores = model.evaluate(cameras, reference.render_views(cameras))
    return {"images": len(cameras), **scores.to_dict()}
