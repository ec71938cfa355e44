"""Training a field from images (``pvd train``): the teacher's side of a conversion.

The loop follows nerfacc's Instant-NGP example (Li et al. 2023): random rays over all training
pixels (jittered inside the pixel, since ground-truth pixels are area averages), packed samples
from an occupancy grid updated every few steps, an MSE photometric loss plus the architecture's
regulariser, Adam (ε = 1e-15, as Instant-NGP) with a linear warm-up and ×0.33 steps at
50/75/90 % of the run (of its steps, or of its time budget when that runs out first), and a
ray batch adapted each step so that about ``target_samples`` samples are rendered. RGBA targets
are composited on a random background each step so the field learns alpha, not the background
colour. The run stops at ``steps`` or ``time_budget_s``, whichever
comes first; evaluation is not counted in the budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import platform
import time
from collections.abc import Iterator
from typing import Any

import torch

import architectures

from .data import Dataset
from .errors import UserError
from .model import TrainedModel
from .progress import Reporter
from .recipes import Recipe, check_keys
from .render import OccupancyGrid, RenderSettings, render_rays


@dataclasses.dataclass
class TrainSettings:
    """The ``train`` section of a recipe (see ``recipes/train.toml`` for each key's meaning);
    the defaults are the ``cpu`` preset's."""

    steps: int = 400
    lr: float = 1e-2
    lr_warmup_steps: int = 20
    batch_rays: int = 1024
    target_samples: int = 32768
    regularizer_weight: float = 1.0
    occupancy_update_every: int = 16
    occupancy_warmup_steps: int = 0
    occupancy_decay: float = 0.7
    random_background: bool = True
    time_budget_s: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "lr": self.lr > 0,
            "lr_warmup_steps": self.lr_warmup_steps >= 0,
            "batch_rays": self.batch_rays >= 1,
            "target_samples": self.target_samples >= 1,
            "regularizer_weight": self.regularizer_weight >= 0,
            "occupancy_update_every": self.occupancy_update_every >= 1,
            "occupancy_warmup_steps": self.occupancy_warmup_steps >= 0,
            "occupancy_decay": 0 <= self.occupancy_decay < 1,
            "time_budget_s": self.time_budget_s >= 0,
            "seed": self.seed >= 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise UserError(
                    f"recipe value train.{key} = {getattr(self, key)!r} is out of range"
                )


def settings_from_recipe(arch: str, recipe: Recipe) -> tuple[TrainSettings, RenderSettings]:
    """Validate a whole recipe for ``arch`` — model config, train and render settings — and
    return the train and render settings. Unknown keys and bad values are refused by name."""
    check_keys("train", recipe["train"], dataclasses.asdict(TrainSettings()))
    check_keys("render", recipe["render"], dataclasses.asdict(RenderSettings()))
    train = TrainSettings(**recipe["train"])
    train.validate()
    render = RenderSettings(**recipe["render"])
    render.validate()
    if "aabb" in recipe["model"]:
        raise UserError("recipe key model.aabb is set from the scene; use --aabb to change the box")
    try:
        config = architectures.get(arch).config_class.from_dict(recipe["model"])
    except architectures.ConfigError as exc:
        raise UserError(f"recipe model section: {exc}") from None
    if config.sigma_clip is not None and render.occupancy_threshold <= math.exp(
        config.sigma_clip[0]
    ):
        raise UserError(
            f"render.occupancy_threshold = {render.occupancy_threshold} must exceed the density "
            f"floor e^{config.sigma_clip[0]} of model.sigma_clip, else every cell stays occupied"
        )
    return train, render


def lr_factor(step: int, progress: float, warmup: int) -> float:
    """nerfacc's schedule: linear warm-up from 1 % over ``warmup`` steps, then ×0.33 once the
    run's ``progress`` (fraction done) passes 50, 75 and 90 %."""
    warm = min(1.0, 0.01 + 0.99 * step / warmup) if warmup > 0 else 1.0
    drops = sum(progress >= f for f in (0.5, 0.75, 0.9))
    return warm * 0.33**drops


def run_progress(step: int, steps: int, elapsed: float, budget: float) -> float:
    """Fraction of the run done: of its steps, or of its time budget when that is further along
    (so schedules complete in runs stopped by time)."""
    progress = step / steps
    return max(progress, elapsed / budget) if budget > 0 else progress


def _versions() -> dict[str, str]:
    import nerfacc

    from . import __version__

    return {
        "pvd": __version__,
        "torch": torch.__version__,
        "nerfacc": nerfacc.__version__,
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Deterministic torch kernels for the duration when ``enabled`` (restored afterwards). On
    CPU, scatter-adds otherwise run in parallel and the same seed gives a different teacher; on
    CPU this measured no slower for the hash grid's forward+backward. CUDA runs keep the fast
    (non-deterministic) kernels."""
    previous = torch.are_deterministic_algorithms_enabled()
    if not enabled:
        yield
        return
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def train(
    dataset: Dataset,
    arch: str,
    recipe: Recipe,
    device: str | torch.device = "cpu",
    reporter: Reporter | None = None,
) -> TrainedModel:
    """Train architecture ``arch`` on ``dataset`` with ``recipe`` (sections model/train/render).

    Returns the trained model with its occupancy grid, cameras and provenance (the test-split
    PSNR/SSIM is added by :func:`evaluate_test` when the dataset has a test split). The same
    seed gives the same model on the same device and thread count.
    """
    with deterministic_algorithms(torch.device(device).type == "cpu"):
        return _train(dataset, arch, recipe, device, reporter or Reporter())


def _train(
    dataset: Dataset, arch: str, recipe: Recipe, device: str | torch.device, reporter: Reporter
) -> TrainedModel:
    name = architectures.canonical_name(arch)
    settings, render = settings_from_recipe(name, recipe)
    scene = dataset.scene
    torch.manual_seed(settings.seed)
    field = architectures.build(name, {**recipe["model"], "aabb": scene.aabb}).to(device)
    grid = OccupancyGrid(
        torch.tensor(scene.aabb, device=device),
        render.occupancy_resolution,
        render.occupancy_threshold,
    )
    split = dataset.split("train")
    rgb = split.rgb.to(device)
    alpha = split.alpha.to(device) if split.alpha is not None else None
    cameras = split.cameras
    n_images, height, width = rgb.shape[:3]
    scene_bg = torch.tensor(scene.background, device=device)

    def make_optimizer() -> tuple[torch.optim.Optimizer, list[float]]:
        groups = field.param_groups(settings.lr)
        return torch.optim.Adam(groups, eps=1e-15), [g["lr"] for g in groups]

    optimizer, base_lrs = make_optimizer()
    n_rays = settings.batch_rays
    start, cpu_start = time.perf_counter(), time.process_time()
    history: list[dict[str, float]] = []
    reporter.stage(f"train {name}", settings.steps)
    field.train()
    step = 0
    for step in range(settings.steps):
        elapsed = time.perf_counter() - start
        progress = run_progress(step, settings.steps, elapsed, settings.time_budget_s)
        if field.on_train_step(progress):
            optimizer, base_lrs = make_optimizer()
        # All cells stay occupied during the warm-up: a freshly initialised field is a near-uniform
        # fog, and the mean-density rule would then cull cells at random.
        if step >= settings.occupancy_warmup_steps and step % settings.occupancy_update_every == 0:
            grid.update(field.density, decay=settings.occupancy_decay)
        factor = lr_factor(step, progress, settings.lr_warmup_steps)
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor

        cam = torch.randint(0, n_images, (n_rays,), device=device)
        ix = torch.randint(0, width, (n_rays,), device=device)
        iy = torch.randint(0, height, (n_rays,), device=device)
        origins, dirs = cameras.rays_at(
            cam.cpu(), ix.cpu() + torch.rand(n_rays), iy.cpu() + torch.rand(n_rays)
        )
        origins, dirs = origins.to(device), dirs.to(device)
        target = rgb[cam, iy, ix]
        if alpha is not None:
            bg = torch.rand(n_rays, 3, device=device) if settings.random_background else scene_bg
            a = alpha[cam, iy, ix][:, None]
            target = target * a + bg * (1 - a)
        else:
            bg = scene_bg
        out = render_rays(
            field, origins, dirs, grid, render, scene.near, scene.far, bg, stratified=True
        )
        if out.n_samples == 0:  # nothing to learn from this batch
            if not bool(grid.binary.any()):
                raise UserError(
                    "training emptied the occupancy grid (every cell culled): the run diverged or "
                    "render.occupancy_threshold is too high"
                )
            continue
        mse = torch.mean((out.rgb - target) ** 2)
        loss = mse + settings.regularizer_weight * field.regularizer()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        n_rays = int(min(max(n_rays * settings.target_samples / max(out.n_samples, 1), 64), 65536))
        train_psnr = float(-10 * torch.log10(mse.detach().clamp_min(1e-10)))
        loss_value = loss.item()
        if step % 10 == 0:
            elapsed = time.perf_counter() - start
            history.append({"step": step, "loss": loss_value, "psnr": train_psnr, "time": elapsed})
        reporter.update(step + 1, loss=loss_value, psnr=train_psnr, rays=n_rays)
        if settings.time_budget_s and time.perf_counter() - start >= settings.time_budget_s:
            break
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    field.eval()
    final_grid = OccupancyGrid.from_field(
        field.density, grid.aabb, render.occupancy_resolution, render.occupancy_threshold
    )
    cams = {"train": cameras}
    if "test" in dataset.splits:
        cams["test"] = dataset.splits["test"].cameras
    provenance: dict[str, Any] = {
        "source": "pvd train",
        "dataset": str(dataset.root),
        "dataset_format": dataset.format,
        "arch": name,
        "recipe": recipe,
        "steps": step + 1,
        "seed": settings.seed,
        "train_seconds": round(wall, 2),
        "train_cpu_seconds": round(cpu, 2),  # all threads; less load-dependent than wall
        "device": str(device),
        "versions": _versions(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "history": history[-200:],
    }
    return TrainedModel(field, final_grid, scene, render, cams, provenance)


def evaluate_test(model: TrainedModel, dataset: Dataset, split: str = "test") -> dict[str, Any]:
    """Score ``model`` against the dataset's ``split`` and record it in the provenance."""
    data = dataset.split(split)
    start = time.perf_counter()
    scores = model.evaluate(
        data.cameras, list(data.composited(torch.tensor(dataset.scene.background)))
    )
    result = {
        "split": split,
        "psnr": scores.psnr,
        "ssim": scores.ssim,
        "lpips": None,
        "lpips_reason": scores.lpips_reason,
        "images": len(data),
        "eval_seconds": round(time.perf_counter() - start, 2),
    }
    model.provenance[f"{split}_metrics"] = result
    return result
