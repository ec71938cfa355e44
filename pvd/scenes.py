"""Procedural scenes with exact ground truth, usable as datasets and as analytic teacher fields.

pvd cannot download datasets, so it builds its own. Each scene is a small set of *parts*: a shape
(sphere, axis-aligned box or spherical shell) filled with a constant density and a smooth colour
function. The scene is a field (``density(x)``, ``forward(x, d)``, ``sigma_raw(x)``), and its
images are the volume-rendering integral of exactly that field (Max 1995; NeRF eq. 1):
``C = ∫ T(t) σ(t) c(t) dt`` with ``T(t) = exp(-∫_0^t σ)``, computed to ~1e-6 rather than estimated.

How the integral is made exact
    - Densities are piecewise constant: where parts overlap their densities add, and the colour of
      the mixture is the density-weighted mean of the parts' colours (so ``σ c`` adds, as for
      emission-absorption media).
    - Every shape has closed-form ray intersections, so a ray splits into segments of constant
      density, whose transmittance is ``exp(-σ L)`` in closed form.
    - On a segment starting at ``t0`` the substitution ``u = 1 - exp(-σ s)`` turns the colour
      integral into ``T0 ∫_0^{1-exp(-σL)} c(t0 - ln(1-u)/σ) du``: the exponential weight becomes the
      measure ``du`` exactly, and only the colour is left to the quadrature. The integral is
      composite Gauss-Legendre in ``u`` over panels of the segment. The map ``t(u)`` has a log
      singularity at ``u = 1``; a panel of optical depth ``w`` keeps it at a relative distance
      ``2 / (e^w - 1)`` from the nodes, so panels are thin where the weight is (1.5 deep at the
      segment's start) and widen deeper in (by 0.3 of the depth already crossed), and no panel
      spans more than ``_PANEL_PHASE`` radians of its parts' colour variation. With 6 nodes per
      panel, doubling the nodes changed no pixel by more than 2.6e-7 (texture), 6e-8 (glossy)
      and 5e-10 (transparent) on random rays through the parts; ``tests/test_scenes.py`` checks
      < 1e-6, and agreement with a brute-force integral of ``forward``.
    - Cut-offs (each costs at most ~2e-8 of a pixel): a segment is integrated to an optical depth
      of ``_DEPTH_CUTOFF`` (what lies beyond carries weight ``exp(-_DEPTH_CUTOFF)`` of the
      segment), and segments behind a transmittance below ``_T_CUTOFF`` are skipped (their total
      weight is less).
    - Internally coordinates come first (points ``[3, ...]``, rays ``[3, R]``), so every
      elementwise operation runs along long contiguous rows.

Conventions
    - The scene lives in the box ``[-1.5, 1.5]³`` (Blender's convention for NeRF-synthetic data);
      every part stays inside ``[-1.4, 1.4]³`` and within distance 2 of the origin, so cameras at
      radius 4 with near 2 / far 6 never cut a part.
    - ``sigma_raw(x) = log σ(x)``, floored at ``SIGMA_RAW_FLOOR = -20`` where ``σ = 0`` (empty
      space; ``e^-20`` per unit is transparent to 1e-8 across the box). ``density`` returns the
      exact 0.
    - ``forward`` returns colour 0 where ``σ = 0`` (it has no weight in any rendering).
    - ``render_rays`` returns *premultiplied* colour ``C = ∫ T σ c dt`` and ``alpha = 1 - T_final``;
      composite on a background ``b`` with ``C + (1 - alpha) b``.
    - Ground-truth images are antialiased as a Blender render is: each pixel averages ``s × s`` rays
      on a regular sub-pixel grid (a single ray per pixel aliases fine texture, and no model could
      predict that aliasing from other views).

Datasets are written in the Blender / NeRF-synthetic format (``transforms_{train,val,test}.json``,
RGBA PNGs) with cameras from :mod:`pvd.cameras`: training views on the upper hemisphere, test and
validation views on rings that avoid the training positions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
from collections.abc import Iterator
from functools import cache, cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from architectures.base import check_points
from architectures.io import SceneSpec

from .cameras import Cameras, hemisphere_positions, look_at, ring_positions

#: ``sigma_raw`` where the density is exactly zero.
SIGMA_RAW_FLOOR = -20.0
#: Field of view of the NeRF-synthetic Blender scenes (their ``camera_angle_x``).
CAMERA_ANGLE_X = 0.6911112070083618
#: Camera distance from the origin for every split.
CAMERA_RADIUS = 4.0
#: Elevations (degrees) of the test and validation rings.
TEST_ELEVATION = 25.0
VAL_ELEVATION = 45.0

#: The scene box and the margin every part keeps from its faces.
SCENE_AABB = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
MARGIN = 0.1

# Quadrature controls (module docstring): a panel starting at optical depth τ into its segment is
# at most _PANEL_FIRST + _PANEL_GROWTH·τ deep and _PANEL_PHASE radians of colour variation long;
# a segment is integrated to optical depth _DEPTH_CUTOFF and a ray until transmittance _T_CUTOFF.
_PANEL_FIRST = 1.5
_PANEL_GROWTH = 0.3
_PANEL_PHASE = 2.0
_DEPTH_CUTOFF = 18.0
_T_CUTOFF = 1e-9
_DEFAULT_NODES = 6

# Densities (per model unit) of the parts: ``log 400 ≈ 6.0`` stays inside distillation's default
# raw-density clip range [-2, 7], so an analytic teacher's opaque surfaces are exact targets.
_OPAQUE = 400.0

RGB = tuple[float, float, float]


# -- shapes (coordinates first: points [3, ...], rays [3, R]) ----------------------------------
def _col(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a column that broadcasts against ``like`` ``[3, ...]``."""
    return like.new_tensor(values).view(-1, *([1] * (like.ndim - 1)))


def _sphere_chord(
    o: torch.Tensor, d: torch.Tensor, centre: tuple[float, float, float], radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit ``t`` ``[R]`` of unit-direction rays through a sphere; where a ray misses,
    the interval is empty (``t_in = +inf > t_out = -inf``)."""
    oc = o - _col(centre, o)
    b = (oc * d).sum(0)
    disc = b * b - ((oc * oc).sum(0) - radius * radius)
    root = disc.clamp_min(0.0).sqrt()
    hit = disc > 0
    return torch.where(hit, -b - root, math.inf), torch.where(hit, -b + root, -math.inf)


@dataclasses.dataclass(frozen=True)
class Sphere:
    """A solid ball."""

    centre: tuple[float, float, float]
    radius: float

    def intervals(self, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(t_in, t_out)`` ``[k, R]``: the ``k`` intervals of rays ``o + t d`` inside the shape
        (``d`` unit; empty intervals have ``t_in > t_out``)."""
        t_in, t_out = _sphere_chord(o, d, self.centre, self.radius)
        return t_in[None], t_out[None]

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - _col(self.centre, x)) ** 2).sum(0) <= self.radius**2

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """Outward unit normal of the concentric sphere through ``x`` (the radial direction)."""
        r = x - _col(self.centre, x)
        return r * (r * r).sum(0).clamp_min(1e-24).rsqrt()

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c = np.asarray(self.centre)
        return c - self.radius, c + self.radius


@dataclasses.dataclass(frozen=True)
class Box:
    """An axis-aligned solid box ``lo <= x <= hi``."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]

    def intervals(self, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The slab method (Kay & Kajiya 1986); axes a ray runs parallel to are handled exactly."""
        lo, hi = _col(self.lo, o), _col(self.hi, o)
        parallel = d == 0
        safe = torch.where(parallel, 1.0, d)
        t1, t2 = (lo - o) / safe, (hi - o) / safe
        inside = (o >= lo) & (o <= hi)
        # A parallel axis leaves the interval unbounded (origin inside the slab) or empty.
        enter = torch.where(parallel, torch.where(inside, -math.inf, math.inf), t1.minimum(t2))
        leave = torch.where(parallel, torch.where(inside, math.inf, -math.inf), t1.maximum(t2))
        return enter.amax(0)[None], leave.amin(0)[None]

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        return ((x >= _col(self.lo, x)) & (x <= _col(self.hi, x))).all(0)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.lo, dtype=float), np.asarray(self.hi, dtype=float)


@dataclasses.dataclass(frozen=True)
class Shell:
    """A spherical shell ``inner <= |x - centre| <= outer``; a ray meets it in up to 2 intervals."""

    centre: tuple[float, float, float]
    inner: float
    outer: float

    def intervals(self, o: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a_in, a_out = _sphere_chord(o, d, self.centre, self.outer)
        b_in, b_out = _sphere_chord(o, d, self.centre, self.inner)
        through = b_in < b_out  # the ray crosses the hollow: front wall, then back wall
        first_out = torch.where(through, b_in, a_out)
        second_in = torch.where(through, b_out, math.inf)
        second_out = torch.where(through, a_out, -math.inf)
        return torch.stack([a_in, second_in]), torch.stack([first_out, second_out])

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        r2 = ((x - _col(self.centre, x)) ** 2).sum(0)
        return (r2 >= self.inner**2) & (r2 <= self.outer**2)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c = np.asarray(self.centre)
        return c - self.outer, c + self.outer


Shape = Sphere | Box | Shell


# -- materials: rgb(x [3, ...], unit d broadcastable to x, shape) -> colour [3, ...] in [0, 1];
#    rate(shape) -> a bound on how fast the colour turns along a ray, in radians per model unit
#    (the renderer sizes its quadrature panels by it) ---------------------------------------------
@dataclasses.dataclass(frozen=True)
class Wave:
    """One plane wave ``amplitude · sin(frequency · (direction · x) + phase)`` of a texture
    (``direction`` is normalised when used)."""

    frequency: float
    direction: tuple[float, float, float]
    phase: float
    amplitude: RGB


@dataclasses.dataclass(frozen=True)
class Waves:
    """A solid diffuse texture ``base + Σ waves`` (view-independent, smooth in ``x``).

    Several frequencies side by side give detail at several scales. ``base ± Σ|amplitude|`` must
    stay inside [0, 1], so the colour needs no clamp (a clamp's kinks would slow the quadrature).
    """

    base: RGB
    waves: tuple[Wave, ...] = ()

    def __post_init__(self) -> None:
        spread = np.abs(np.array([w.amplitude for w in self.waves]).reshape(-1, 3)).sum(0)
        base = np.asarray(self.base)
        if np.any(base - spread < 0) or np.any(base + spread > 1):
            raise ValueError(f"texture base {self.base} ± wave amplitudes {spread} leaves [0, 1]")

    @cached_property
    def _tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Wave vectors ``[W, 3]`` (unit direction × frequency), phases ``[W, 1]`` and
        amplitudes ``[3, W]``, float64."""
        k = torch.tensor([w.direction for w in self.waves], dtype=torch.float64).reshape(-1, 3)
        freq = torch.tensor([w.frequency for w in self.waves], dtype=torch.float64)
        k = k / k.norm(dim=-1, keepdim=True) * freq[:, None]
        phase = torch.tensor([[w.phase] for w in self.waves], dtype=torch.float64).reshape(-1, 1)
        amp = torch.tensor([w.amplitude for w in self.waves], dtype=torch.float64).reshape(-1, 3)
        return k, phase, amp.T.contiguous()

    def rgb(self, x: torch.Tensor, d: torch.Tensor, shape: Shape) -> torch.Tensor:
        k, phase, amp = (t.to(x.device) for t in self._tables)
        flat = x.reshape(3, -1)
        out = torch.addmm(_col(self.base, flat), amp, torch.sin(k @ flat + phase))
        return out.view(x.shape)

    def rate(self, shape: Shape) -> float:
        return max((w.frequency for w in self.waves), default=0.0)


#: Light directions of the glossy material (towards the lights) and their colours: a key light
#: for the diffuse term and two lights that make highlights.
_KEY_LIGHT = (-0.3, -0.5, 0.8)
_SPECULAR_LIGHTS: tuple[tuple[tuple[float, float, float], RGB], ...] = (
    ((-0.3, -0.5, 0.8), (0.35, 0.35, 0.35)),
    ((0.8, 0.45, 0.3), (0.2, 0.17, 0.12)),
)
#: The specular lights' largest total over a colour channel (the lobes' peak sum).
_SPECULAR_PEAK = max(sum(colour[c] for _, colour in _SPECULAR_LIGHTS) for c in range(3))


@cache
def _light_tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The key light's unit direction ``[1, 3]``, the specular lights' ``[J, 3]`` and their
    colours ``[3, J]`` (float64)."""
    key = torch.tensor([_KEY_LIGHT], dtype=torch.float64)
    spec = torch.tensor([direction for direction, _ in _SPECULAR_LIGHTS], dtype=torch.float64)
    colours = torch.tensor([colour for _, colour in _SPECULAR_LIGHTS], dtype=torch.float64)
    return F.normalize(key, dim=-1), F.normalize(spec, dim=-1), colours.T.contiguous()


@dataclasses.dataclass(frozen=True)
class Glossy:
    """Diffuse plus specular shading of a sphere; the view-dependent material.

    ``rgb = albedo · (0.4 + 0.3 (1 + n·l_key)) + Σ_j s_j · exp(p (r·l_j − 1))`` with ``n`` the
    sphere's radial normal and ``r = d − 2 (d·n) n`` the view ray reflected about it: a
    half-Lambert diffuse term and von Mises-Fisher lobes of sharpness ``p`` (``exponent``) around
    the lights, a smooth stand-in for Phong's ``max(r·l, 0)^p`` (Phong 1975). The lights' colours
    sum to at most 0.55 per channel, so an albedo ≤ 0.45 keeps the colour in [0, 1].
    """

    albedo: RGB
    exponent: float

    def __post_init__(self) -> None:
        limit = 1.0 - _SPECULAR_PEAK
        if max(self.albedo) > limit or min(self.albedo) < 0:
            raise ValueError(f"glossy albedo must lie in [0, {limit:.2f}], got {self.albedo}")

    def rgb(self, x: torch.Tensor, d: torch.Tensor, shape: Sphere) -> torch.Tensor:
        key, spec, colours = (t.to(x.device) for t in _light_tables())
        n = shape.normal(x)
        r = (d - 2.0 * (d * n).sum(0) * n).reshape(3, -1)
        diffuse = 0.4 + 0.3 * (1.0 + key @ n.reshape(3, -1))  # [1, M]
        lobes = torch.exp(self.exponent * (spec @ r - 1.0))  # [J, M]
        out = torch.addmm(_col(self.albedo, r) * diffuse, colours, lobes)
        return out.view(x.shape)

    def rate(self, shape: Sphere) -> float:
        """The reflected direction turns at twice the normal's rate ``1/R`` and the lobe changes
        by up to ``≈ 0.6 √p`` per radian; ``2 (√p + 1) / R`` bounds both terms."""
        return 2.0 * (math.sqrt(self.exponent) + 1.0) / shape.radius


@dataclasses.dataclass(frozen=True)
class Part:
    """A shape filled with constant density ``sigma`` (per model unit) and a material."""

    shape: Shape
    sigma: float
    material: Waves | Glossy

    def __post_init__(self) -> None:
        if isinstance(self.material, Glossy) and not isinstance(self.shape, Sphere):
            raise TypeError(f"the glossy material needs a Sphere, got {type(self.shape).__name__}")
        if not self.sigma > 0:
            raise ValueError(f"part density must be > 0, got {self.sigma}")


# -- the field and its exact renderer ----------------------------------------------------------
@cache
def _gauss_legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights on [-1, 1], float64, as columns ``[n, 1]``."""
    x, w = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy(x)[:, None], torch.from_numpy(w)[:, None]


class ProceduralScene:
    """A procedural scene: an analytic radiance field and its exact volume renderer.

    Use it as a field (``sigma, rgb = scene(x, d)``, ``scene.density(x)``, ``scene.sigma_raw(x)``
    with points ``[N, 3]``; any float dtype in, the same dtype out, computed in float64) and as a
    renderer (:meth:`render_rays`, :meth:`render_image`). The module docstring has the
    conventions.
    """

    def __init__(self, name: str, description: str, parts: tuple[Part, ...]) -> None:
        self.name = name
        self.description = description
        self.parts = parts
        self.aabb: tuple[float, ...] = SCENE_AABB
        self._sigmas = torch.tensor([p.sigma for p in parts], dtype=torch.float64)
        self._rates = torch.tensor([p.material.rate(p.shape) for p in parts], dtype=torch.float64)

    def __repr__(self) -> str:
        return f"ProceduralScene({self.name!r}, parts={len(self.parts)})"

    def scene_spec(self) -> SceneSpec:
        """Box [-1.5, 1.5]³, near 2, far 6, white background (NeRF-synthetic's conventions)."""
        return SceneSpec(aabb=self.aabb, near=2.0, far=6.0, background=(1.0, 1.0, 1.0))

    # -- the field -----------------------------------------------------------------------------
    def _weights(self, x: torch.Tensor) -> torch.Tensor:
        """``[P, N]`` float64: part ``p``'s density where point ``n`` (of ``x`` ``[3, N]``) is
        inside it, else 0."""
        inside = torch.stack([p.shape.contains(x) for p in self.parts])
        return inside.to(torch.float64) * self._sigmas.to(x.device)[:, None]

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """``σ(x)`` ``[N]``: the sum of the densities of the parts containing ``x`` ``[N, 3]``."""
        check_points(x, "x")
        return self._weights(x.to(torch.float64).T).sum(0).to(x.dtype)

    def sigma_raw(self, x: torch.Tensor) -> torch.Tensor:
        """``log σ(x)`` ``[N]``, floored at ``SIGMA_RAW_FLOOR`` (-20) where ``σ = 0``."""
        sigma = self.density(x).to(torch.float64)
        return sigma.log().clamp_min(SIGMA_RAW_FLOOR).to(x.dtype)

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(σ [N], rgb [N, 3])`` at points ``x`` seen along directions ``d`` (normalised here);
        rgb is the density-weighted mean of the overlapping parts' colours, 0 where ``σ = 0``."""
        check_points(x, "x")
        check_points(d, "d")
        if d.shape[0] != x.shape[0]:
            raise ValueError(
                f"x and d must have the same length, got {x.shape[0]} and {d.shape[0]}"
            )
        x64 = x.to(torch.float64).T
        d64 = d.to(torch.float64).T
        d64 = d64 / d64.norm(dim=0)
        weights = self._weights(x64)
        sigma = weights.sum(0)
        rgb = torch.zeros_like(x64)
        for p, part in enumerate(self.parts):
            idx = weights[p].nonzero().squeeze(1)
            if idx.numel():
                colour = part.material.rgb(x64[:, idx], d64[:, idx], part.shape)
                rgb.index_add_(1, idx, weights[p, idx] * colour)
        rgb = rgb / sigma.clamp_min(1e-300)
        return sigma.to(x.dtype), rgb.T.to(x.dtype)

    __call__ = forward

    # -- exact rendering -----------------------------------------------------------------------
    def render_rays(
        self,
        origins: torch.Tensor,
        dirs: torch.Tensor,
        near: float = 0.0,
        far: float | None = None,
        nodes: int = _DEFAULT_NODES,
        chunk: int = 16384,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact volume rendering of rays ``o + t d`` for ``t`` in ``[near, far]``.

        ``origins`` and ``dirs`` are ``[R, 3]``; ``dirs`` are normalised here, so ``t`` is a
        distance. ``nodes`` is the Gauss-Legendre order per panel. Returns premultiplied colour
        ``[R, 3]`` and ``alpha = 1 − T_final`` ``[R]``, float64; composite on a background with
        ``rgb + (1 − alpha) · background``.
        """
        check_points(origins, "origins")
        check_points(dirs, "dirs")
        if origins.shape != dirs.shape:
            raise ValueError(
                f"origins and dirs must have the same shape, got {list(origins.shape)} and "
                f"{list(dirs.shape)}"
            )
        if nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {nodes}")
        o = origins.to(torch.float64).T.contiguous()
        d = dirs.to(torch.float64).T
        d = (d / d.norm(dim=0)).contiguous()
        rgb, alpha = o.new_zeros(3, o.shape[1]), o.new_zeros(o.shape[1])
        for start in range(0, o.shape[1], chunk):
            part = slice(start, start + chunk)
            rgb[:, part], alpha[part] = self._render_chunk(o[:, part], d[:, part], near, far, nodes)
        return rgb.T.contiguous(), alpha

    def _render_chunk(
        self, o: torch.Tensor, d: torch.Tensor, near: float, far: float | None, nodes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, alpha = o.new_zeros(3, o.shape[1]), o.new_zeros(o.shape[1])
        # 1. Intervals [K, R] of every part, clipped to [near, far]; only rays that meet a part
        #    go on, and their empty intervals collapse onto t = near.
        spans = [part.shape.intervals(o, d) for part in self.parts]
        owner = torch.tensor([p for p, (a, _) in enumerate(spans) for _ in range(a.shape[0])])
        t_in = torch.cat([a for a, _ in spans]).clamp_min(near)
        t_out = torch.cat([b for _, b in spans])
        if far is not None:
            t_out = t_out.clamp_max(far)
        valid = t_out > t_in
        hit = valid.any(0).nonzero().squeeze(1)
        if hit.numel() == 0:
            return out, alpha
        valid = valid.index_select(1, hit)
        t_in = torch.where(valid, t_in.index_select(1, hit), near)
        t_out = torch.where(valid, t_out.index_select(1, hit), near)
        sigma_k = self._sigmas[owner].to(o.device)  # [K]

        # 2. Segments [S, H] between consecutive breakpoints; a part covers a segment iff one of
        #    its intervals contains it (compared on the very same numbers, so no tolerance).
        breaks = torch.cat([t_in, t_out]).sort(0).values
        s0, s1 = breaks[:-1], breaks[1:]
        length = s1 - s0
        member = (t_in[None] <= s0[:, None]) & (s1[:, None] <= t_out[None])  # [S, K, H]
        sigma = torch.einsum("skh,k->sh", member.to(torch.float64), sigma_k)
        depth = sigma * length
        t_start = torch.exp(-(depth.cumsum(0) - depth))
        alpha[hit] = -torch.expm1(-depth.sum(0))

        # 3. The segments that carry weight [A], with the mixture weights σ_p / σ [P, A].
        seg, ray = ((sigma > 0) & (length > 0) & (t_start > _T_CUTOFF)).nonzero(as_tuple=True)
        if ray.numel() == 0:
            return out, alpha
        sig, t0, trans = sigma[seg, ray], s0[seg, ray], t_start[seg, ray]
        part_w = o.new_zeros(len(self.parts), ray.numel())
        part_w.index_add_(0, owner.to(o.device), member[seg, :, ray].T * sigma_k[:, None])
        part_w /= sig
        rate = ((part_w > 0) * self._rates.to(o.device)[:, None]).amax(0)

        # 4. Panels, by their edges in optical depth: widths grow with the depth already crossed
        #    and stay below the depth over which the colour turns by _PANEL_PHASE radians.
        depth_end = (sig * length[seg, ray]).clamp_max(_DEPTH_CUTOFF)
        phase_width = _PANEL_PHASE * sig / rate  # inf for colours constant along the ray
        edges = [torch.zeros_like(sig)]
        while bool((edges[-1] < depth_end).any()):
            width = torch.minimum(_PANEL_FIRST + _PANEL_GROWTH * edges[-1], phase_width)
            edges.append(torch.minimum(edges[-1] + width, depth_end))
        edge = torch.stack(edges)
        j, q = (edge[1:] > edge[:-1]).nonzero(as_tuple=True)
        tau_a, tau_b = edge[j, q], edge[j + 1, q]
        sig_q = sig[q]
        u_end = -torch.expm1(tau_a - tau_b)  # 1 − exp(−σ h) for a panel h long

        # 5. Gauss-Legendre in u on every panel [n, Q]: the panel from t_a, behind transmittance
        #    T_a, adds T_a ∫_0^{u_end} c(t_a − ln(1−u)/σ) du; evaluated part by part.
        gx, gw = (g.to(o.device) for g in _gauss_legendre(nodes))
        u = (gx + 1.0) / 2.0 * u_end
        t = (t0[q] + tau_a / sig_q) - torch.log1p(-u) / sig_q
        weight = gw * (trans[q] * torch.exp(-tau_a) * u_end / 2.0)
        ray_q = hit[ray[q]]
        part_q = part_w[:, q]
        for p, part in enumerate(self.parts):
            sel = part_q[p].nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            r = ray_q.index_select(0, sel)
            o_s, d_s = o.index_select(1, r)[:, None], d.index_select(1, r)[:, None]
            points = torch.addcmul(o_s, t.index_select(1, sel), d_s)  # [3, n, q]
            colour = part.material.rgb(points, d_s, part.shape)
            w = weight.index_select(1, sel) * part_q[p, sel]
            out.index_add_(1, r, (colour * w).sum(1))
        return out, alpha

    def render_image(
        self,
        cameras: Cameras,
        index: int,
        supersample: int = 3,
        near: float = 0.0,
        far: float | None = None,
        nodes: int = _DEFAULT_NODES,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Antialiased image of camera ``index``: premultiplied rgb ``[H, W, 3]`` and alpha
        ``[H, W]`` (float64), each pixel the mean of ``supersample²`` rays through the centres of
        a regular ``s × s`` grid of sub-pixels."""
        if supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        w, h = cameras.size(index)
        s = supersample
        sub = (torch.arange(s, dtype=torch.float64) + 0.5) / s
        py, px, sy, sx = torch.meshgrid(
            torch.arange(h, dtype=torch.float64),
            torch.arange(w, dtype=torch.float64),
            sub,
            sub,
            indexing="ij",
        )
        px, py = (px + sx).reshape(-1), (py + sy).reshape(-1)
        camera = torch.full_like(px, index, dtype=torch.int64)
        origins, dirs = cameras.rays_at(camera, px, py, dtype=torch.float64)
        rgb, alpha = self.render_rays(origins, dirs, near=near, far=far, nodes=nodes)
        return rgb.reshape(h, w, s * s, 3).mean(2), alpha.view(h, w, s * s).mean(2)


# -- the scenes --------------------------------------------------------------------------------
def _texture() -> ProceduralScene:
    """Opaque sphere and box with solid textures at frequencies from 3 to 180 rad/unit: a 64-px
    view of the box spans ~0.045 units per pixel (2π/0.045 ≈ 140 rad/unit), so the finest waves
    are sub-pixel at 64 px and resolved only at higher resolutions."""
    sphere = (
        Wave(3.0, (1.0, 0.2, 0.1), 0.3, (0.12, 0.08, 0.02)),
        Wave(10.0, (0.1, 1.0, 0.4), 1.1, (-0.06, 0.1, 0.08)),
        Wave(32.0, (0.3, -0.5, 1.0), 2.0, (0.1, 0.06, -0.08)),
        Wave(100.0, (1.0, 1.0, -0.2), 0.7, (0.08, -0.08, 0.06)),
        Wave(180.0, (-0.4, 1.0, 1.0), 2.6, (0.06, 0.06, 0.06)),
    )
    box = (
        Wave(5.0, (1.0, 0.0, 0.0), 0.0, (0.1, 0.05, -0.05)),
        Wave(24.0, (0.0, 1.0, 0.0), 0.5, (0.1, -0.1, 0.05)),
        Wave(24.0, (0.0, 0.0, 1.0), 1.5, (-0.1, 0.05, 0.1)),
        Wave(70.0, (1.0, 0.0, 1.0), 0.2, (0.06, 0.06, -0.06)),
        Wave(160.0, (1.0, -1.0, 0.0), 1.0, (0.07, -0.07, 0.07)),
    )
    stripes = (Wave(60.0, (0.0, 0.0, 1.0), 0.0, (0.3, 0.3, 0.3)),)
    return ProceduralScene(
        "texture",
        "opaque sphere and box with solid textures from coarse to sub-pixel frequencies "
        "(fine detail, antialiasing)",
        (
            Part(Sphere((-0.45, -0.25, 0.0), 0.55), _OPAQUE, Waves((0.55, 0.45, 0.4), sphere)),
            Part(Box((0.1, -0.2, -0.7), (0.9, 0.6, 0.1)), _OPAQUE, Waves((0.5, 0.5, 0.5), box)),
            Part(Sphere((0.5, 0.2, 0.42), 0.3), _OPAQUE, Waves((0.55, 0.35, 0.6), stripes)),
        ),
    )


def _glossy() -> ProceduralScene:
    """Three opaque glossy spheres, lobe sharpness 40, 15 and 5, above a matte slab."""
    return ProceduralScene(
        "glossy",
        "opaque spheres with sharp to broad specular highlights over diffuse shading, on a "
        "matte slab (view-dependent colour)",
        (
            Part(Sphere((0.0, 0.0, 0.05), 0.6), _OPAQUE, Glossy((0.44, 0.08, 0.05), 40.0)),
            Part(Sphere((0.75, -0.6, -0.35), 0.35), _OPAQUE, Glossy((0.05, 0.15, 0.44), 15.0)),
            Part(Sphere((-0.7, 0.6, -0.4), 0.3), _OPAQUE, Glossy((0.08, 0.35, 0.1), 5.0)),
            Part(
                Box((-0.9, -0.9, -0.9), (0.9, 0.9, -0.75)),
                _OPAQUE,
                Waves((0.6, 0.58, 0.52), (Wave(6.0, (1.0, 1.0, 0.0), 0.0, (0.08, 0.08, 0.08)),)),
            ),
        ),
    )


def _transparent() -> ProceduralScene:
    """Low-density volumes, a thin shell, a thin slab and rods, overlapping in places."""
    fog_waves = (Wave(4.0, (1.0, 0.0, 0.5), 0.0, (0.1, 0.08, 0.05)),)
    return ProceduralScene(
        "transparent",
        "see-through fog and cloud, a thin spherical shell, a glass-like slab and rods thinner "
        "than a pixel (transparency, thin structures)",
        (
            # fog ball (optical depth ≤ 1.8 through its centre) crossed by the x rod
            Part(Sphere((-0.35, 0.25, 0.0), 0.6), 1.5, Waves((0.35, 0.55, 0.85), fog_waves)),
            # cloud box (optical depth ≤ 1.2 across its thinnest side)
            Part(
                Box((0.1, 0.2, -0.85), (0.9, 0.6, -0.45)),
                3.0,
                Waves((0.6, 0.35, 0.7), (Wave(8.0, (0.0, 1.0, 1.0), 0.5, (0.1, 0.1, 0.1)),)),
            ),
            # shell 0.03 thick: optical depth 0.45 per wall at normal incidence
            Part(Shell((0.55, -0.35, 0.2), 0.42, 0.45), 15.0, Waves((0.95, 0.55, 0.15))),
            # slab 0.03 thick: optical depth 0.9 at normal incidence
            Part(Box((-1.0, 0.75, -0.8), (1.0, 0.78, 0.5)), 30.0, Waves((0.3, 0.75, 0.45))),
            # rods 0.03 × 0.03, nearly opaque across (optical depth 4.5)
            Part(Box((-1.05, 0.235, -0.015), (0.95, 0.265, 0.015)), 150.0, Waves((0.6, 0.1, 0.1))),
            Part(Box((0.535, -0.365, -0.9), (0.565, -0.335, 1.0)), 150.0, Waves((0.15, 0.15, 0.2))),
            Part(Box((-0.8, -1.0, -0.75), (-0.77, 0.9, -0.72)), 150.0, Waves((0.2, 0.2, 0.6))),
        ),
    )


_SCENES = {scene.name: scene for scene in (_texture(), _glossy(), _transparent())}


def scene_names() -> list[str]:
    """Names of the procedural scenes, sorted."""
    return sorted(_SCENES)


def get_scene(name: str) -> ProceduralScene:
    """The scene called ``name`` (case-insensitive)."""
    key = name.strip().lower()
    if key not in _SCENES:
        raise ValueError(f"unknown scene '{name}'; choose one of: {', '.join(scene_names())}")
    return _SCENES[key]


def describe(name: str) -> str:
    """One line on what scene ``name`` tests."""
    return get_scene(name).description


# -- datasets ----------------------------------------------------------------------------------
def _ring_avoiding(n: int, elevation: float, avoid: torch.Tensor) -> torch.Tensor:
    """A ring of ``n`` cameras whose azimuth offset (one of 16 steps across the ring's spacing)
    keeps it farthest, in angle, from the cameras ``avoid``."""
    offsets = [(k + 0.5) / 16 * 360.0 / n for k in range(16)]
    rings = [ring_positions(n, CAMERA_RADIUS, elevation, offset) for offset in offsets]
    return min(rings, key=lambda ring: float(_max_cosine(ring, avoid)))


def _max_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Largest cosine of the angle between any position in ``a`` and any in ``b`` (seen from
    the origin): 1 where two cameras coincide."""
    return ((a / a.norm(dim=-1, keepdim=True)) @ (b / b.norm(dim=-1, keepdim=True)).T).max()


def dataset_cameras(
    views: int = 100,
    test_views: int = 20,
    val_views: int = 10,
    size: int = 64,
    height: int | None = None,
    seed: int = 0,
) -> dict[str, Cameras]:
    """Cameras of the three splits, all at radius 4 looking at the origin.

    train: the Fibonacci spiral over the upper hemisphere (:func:`hemisphere_positions`),
    rotated about +z by ``2π · frac(seed · φ)`` (φ the golden ratio; seed 0 is unrotated);
    test / val: rings at 25° / 45° elevation whose azimuth offset keeps them away from the
    training cameras. ``size`` is the width; ``height`` defaults to it (square pixels, fy = fx).
    """
    height = size if height is None else height
    if size < 1 or height < 1:
        raise ValueError(f"image size must be >= 1 pixel, got width {size}, height {height}")
    if views < 1 or test_views < 1 or val_views < 1:
        raise ValueError(
            f"every split needs >= 1 view, got views={views}, test_views={test_views}, "
            f"val_views={val_views}"
        )
    angle = 2.0 * math.pi * ((seed * (math.sqrt(5.0) - 1.0) / 2.0) % 1.0)
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    train = hemisphere_positions(views, CAMERA_RADIUS) @ rotation.T
    test = _ring_avoiding(test_views, TEST_ELEVATION, train)
    val = _ring_avoiding(val_views, VAL_ELEVATION, train)
    return {
        split: Cameras.from_poses(look_at(eye), size, height, CAMERA_ANGLE_X)
        for split, eye in (("train", train), ("val", val), ("test", test))
    }


def _to_rgba8(rgb: torch.Tensor, alpha: torch.Tensor) -> np.ndarray:
    """Premultiplied float colour and alpha → un-premultiplied RGBA uint8 (colour 0 where
    ``alpha = 0``), as Blender writes a transparent-film PNG."""
    colour = torch.where(alpha[..., None] > 0, rgb / alpha.clamp_min(1e-300)[..., None], 0.0)
    rgba = torch.cat([colour, alpha[..., None]], -1).clamp(0.0, 1.0)
    return (rgba * 255.0).round().to(torch.uint8).numpy()


@contextlib.contextmanager
def _intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (None: leave the setting alone)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_dataset(
    name: str,
    out_dir: str | os.PathLike[str],
    size: int = 64,
    views: int = 100,
    test_views: int = 20,
    val_views: int = 10,
    seed: int = 0,
    supersample: int = 3,
    height: int | None = None,
    overwrite: bool = False,
    threads: int | None = 1,
) -> Path:
    """Render scene ``name`` into a Blender / NeRF-synthetic folder and return its path.

    Writes ``transforms_{train,val,test}.json`` (``camera_angle_x``; ``frames`` with
    ``file_path`` ``./<split>/r_<i>`` and the 4×4 camera-to-world ``transform_matrix``; and the
    extra keys ``pvd_scene``, ``aabb``, ``near``, ``far``, ``background``) and RGBA 8-bit PNGs
    ``<split>/r_<i>.png`` (un-premultiplied colour, ``alpha = 1 − T``). ``size`` is the width;
    ``height`` defaults to it. Identical arguments give byte-identical files. The folder is built
    beside ``out_dir`` and renamed into place at the end; an existing non-empty ``out_dir`` is
    refused unless ``overwrite``.

    ``threads``: torch intra-op threads while rendering, restored afterwards (None leaves torch's
    setting). The renderer's operations are small, and on a shared 2-core machine two threads
    that wait for each other ran 7-10× slower than one; hence the default 1.
    """
    from PIL import Image

    scene = get_scene(name)
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"out_dir '{out}' is not empty; pass overwrite=True to replace it")
    cameras = dataset_cameras(views, test_views, val_views, size, height, seed)
    spec = scene.scene_spec()
    meta = {
        "camera_angle_x": CAMERA_ANGLE_X,
        "pvd_scene": scene.name,
        "aabb": list(spec.aabb),
        "near": spec.near,
        "far": spec.far,
        "background": list(spec.background),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with _intra_op_threads(threads):
            for split, cams in cameras.items():
                (tmp / split).mkdir(parents=True)
                frames = []
                for i in range(len(cams)):
                    rgb, alpha = scene.render_image(cams, i, supersample, spec.near, spec.far)
                    image = Image.fromarray(_to_rgba8(rgb, alpha), "RGBA")
                    image.save(tmp / split / f"r_{i}.png")
                    # The poses as stored (float32), so readers get exactly the rendered cameras.
                    pose = cams.c2w[i].double().tolist()
                    frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": pose})
                text = json.dumps({**meta, "frames": frames}, indent=2) + "\n"
                (tmp / f"transforms_{split}.json").write_text(text)
        if out.exists():  # an empty folder, or overwrite: swap, then delete the old one
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
