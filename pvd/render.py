"""Volume rendering with packed samples and an occupancy grid, on CPU and CUDA.

Samples are *packed*: ``ray_indices``, ``t_starts``, ``t_ends`` ``[S]``, sorted by ray and then by
``t`` (nerfacc's layout). Two paths produce and render them:

- **CUDA** (tensors on a CUDA device and nerfacc's CUDA extension loads): nerfacc's
  ``OccGridEstimator.sampling`` and packed ``nerfacc.rendering``.
- **CPU / pure torch** (nerfacc's packed scans need CUDA): uniform steps of ``step_size`` between
  each ray's AABB entry and exit (stratified by a random per-ray offset in training), samples whose
  midpoint lies in an empty occupancy cell dropped, then — as nerfacc does when given ``sigma_fn`` —
  a no-grad density pass drops samples behind an opaque surface (transmittance below
  ``early_stop_eps``) or below ``alpha_threshold``. Rendering pads the packed samples to
  ``[rays, max_samples]`` and calls nerfacc's *batched* ``render_weight_from_density`` (pure torch).

Both paths implement the same quadrature (NeRF eq. 3 as in nerfacc): ``α_i = 1 − exp(−σ_i δ_i)``,
``T_i = exp(−Σ_{j<i} σ_j δ_j)``, ``w_i = T_i α_i``, ``C = Σ w_i c_i + (1 − Σ w_i)·background``.

Trap (DESIGN.md): these machines have ``nvcc`` but a CPU torch, and the first call of a CUDA-only
nerfacc function starts a JIT build that takes minutes and fails. They are only called when the
tensors are on CUDA (``_use_nerfacc_cuda``); a test asserts a CPU run never imports
``nerfacc.cuda._backend``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from .errors import UserError

DensityFn = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class RenderSettings:
    """How a field is rendered; stored in every checkpoint as ``pvd.render``.

    ``occupancy_threshold`` is a density in σ units (per model unit): a cell is occupied when
    its density exceeds it (or the grid's mean density, whichever is lower, as nerfacc does).
    """

    step_size: float = 0.02
    occupancy_resolution: int = 64
    occupancy_threshold: float = 0.5
    early_stop_eps: float = 1e-4
    alpha_threshold: float = 0.0
    chunk_rays: int = 4096

    def validate(self) -> None:
        checks = {
            "step_size": self.step_size > 0,
            "occupancy_resolution": 1 <= self.occupancy_resolution <= 1024,
            "occupancy_threshold": self.occupancy_threshold >= 0,
            "early_stop_eps": 0 <= self.early_stop_eps < 1,
            "alpha_threshold": 0 <= self.alpha_threshold < 1,
            "chunk_rays": self.chunk_rays >= 1,
        }
        for key, ok in checks.items():
            if not ok:
                raise UserError(f"render.{key} = {getattr(self, key)!r} is out of range")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RenderSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        settings = cls(**{k: v for k, v in data.items() if k in known})
        settings.validate()
        return settings


@functools.cache
def nerfacc_cuda_available() -> bool:
    """True when CUDA is present and nerfacc's CUDA extension loads (may build it once)."""
    if not torch.cuda.is_available():
        return False
    try:
        from nerfacc.cuda import _backend  # noqa: F401
    except Exception:  # any build/import failure means: use the pure-torch path
        return False
    return True


def _use_nerfacc_cuda(t: torch.Tensor) -> bool:
    return t.is_cuda and nerfacc_cuda_available()


class OccupancyGrid:
    """A binary occupancy grid over the scene's AABB, built from a field's density.

    ``binary`` is a bool tensor ``[R, R, R]`` indexed ``[x, y, z]`` (nerfacc's layout, so it copies
    into ``OccGridEstimator.binaries`` directly). ``density`` keeps nerfacc's running maximum with
    decay during training; it is training state and is not stored in checkpoints.
    """

    def __init__(self, aabb: torch.Tensor | tuple[float, ...], resolution: int, threshold: float):
        self.aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(6)
        self.resolution = int(resolution)
        self.threshold = float(threshold)
        cells = (self.resolution,) * 3
        self.density = torch.zeros(cells, device=self.aabb.device)
        self.binary = torch.ones(cells, dtype=torch.bool, device=self.aabb.device)
        self._estimator = None  # nerfacc's estimator, built once on first CUDA use

    @property
    def device(self) -> torch.device:
        return self.aabb.device

    def to(self, device: torch.device | str) -> OccupancyGrid:
        self.aabb = self.aabb.to(device)
        self.density = self.density.to(device)
        self.binary = self.binary.to(device)
        return self

    @property
    def occupied_fraction(self) -> float:
        return float(self.binary.float().mean())

    def cell_points(self, jitter: bool) -> torch.Tensor:
        """One point per cell ``[R³, 3]`` (centres, or uniformly jittered inside each cell)."""
        r = self.resolution
        idx = torch.arange(r, device=self.device, dtype=torch.float32)
        grid = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), dim=-1).reshape(-1, 3)
        offset = torch.rand_like(grid) if jitter else torch.full_like(grid, 0.5)
        lo, hi = self.aabb[:3], self.aabb[3:]
        return lo + (grid + offset) / r * (hi - lo)

    @torch.no_grad()
    def update(self, density_fn: DensityFn, decay: float = 0.95, chunk: int = 65536) -> None:
        """One nerfacc-style update: ``density = max(decay·density, σ(jittered cell point))``,
        then ``binary = density > min(threshold, mean(density))``."""
        points = self.cell_points(jitter=True)
        sigma = torch.cat([density_fn(p).float() for p in points.split(chunk)])
        self.density = torch.maximum(self.density * decay, sigma.view(self.density.shape))
        threshold = min(self.threshold, float(self.density.mean()))
        self.binary = self.density > threshold

    @classmethod
    @torch.no_grad()
    def from_field(
        cls,
        density_fn: DensityFn,
        aabb: torch.Tensor | tuple[float, ...],
        resolution: int,
        threshold: float,
        samples_per_cell: int = 4,
    ) -> OccupancyGrid:
        """The grid of a trained field: max density over several jittered points per cell,
        compared with ``threshold`` alone (no mean rule: the field is final)."""
        grid = cls(aabb, resolution, threshold)
        for _ in range(samples_per_cell):
            points = grid.cell_points(jitter=True)
            sigma = torch.cat([density_fn(p).float() for p in points.split(65536)])
            grid.density = torch.maximum(grid.density, sigma.view(grid.density.shape))
        grid.binary = grid.density > threshold
        return grid

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Occupancy of points ``x`` ``[N, 3]`` (False outside the AABB)."""
        lo, hi = self.aabb[:3], self.aabb[3:]
        u = (x - lo) / (hi - lo)
        inside = ((u >= 0) & (u < 1)).all(-1)
        idx = (u.clamp(0, 1 - 1e-7) * self.resolution).long()
        r = self.resolution
        flat = (idx[:, 0] * r + idx[:, 1]) * r + idx[:, 2]
        return self.binary.reshape(-1)[flat] & inside

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"occupancy.binary": self.binary.cpu()}

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, torch.Tensor], aabb: tuple[float, ...], threshold: float
    ) -> OccupancyGrid:
        """Rebuild from a checkpoint's ``occupancy.*`` group (keys without the prefix)."""
        binary = tensors["binary"].bool()
        if binary.ndim != 3 or len(set(binary.shape)) != 1:
            raise UserError(f"occupancy.binary must be a cube [R, R, R], got {list(binary.shape)}")
        grid = cls(aabb, binary.shape[0], threshold)
        grid.binary = binary.clone()
        grid.density = binary.float() * max(threshold, 1.0)
        return grid

    def to_nerfacc(self):  # -> nerfacc.OccGridEstimator; CUDA path only
        """A nerfacc ``OccGridEstimator`` (one level) holding this grid's current cells. Built
        once (its construction allocates per-cell coordinates) and refreshed by a copy."""
        from nerfacc import OccGridEstimator

        if self._estimator is None or self._estimator.binaries.device != self.device:
            estimator = OccGridEstimator(roi_aabb=self.aabb, resolution=self.resolution, levels=1)
            self._estimator = estimator.to(self.device)
        self._estimator.binaries.copy_(self.binary[None])
        self._estimator.occs.copy_(self.density.reshape(-1))
        return self._estimator


@dataclasses.dataclass
class PackedSamples:
    """Samples along rays, packed and sorted by ray then ``t`` (nerfacc's layout)."""

    ray_indices: torch.Tensor
    t_starts: torch.Tensor
    t_ends: torch.Tensor
    n_rays: int

    def __len__(self) -> int:
        return self.ray_indices.shape[0]

    def points(
        self, origins: torch.Tensor, dirs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Midpoints ``[S, 3]`` and their ray directions ``[S, 3]``."""
        d = dirs[self.ray_indices]
        mid = (self.t_starts + self.t_ends)[:, None] * 0.5
        return origins[self.ray_indices] + d * mid, d


def ray_aabb(
    origins: torch.Tensor, dirs: torch.Tensor, aabb: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances of rays through the box (slab method; exit < entry = miss)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (aabb[:3] - origins) * inv
    t1 = (aabb[3:] - origins) * inv
    return torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)


def _position_in_ray(ray_indices: torch.Tensor, n_rays: int) -> tuple[torch.Tensor, int]:
    """Index of each packed sample within its ray, and the largest per-ray count."""
    counts = torch.bincount(ray_indices, minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(ray_indices.shape[0], device=ray_indices.device) - starts[ray_indices]
    return position, int(counts.max()) if counts.numel() else 0


def _sample_torch(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    grid: OccupancyGrid,
    settings: RenderSettings,
    near: float,
    far: float,
    stratified: bool,
    density_fn: DensityFn | None,
) -> PackedSamples:
    n_rays = origins.shape[0]
    t_min, t_max = ray_aabb(origins, dirs, grid.aabb)
    t_min, t_max = t_min.clamp(min=near), t_max.clamp(max=far)
    hit = t_max > t_min
    span = float((t_max - t_min)[hit].max()) if bool(hit.any()) else 0.0
    n_steps = max(1, math.ceil(span / settings.step_size))
    offset = torch.rand(n_rays, 1, device=origins.device) if stratified else 0.5
    starts = (
        t_min[:, None]
        + (torch.arange(n_steps, device=origins.device) + offset - 0.5) * settings.step_size
    )
    starts = torch.maximum(starts, t_min[:, None])
    ends = torch.minimum(starts + settings.step_size, t_max[:, None])
    keep = (ends > starts) & hit[:, None]
    mid = (starts + ends) * 0.5
    pts = origins[:, None, :] + dirs[:, None, :] * mid[..., None]
    keep[keep.clone()] = grid.query(pts[keep])
    if density_fn is not None and bool(keep.any()):
        with torch.no_grad():
            sigma = torch.zeros_like(starts)
            sigma[keep] = density_fn(pts[keep]).to(sigma.dtype)
            sigma_dt = sigma * (ends - starts).clamp(min=0)
            alpha = 1.0 - torch.exp(-sigma_dt)
            transmittance = torch.exp(-(torch.cumsum(sigma_dt, dim=1) - sigma_dt))
            keep &= transmittance >= settings.early_stop_eps
            if settings.alpha_threshold > 0:
                keep &= alpha >= settings.alpha_threshold
    rays, steps = keep.nonzero(as_tuple=True)
    return PackedSamples(rays, starts[rays, steps], ends[rays, steps], n_rays)


def sample_rays(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    grid: OccupancyGrid,
    settings: RenderSettings,
    near: float,
    far: float,
    stratified: bool = False,
    density_fn: DensityFn | None = None,
) -> PackedSamples:
    """Packed samples along rays, skipping empty cells (and, with ``density_fn``, samples behind
    opaque surfaces). CUDA → nerfacc's ``OccGridEstimator.sampling``; otherwise pure torch."""
    if _use_nerfacc_cuda(origins):
        estimator = grid.to_nerfacc()
        sigma_fn = None
        if density_fn is not None:

            def sigma_fn(t_starts, t_ends, ray_indices):
                mid = (t_starts + t_ends)[:, None] * 0.5
                return density_fn(origins[ray_indices] + dirs[ray_indices] * mid)

        ray_indices, t_starts, t_ends = estimator.sampling(
            origins,
            dirs,
            sigma_fn=sigma_fn,
            near_plane=near,
            far_plane=far,
            render_step_size=settings.step_size,
            stratified=stratified,
            early_stop_eps=settings.early_stop_eps,
            alpha_thre=settings.alpha_threshold,
        )
        return PackedSamples(ray_indices.long(), t_starts, t_ends, origins.shape[0])
    return _sample_torch(origins, dirs, grid, settings, near, far, stratified, density_fn)


@dataclasses.dataclass
class RenderOutput:
    """Per-ray results: ``rgb`` ``[R, 3]`` (composited on the background), ``opacity`` ``[R]``,
    ``depth`` ``[R]`` (expected distance, un-normalised) and the number of samples used."""

    rgb: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    n_samples: int


def composite_packed(
    samples: PackedSamples,
    sigmas: torch.Tensor,
    rgbs: torch.Tensor,
    background: torch.Tensor,
) -> RenderOutput:
    """Volume-render packed samples (see module docstring for the formula)."""
    n = samples.n_rays
    if _use_nerfacc_cuda(sigmas):
        import nerfacc

        weights, _, _ = nerfacc.render_weight_from_density(
            samples.t_starts, samples.t_ends, sigmas, ray_indices=samples.ray_indices, n_rays=n
        )
        rgb = nerfacc.accumulate_along_rays(weights, rgbs, samples.ray_indices, n)
        opacity = nerfacc.accumulate_along_rays(weights, None, samples.ray_indices, n)[:, 0]
        mid = (samples.t_starts + samples.t_ends)[:, None] * 0.5
        depth = nerfacc.accumulate_along_rays(weights, mid, samples.ray_indices, n)[:, 0]
    else:
        rgb, opacity, depth = _composite_padded(samples, sigmas, rgbs)
    rgb = rgb + (1.0 - opacity[:, None]) * background
    return RenderOutput(rgb, opacity, depth, len(samples))


def _composite_padded(
    samples: PackedSamples, sigmas: torch.Tensor, rgbs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CPU path: pad to ``[rays, max_samples]`` and use nerfacc's batched (pure torch) weights."""
    import nerfacc

    n = samples.n_rays
    position, width = _position_in_ray(samples.ray_indices, n)
    width = max(width, 1)
    where = (samples.ray_indices, position)
    zeros = sigmas.new_zeros(n, width)
    t_starts = zeros.index_put(where, samples.t_starts)
    t_ends = zeros.index_put(where, samples.t_ends)
    sigma_pad = zeros.index_put(where, sigmas)
    weights, _, _ = nerfacc.render_weight_from_density(t_starts, t_ends, sigma_pad)
    w = weights[where]
    rgb = rgbs.new_zeros(n, 3).index_add(0, samples.ray_indices, w[:, None] * rgbs)
    opacity = weights.sum(-1)
    depth = (weights * (t_starts + t_ends) * 0.5).sum(-1)
    return rgb, opacity, depth


def render_rays(
    field: Any,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    grid: OccupancyGrid,
    settings: RenderSettings,
    near: float,
    far: float,
    background: torch.Tensor,
    stratified: bool = False,
) -> RenderOutput:
    """Sample and render a batch of rays through ``field`` (anything with ``density(x)`` and
    ``forward(x, d) -> (sigma, rgb)``). Differentiable w.r.t. the field's parameters."""
    samples = sample_rays(
        origins, dirs, grid, settings, near, far, stratified, density_fn=field.density
    )
    if len(samples) == 0:
        n = origins.shape[0]
        zeros = origins.new_zeros(n)
        return RenderOutput(background.expand(n, 3).clone(), zeros, zeros, 0)
    x, d = samples.points(origins, dirs)
    sigmas, rgbs = field(x, d)
    return composite_packed(samples, sigmas, rgbs, background)


@torch.no_grad()
def render_image(
    field: Any,
    cameras: Any,
    index: int,
    grid: OccupancyGrid,
    settings: RenderSettings,
    near: float,
    far: float,
    background: torch.Tensor,
) -> RenderOutput:
    """Render camera ``index`` of ``cameras`` (``pvd.cameras.Cameras``) in chunks of rays.
    Outputs are flattened row-major ``[H·W, …]``."""
    device = grid.device
    origins, dirs = cameras.image_rays(index)
    outputs = [
        render_rays(field, o.to(device), d.to(device), grid, settings, near, far, background)
        for o, d in zip(
            origins.split(settings.chunk_rays), dirs.split(settings.chunk_rays), strict=True
        )
    ]
    return RenderOutput(
        torch.cat([o.rgb for o in outputs]),
        torch.cat([o.opacity for o in outputs]),
        torch.cat([o.depth for o in outputs]),
        sum(o.n_samples for o in outputs),
    )
