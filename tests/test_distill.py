"""The conversion engine (``pvd.distill``): every ordered pair of the six architectures for a few
steps at tiny size, density clipping, warm starts, decoder inheritance, resume, and bad input."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
import torch

import architectures
from pvd.data import load_dataset
from pvd.distill import (
    ConversionInterrupted,
    DistillSettings,
    build_conversion_recipe,
    clipped_density_error,
    convert,
    load_teacher,
    same_feature_layout,
    sample_points,
    state_path,
    volume_loss,
    warm_start,
    warm_start_plenoxels,
    warm_start_tensorf,
)
from pvd.errors import UserError
from pvd.model import TrainedModel
from pvd.recipes import build_recipe
from pvd.render import OccupancyGrid
from pvd.train import train

from .conftest import TINY_MODELS

ARCHS = sorted(TINY_MODELS)
TINY_TRAIN = [
    "render.occupancy_resolution=16",
    "render.step_size=0.05",
    "render.chunk_rays=1024",
    "train.target_samples=4096",
    "train.batch_rays=128",
    "train.steps=30",
    "train.lr_warmup_steps=0",
    "train.occupancy_warmup_steps=2",
    "train.occupancy_update_every=2",
]
#: Nine steps, three per stage, small batches, no warm-up (so the rate is not ~0 in 9 steps).
TINY_DISTILL = [
    "distill.steps=9",
    "distill.stage1_end=0.3",
    "distill.stage2_end=0.6",
    "distill.points=2048",
    "distill.stage3_points=512",
    "distill.pool_rays=2048",
    "distill.target_samples=4096",
    "distill.lr_warmup_steps=0",
    "distill.save_every=0",
]


def tiny_distill(arch: str, *extra: str) -> list[str]:
    return [*TINY_MODELS[arch], *TINY_DISTILL, *extra]


@pytest.fixture(scope="module")
def teachers(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny teacher of each architecture, trained with ``pvd.train`` on the tiny scene (30
    steps: enough for a density and colour structure a fresh student does not already match)."""
    dataset = load_dataset(tiny_dataset)
    folder = tmp_path_factory.mktemp("teachers")
    paths = {}
    for arch in ARCHS:
        # 30 steps give every teacher a structure a fresh student does not match, once the MLP
        # learns at the grids' rate and TensoRF starts from a visible fog, not from empty space
        faster = {"mlp": ["model.lr_scale=1.0"], "tensorf": ["model.density_shift=-1.0"]}
        faster = faster.get(arch, [])
        recipe = build_recipe(arch, "cpu", None, [*TINY_MODELS[arch], *TINY_TRAIN, *faster])
        paths[arch] = train(dataset, arch, recipe).save(folder / f"{arch}.safetensors")
    return paths


@pytest.mark.parametrize("student", ARCHS)
@pytest.mark.parametrize("teacher", ARCHS)
def test_every_pair_converts_loads_renders_and_improves(
    teacher: str, student: str, teachers: dict[str, Path], tmp_path: Path
) -> None:
    """Without warm start or inheritance, so that any improvement is the three stages' work."""
    out = tmp_path / "student.safetensors"
    sets = tiny_distill(student, "distill.warm_start=false", "distill.inherit_decoder=false")
    _, report = convert(teachers[teacher], student, overrides=sets, out=out)
    assert [s.steps for s in report.stages] == [3, 3, 3]
    assert report.probe_loss["start"] == report.probe_loss["before"]
    assert report.probe_loss["after"] < report.probe_loss["start"]
    loaded = TrainedModel.load(out)
    assert loaded.field.arch == student
    assert loaded.provenance["source"] == "pvd convert"
    assert loaded.provenance["teacher"]["sha256"] == report.teacher["sha256"]
    assert set(loaded.cameras) == {"train", "test"}
    image = loaded.render_views(loaded.cameras["test"], [0])[0]
    assert image.shape == (16, 16, 3) and torch.isfinite(image).all()
    assert not state_path(out).exists()


@pytest.mark.parametrize("student", ARCHS)
@pytest.mark.parametrize("teacher", ["hashgrid", "plenoxels"])
def test_inheritance_and_warm_starts_apply_where_the_pair_allows(
    teacher: str, student: str, teachers: dict[str, Path]
) -> None:
    _, report = convert(
        teachers[teacher], student, overrides=tiny_distill(student, "distill.steps=1")
    )
    canonical = architectures.get(teacher).canonical and architectures.get(student).canonical
    assert bool(report.inherited) == canonical
    assert (report.warm_start is not None) == (student in ("plenoxels", "tensorf"))
    if report.warm_start:  # a warm start moves the student towards the teacher before any step
        assert report.probe_loss["start"] < report.probe_loss["before"]


def test_clipped_density_error_is_one_sided_at_the_ends() -> None:
    clip = (-2.0, 7.0)
    teacher = torch.tensor([-9.0, -9.0, 3.0, 12.0, 12.0])
    student = torch.tensor([-5.0, 0.0, 1.0, 9.0, 4.0])
    error = clipped_density_error(student, teacher, clip)
    # floor: emptier than a is as empty (0), above a counts; inside: s - t; ceiling: only below b
    assert error.tolist() == [0.0, 2.0, -2.0, 0.0, -3.0]
    assert clipped_density_error(student, teacher, None).tolist() == (student - teacher).tolist()


def test_clipped_density_gradient_never_vanishes_for_a_wrong_student() -> None:
    student = torch.tensor([5.0, -6.0], requires_grad=True)
    teacher = torch.tensor([-20.0, 30.0])  # empty and opaque far beyond the clip range
    clipped_density_error(student, teacher, (-2.0, 7.0)).pow(2).sum().backward()
    assert (student.grad != 0).all()


def test_volume_loss_compares_channel_zero_alone_across_layouts() -> None:
    student = torch.zeros(4, 16)
    teacher = torch.zeros(4, 28)
    teacher[:, 5] = 100.0  # a Plenoxels SH coefficient: not comparable with canonical g
    assert float(volume_loss(student, teacher, (-2.0, 7.0), all_channels=False)) == 0.0
    teacher16 = torch.zeros(4, 16)
    teacher16[:, 5] = 4.0
    assert float(volume_loss(student, teacher16, (-2.0, 7.0), all_channels=True)) == 1.0


def test_norm_reduction_is_the_unsquared_l2_norm_and_mean_the_mean_squared_error() -> None:
    student = torch.tensor([[0.5, 1.0, 2.0], [-3.0, 0.0, 1.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0, 0.0], [-5.0, 0.0, 0.0]])
    # channel 0: 0.5 - 0 inside the range; -5 clamps to the floor -2, where -3 costs relu(-3+2) = 0
    squared = torch.tensor([0.25 + 1.0 + 4.0, 0.0 + 0.0 + 1.0])
    norm = volume_loss(student, teacher, (-2.0, 7.0), True, "norm")
    assert norm.item() == pytest.approx(squared.sum().sqrt().item())
    mean = volume_loss(student, teacher, (-2.0, 7.0), True, "mean")
    assert mean.item() == pytest.approx((squared.sum() / 6).item())
    exact = teacher.clone().requires_grad_()
    volume_loss(exact, teacher, (-2.0, 7.0), True, "norm").backward()
    assert torch.equal(exact.grad, torch.zeros_like(teacher))  # no NaN at an exact match


def test_points_come_from_occupied_cells_plus_a_uniform_share() -> None:
    grid = OccupancyGrid((-1, -1, -1, 1, 1, 1), 8, 0.5)
    grid.binary.zero_()
    grid.binary[0, 0, 0] = True  # the cell [-1, -0.75]^3
    points = sample_points(grid, 1000, 0.25, torch.Generator().manual_seed(0))
    in_cell = (points <= -0.75).all(dim=-1)
    assert points.shape == (1000, 3)
    assert int(in_cell.sum()) >= 750
    assert ((points >= -1) & (points <= 1)).all()
    grid.binary.zero_()  # nothing occupied: all uniform
    points = sample_points(grid, 1000, 0.25, torch.Generator().manual_seed(0))
    assert int((points <= -0.75).all(dim=-1).sum()) < 100


def _varied_teacher(path: Path) -> TrainedModel:
    """A tiny hash-grid teacher with its table randomised, so its colour and density vary
    strongly in space (a few training steps leave it almost uniform grey)."""
    teacher = TrainedModel.load(path)
    with torch.no_grad():
        teacher.field.params.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    teacher.grid = OccupancyGrid.from_field(teacher.field.density, teacher.grid.aabb, 16, 0.5)
    return teacher


def test_plenoxels_warm_start_reproduces_the_teacher(teachers: dict[str, Path]) -> None:
    teacher = _varied_teacher(teachers["hashgrid"])
    cold = architectures.build("plenoxels", {"resolution": 24, "aabb": teacher.scene.aabb})
    warm = architectures.build("plenoxels", {"resolution": 24, "aabb": teacher.scene.aabb})
    warm_start_plenoxels(teacher, warm, (-2.0, 7.0))
    x = sample_points(teacher.grid, 4096, 0.0, torch.Generator().manual_seed(1))
    d = torch.nn.functional.normalize(torch.randn(4096, 3), dim=-1)
    with torch.no_grad():
        _, target = teacher.field(x, d)
        error_warm = (warm(x, d)[1] - target).abs().mean()
        error_cold = (cold(x, d)[1] - target).abs().mean()
        raw_error = (warm.sigma_raw(x) - teacher.field.sigma_raw(x).clamp(-6, 7)).abs().mean()
    assert error_warm < 0.5 * error_cold
    assert raw_error < 1.0


def test_plenoxels_variants_share_a_layout_and_a_warm_start_only_where_they_mean_the_same(
    teachers: dict[str, Path],
) -> None:
    teacher = TrainedModel.load(teachers["hashgrid"])
    box = {"resolution": 8, "aabb": teacher.scene.aabb}
    default = architectures.build("plenoxels", box)
    svox2 = architectures.build(
        "plenoxels", {**box, "density_activation": "relu", "colour": "svox2_clamp"}
    )
    degree1 = architectures.build("plenoxels", {**box, "sh_degree": 1})
    assert same_feature_layout(default, architectures.build("plenoxels", box))
    assert not same_feature_layout(default, svox2)  # same width, other colour and density rules
    assert not same_feature_layout(default, degree1)
    assert warm_start(teacher, svox2, (-2.0, 7.0)) is None
    assert warm_start(teacher, degree1, (-2.0, 7.0)).startswith("plenoxels vertices")
    assert degree1.grid.shape[0] == 1 + 3 * 4 and degree1.grid[1:].abs().sum() > 0


def test_tensorf_warm_start_fits_the_teacher_grid(teachers: dict[str, Path]) -> None:
    teacher = _varied_teacher(teachers["hashgrid"])
    config = {
        "aabb": teacher.scene.aabb,
        "initial_resolution": 12,
        "final_resolution": 12,
        "density_components": 4,
        "appearance_components": 8,
    }
    cold = architectures.build("tensorf", config)
    warm = architectures.build("tensorf", config)
    warm.decoder.load_state_dict(teacher.field.decoder.state_dict())
    message = warm_start_tensorf(teacher, warm, (-2.0, 7.0))
    assert "CP rank 12" in message and "CP rank 24" in message
    x = sample_points(teacher.grid, 4096, 0.0, torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = teacher.field.phi1(x)
        target[:, 0] = target[:, 0].clamp(-6, 7)
        error_warm = (warm.phi1(x) - target).pow(2).mean()
        error_cold = (cold.phi1(x) - target).pow(2).mean()
    assert error_warm < 0.5 * error_cold


def test_resume_after_interruption_matches_an_uninterrupted_run(
    teachers: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sets = tiny_distill("tensorf", "distill.save_every=3", "distill.steps=12")
    straight, _ = convert(teachers["hashgrid"], "tensorf", overrides=sets)
    out = tmp_path / "student.safetensors"

    import pvd.distill as engine

    real = engine._render_loss
    calls = {"n": 0}

    def interrupt_on_the_third_render(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            engine.signal.raise_signal(engine.signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_render_loss", interrupt_on_the_third_render)
    with pytest.raises(ConversionInterrupted, match="rerun with --resume"):
        convert(teachers["hashgrid"], "tensorf", overrides=sets, out=out)
    assert not out.exists() and state_path(out).exists()
    monkeypatch.setattr(engine, "_render_loss", real)
    resumed, report = convert(teachers["hashgrid"], "tensorf", overrides=sets, out=out, resume=True)
    assert report.resumed_from == 11  # render steps are 8..11; the third (10) finishes first
    assert out.exists() and not state_path(out).exists()
    for key, value in straight.field.state_dict().items():
        torch.testing.assert_close(resumed.field.state_dict()[key], value, rtol=1e-5, atol=1e-6)


def test_resume_refuses_a_missing_state_or_another_teacher(
    teachers: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "student.safetensors"
    with pytest.raises(UserError, match="no saved state"):
        convert(teachers["hashgrid"], "mlp", overrides=tiny_distill("mlp"), out=out, resume=True)
    sets = tiny_distill("mlp", "distill.save_every=2")
    import pvd.distill as engine

    state = state_path(out)
    # a state written for the tensorf teacher cannot resume a conversion of the hashgrid one
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "_interrupt_flag", _flag_after(4))
        with pytest.raises(ConversionInterrupted):
            convert(teachers["tensorf"], "mlp", overrides=sets, out=out)
    assert state.exists()
    with pytest.raises(UserError, match="another teacher"):
        convert(teachers["hashgrid"], "mlp", overrides=sets, out=out, resume=True)
    with pytest.raises(UserError, match="another student or recipe"):
        convert(
            teachers["tensorf"], "mlp", overrides=[*sets, "distill.seed=3"], out=out, resume=True
        )


def _flag_after(steps: int):
    """An ``_interrupt_flag`` replacement whose flag rises once ``steps`` checks have passed."""
    from contextlib import contextmanager

    class Flag(dict):
        def __init__(self) -> None:
            super().__init__()
            self.checks = 0

        def __getitem__(self, key: str):
            self.checks += 1
            return 2 if self.checks > steps else None

    @contextmanager
    def flag():
        yield Flag()

    return flag


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["distill.stepz=3"], "unknown recipe key 'distill.stepz'"),
        (["distill.steps=-1"], "distill.steps = -1 is out of range"),
        (["distill.sigma_clip=[7, -2]"], "distill.sigma_clip"),
        (["distill.stage2_end=0.05"], "distill.stage2_end"),
        (["train.steps=3"], "--set key 'train.steps' must be one of model, distill"),
        (["model.width=-4"], "width"),
        (["distill.clip=3"], "distill.clip = 3 must be of type bool"),
        (['distill.sigma_clip=["a", 1]'], "must be two numbers"),
        (['distill.loss_reduction="sum"'], "distill.loss_reduction = 'sum' is out of range"),
    ],
)
def test_bad_recipe_values_are_refused_by_name(
    overrides: list[str], message: str, teachers: dict[str, Path]
) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        convert(teachers["hashgrid"], "mlp", overrides=overrides)


def test_the_evaluation_hook_does_not_change_the_student(teachers: dict[str, Path]) -> None:
    plain, _ = convert(teachers["hashgrid"], "plenoxels", overrides=tiny_distill("plenoxels"))
    sets = tiny_distill("plenoxels", "distill.eval_every=2")
    hooked, report = convert(teachers["hashgrid"], "plenoxels", overrides=sets)
    assert [p["step"] for p in report.curve] == [2, 4, 6, 8]
    cpu = [p["cpu_seconds"] for p in report.curve]  # evaluations excluded: at most the steps'
    assert all(a < b for a, b in itertools.pairwise(cpu)) and cpu[-1] <= report.cpu_seconds
    for key, value in plain.field.state_dict().items():
        assert torch.equal(value, hooked.field.state_dict()[key]), key


def test_an_imported_teacher_in_memory_is_named_by_its_file(teachers: dict[str, Path]) -> None:
    model = TrainedModel.load(teachers["hashgrid"])
    assert load_teacher(model, "cpu")[1] == "in memory"
    model.provenance = {
        "source": "pvd import",
        "import": {"file": "lego.th", "format": "tensorf-th", "sha256": "ab" * 32},
    }
    _, source, sha = load_teacher(model, "cpu")
    assert (source, sha) == ("lego.th (tensorf-th)", "ab" * 32)


def test_bad_teacher_and_architecture_are_refused(
    tmp_path: Path, teachers: dict[str, Path]
) -> None:
    with pytest.raises(UserError, match="no such file"):
        convert(tmp_path / "missing.safetensors", "mlp")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"corrupt\.safetensors"):
        convert(corrupt, "mlp")
    with pytest.raises(UserError, match="unknown architecture 'nerf9'"):
        convert(teachers["hashgrid"], "nerf9")


def test_settings_defaults_match_the_shared_cpu_recipe() -> None:
    recipe = build_recipe("hashgrid", "cpu", kind="distill")  # no [cpu.distill] overrides
    assert recipe["distill"] == dataclasses.asdict(DistillSettings())


def test_recipe_precedence_preset_then_dict_then_overrides_then_steps() -> None:
    built = build_conversion_recipe(
        "mlp", {"distill": {"steps": 5, "seed": 4}}, "cpu", ["distill.steps=7"], None
    )
    assert built["distill"]["steps"] == 7 and built["distill"]["seed"] == 4
    assert built["distill"]["lr"] == 5e-2  # recipes/mlp.toml [cpu.distill]
    assert (
        build_conversion_recipe("mlp", None, "cpu", ["distill.steps=7"], 9)["distill"]["steps"] == 9
    )
    with pytest.raises(UserError, match="unknown recipe section 'train'"):
        build_conversion_recipe("mlp", {"train": {"steps": 5}}, "cpu", None, None)


@pytest.mark.slow
def test_shipped_teacher_to_mulfagrid_reaches_the_fidelity_target() -> None:
    """One real conversion with the `cpu` recipe (about 2-3 minutes on two cores)."""
    shipped = (
        Path(__file__).resolve().parent.parent / "checkpoints" / "hashgrid-texture.safetensors"
    )
    _, report = convert(shipped, "mulfagrid")
    assert report.fidelity["psnr"] >= 30.0
