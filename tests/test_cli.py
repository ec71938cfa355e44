"""The command line as a user meets it: one-line errors with exit status 2 and no traceback,
no output left behind on failure, fast `--help`, and train → eval → info → render end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import architectures
from pvd.model import TrainedModel

from .conftest import TINY_HASHGRID

PVD = [sys.executable, "-m", "pvd"]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PVD, *args], capture_output=True, text=True, timeout=timeout)


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; from pvd.cli import app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"
    result = run("--help")
    assert result.returncode == 0 and "train" in result.stdout and "scenes" in result.stdout


@pytest.fixture
def bad_files(tmp_path: Path, tiny_checkpoint: Path) -> dict[str, Path]:
    files = {"missing": tmp_path / "missing.safetensors"}
    files["not_safetensors"] = tmp_path / "text.safetensors"
    files["not_safetensors"].write_text("definitely not a checkpoint")
    data = tiny_checkpoint.read_bytes()
    files["truncated"] = tmp_path / "truncated.safetensors"
    files["truncated"].write_bytes(data[: len(data) // 2])
    tensors = load_file(tiny_checkpoint)
    from safetensors import safe_open

    with safe_open(str(tiny_checkpoint), "pt") as f:
        meta = f.metadata()
    files["unknown_arch"] = tmp_path / "unknown.safetensors"
    save_file(tensors, files["unknown_arch"], metadata={**meta, "pvd.arch": "gaussian-splats"})
    files["newer_schema"] = tmp_path / "newer.safetensors"
    save_file(tensors, files["newer_schema"], metadata={**meta, "pvd.schema": "99"})
    return files


@pytest.mark.parametrize(
    ("kind", "fragments"),
    [
        ("missing", ["no such file"]),
        ("not_safetensors", ["not a readable safetensors file"]),
        ("truncated", ["not a readable safetensors file"]),
        ("unknown_arch", ["unknown architecture 'gaussian-splats'"]),
        ("newer_schema", ["schema 99", "upgrade pvd"]),
    ],
)
@pytest.mark.parametrize("command", ["info", "eval", "render", "convert"])
def test_bad_checkpoints_give_one_line_errors(bad_files, tmp_path, kind, fragments, command):
    path = bad_files[kind]
    out = tmp_path / "out"
    extra = {
        "info": [],
        "eval": ["--against", str(path)],
        "render": ["--out", str(out)],
        "convert": ["--to", "mlp", "--out", str(out)],
    }[command]
    result = run(command, str(path), *extra)
    assert_user_error(result, str(path), *fragments)
    assert not out.exists()


def test_bad_dataset_and_arch_leave_no_output(tmp_path, tiny_dataset):
    out = tmp_path / "model.safetensors"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(run("train", str(empty), "--out", str(out)), "not a dataset")
    malformed = tmp_path / "malformed"
    malformed.mkdir()
    (malformed / "transforms_train.json").write_text("[1, 2")
    assert_user_error(run("train", str(malformed), "--out", str(out)), "not valid JSON")
    assert_user_error(
        run("train", str(tiny_dataset), "--arch", "nerfzilla", "--out", str(out)),
        "unknown architecture 'nerfzilla'",
        "hashgrid",
    )
    assert_user_error(
        run("train", str(tiny_dataset), "--set", "train.steps=-3", "--out", str(out)), "train.steps"
    )
    assert_user_error(
        run("train", str(tiny_dataset), "--set", "train.stepz=3", "--out", str(out)),
        "unknown recipe key 'train.stepz'",
    )
    assert_user_error(
        run("train", str(tiny_dataset), "--set", "model.levels=0", "--out", str(out)), "levels"
    )
    assert_user_error(
        run("train", str(tiny_dataset), "--preset", "gpu", "--out", str(out)),
        "unknown preset 'gpu'",
    )
    assert not out.exists()
    assert list(tmp_path.glob(".*tmp*")) == []


def test_train_eval_info_render_end_to_end(tmp_path, tiny_dataset):
    out = tmp_path / "teacher.safetensors"
    sets = [arg for s in TINY_HASHGRID for arg in ("--set", s)]
    result = run(
        "train",
        str(tiny_dataset),
        "--preset",
        "cpu",
        "--steps",
        "4",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--json",
        *sets,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["steps"] == 4 and report["test"]["images"] == 2
    assert report["test"]["lpips"] is None and "not available" in report["test"]["lpips_reason"]

    info = json.loads(run("info", str(out), "--json").stdout)
    assert info["arch"] == "hashgrid" and info["cameras"] == {"train": 6, "test": 2}
    assert info["provenance"]["test_metrics"]["psnr"] == pytest.approx(report["test"]["psnr"])
    assert info["render"]["step_size"] == 0.05

    evaluated = json.loads(run("eval", str(out), "--data", str(tiny_dataset), "--json").stdout)
    assert evaluated["quality"]["psnr"] == pytest.approx(report["test"]["psnr"], abs=1e-4)
    fidelity = json.loads(run("eval", str(out), "--against", str(out), "--json").stdout)
    assert fidelity["fidelity"]["psnr"] == float("inf")

    views = tmp_path / "views"
    assert run("render", str(out), "--out", str(views)).returncode == 0
    assert sorted(p.name for p in views.iterdir()) == ["view_000.png", "view_001.png"]
    gif = tmp_path / "turn.gif"
    assert run("render", str(out), "--out", str(gif), "--frames", "3").returncode == 0
    assert gif.stat().st_size > 0
    assert_user_error(
        run("render", str(out), "--out", str(tmp_path / "x.avi")), "expected a folder"
    )
    assert_user_error(run("eval", str(out)), "nothing to compare with")


def test_save_load_identical_and_same_seed_same_teacher(tiny_dataset, tiny_checkpoint, tmp_path):
    from pvd.data import load_dataset
    from pvd.recipes import build_recipe
    from pvd.train import train

    model = TrainedModel.load(tiny_checkpoint)
    again = TrainedModel.load(model.save(tmp_path / "copy.safetensors"))
    x = torch.rand(128, 3) * 3 - 1.5
    d = torch.nn.functional.normalize(torch.randn(128, 3), dim=-1)
    assert all(torch.equal(a, b) for a, b in zip(model.field(x, d), again.field(x, d), strict=True))
    assert torch.equal(model.grid.binary, again.grid.binary)

    dataset = load_dataset(tiny_dataset)
    recipe = build_recipe("hashgrid", "cpu", None, [*TINY_HASHGRID, "train.steps=6"])
    retrained = train(dataset, "hashgrid", recipe)
    for (name, a), b in zip(
        model.field.state_dict().items(), retrained.field.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert architectures.load(tiny_checkpoint).checkpoint.provenance["seed"] == 0


def test_scenes_list_and_make(tmp_path):
    listed = run("scenes", "list", "--json")
    names = json.loads(listed.stdout)
    assert {"texture", "glossy", "transparent"} <= set(names)
    assert_user_error(run("scenes", "make", "nope", str(tmp_path / "x")), "unknown scene 'nope'")
    assert_user_error(
        run("scenes", "make", "texture", str(tmp_path / "x"), "--size", "0"), "--size"
    )
    made = run(
        "scenes",
        "make",
        "glossy",
        str(tmp_path / "g"),
        "--size",
        "12",
        "--views",
        "2",
        "--test-views",
        "1",
        "--supersample",
        "1",
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "g" / "transforms_test.json").exists()


def test_every_public_name_of_pvd_imports():
    import pvd

    for name in pvd.__all__:
        assert getattr(pvd, name) is not None, name


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--to", "nerf9"], ["unknown architecture 'nerf9'"]),
        (["--to", "mlp", "--set", "distill.stepz=4"], ["unknown recipe key 'distill.stepz'"]),
        (["--to", "mlp", "--set", "distill.points=-4"], ["distill.points = -4 is out of range"]),
        (["--to", "mlp", "--resume"], ["--resume: no saved state"]),
        (["--to", "mlp", "--preset", "gpu"], ["unknown preset 'gpu'"]),
    ],
)
def test_convert_refuses_bad_arguments_in_one_line(tiny_checkpoint, tmp_path, args, fragments):
    out = tmp_path / "student.safetensors"
    result = run("convert", str(tiny_checkpoint), "--out", str(out), "--device", "cpu", *args)
    assert_user_error(result, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_convert_writes_a_student_and_prints_the_report(tiny_checkpoint, tmp_path):
    out = tmp_path / "student.safetensors"
    sets = [
        "model.resolution=12",
        "model.kernel_width=8",
        "model.filter_layers=2",
        "distill.points=1024",
        "distill.stage3_points=256",
        "distill.pool_rays=1024",
        "distill.target_samples=2048",
    ]
    result = run(
        "convert",
        str(tiny_checkpoint),
        "--to",
        "mulfagrid",
        "--out",
        str(out),
        "--steps",
        "6",
        "--preset",
        "cpu",
        "--device",
        "cpu",
        "--json",
        *[arg for s in sets for arg in ("--set", s)],
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["student"]["arch"] == "mulfagrid" and report["steps"] == 6
    assert report["inherited"] == ["decoder (phi2) from the hashgrid teacher"]
    assert report["output"] == str(out)
    assert TrainedModel.load(out).provenance["teacher"]["sha256"] == report["teacher"]["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.safetensors"]
