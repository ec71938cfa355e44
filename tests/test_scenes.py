"""Procedural scenes (pvd/scenes.py): exact rendering, the field, cameras and the dataset writer.

The exact renderer is checked against a brute-force volume-rendering integral written here: the
midpoint rule with alpha compositing on a uniform grid of 2^18 samples per ray, using only the
scene's ``density`` and ``forward`` (no intersections, segments or quadrature of the renderer).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pvd import scenes
from pvd.cameras import Cameras

NAMES = scenes.scene_names()
SMALL = {"size": 8, "views": 3, "test_views": 2, "val_views": 2, "supersample": 2}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The renderer's operations are small; on a shared 2-core machine two intra-op threads
    waiting for each other are many times slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _rays_through_parts(scene: scenes.ProceduralScene, per_part: int, seed: int):
    """Rays from random points at radius 4 through random points of each part's bounding box."""
    g = torch.Generator().manual_seed(seed)
    targets = []
    for part in scene.parts:
        lo, hi = (torch.from_numpy(b) for b in part.shape.bounds())
        targets.append(lo + (hi - lo) * torch.rand(per_part, 3, generator=g, dtype=torch.float64))
    target = torch.cat(targets)
    eye = torch.randn(target.shape[0], 3, generator=g, dtype=torch.float64)
    eye = 4.0 * eye / eye.norm(dim=-1, keepdim=True)
    dirs = target - eye
    return eye, dirs / dirs.norm(dim=-1, keepdim=True)


def _brute_force(scene, origin, direction, near=2.0, far=6.0, samples=2**18):
    """Midpoint-rule volume rendering of one ray: C = Σ T_i (1 − e^{−σ_i δ}) c_i."""
    delta = (far - near) / samples
    t = near + (torch.arange(samples, dtype=torch.float64) + 0.5) * delta
    x = origin + t[:, None] * direction
    tau = scene.density(x) * delta
    weight = torch.exp(-(tau.cumsum(0) - tau)) * -torch.expm1(-tau)
    keep = weight > 1e-14
    _, rgb = scene(x[keep], direction.expand(int(keep.sum()), 3))
    return (weight[keep, None] * rgb).sum(0), -torch.expm1(-tau.sum())


# -- (1) the exact renderer against a brute-force integral -----------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_exact_rendering_matches_brute_force(name: str) -> None:
    scene = scenes.get_scene(name)
    origins, dirs = _rays_through_parts(scene, per_part=2, seed=1)
    rgb, alpha = scene.render_rays(origins, dirs, near=2.0, far=6.0)
    assert (alpha > 0.05).sum() >= len(scene.parts)  # the rays do cross the parts
    for i in range(origins.shape[0]):
        ref_rgb, ref_alpha = _brute_force(scene, origins[i], dirs[i])
        # The brute force's own error: a boundary falls anywhere inside its sample cell (δ =
        # 1.5e-5), and the colour is taken at the cell's midpoint. Measured differences on these
        # rays: ≤ 3.3e-5 (texture), 5.3e-7 (glossy), 6.6e-5 (transparent); 1e-5 to 2e-5 with 2^19
        # samples, 1.3e-4 with 2^17 (so they are the brute force's error, not the renderer's).
        assert float((rgb[i] - ref_rgb).abs().max()) < 2e-4
        assert abs(float(alpha[i] - ref_alpha)) < 2e-4


def test_closed_form_ray_through_the_shell() -> None:
    """A ray along +z (parallel to two box axes) through the shell of constant colour and
    nothing else: alpha = 1 − exp(−σ · (outer chord − inner chord)), rgb = alpha · colour."""
    scene = scenes.get_scene("transparent")
    shell = next(p for p in scene.parts if isinstance(p.shape, scenes.Shell))
    cx, cy, _ = shell.shape.centre
    offset = 0.2
    origin = torch.tensor([[cx + offset, cy, -4.0]], dtype=torch.float64)
    rgb, alpha = scene.render_rays(origin, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))
    outer, inner = shell.shape.outer, shell.shape.inner
    path = 2 * (math.sqrt(outer**2 - offset**2) - math.sqrt(inner**2 - offset**2))
    expected = -math.expm1(-shell.sigma * path)
    assert float(alpha[0]) == pytest.approx(expected, abs=1e-12)
    colour = torch.tensor(shell.material.base, dtype=torch.float64)
    torch.testing.assert_close(rgb[0], expected * colour, atol=1e-8, rtol=0)


def test_closed_form_ray_across_a_rod() -> None:
    """A ray along +x inside the y and z slabs of the rod that runs along y, and through nothing
    else: it crosses the rod's 0.03 width, so alpha = 1 − exp(−σ · 0.03)."""
    scene = scenes.get_scene("transparent")
    rod = scene.parts[6]
    (x0, _, z0), (x1, _, z1) = rod.shape.lo, rod.shape.hi
    origin = torch.tensor([[-4.0, 0.0, (z0 + z1) / 2]], dtype=torch.float64)
    rgb, alpha = scene.render_rays(origin, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
    expected = -math.expm1(-rod.sigma * (x1 - x0))
    assert float(alpha[0]) == pytest.approx(expected, abs=1e-12)
    colour = torch.tensor(rod.material.base, dtype=torch.float64)
    torch.testing.assert_close(rgb[0], expected * colour, atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_intersections_agree_with_containment(name: str) -> None:
    """Every part's closed-form intervals hold exactly the ray points its ``contains`` accepts
    (checked on a fine grid of t, away from the endpoints), for rays through points near its
    surface, so that many rays graze it and some miss."""
    g = torch.Generator().manual_seed(7)
    t = torch.linspace(0.0, 8.0, 4001, dtype=torch.float64)
    for part in scenes.get_scene(name).parts:
        lo, hi = (torch.from_numpy(b) for b in part.shape.bounds())
        u = torch.rand(500, 3, generator=g, dtype=torch.float64)
        target = lo + (hi - lo) * (1.1 * u - 0.05)  # the bounding box grown by 10%
        if not isinstance(part.shape, scenes.Box):  # round shapes: within 2% of the surface
            centre = torch.tensor(part.shape.centre, dtype=torch.float64)
            radial = target - centre
            scale = (1.0 + 0.04 * (u[:, :1] - 0.5)) * float(hi[0] - lo[0]) / 2
            target = centre + radial / radial.norm(dim=-1, keepdim=True) * scale
        eye = torch.randn(500, 3, generator=g, dtype=torch.float64)
        eye = 4.0 * eye / eye.norm(dim=-1, keepdim=True)
        d = (target - eye) / (target - eye).norm(dim=-1, keepdim=True)
        t_in, t_out = part.shape.intervals(eye.T.contiguous(), d.T.contiguous())  # [k, R]
        by_interval = ((t_in[..., None] <= t) & (t <= t_out[..., None])).any(0)  # [R, T]
        points = eye.T[:, :, None] + d.T[:, :, None] * t  # [3, R, T]
        by_contains = part.shape.contains(points)
        gap = torch.cat([(t - t_in[..., None]).abs(), (t - t_out[..., None]).abs()]).amin(0)
        clear = gap > 1e-9
        assert torch.equal(by_interval[clear], by_contains[clear])
        assert 0.1 < float(by_interval.any(1).double().mean()) < 1.0  # hits and misses


def test_rays_that_miss_are_empty() -> None:
    scene = scenes.get_scene("texture")
    origins = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]], dtype=torch.float64)
    dirs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)  # away from it
    rgb, alpha = scene.render_rays(origins, dirs)
    assert torch.equal(rgb, torch.zeros(2, 3, dtype=torch.float64))
    assert torch.equal(alpha, torch.zeros(2, dtype=torch.float64))


# -- (2) quadrature convergence ------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_quadrature_is_converged(name: str) -> None:
    scene = scenes.get_scene(name)
    origins, dirs = _rays_through_parts(scene, per_part=300, seed=2)
    rgb, alpha = scene.render_rays(origins, dirs)
    rgb_2n, alpha_2n = scene.render_rays(origins, dirs, nodes=12)
    assert float((rgb - rgb_2n).abs().max()) < 1e-6
    assert torch.equal(alpha, alpha_2n)  # transmittance is closed-form, independent of nodes
    # A deliberately coarse rule is visibly off, so the comparison above can fail.
    rgb_coarse, _ = scene.render_rays(origins, dirs, nodes=1)
    assert float((rgb - rgb_coarse).abs().max()) > 1e-4


def test_antialiasing_averages_a_regular_subpixel_grid() -> None:
    scene = scenes.get_scene("texture")
    cameras = scenes.dataset_cameras(views=2, test_views=1, val_views=1, size=4)["train"]
    rgb, alpha = scene.render_image(cameras, 1, supersample=2)
    sum_rgb = torch.zeros(4, 4, 3, dtype=torch.float64)
    sum_alpha = torch.zeros(4, 4, dtype=torch.float64)
    py, px = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    for oy in (0.25, 0.75):
        for ox in (0.25, 0.75):
            camera = torch.ones(16, dtype=torch.int64)
            o, d = cameras.rays_at(camera, (px + ox).flatten(), (py + oy).flatten(), torch.float64)
            c, a = scene.render_rays(o, d)
            sum_rgb += c.view(4, 4, 3)
            sum_alpha += a.view(4, 4)
    torch.testing.assert_close(rgb, sum_rgb / 4, atol=1e-12, rtol=0)
    torch.testing.assert_close(alpha, sum_alpha / 4, atol=1e-12, rtol=0)
    assert float(alpha.max()) > 0.5  # the view does see the scene


# -- (3) determinism -----------------------------------------------------------------------------
def _files(root: Path) -> dict[str, bytes]:
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = _files(scenes.make_dataset("glossy", tmp_path / "a", seed=3, **SMALL))
    b = _files(scenes.make_dataset("glossy", tmp_path / "b", seed=3, **SMALL))
    assert len(a) == 3 + 3 + 2 + 2  # three JSON files and one PNG per view
    assert a == b
    c = _files(scenes.make_dataset("glossy", tmp_path / "c", seed=4, **SMALL))
    assert c["transforms_train.json"] != a["transforms_train.json"]


def test_seed_rotates_the_training_spiral_about_z() -> None:
    p0 = scenes.dataset_cameras(seed=0)["train"].centers.double()
    p1 = scenes.dataset_cameras(seed=1)["train"].centers.double()
    torch.testing.assert_close(p1[:, 2], p0[:, 2], atol=1e-5, rtol=0)
    torch.testing.assert_close(p1[:, :2].norm(dim=-1), p0[:, :2].norm(dim=-1), atol=1e-5, rtol=0)
    assert float((p1[:, :2] - p0[:, :2]).abs().max()) > 0.5


# -- (4) the dataset's structure ---------------------------------------------------------------
def test_dataset_structure_and_pixels(tmp_path: Path) -> None:
    out = scenes.make_dataset("transparent", tmp_path / "data", height=6, **SMALL)
    assert out == tmp_path / "data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary folders left
    counts = {"train": 3, "val": 2, "test": 2}
    for split, count in counts.items():
        meta = json.loads((out / f"transforms_{split}.json").read_text())
        assert meta["camera_angle_x"] == scenes.CAMERA_ANGLE_X
        assert meta["pvd_scene"] == "transparent"
        assert meta["aabb"] == [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5]
        assert (meta["near"], meta["far"], meta["background"]) == (2.0, 6.0, [1.0, 1.0, 1.0])
        paths = [f["file_path"] for f in meta["frames"]]
        assert paths == [f"./{split}/r_{i}" for i in range(count)]
        for frame in meta["frames"]:
            pose = np.array(frame["transform_matrix"])
            assert pose.shape == (4, 4)
            np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
            assert np.linalg.norm(pose[:3, 3]) == pytest.approx(scenes.CAMERA_RADIUS, rel=1e-6)
            # The camera looks along its −z axis, at the origin.
            np.testing.assert_allclose(-pose[:3, 2], -pose[:3, 3] / 4.0, atol=1e-6)
            with Image.open(out / (frame["file_path"] + ".png")) as image:
                assert image.mode == "RGBA"
                assert image.size == (8, 6)  # (width, height)

    # Compositing the PNG on the background gives the rendered pixel (up to 8-bit rounding).
    meta = json.loads((out / "transforms_test.json").read_text())
    pose = torch.tensor([meta["frames"][0]["transform_matrix"]])
    cameras = Cameras.from_poses(pose, 8, 6, meta["camera_angle_x"])
    fx, fy, cx, cy = cameras.intrinsics[0].tolist()  # square pixels, centred principal point
    assert (fy, cx, cy) == (fx, 4.0, 3.0)
    rgb, alpha = scenes.get_scene("transparent").render_image(cameras, 0, 2, near=2.0, far=6.0)
    expected = rgb + (1.0 - alpha[..., None])
    with Image.open(out / "test" / "r_0.png") as image:
        rgba = torch.from_numpy(np.asarray(image, dtype=np.float64) / 255.0)
    stored = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
    assert float(alpha.max()) > 0.3 and float(alpha.min()) < 0.01  # object and background
    assert float((stored - expected).abs().max()) <= 1.01 / 255


def test_dataset_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"^out_dir '.*data' is not empty; pass overwrite=True"):
        scenes.make_dataset("texture", target, **SMALL)
    assert (target / "keep.txt").read_text() == "mine"
    scenes.make_dataset("texture", target, overwrite=True, **SMALL)
    assert not (target / "keep.txt").exists()
    assert (target / "transforms_val.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_test_and_val_cameras_avoid_the_training_cameras() -> None:
    cameras = scenes.dataset_cameras()
    train = cameras["train"].centers.double()
    assert len(train) == 100 and len(cameras["test"]) == 20 and len(cameras["val"]) == 10
    assert bool((train[:, 2] > 0).all())  # the upper hemisphere
    for split in ("test", "val"):
        centres = cameras[split].centers.double()
        radius = centres.norm(dim=-1)
        torch.testing.assert_close(radius, torch.full_like(radius, 4.0))
        cos = (centres / 4.0) @ (train / 4.0).T
        assert math.degrees(math.acos(float(cos.max()))) > 2.0


# -- (5) the field -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_parts_stay_inside_the_margin(name: str) -> None:
    for part in scenes.get_scene(name).parts:
        lo, hi = part.shape.bounds()
        assert lo.min() >= -1.5 + scenes.MARGIN and hi.max() <= 1.5 - scenes.MARGIN
        # Every point within 2 of the origin: cameras at radius 4 with near 2 / far 6 see it all.
        corners = np.array(np.meshgrid(*zip(lo, hi, strict=True))).reshape(3, -1)
        assert np.linalg.norm(corners, axis=0).max() < 2.0


@pytest.mark.parametrize("name", NAMES)
def test_field_values(name: str) -> None:
    scene = scenes.get_scene(name)
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(40000, 3, generator=g, dtype=torch.float64) * 2 - 1) * 1.5
    d = torch.randn(40000, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    sigma, rgb = scene(x, d)
    assert torch.equal(sigma, scene.density(x))
    assert bool((sigma >= 0).all()) and bool((sigma > 0).any())
    assert bool((rgb >= 0).all()) and bool((rgb <= 1).all())
    assert torch.equal(rgb[sigma == 0], torch.zeros_like(rgb[sigma == 0]))
    # Zero outside the margin and outside every part's bounding box.
    outside_margin = x.abs().amax(-1) > 1.5 - scenes.MARGIN
    in_a_box = torch.zeros(len(x), dtype=torch.bool)
    for part in scene.parts:
        lo, hi = (torch.from_numpy(b) for b in part.shape.bounds())
        in_a_box |= ((x >= lo) & (x <= hi)).all(-1)
    assert bool(outside_margin.any()) and bool((~in_a_box).any())
    assert bool((sigma[outside_margin | ~in_a_box] == 0).all())
    # Inside each part the density is at least the part's own.
    for part in scene.parts:
        lo, hi = part.shape.bounds()
        inside = torch.from_numpy((lo + hi) / 2)[None]
        if isinstance(part.shape, scenes.Shell):  # the hollow is empty: step onto the wall
            inside = inside + torch.tensor([[(part.shape.inner + part.shape.outer) / 2, 0.0, 0.0]])
        assert float(scene.density(inside)) >= part.sigma
    # sigma_raw is log σ, floored at −20 in empty space.
    raw = scene.sigma_raw(x)
    assert bool((raw[sigma == 0] == scenes.SIGMA_RAW_FLOOR).all())
    torch.testing.assert_close(raw[sigma > 0], sigma[sigma > 0].log())
    # Any float dtype in, the same dtype out.
    sigma32, rgb32 = scene(x.float(), d.float())
    assert sigma32.dtype == rgb32.dtype == scene.sigma_raw(x.float()).dtype == torch.float32
    torch.testing.assert_close(rgb32, rgb.float(), atol=1e-3, rtol=0)


def test_overlapping_parts_mix_by_density() -> None:
    """Where the red rod crosses the fog ball, rgb is the density-weighted mean of the two."""
    scene = scenes.get_scene("transparent")
    fog, rod = scene.parts[0], scene.parts[4]
    x = torch.tensor([[-0.35, 0.25, 0.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.6, 0.8]], dtype=torch.float64)
    assert bool(fog.shape.contains(x.T)) and bool(rod.shape.contains(x.T))
    sigma, rgb = scene(x, d)
    fog_rgb = fog.material.rgb(x.T, d.T, fog.shape).T
    rod_rgb = rod.material.rgb(x.T, d.T, rod.shape).T
    assert float(sigma) == fog.sigma + rod.sigma
    expected = (fog.sigma * fog_rgb + rod.sigma * rod_rgb) / (fog.sigma + rod.sigma)
    torch.testing.assert_close(rgb, expected, atol=1e-12, rtol=0)


def test_glossy_colour_depends_on_the_view() -> None:
    scene = scenes.get_scene("glossy")
    x = torch.tensor([[0.0, 0.0, 0.65]] * 2, dtype=torch.float64)  # top of the big sphere
    # The first view reflects about the normal +z into the key light (-0.3, -0.5, 0.8): a
    # highlight; the second, mirrored, reflects away from every light.
    d = torch.tensor([[-0.3, -0.5, -0.8], [0.3, 0.5, -0.8]], dtype=torch.float64)
    _, rgb = scene(x, d / d.norm(dim=-1, keepdim=True))
    assert float((rgb[0] - rgb[1]).min()) > 0.3


def test_scene_spec() -> None:
    spec = scenes.get_scene("texture").scene_spec()
    assert spec.aabb == (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5) == scenes.get_scene("texture").aabb
    assert (spec.near, spec.far, spec.background) == (2.0, 6.0, (1.0, 1.0, 1.0))


# -- (6) names -----------------------------------------------------------------------------------
def test_scene_names_and_descriptions() -> None:
    assert sorted(NAMES) == NAMES
    assert {"texture", "glossy", "transparent"} <= set(NAMES)
    for name in NAMES:
        assert scenes.get_scene(name).name == name
        text = scenes.describe(name)
        assert text and "\n" not in text
    assert scenes.get_scene(" Texture ") is scenes.get_scene("texture")


def test_unknown_scene_name(tmp_path: Path) -> None:
    message = "unknown scene 'nope'; choose one of: glossy, texture, transparent"
    with pytest.raises(ValueError, match=f"^{message}$"):
        scenes.get_scene("nope")
    with pytest.raises(ValueError, match=f"^{message}$"):
        scenes.describe("nope")
    with pytest.raises(ValueError, match=f"^{message}$"):
        scenes.make_dataset("nope", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_bad_inputs_are_refused_by_name() -> None:
    scene = scenes.get_scene("texture")
    with pytest.raises(ValueError, match=r"^x must have shape \[N, 3\], got \[4\]$"):
        scene.density(torch.zeros(4))
    with pytest.raises(ValueError, match=r"^x and d must have the same length, got 2 and 3$"):
        scene(torch.zeros(2, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"^nodes must be >= 1, got 0$"):
        scene.render_rays(torch.zeros(1, 3), torch.ones(1, 3), nodes=0)
    with pytest.raises(ValueError, match=r"^supersample must be >= 1, got 0$"):
        scene.render_image(scenes.dataset_cameras(size=2)["test"], 0, supersample=0)
