"""`pvd compare` / `pvd.compare`: the record schema, the writers, resuming a half-done folder,
agreement with `pvd eval`, from-scratch rows, and the one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

import pvd.comparison as compare_module
from pvd.comparison import ComparisonTable, StudentRecord, compare
from pvd.errors import UserError

from .test_cli import assert_user_error, run
from .test_distill import TINY_DISTILL

#: Students cheap enough at their cpu size for a few steps (model overrides would apply to all).
STUDENTS = ["mlp", "hashgrid"]


@pytest.fixture(scope="module")
def comparison(tiny_checkpoint: Path, tiny_dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "run"
    compare(tiny_checkpoint, STUDENTS, out=out, data=tiny_dataset, overrides=TINY_DISTILL, gtk=True)
    return out


def test_records_carry_every_field_and_the_files_are_written(comparison: Path) -> None:
    results = json.loads((comparison / "results.json").read_text())
    assert results["teacher"]["arch"] == "hashgrid"
    records = [StudentRecord.from_dict(r) for r in results["records"]]
    assert [(r.arch, r.method, r.seed) for r in records] == [
        ("mlp", "distilled", 0),
        ("hashgrid", "distilled", 0),
    ]
    for r in records:
        assert r.parameters > 0 and r.bytes >= 4 * r.parameters
        assert r.steps == 9 and r.seconds > 0
        assert set(r.stage_seconds) == {"volume", "points", "render"}
        assert r.quality_psnr is not None and r.quality_ssim is not None
        assert 0 < r.fidelity_ssim <= 1 and r.render_rays_per_s > 0
        assert [p["step"] for p in r.curve] == list(range(1, 10))  # 9 steps, none asked: every 1
        assert (comparison / r.checkpoint).exists()
        assert (comparison / "records" / f"{r.key}.json").exists()
    assert records[1].inherited  # hash grid -> hash grid inherits the decoder
    for r in records:  # --gtk: every student's kernel on the teacher's points and σ_raw
        assert set(r.gtk) == {"effective_rank", "condition_number", "delta", "seconds"}
        assert 1.0 <= r.gtk["effective_rank"] <= 1024 and r.gtk["delta"] > 0
    rows = list(csv.DictReader(io.StringIO((comparison / "results.csv").read_text())))
    assert [row["arch"] for row in rows] == STUDENTS
    assert float(rows[0]["fidelity_psnr"]) == pytest.approx(records[0].fidelity_psnr, abs=1e-3)
    markdown = (comparison / "results.md").read_text()
    assert markdown.count("\n| mlp | distilled | 0 |") == 1 and "GTK effective rank" in markdown
    assert rows[0]["gtk_delta"] != ""
    for name in ("quality_vs_size", "quality_vs_time", "fidelity_curves", "sheet"):
        with Image.open(comparison / f"{name}.png") as image:
            assert image.width > 300 and image.height > 200


def test_results_agree_with_pvd_eval(
    comparison: Path, tiny_checkpoint: Path, tiny_dataset: Path
) -> None:
    results = json.loads((comparison / "results.json").read_text())
    for r in results["records"]:
        out = run(
            "eval",
            str(comparison / r["checkpoint"]),
            "--against",
            str(tiny_checkpoint),
            "--data",
            str(tiny_dataset),
            "--device",
            "cpu",
            "--json",
        )
        assert out.returncode == 0, out.stderr
        scores = json.loads(out.stdout)
        assert scores["fidelity"]["psnr"] == pytest.approx(r["fidelity_psnr"], abs=1e-6)
        assert scores["fidelity"]["ssim"] == pytest.approx(r["fidelity_ssim"], abs=1e-6)
        assert scores["quality"]["psnr"] == pytest.approx(r["quality_psnr"], abs=1e-6)


def test_a_rerun_skips_finished_students_and_redoes_a_half_done_one(
    comparison: Path, tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    folder = tmp_path / "again"
    shutil.copytree(comparison, folder)
    before = json.loads((folder / "results.json").read_text())["records"]
    (folder / "records" / "distilled-hashgrid-s0.json").unlink()  # interrupted before its record
    mlp_record = folder / "records" / "distilled-mlp-s0.json"
    without_kernel = {**json.loads(mlp_record.read_text()), "gtk": None}  # finished without --gtk
    mlp_record.write_text(json.dumps(without_kernel))
    converted: list[str] = []
    real_convert = compare_module.convert

    def counting_convert(teacher, to, *args, **kwargs):
        converted.append(to)
        return real_convert(teacher, to, *args, **kwargs)

    monkeypatch.setattr(compare_module, "convert", counting_convert)
    table = compare(
        tiny_checkpoint, STUDENTS, out=folder, data=tiny_dataset, overrides=TINY_DISTILL, gtk=True
    )
    assert converted == ["hashgrid"]
    finished = table.records[0].to_dict()
    kernel, expected = finished.pop("gtk"), dict(before[0])
    assert finished == {k: v for k, v in expected.items() if k != "gtk"}  # read back unchanged
    assert kernel["delta"] == pytest.approx(expected["gtk"]["delta"])  # --gtk added from its file
    assert (folder / "records" / "distilled-hashgrid-s0.json").exists()


def test_a_folder_of_another_comparison_is_refused(
    comparison: Path, tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "other"
    shutil.copytree(comparison, folder)
    with pytest.raises(UserError, match="another mlp recipe"):
        compare(
            tiny_checkpoint,
            ["mlp"],
            out=folder,
            data=tiny_dataset,
            overrides=[*TINY_DISTILL, "distill.lr=0.02"],
        )
    manifest = json.loads((folder / "comparison.json").read_text())
    manifest["teacher_sha256"] = "0" * 64
    (folder / "comparison.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="another teacher"):
        compare(tiny_checkpoint, ["mlp"], out=folder, data=tiny_dataset, overrides=TINY_DISTILL)


def test_without_out_nothing_is_written_and_from_scratch_rows_stand_beside(
    tiny_checkpoint: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    table = compare(
        tiny_checkpoint, "mlp", data=tiny_dataset, from_scratch=True, overrides=TINY_DISTILL
    )
    assert list(tmp_path.iterdir()) == []
    distilled, scratch = table.records
    assert (distilled.method, scratch.method) == ("distilled", "from scratch")
    assert scratch.checkpoint is None and scratch.stage_seconds == {}
    budget = distilled.seconds + distilled.setup_seconds
    assert scratch.seconds >= budget  # trained for the conversion's wall time (then stops)
    assert scratch.quality_psnr is not None and scratch.fidelity_psnr > 0


def _record(arch: str, method: str, seed: int, psnr: float, quality: float | None) -> StudentRecord:
    return StudentRecord(
        arch=arch,
        method=method,
        seed=seed,
        config={},
        parameters=1000,
        bytes=4000,
        steps=10,
        seconds=2.0,
        setup_seconds=0.5,
        stage_seconds={"volume": 1.0},
        fidelity_psnr=psnr,
        fidelity_ssim=0.9,
        quality_psnr=quality,
        quality_ssim=None if quality is None else 0.8,
        render_rays_per_s=1234.0,
        checkpoint=None,
    )


def test_csv_and_markdown_writers() -> None:
    table = ComparisonTable(
        {"arch": "hashgrid"},
        [_record("mlp", "distilled", 0, 30.0, None), _record("mlp", "distilled", 1, 32.0, None)],
    )
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert rows[0]["quality_psnr"] == "" and rows[0]["volume_seconds"] == "1.0"
    assert rows[0]["points_seconds"] == "" and rows[1]["seed"] == "1"
    assert list(rows[0]) == list(table.rows()[0])
    markdown = table.to_markdown()
    row = "| mlp | distilled | 0 | 1,000 | 0.00 | 2.5 | 30.00 | 0.9000 | — | — | 1,234 |"
    assert row in markdown
    assert "| mlp | distilled | 2 | 2.5 ± 0.0 | 31.00 ± 1.41 | — |" in markdown
    one = dataclasses.replace(table, records=table.records[:1])
    assert "±" not in one.to_markdown()
    assert ComparisonTable({}, []).to_csv().startswith("arch,method,seed,")


def test_pvd_compare_stays_the_function_after_its_module_loads() -> None:
    import pvd
    import pvd.comparison

    assert pvd.compare is pvd.comparison.compare  # the module is named otherwise on purpose


def test_bad_arguments_are_refused(tiny_checkpoint: Path, tiny_dataset: Path) -> None:
    with pytest.raises(UserError, match="--seeds"):
        compare(tiny_checkpoint, "mlp", seeds=0)
    with pytest.raises(UserError, match="--from-scratch trains on images"):
        compare(tiny_checkpoint, "mlp", from_scratch=True)
    with pytest.raises(UserError, match="no architecture given"):
        compare(tiny_checkpoint, ",")


def test_cli_errors_are_one_line(tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert_user_error(run("compare", str(tiny_checkpoint), "--to", "mlp,nerf2"), "nerf2")
    a_file = tmp_path / "results"
    a_file.write_text("not a folder")
    assert_user_error(
        run("compare", str(tiny_checkpoint), "--to", "mlp", "--out", str(a_file)), "is a file"
    )
    corrupt = tmp_path / "teacher.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    result = run("compare", str(corrupt), "--to", "mlp", "--out", str(tmp_path / "new"))
    assert_user_error(result, str(corrupt))
    assert not (tmp_path / "new").exists()
