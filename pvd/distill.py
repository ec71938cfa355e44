"""Progressive volume distillation (Fang et al., "One is All: Bridging the Gap Between Neural
Radiance Fields Architectures with Progressive Volume Distillation", AAAI 2023): ``pvd convert``.

Every architecture is a cascade φ¹ (volume part, ``v = phi1(x)``) → φ² (decoder). The teacher is
frozen; the student is aligned to it stage by stage, teacher and student always evaluated on the
same samples (DESIGN.md, "Progressive volume distillation"):

1. **volume** (φ¹ only): points drawn mostly in the teacher's occupied cells, a share uniformly
   in the box so empty space is learned empty; loss on ``v`` — all channels when both sides have
   the same feature layout (canonical ↔ canonical, Plenoxels ↔ Plenoxels), else ``sigma_raw``
   alone. Channel 0 uses the clipped comparison below; the others are plain squared errors.
2. **points** (φ¹ + φ²): clipped ``sigma_raw`` and per-point colour at random unit directions.
3. **render**: rays from the distillation cameras, sampled once with the teacher's occupancy grid
   (and its early stop) and rendered by both models on a random background; loss on pixel colour
   plus the stage-2 terms on fresh points and the student's own regulariser.

**Density clipping** (the recipe's ``sigma_clip`` = [a, b], default [−2, 7] as the paper): the
teacher's raw density is clamped, ``t = clamp(raw_t, a, b)``; the student is compared in that range
with one-sided ends — ``s − t`` inside, ``relu(s − a)`` at the floor (anything emptier is as
empty) and ``relu(b − s)`` at the ceiling (anything more opaque is as opaque) — so its gradient
never vanishes and empty space can stay truly empty. The reference code clamps inside both
forward passes instead (a density floor of e⁻² everywhere, no gradient below a); pvd keeps that as
the model option ``config.sigma_clip``, off by default. ``clip = false`` compares raw values.

pvd's choices beyond the paper (inheritance and warm starts can be switched off in the recipe):

- losses are un-squared L2 norms of the batch errors with weights 2e-3 (features, density, colour)
  and 1 (pixels), ``loss_reduction = "norm"``, as the reference code (DESIGN.md), which also decays
  the feature weight (pvd keeps it constant). ``"mean"`` — means of squared errors, weights
  1 / 0.01 / 1 / 1 — was pvd's first default and lost to the norms on all six students
  (BENCHMARKS.md, ablation). The colour
  term of stages 2–3 is weighted by the teacher's opacity over one render step,
  ``1 − exp(−σ_t·δ)``, so the colour of empty space (never rendered) does not compete for capacity;
- stage 1 compares all 28 channels between two Plenoxels grids (their SH coefficients mean the
  same), ``sigma_raw`` alone between Plenoxels and a canonical architecture;
- stage 3 renders rays from a pool the teacher sampled and rendered once (:class:`RayPool`);
- **decoder inheritance** (canonical → canonical): the teacher's φ² is copied into the student
  before stage 1 and fine-tuned in stages 2–3;
- **warm starts** before stage 1: Plenoxels vertices take the teacher's raw density (clamped to
  ``[a − 4, b]``) and the least-squares SH fit of the logit of its colour over 32 directions (so
  ``sigmoid`` of the SH sum matches); TensoRF takes a CP decomposition (tensorly, ALS) of the
  teacher's feature grid at the student's current resolution, rearranged exactly into VM factors
  (``tensorf.cp_to_vm``);
- the run is resumable: a state file beside the output (student, optimizer, random streams) is
  written every ``save_every`` steps and on Ctrl-C / SIGTERM; ``--resume`` continues it and ends
  with the same student as an uninterrupted run (CPU; steps-limited runs).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import architectures
from architectures import RadianceField

from .cameras import Cameras, fit_radius, hemisphere_positions, look_at
from .data import Dataset
from .errors import UserError
from .importers import load_any
from .metrics import ImageScores, score_images
from .model import TrainedModel, held_out_cameras
from .progress import Reporter
from .recipes import Recipe, build_recipe, build_recipe_overrides, check_keys, merge_recipe
from .render import OccupancyGrid, PackedSamples, composite_packed, sample_rays
from .train import _versions, deterministic_algorithms, lr_factor, run_progress

STAGES = ("volume", "points", "render")
#: "mean": mean squared error (pvd's default); "norm": un-squared L2 norm (the reference code).
LOSS_REDUCTIONS = ("mean", "norm")


@dataclasses.dataclass
class DistillSettings:
    """The ``distill`` section of a conversion recipe (``recipes/distill.toml`` documents each
    key); the defaults are the ``cpu`` preset's."""

    steps: int = 400
    time_budget_s: float = 0.0
    lr: float = 1e-2
    lr_warmup_steps: int = 20
    stage1_end: float = 0.4
    stage2_end: float = 0.8
    points: int = 16384
    stage3_points: int = 4096
    uniform_fraction: float = 0.2
    pool_rays: int = 131072
    target_samples: int = 32768
    sigma_clip: list[float] = dataclasses.field(default_factory=lambda: [-2.0, 7.0])
    clip: bool = True
    loss_reduction: str = "norm"
    feature_weight: float = 2e-3
    density_weight: float = 2e-3
    color_weight: float = 2e-3
    rgb_weight: float = 1.0
    regularizer_weight: float = 1.0
    inherit_decoder: bool = True
    warm_start: bool = True
    save_every: int = 50
    eval_every: int = 0
    seed: int = 0

    def validate(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "time_budget_s": self.time_budget_s >= 0,
            "lr": self.lr > 0,
            "lr_warmup_steps": self.lr_warmup_steps >= 0,
            "stage1_end": 0 <= self.stage1_end <= 1,
            "stage2_end": self.stage1_end <= self.stage2_end <= 1,
            "points": self.points >= 1,
            "stage3_points": self.stage3_points >= 0,
            "uniform_fraction": 0 <= self.uniform_fraction <= 1,
            "pool_rays": self.pool_rays >= 1,
            "target_samples": self.target_samples >= 1,
            "sigma_clip": len(self.sigma_clip) == 2
            and all(math.isfinite(v) for v in self.sigma_clip)
            and self.sigma_clip[0] < self.sigma_clip[1],
            "loss_reduction": self.loss_reduction in LOSS_REDUCTIONS,
            "feature_weight": self.feature_weight >= 0,
            "density_weight": self.density_weight >= 0,
            "color_weight": self.color_weight >= 0,
            "rgb_weight": self.rgb_weight >= 0,
            "regularizer_weight": self.regularizer_weight >= 0,
            "save_every": self.save_every >= 0,
            "eval_every": self.eval_every >= 0,
            "seed": self.seed >= 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise UserError(
                    f"recipe value distill.{key} = {getattr(self, key)!r} is out of range"
                )

    def stage(self, progress: float) -> int:
        """Stage index (0, 1, 2) at ``progress`` (fraction of the run done)."""
        if progress < self.stage1_end:
            return 0
        return 1 if progress < self.stage2_end else 2


@dataclasses.dataclass
class StageRecord:
    """What one stage did: steps, seconds (evaluation excluded) and its first and last loss."""

    name: str
    steps: int = 0
    seconds: float = 0.0
    first_loss: float | None = None
    last_loss: float | None = None


@dataclasses.dataclass
class ConversionReport:
    """Everything ``pvd convert`` prints and records in the student's provenance."""

    teacher: dict[str, Any]
    student: dict[str, Any]
    stages: list[StageRecord]
    steps: int
    seconds: float
    cpu_seconds: float
    setup_seconds: float
    fidelity: dict[str, Any]
    probe_loss: dict[str, float]
    warm_start: str | None
    inherited: list[str]
    recipe: Recipe
    seed: int
    device: str
    quality: dict[str, Any] | None = None
    teacher_quality: dict[str, Any] | None = None
    curve: list[dict[str, float]] = dataclasses.field(default_factory=list)
    resumed_from: int | None = None
    output: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        """A short human-readable report (what ``pvd convert`` prints)."""
        t, s = self.teacher, self.student
        out = [
            f"teacher  {t['arch']:<10} {t['parameters']:>12,} parameters"
            f" {t['bytes'] / 1e6:8.2f} MB  ({t['source']})",
            f"student  {s['arch']:<10} {s['parameters']:>12,} parameters"
            f" {s['bytes'] / 1e6:8.2f} MB",
        ]
        for record in self.stages:
            if record.steps:
                out.append(
                    f"stage {record.name:<7} {record.steps:5d} steps {record.seconds:7.1f} s"
                    f"  loss {record.first_loss:.4g} -> {record.last_loss:.4g}"
                )
        out.append(
            f"total    {self.steps} steps, {self.seconds:.1f} s distilling"
            f" ({self.cpu_seconds:.0f} CPU-s)"
            f" + {self.setup_seconds:.1f} s set-up (warm start, inheritance)"
            + (f", resumed at step {self.resumed_from}" if self.resumed_from else "")
        )
        out.append(f"warm start  {self.warm_start or 'none'}")
        out.append(f"inherited   {', '.join(self.inherited) or 'nothing'}")
        f = self.fidelity
        out.append(
            f"fidelity    {f['psnr']:.2f} dB PSNR, SSIM {f['ssim']:.3f} vs the teacher"
            f" on {f['views']} held-out views ({f['cameras']})"
        )
        if self.quality is not None and self.teacher_quality is not None:
            out.append(
                f"quality     student {self.quality['psnr']:.2f} dB, teacher "
                f"{self.teacher_quality['psnr']:.2f} dB PSNR vs ground truth"
                f" ({self.quality['images']} test images)"
            )
        if self.output:
            out.append(f"wrote       {self.output}")
        return out


# -- losses ---------------------------------------------------------------------------------
def clipped_density_error(
    student_raw: torch.Tensor, teacher_raw: torch.Tensor, clip: tuple[float, float] | None
) -> torch.Tensor:
    """Per-point error of the student's raw density against the teacher's (module docstring).

    With ``clip = (a, b)``: ``t = clamp(teacher_raw, a, b)``; the error is ``s − t`` inside,
    ``relu(s − a)`` where ``t = a`` and ``−relu(b − s)`` where ``t = b``. Without: ``s − t``.
    """
    if clip is None:
        return student_raw - teacher_raw
    low, high = clip
    target = teacher_raw.clamp(low, high)
    error = student_raw - target
    error = torch.where(target <= low, F.relu(student_raw - low), error)
    return torch.where(target >= high, -F.relu(high - student_raw), error)


def reduce_squared(
    squared: torch.Tensor, count: float | torch.Tensor, reduction: str
) -> torch.Tensor:
    """A loss from (weighted) squared errors: their mean over ``count`` entries (``"mean"``) or
    the un-squared L2 norm of the errors, ``sqrt(Σ squared)`` (``"norm"``, the reference PVD
    code's choice; its gradient is taken as 0 where every error is 0)."""
    total = squared.sum()
    if reduction == "norm":
        return total.clamp_min(1e-20).sqrt()
    if isinstance(count, torch.Tensor):  # stays on the device: no synchronisation per step
        return total / count.clamp_min(1e-8)
    return total / max(count, 1e-8)


def volume_loss(
    student_v: torch.Tensor,
    teacher_v: torch.Tensor,
    clip: tuple[float, float] | None,
    all_channels: bool,
    reduction: str = "mean",
) -> torch.Tensor:
    """Stage 1: squared error of ``v`` over points and compared channels (channel 0 with the
    clipped comparison; channels 1.. only when ``all_channels``), reduced by ``reduction``."""
    density = clipped_density_error(student_v[:, 0], teacher_v[:, 0], clip).pow(2)
    if not all_channels:
        return reduce_squared(density, density.numel(), reduction)
    rest = (student_v[:, 1:] - teacher_v[:, 1:]).pow(2).sum(-1)
    return reduce_squared(density + rest, student_v.numel(), reduction)


def point_loss(
    student: RadianceField,
    teacher: RadianceField,
    x: torch.Tensor,
    d: torch.Tensor,
    settings: DistillSettings,
    step_size: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stages 2–3 per-point terms: (clipped density error², colour error² weighted by the
    teacher's opacity), each reduced by ``settings.loss_reduction`` (the colour mean is over the
    opacity weights)."""
    with torch.no_grad():
        tv = teacher.phi1(x)
        t_sigma, t_rgb = teacher.phi2(tv, d)
        weight = 1.0 - torch.exp(-t_sigma * step_size)
    sv = student.phi1(x)
    _, s_rgb = student.phi2(sv, d)
    clip = tuple(settings.sigma_clip) if settings.clip else None
    reduction = settings.loss_reduction
    density = clipped_density_error(sv[:, 0], tv[:, 0], clip).pow(2)
    density = reduce_squared(density, density.numel(), reduction)
    colour = weight[:, None] * (s_rgb - t_rgb).pow(2)
    colour = reduce_squared(colour, 3 * weight.sum(), reduction)
    return density, colour


# -- sampling -------------------------------------------------------------------------------
def sample_points(
    grid: OccupancyGrid, n: int, uniform_fraction: float, generator: torch.Generator
) -> torch.Tensor:
    """``n`` points in the grid's box: a ``uniform_fraction`` share uniformly, the rest
    uniformly inside randomly chosen occupied cells (all uniform when no cell is occupied)."""
    lo, hi = grid.aabb[:3].cpu(), grid.aabb[3:].cpu()
    occupied = grid.binary.flatten().nonzero()[:, 0].cpu()
    n_uniform = n if occupied.numel() == 0 else round(n * uniform_fraction)
    uniform = torch.rand(n_uniform, 3, generator=generator)
    pick = occupied[
        torch.randint(0, max(occupied.numel(), 1), (n - n_uniform,), generator=generator)
    ]
    r = grid.resolution
    cells = torch.stack((pick // (r * r), pick // r % r, pick % r), dim=-1).float()
    in_cells = (cells + torch.rand(cells.shape, generator=generator)) / r
    u = torch.cat((uniform, in_cells))
    return (lo + u * (hi - lo)).to(grid.device)


def random_directions(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` unit directions, uniform on the sphere."""
    d = torch.randn(n, 3, generator=generator)
    return (d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)).to(device)


def distillation_cameras(teacher: TrainedModel, n: int = 100, size: int = 64) -> Cameras:
    """The teacher's training cameras if stored, else ``n`` cameras on the upper hemisphere
    whose distance makes the box fill Blender's default field of view (DESIGN.md)."""
    if "train" in teacher.cameras:
        return teacher.cameras["train"]
    angle = 0.6911112070083618  # Blender's default camera_angle_x
    centre = torch.tensor(teacher.scene.aabb).view(2, 3).mean(0).double()
    radius = fit_radius(teacher.scene.aabb, angle)
    c2w = look_at(hemisphere_positions(n, radius) + centre, centre)
    return Cameras.from_poses(c2w, size, size, angle)


def _random_rays(
    cameras: Cameras, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    cam = torch.randint(0, len(cameras), (n,), generator=generator)
    size = cameras.sizes[cam].double()
    px = torch.rand(n, generator=generator, dtype=torch.float64) * size[:, 0]
    py = torch.rand(n, generator=generator, dtype=torch.float64) * size[:, 1]
    return cameras.rays_at(cam, px, py)


@dataclasses.dataclass
class RayPool:
    """Stage 3's rays, sampled and rendered by the teacher once, at the start of the stage.

    The teacher is frozen, so its samples along a ray (from its occupancy grid, with its early
    stop) and its colour there never change. Sampling dominated a stage-3 step on CPU (0.25 s of
    0.35 s for 4096 rays, measured with the hash-grid teacher), so pvd draws ``pool_rays`` random
    rays of the distillation cameras once, keeps their packed samples with the teacher's
    premultiplied colour and opacity per ray, and each step renders a random subset with the
    student — on exactly the teacher's samples, composited on a fresh random background.
    """

    x: torch.Tensor  # [S, 3] sample midpoints
    d: torch.Tensor  # [S, 3] their ray directions
    t_starts: torch.Tensor  # [S]
    t_ends: torch.Tensor  # [S]
    first: torch.Tensor  # [R] index of each ray's first sample
    count: torch.Tensor  # [R] samples per ray
    rgb: torch.Tensor  # [R, 3] the teacher's colour, premultiplied by its opacity
    opacity: torch.Tensor  # [R]

    @classmethod
    @torch.no_grad()
    def build(
        cls, teacher: TrainedModel, cameras: Cameras, n_rays: int, seed: int, chunk: int = 8192
    ) -> RayPool:
        """Draw and render ``n_rays`` rays; deterministic for ``seed`` (the global random
        stream used by stratified sampling is forked, so a resumed run rebuilds the same pool)."""
        device = teacher.grid.device
        generator = torch.Generator().manual_seed(seed)
        scene, render = teacher.scene, teacher.render
        names = ("x", "d", "t0", "t1", "n", "c", "a")
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in names}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for size in [chunk] * (n_rays // chunk) + ([n_rays % chunk] if n_rays % chunk else []):
                origins, dirs = _random_rays(cameras, size, generator)
                origins, dirs = origins.float().to(device), dirs.float().to(device)
                samples = sample_rays(
                    origins,
                    dirs,
                    teacher.grid,
                    render,
                    scene.near,
                    scene.far,
                    stratified=True,
                    density_fn=teacher.field.density,
                )
                x, d = samples.points(origins, dirs)
                sigma, rgb = teacher.field(x, d)
                out = composite_packed(samples, sigma, rgb, torch.zeros(3, device=device))
                parts["x"].append(x)
                parts["d"].append(d)
                parts["t0"].append(samples.t_starts)
                parts["t1"].append(samples.t_ends)
                parts["n"].append(torch.bincount(samples.ray_indices, minlength=size))
                parts["c"].append(out.rgb)
                parts["a"].append(out.opacity)
        count = torch.cat(parts["n"])
        return cls(
            x=torch.cat(parts["x"]),
            d=torch.cat(parts["d"]),
            t_starts=torch.cat(parts["t0"]),
            t_ends=torch.cat(parts["t1"]),
            first=torch.cumsum(count, 0) - count,
            count=count,
            rgb=torch.cat(parts["c"]),
            opacity=torch.cat(parts["a"]),
        )

    @property
    def samples_per_ray(self) -> float:
        return float(self.count.float().mean())

    def batch(
        self, n: int, generator: torch.Generator
    ) -> tuple[PackedSamples, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` random rays of the pool: their packed samples, points, directions, the
        teacher's colour on a random background (drawn here, per ray) and that background."""
        device = self.x.device
        rays = torch.randint(0, self.count.numel(), (n,), generator=generator).to(device)
        background = torch.rand(n, 3, generator=generator).to(device)
        count = self.count[rays]
        ray_indices = torch.repeat_interleave(torch.arange(n, device=device), count)
        offset = torch.cumsum(count, 0) - count
        index = self.first[rays][ray_indices] + torch.arange(ray_indices.numel(), device=device)
        index = index - offset[ray_indices]
        samples = PackedSamples(ray_indices, self.t_starts[index], self.t_ends[index], n)
        target = self.rgb[rays] + (1.0 - self.opacity[rays, None]) * background
        return samples, self.x[index], self.d[index], target, background


# -- inheritance and warm starts ------------------------------------------------------------
def same_feature_layout(a: RadianceField, b: RadianceField) -> bool:
    """Whether every channel of ``v`` means the same in both (canonical ↔ canonical, or the
    same non-canonical architecture)."""
    if a.canonical and b.canonical:
        return True
    if a.arch != "plenoxels" or b.arch != "plenoxels" or a.feature_dim != b.feature_dim:
        return False  # a learned non-canonical φ² (TensoRF's MLP) gives v its own meaning
    # Plenoxels' φ² has no parameters: v means the same when its density and colour rules do
    rules = ("sh_degree", "density_activation", "colour")
    return all(getattr(a.config, k) == getattr(b.config, k) for k in rules)


def inherit_decoder(teacher: RadianceField, student: RadianceField) -> bool:
    """Copy the teacher's canonical φ² into the student; False when either is not canonical."""
    if not (teacher.canonical and student.canonical):
        return False
    student.decoder.load_state_dict(teacher.decoder.state_dict())
    return True


def _fibonacci_directions(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    r = torch.sqrt(1.0 - z * z)
    return torch.stack((r * torch.cos(phi), r * torch.sin(phi), z), dim=-1).float()


def _warm_density(teacher_raw: torch.Tensor, clip: tuple[float, float]) -> torch.Tensor:
    """The raw density a warm start writes: the teacher's, clamped to ``[a − 4, b]``. Below the
    clip floor every value renders as empty, and e^(a−4) (0.0025 for a = −2) is empty enough
    while keeping a usable gradient for later growth."""
    return teacher_raw.clamp(clip[0] - 4.0, clip[1])


@torch.no_grad()
def warm_start_plenoxels(
    teacher: TrainedModel, student: RadianceField, clip: tuple[float, float], chunk: int = 65536
) -> str:
    """Plenoxels vertices from the teacher: raw density (clamped, as above) everywhere; near
    occupied cells the SH coefficients that least-squares fit ``logit(rgb)`` over 32 directions (so
    ``sigmoid(SH · c)`` reproduces the teacher's view-dependent colour)."""
    from architectures.components import sh_encode

    positions = student.vertex_positions()
    values = student.vertex_values()
    raw = torch.cat([teacher.field.sigma_raw(p) for p in positions.split(chunk)])
    values[:, 0] = _warm_density(raw, clip)
    near = _near_occupied(teacher.grid, positions)
    dirs = _fibonacci_directions(32).to(positions.device)
    basis = sh_encode(dirs, degree=student.config.sh_degree + 1)  # [32, K]; degree = bands
    solve = torch.linalg.pinv(basis)  # [K, 32]
    index = near.nonzero()[:, 0]
    if index.numel() == 0:
        return (
            f"plenoxels vertices from the teacher: raw density at {positions.shape[0]:,} vertices"
        )
    per_chunk = max(1, chunk // dirs.shape[0])
    for part in index.split(per_chunk):
        x = positions[part]
        xs = x[:, None, :].expand(-1, dirs.shape[0], -1).reshape(-1, 3)
        ds = dirs[None].expand(x.shape[0], -1, -1).reshape(-1, 3)
        _, rgb = teacher.field(xs, ds)
        logits = torch.logit(rgb.clamp(1e-3, 1 - 1e-3)).view(x.shape[0], -1, 3)
        coefficients = torch.einsum("kn,bnc->bck", solve, logits)  # [B, 3, K]
        values[part, 1:] = coefficients.reshape(x.shape[0], -1)
    return (
        f"plenoxels vertices from the teacher: raw density at {positions.shape[0]:,} vertices, "
        f"SH colour fit at {index.numel():,} near occupied cells"
    )


def _near_occupied(grid: OccupancyGrid, positions: torch.Tensor) -> torch.Tensor:
    """Which points lie in or next to an occupied cell (the grid dilated by one cell)."""
    dilated = F.max_pool3d(grid.binary[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    r = grid.resolution
    lo, hi = grid.aabb[:3], grid.aabb[3:]
    ijk = ((positions - lo) / (hi - lo) * r).long().clamp(0, r - 1)
    return dilated[ijk[:, 0], ijk[:, 1], ijk[:, 2]]


@torch.no_grad()
def warm_start_tensorf(
    teacher: TrainedModel,
    student: RadianceField,
    clip: tuple[float, float],
    n_iter: int = 30,
    ridge: float = 1e-6,
) -> str:
    """TensoRF VM factors from a CP decomposition of the teacher's feature grid at the
    student's current vertex counts: density (clipped raw minus the student's shift) at rank
    3·R_σ, and — when the teacher is canonical — the 15 appearance channels as a 4-way tensor at
    rank 3·R_c whose channel factor becomes the basis matrix. Ranks fill the three orientations
    exactly (``cp_to_vm``). ALS runs ``n_iter`` sweeps from a seeded random start with a small
    ridge (tensorly's ``l2_reg``), which keeps its normal equations solvable when the teacher's
    grid has a lower rank than requested."""
    import tensorly as tl
    from tensorly.decomposition import parafac

    from architectures.tensorf import cp_to_vm

    def fit_vm(tensor: torch.Tensor, components: int) -> tuple[Any, float]:
        """VM factors of a rank-3·``components`` CP fit of ``tensor``, and the fit (1 − relative
        error)."""
        tensor = tensor.double()
        cp = parafac(
            tensor,
            rank=3 * components,
            n_iter_max=n_iter,
            init="random",
            random_state=0,
            l2_reg=ridge,
        )
        fit = 1.0 - float(tl.norm(tensor - tl.cp_to_tensor(cp)) / tl.norm(tensor))
        return cp_to_vm([f.float() for f in cp.factors], cp.weights.float(), components), fit

    config = student.config
    nx, ny, nz = config.grid_size
    axes = [torch.linspace(0.0, 1.0, n, device=student.aabb.device) for n in (nx, ny, nz)]
    u = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).view(-1, 3)
    x = student.aabb[0] + u * (student.aabb[1] - student.aabb[0])
    v = torch.cat([teacher.field.phi1(p) for p in x.split(65536)])
    density = (_warm_density(v[:, 0], clip) - config.density_shift).view(nx, ny, nz)
    with tl.backend_context("pytorch"):
        vm, fit = fit_vm(density, config.density_components)
        _copy_factors(student.density_plane, student.density_line, vm)
        parts = [f"density CP rank {3 * config.density_components} (fit {fit:.3f})"]
        if teacher.field.canonical:
            vm, fit = fit_vm(v[:, 1:].reshape(nx, ny, nz, 15), config.appearance_components)
            _copy_factors(student.app_plane, student.app_line, vm)
            student.basis_mat.weight.copy_(vm.basis)
            parts.append(f"appearance CP rank {3 * config.appearance_components} (fit {fit:.3f})")
    return f"tensorf VM from the teacher's {nx}x{ny}x{nz} feature grid: " + ", ".join(parts)


def _copy_factors(planes: Any, lines: Any, vm: Any) -> None:
    for target, source in zip(planes, vm.planes, strict=True):
        target.copy_(source)
    for target, source in zip(lines, vm.lines, strict=True):
        target.copy_(source)


def warm_start(
    teacher: TrainedModel, student: RadianceField, clip: tuple[float, float]
) -> str | None:
    """The student's warm start where its architecture allows one (else None): pvd's own
    Plenoxels (any SH degree) and canonical TensoRF, not the variants that reproduce other
    tools' activations (their stored values mean something else)."""
    config = student.config
    if student.arch == "plenoxels" and config.density_activation is None and not config.colour:
        return warm_start_plenoxels(teacher, student, clip)
    if student.arch == "tensorf" and student.canonical and config.density_activation is None:
        return warm_start_tensorf(teacher, student, clip)
    return None


# -- evaluation -----------------------------------------------------------------------------
def final_grid(field: RadianceField, like: OccupancyGrid) -> OccupancyGrid:
    """The student's own occupancy grid, built from its density with the teacher's settings."""
    return OccupancyGrid.from_field(field.density, like.aabb, like.resolution, like.threshold)


def fidelity(
    student: TrainedModel, cameras: Cameras, teacher_images: list[torch.Tensor]
) -> ImageScores:
    """Student vs teacher renders on the held-out cameras (each with its own occupancy grid)."""
    return score_images(student.render_views(cameras), teacher_images)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tensor_sha256(field: RadianceField) -> str:
    digest = hashlib.sha256(field.arch.encode())
    for name, tensor in sorted(field.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# -- resumable state ------------------------------------------------------------------------
def state_path(out: str | os.PathLike[str]) -> Path:
    """Where the resumable state of a conversion writing ``out`` lives."""
    out = Path(out)
    return out.with_name(out.name + ".state")


def _save_state(
    path: Path,
    student: RadianceField,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    meta: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    tensors = {f"student.{k}": v.detach().contiguous() for k, v in student.state_dict().items()}
    optim = optimizer.state_dict()
    for index, entries in optim["state"].items():
        for key, value in entries.items():
            tensors[f"optim.{index}.{key}"] = value.detach().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.generator"] = generator.get_state()
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optim["param_groups"]]
    metadata = {
        "pvd.state": json.dumps({**meta, "optimizer_groups": groups}),
        "student.arch": student.arch,
        "student.config": student.config.to_json(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _read_state(path: Path) -> tuple[dict[str, Any], dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    if not path.exists():
        raise UserError(f"--resume: no saved state at {path}; run the conversion without --resume")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        meta = json.loads(metadata["pvd.state"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise UserError(
            f"--resume: {path} is not a readable pvd conversion state ({exc})"
        ) from None
    return meta, metadata, tensors


@contextmanager
def _interrupt_flag() -> Iterator[dict[str, int | None]]:
    """Turn SIGINT / SIGTERM into a flag the loop checks between steps (main thread only), so
    an interruption saves a consistent state instead of one torn mid-update; a second signal
    aborts at once (e.g. during a long stage-3 pool build)."""
    flag: dict[str, int | None] = {"signal": None}
    if not _in_main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag["signal"] is not None:  # a second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        flag["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class ConversionInterrupted(UserError):
    """A conversion stopped by Ctrl-C or SIGTERM after saving its resumable state."""


# -- the engine -----------------------------------------------------------------------------
def settings_from_recipe(student_arch: str, recipe: Recipe) -> DistillSettings:
    """Validate a conversion recipe (student model config and distill settings)."""
    check_keys("distill", recipe["distill"], dataclasses.asdict(DistillSettings()))
    settings = DistillSettings(**recipe["distill"])
    clip = settings.sigma_clip
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in clip):
        raise UserError(f"recipe value distill.sigma_clip = {clip!r} must be two numbers [a, b]")
    settings.sigma_clip = [float(v) for v in clip]
    settings.validate()
    if "aabb" in recipe["model"]:
        raise UserError("recipe key model.aabb comes from the teacher's scene; it cannot be set")
    try:
        architectures.get(student_arch).config_class.from_dict(recipe["model"])
    except architectures.ConfigError as exc:
        raise UserError(f"recipe model section: {exc}") from None
    return settings


def load_teacher(
    teacher: TrainedModel | str | os.PathLike[str],
    device: str,
    kind: str | None = None,
    data: Dataset | None = None,
) -> tuple[TrainedModel, str, str]:
    """(model, source description, sha256) of a teacher given as a model or a checkpoint path: a
    pvd checkpoint, or another tool's file imported on the fly (``kind`` names its format when
    detection should not decide; ``data`` gives an imported teacher the dataset's cameras)."""
    if isinstance(teacher, TrainedModel):
        if teacher.device != torch.device(device):
            raise UserError(
                f"the teacher is on {teacher.device} but the conversion runs on {device}; "
                "move it or pass device="
            )
        imported = teacher.provenance.get("import")
        if teacher.provenance.get("source") == "pvd import" and imported:
            return teacher, f"{imported['file']} ({imported['format']})", imported["sha256"]
        return teacher, "in memory", _tensor_sha256(teacher.field)
    path = Path(teacher)
    try:
        model = load_any(path, kind, device, data)
    except architectures.ArchitectureError as exc:
        raise UserError(str(exc)) from None
    return model, str(path), file_sha256(path)


def convert(
    teacher: TrainedModel | str | os.PathLike[str],
    to: str,
    recipe: Recipe | str | os.PathLike[str] | None = None,
    *,
    preset: str = "cpu",
    overrides: list[str] | None = None,
    steps: int | None = None,
    data: Dataset | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    device: str = "cpu",
    reporter: Reporter | None = None,
    kind: str | None = None,
) -> tuple[TrainedModel, ConversionReport]:
    """Distil ``teacher`` (a checkpoint path or a :class:`TrainedModel`) into architecture ``to``.

    ``recipe`` is a recipe file or a partial recipe dict (``{"distill": {...}, "model": {...}}``)
    merged over the ``preset``; ``overrides`` are ``section.key=value`` strings; ``steps``
    overrides ``distill.steps``. ``data`` adds quality vs its test split to the report. With
    ``out`` the student is written there atomically, a resumable state is kept beside it while
    the run lasts, and ``resume=True`` continues an interrupted run. A teacher file of another
    tool is imported on the fly (``kind``: its format, else detected; see ``pvd.importers``).
    Returns the student (with its own occupancy grid, the teacher's scene, cameras and render
    settings, and provenance) and the report.
    """
    with deterministic_algorithms(torch.device(device).type == "cpu"):
        return _convert(
            teacher,
            to,
            recipe,
            preset,
            overrides,
            steps,
            data,
            out,
            resume,
            device,
            reporter or Reporter(),
            kind,
        )


def build_conversion_recipe(
    to: str,
    recipe: Recipe | str | os.PathLike[str] | None,
    preset: str,
    overrides: list[str] | None,
    steps: int | None,
) -> Recipe:
    """The student's conversion recipe: preset < recipe file or dict < overrides < ``steps``."""
    if isinstance(recipe, dict):
        built = merge_recipe(build_recipe(to, preset, kind="distill"), recipe, "recipe", "distill")
        built = build_recipe_overrides(built, overrides, "distill")
    else:
        built = build_recipe(to, preset, recipe, overrides, kind="distill")
    if steps is not None:
        built["distill"]["steps"] = steps
    return built


def _convert(
    teacher_in: TrainedModel | str | os.PathLike[str],
    to: str,
    recipe_in: Recipe | str | os.PathLike[str] | None,
    preset: str,
    overrides: list[str] | None,
    steps: int | None,
    data: Dataset | None,
    out: str | os.PathLike[str] | None,
    resume: bool,
    device: str,
    reporter: Reporter,
    kind: str | None,
) -> tuple[TrainedModel, ConversionReport]:
    try:
        name = architectures.canonical_name(to)
    except architectures.ArchitectureError as exc:
        raise UserError(str(exc)) from None
    recipe = build_conversion_recipe(name, recipe_in, preset, overrides, steps)
    settings = settings_from_recipe(name, recipe)
    if resume and out is None:
        raise UserError("--resume needs the output path of the interrupted conversion (--out)")
    state_file = state_path(out) if out is not None else None
    if resume and not state_file.exists():
        raise UserError(
            f"--resume: no saved state at {state_file}; run the conversion without --resume"
        )
    teacher, source, teacher_hash = load_teacher(teacher_in, device, kind, data)
    teacher.field.eval().requires_grad_(False)
    if data is not None:  # an imported teacher lives in its tool's space: so must the cameras
        data = data.in_model_space(teacher.scene)
    reporter.message(
        f"preset: {preset} · device: {device} · {source} ({teacher.field.arch}) -> {name}"
    )
    scene, render = teacher.scene, teacher.render
    clip = tuple(settings.sigma_clip) if settings.clip else None
    held_out = held_out_cameras(teacher)
    cameras = distillation_cameras(teacher)
    generator = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)

    # -- student, inheritance, warm start (or the saved state) --------------------------------
    setup_start = time.perf_counter()
    warm: str | None = None
    inherited: list[str] = []
    start_step, elapsed_before, cpu_before = 0, 0.0, 0.0
    pool: RayPool | None = None
    stages = [StageRecord(s) for s in STAGES]
    history: list[dict[str, float]] = []
    curve: list[dict[str, float]] = []
    saved: dict[str, torch.Tensor] = {}
    probe_x = sample_points(
        teacher.grid, 8192, settings.uniform_fraction, torch.Generator().manual_seed(12345)
    )
    probe_d = random_directions(8192, torch.Generator().manual_seed(54321), probe_x.device)
    if resume:
        meta, metadata, saved = _read_state(state_file)
        if meta["teacher_sha256"] != teacher_hash:
            raise UserError(
                f"--resume: {state_file} was written for another teacher "
                f"(sha256 {meta['teacher_sha256'][:12]}…); delete it or convert without --resume"
            )
        if meta["recipe"] != json.loads(json.dumps(recipe)) or metadata.get("student.arch") != name:
            raise UserError(
                f"--resume: {state_file} was written with another student or recipe; use the same "
                "--to/--recipe/--set/--steps as the interrupted run, or convert without --resume"
            )
        student = architectures.build(name, json.loads(metadata["student.config"])).to(device)
        student.load_state_dict({k[8:]: v for k, v in saved.items() if k.startswith("student.")})
        start_step, elapsed_before = meta["step"], meta["elapsed"]
        cpu_before = meta["cpu_elapsed"]
        warm, inherited = meta["warm_start"], meta["inherited"]
        stages = [StageRecord(**r) for r in meta["stages"]]
        history, curve = meta["history"], meta["curve"]
        probe_before, probe_start = meta["probe_before"], meta["probe_start"]
        torch.set_rng_state(saved["rng.torch"])
        generator.set_state(saved["rng.generator"])
        reporter.message(f"resuming {name} from step {start_step} ({state_file})")
    else:
        student = architectures.build(name, {**recipe["model"], "aabb": scene.aabb}).to(device)
        probe_before = _probe(student, teacher.field, probe_x, probe_d, settings, render.step_size)
        if settings.inherit_decoder and inherit_decoder(teacher.field, student):
            inherited.append(f"decoder (phi2) from the {teacher.field.arch} teacher")
        if settings.warm_start:
            reporter.message(f"warm start of the {name} student …")
            warm = warm_start(teacher, student, tuple(settings.sigma_clip))
    if resume:
        setup_seconds = meta["setup_seconds"]
    else:
        setup_seconds = time.perf_counter() - setup_start
        probe_start = _probe(student, teacher.field, probe_x, probe_d, settings, render.step_size)

    def make_optimizer() -> tuple[torch.optim.Optimizer, list[float]]:
        groups = student.param_groups(settings.lr)
        return torch.optim.Adam(groups, eps=1e-15), [g["lr"] for g in groups]

    optimizer, base_lrs = make_optimizer()
    if saved:
        state = optimizer.state_dict()
        for index in range(len([p for g in state["param_groups"] for p in g["params"]])):
            entries = {
                k.split(".", 2)[2]: v for k, v in saved.items() if k.startswith(f"optim.{index}.")
            }
            if entries:
                state["state"][index] = entries
        state["param_groups"] = [
            {**g, **saved_g}
            for g, saved_g in zip(state["param_groups"], meta["optimizer_groups"], strict=True)
        ]
        optimizer.load_state_dict(state)

    teacher_images = teacher.render_views(held_out)
    all_channels = same_feature_layout(teacher.field, student)
    step_size = render.step_size

    def meta_now(step: int, elapsed: float) -> dict[str, Any]:
        return {
            "teacher_sha256": teacher_hash,
            "recipe": recipe,
            "step": step,
            "elapsed": elapsed,
            "cpu_elapsed": cpu_now(),
            "warm_start": warm,
            "inherited": inherited,
            "stages": [dataclasses.asdict(s) for s in stages],
            "history": history,
            "curve": curve,
            "probe_before": probe_before,
            "probe_start": probe_start,
            "setup_seconds": setup_seconds,
        }

    # -- the loop ----------------------------------------------------------------------------
    student.train()
    step = start_step
    stage_index = -1
    eval_seconds = eval_cpu = 0.0
    loop_start = time.perf_counter() - elapsed_before
    cpu_start = time.process_time() - cpu_before

    def cpu_now() -> float:
        """CPU seconds of this process (all threads) in the steps, evaluation excluded: a
        measure of the work that contention on a shared machine does not inflate."""
        return time.process_time() - cpu_start - eval_cpu

    with _interrupt_flag() as interrupted:
        while step < settings.steps:
            now = time.perf_counter() - loop_start - eval_seconds
            if settings.time_budget_s and now >= settings.time_budget_s:
                break
            if (
                state_file is not None
                and settings.save_every
                and step % settings.save_every == 0
                and step > start_step
            ):
                _save_state(state_file, student, optimizer, generator, meta_now(step, now))
            if interrupted["signal"] is not None:
                if state_file is not None:
                    _save_state(state_file, student, optimizer, generator, meta_now(step, now))
                    raise ConversionInterrupted(
                        f"interrupted at step {step}; state saved to {state_file}; "
                        "rerun with --resume to continue"
                    )
                raise ConversionInterrupted(f"interrupted at step {step} (no --out, nothing saved)")
            progress = run_progress(step, settings.steps, now, settings.time_budget_s)
            index = settings.stage(progress)
            if index != stage_index:
                stage_index = index
                reporter.stage(f"stage {index + 1} {STAGES[index]} -> {name}", settings.steps)
            if student.on_train_step(progress):
                optimizer, base_lrs = make_optimizer()
            factor = lr_factor(step, progress, settings.lr_warmup_steps)
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * factor

            step_start = time.perf_counter()
            if index == 0:
                x = sample_points(
                    teacher.grid, settings.points, settings.uniform_fraction, generator
                )
                with torch.no_grad():
                    target = teacher.field.phi1(x)
                loss = settings.feature_weight * volume_loss(
                    student.phi1(x), target, clip, all_channels, settings.loss_reduction
                )
            else:
                n_points = settings.points if index == 1 else settings.stage3_points
                loss = student.aabb.new_zeros(())
                if n_points:
                    x = sample_points(teacher.grid, n_points, settings.uniform_fraction, generator)
                    d = random_directions(n_points, generator, x.device)
                    density, colour = point_loss(student, teacher.field, x, d, settings, step_size)
                    loss = settings.density_weight * density + settings.color_weight * colour
                if index == 2:
                    if pool is None:
                        pool = RayPool.build(
                            teacher, cameras, settings.pool_rays, settings.seed + 1
                        )
                    n_rays = max(1, round(settings.target_samples / max(pool.samples_per_ray, 1)))
                    pixels = _render_loss(student, pool, n_rays, generator, settings.loss_reduction)
                    loss = loss + settings.rgb_weight * pixels
                    loss = loss + settings.regularizer_weight * student.regularizer()
            optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:  # else an empty batch and no regulariser: nothing to learn
                loss.backward()
                optimizer.step()
            value = loss.item()
            record = stages[index]
            record.steps += 1
            record.seconds += time.perf_counter() - step_start
            record.first_loss = value if record.first_loss is None else record.first_loss
            record.last_loss = value
            step += 1
            if step % 10 == 0:
                history.append(
                    {
                        "step": step,
                        "stage": index + 1,
                        "loss": value,
                        "time": round(time.perf_counter() - loop_start - eval_seconds, 3),
                    }
                )
            reporter.update(step, loss=value)
            if settings.eval_every and step % settings.eval_every == 0:
                tick, tick_cpu = time.perf_counter(), time.process_time()
                # the evaluation draws random numbers (occupancy jitter): it must not change
                # the training that follows, so the hook leaves the run's result as it was
                cuda = [student.aabb.device] if student.aabb.device.type == "cuda" else []
                with torch.random.fork_rng(devices=cuda):
                    curve.append(
                        _curve_point(
                            student,
                            teacher,
                            held_out,
                            teacher_images,
                            data,
                            step,
                            tick - loop_start - eval_seconds,
                            tick_cpu - cpu_start - eval_cpu,
                        )
                    )
                student.train()
                eval_seconds += time.perf_counter() - tick
                eval_cpu += time.process_time() - tick_cpu
    seconds = time.perf_counter() - loop_start - eval_seconds
    cpu_seconds = cpu_now()
    if state_file is not None:  # the finished student survives a failure in the evaluation below
        _save_state(state_file, student, optimizer, generator, meta_now(step, seconds))

    # -- the student model, evaluation, report -----------------------------------------------
    student.eval()
    model = TrainedModel(
        student, final_grid(student, teacher.grid), scene, render, dict(teacher.cameras), {}
    )
    scores = fidelity(model, held_out, teacher_images)
    quality = teacher_quality = None
    if data is not None and "test" in data.splits:
        from .train import evaluate_test

        quality = evaluate_test(model, data)
        teacher_quality = evaluate_test(teacher, data)
    report = ConversionReport(
        teacher={
            "arch": teacher.field.arch,
            "source": source,
            "sha256": teacher_hash,
            "parameters": teacher.field.num_parameters,
            "bytes": teacher.field.nbytes,
            "test_psnr": (teacher.provenance.get("test_metrics") or {}).get("psnr"),
        },
        student={
            "arch": name,
            "config": student.config.to_dict(),
            "parameters": student.num_parameters,
            "bytes": student.nbytes,
        },
        stages=stages,
        steps=step,
        seconds=round(seconds, 2),
        cpu_seconds=round(cpu_seconds, 2),
        setup_seconds=round(setup_seconds, 2),
        fidelity={
            "psnr": scores.psnr,
            "ssim": scores.ssim,
            "views": len(held_out),
            "cameras": "teacher's test cameras" if "test" in teacher.cameras else "fitted ring",
        },
        probe_loss={
            "before": probe_before,
            "start": probe_start,
            "after": _probe(student, teacher.field, probe_x, probe_d, settings, step_size),
        },
        warm_start=warm,
        inherited=inherited,
        recipe=recipe,
        seed=settings.seed,
        device=str(device),
        quality=quality,
        teacher_quality=teacher_quality,
        curve=curve,
        resumed_from=start_step or None,
    )
    model.provenance = {
        "source": "pvd convert",
        "teacher": report.teacher,
        "arch": name,
        "recipe": recipe,
        "steps": step,
        "seed": settings.seed,
        "convert_seconds": report.seconds,
        "stages": [dataclasses.asdict(s) for s in stages],
        "fidelity": report.fidelity,
        "warm_start": warm,
        "inherited": inherited,
        "device": str(device),
        "versions": _versions(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "history": history[-200:],
    }
    if quality is not None:
        model.provenance["test_metrics"] = quality
    if out is not None:
        report.output = str(model.save(out))
        if state_file is not None and state_file.exists():
            state_file.unlink()
    return model, report


def _render_loss(
    student: RadianceField,
    pool: RayPool,
    n_rays: int,
    generator: torch.Generator,
    reduction: str,
) -> torch.Tensor:
    """Stage 3: squared error of ``n_rays`` pool rays rendered by the student on the teacher's
    samples, against the teacher's colour on the same random background, reduced by
    ``reduction``."""
    samples, x, d, target, background = pool.batch(n_rays, generator)
    if len(samples) == 0:
        return student.aabb.new_zeros(())
    sigma, rgb = student(x, d)
    pred = composite_packed(samples, sigma, rgb, background).rgb
    squared = (pred - target).pow(2)
    return reduce_squared(squared, squared.numel(), reduction)


@torch.no_grad()
def _probe(
    student: RadianceField,
    teacher: RadianceField,
    x: torch.Tensor,
    d: torch.Tensor,
    settings: DistillSettings,
    step_size: float,
) -> float:
    """The stage-2 per-point loss on a fixed probe set (reported before and after)."""
    density, colour = point_loss(student, teacher, x, d, settings, step_size)
    return float(settings.density_weight * density + settings.color_weight * colour)


def _curve_point(
    student: RadianceField,
    teacher: TrainedModel,
    cameras: Cameras,
    teacher_images: list[torch.Tensor],
    data: Dataset | None,
    step: int,
    seconds: float,
    cpu_seconds: float,
) -> dict[str, float]:
    """One point of the fidelity (and, with ``data``, quality) curve at ``seconds`` of wall time
    and ``cpu_seconds`` of this process's CPU time into the run (evaluations excluded from both).
    The student's renders of the held-out cameras are reused for quality when they are the
    dataset's test cameras."""
    student.eval()
    model = TrainedModel(
        student, final_grid(student, teacher.grid), teacher.scene, teacher.render, {}, {}
    )
    renders = model.render_views(cameras)
    point = {
        "step": step,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "fidelity_psnr": score_images(renders, teacher_images).psnr,
    }
    if data is not None and "test" in data.splits:
        split = data.split("test")
        targets = list(split.composited(torch.tensor(data.scene.background)))
        same = len(split.cameras) == len(cameras) and torch.equal(split.cameras.c2w, cameras.c2w)
        images = renders if same else model.render_views(split.cameras)
        point["quality_psnr"] = score_images(images, targets).psnr
    return point
