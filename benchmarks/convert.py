"""Conversion benchmarks (``pvd convert``, ``cpu`` recipes, 64-px procedural scenes).

Sections, each a table in BENCHMARKS.md:

``students``  the shipped teacher (``checkpoints/hashgrid-texture.safetensors``) into each of the
              six architectures: fidelity vs the teacher, quality vs ground truth, time.
``matrix``    the 30 cross pairs between teachers trained with ``pvd train`` on ``texture`` (the
              teacher benchmark's checkpoints; made with ``benchmarks/teachers.py`` if missing).
``ablation``  hash grid → students with one part of the method switched off at a time.
``speedup``   the paper's headline, side by side in one run: a from-scratch MLP trained for
              ``--scratch-budget`` seconds on ``texture`` at ``--size`` px, then the hash grid →
              MLP conversion with a fidelity/quality curve; T_distil is the first time the
              distilled MLP's test PSNR reaches the from-scratch run's final test PSNR
              (evaluation excluded). The teacher is the shipped one at 64 px, else a hash grid
              trained at that size for ``--teacher-steps`` steps (its time reported, not
              counted).

Every cell is cached in ``benchmarks/results/convert/<section>/<cell>.json`` (one file per cell,
written atomically) so a run resumes and two processes can share a section's cells; ``--report``
only rewrites BENCHMARKS.md from the cache.

    python benchmarks/convert.py students
    python benchmarks/convert.py matrix --threads 1 --shard 0/2   # two processes side by side
    python benchmarks/convert.py ablation
    python benchmarks/convert.py speedup --size 64 --scratch-budget 600
    python benchmarks/convert.py speedup --size 128 --scratch-budget 600
    python benchmarks/convert.py speedup --size 128 --scratch-budget 600 --distil-steps 1200
    python benchmarks/convert.py --report
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from teachers import WORK, _dataset, _write_json_atomic, replace_markdown_block  # noqa: E402
from teachers import run_cell as train_teacher_cell  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "convert"
ARCHS = ("hashgrid", "mlp", "plenoxels", "tensorf", "mflod", "mulfagrid")
SHIPPED = ROOT / "checkpoints" / "hashgrid-texture.safetensors"
#: pvd's first default losses: means of squared errors with weights 1 (features), 0.01 (raw
#: density), 1 (colour), 1 (pixels). The default is now the reference code's un-squared L2 norms
#: (weights 2e-3, 2e-3, 2e-3, 1); the ablation keeps the means as a row.
MEAN_LOSSES = [
    'distill.loss_reduction="mean"',
    "distill.feature_weight=1.0",
    "distill.density_weight=0.01",
    "distill.color_weight=1.0",
    "distill.rgb_weight=1.0",
]
MEANS = "means of squared errors (first default)"
#: (row name, student, recipe overrides) of the ablation: one part switched off per row.
ABLATION = (
    ("full method", "mulfagrid", []),
    (MEANS, "mulfagrid", MEAN_LOSSES),
    (
        "no stages 1-2 (rendering only)",
        "mulfagrid",
        ["distill.stage1_end=0", "distill.stage2_end=0"],
    ),
    ("no density clipping", "mulfagrid", ["distill.clip=false"]),
    ("no decoder inheritance", "mulfagrid", ["distill.inherit_decoder=false"]),
    ("full method", "tensorf", []),
    (MEANS, "tensorf", MEAN_LOSSES),
    ("no warm start", "tensorf", ["distill.warm_start=false"]),
    ("full method", "plenoxels", []),
    (MEANS, "plenoxels", MEAN_LOSSES),
    ("no warm start", "plenoxels", ["distill.warm_start=false"]),
    ("no density clipping", "plenoxels", ["distill.clip=false"]),
    ("full method", "hashgrid", []),
    (MEANS, "hashgrid", MEAN_LOSSES),
    ("full method", "mflod", []),
    (MEANS, "mflod", MEAN_LOSSES),
    ("full method", "mlp", []),
    (MEANS, "mlp", MEAN_LOSSES),
)


def _cell_path(section: str, key: str) -> Path:
    return RESULTS / section / f"{key.replace('/', '_')}.json"


def _cached(section: str) -> dict[str, dict]:
    folder = RESULTS / section
    cells = {}
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        cell = json.loads(path.read_text())
        cells[cell["key"]] = cell
    return cells


def _machine() -> dict:
    return {
        "load_at_start": round(os.getloadavg()[0], 2),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.date.today().isoformat(),
    }


def convert_cell(key: str, teacher: Path, student: str, overrides: list[str], data: Path) -> dict:
    from pvd.data import load_dataset
    from pvd.distill import convert

    machine = _machine()
    _, report = convert(teacher, student, overrides=overrides, data=load_dataset(data))
    return {
        "key": key,
        "teacher": report.teacher["arch"],
        "teacher_file": str(teacher.relative_to(ROOT)),
        "teacher_quality_psnr": report.teacher_quality["psnr"],
        "student": student,
        "overrides": overrides,
        "fidelity_psnr": report.fidelity["psnr"],
        "fidelity_ssim": report.fidelity["ssim"],
        "quality_psnr": report.quality["psnr"],
        "quality_ssim": report.quality["ssim"],
        "steps": report.steps,
        "seconds": report.seconds,
        "cpu_seconds": report.cpu_seconds,
        "setup_seconds": report.setup_seconds,
        "stage_seconds": [round(s.seconds, 1) for s in report.stages],
        "parameters": report.student["parameters"],
        "bytes": report.student["bytes"],
        "warm_start": report.warm_start,
        "inherited": report.inherited,
        **machine,
    }


def matrix_teacher(arch: str) -> Path:
    path = WORK / "checkpoints" / f"{arch}-texture-64.safetensors"
    if not path.exists():
        print(f"[convert] training the {arch} teacher first", file=sys.stderr, flush=True)
        train_teacher_cell(arch, "texture", 64, 300.0, 20000)
    return path


def cells_for(section: str) -> list[tuple[str, Path, str, list[str]]]:
    if section == "students":
        return [(f"hashgrid->{s}", SHIPPED, s, []) for s in ARCHS]
    if section == "matrix":
        return [(f"{t}->{s}", None, s, []) for t in ARCHS for s in ARCHS if t != s]
    if section == "ablation":
        return [(f"{s}: {name}", SHIPPED, s, sets) for name, s, sets in ABLATION]
    raise ValueError(section)


def run_section(section: str, redo: set[str], shard: tuple[int, int]) -> None:
    data = _dataset("texture", 64)
    done = _cached(section)
    for i, (key, teacher, student, sets) in enumerate(cells_for(section)):
        if i % shard[1] != shard[0] or (key in done and key not in redo):
            continue
        if teacher is None:
            teacher = matrix_teacher(key.split("->")[0])
        print(f"[convert] {section} {key} ...", file=sys.stderr, flush=True)
        cell = convert_cell(key, teacher, student, sets, data)
        _write_json_atomic(_cell_path(section, key), cell)
        print(
            f"[convert] {key}: fidelity {cell['fidelity_psnr']:.2f} dB, quality "
            f"{cell['quality_psnr']:.2f} dB, {cell['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )


def speedup_teacher(size: int, steps: int) -> Path:
    """The speed-up's hash-grid teacher at ``size`` px: the shipped one at 64 px, else one trained
    on ``texture`` at that size with the ``cpu`` recipe for ``steps`` steps (a step count, not a
    time budget, so that the teacher does not depend on the machine's load; its training time is
    reported, not counted)."""
    if size == 64:
        return SHIPPED
    path = WORK / "checkpoints" / f"hashgrid-texture-{size}.safetensors"
    if not path.exists():
        print(f"[convert] training the {size}-px hash-grid teacher first", file=sys.stderr)
        train_teacher_cell("hashgrid", "texture", size, 1e9, steps)
    return path


def speedup_key(size: int, budget: float, distil_steps: int) -> str:
    return f"mlp-{size}px-{budget:.0f}s-{distil_steps}steps"


def run_speedup(
    size: int, budget: float, teacher_steps: int, eval_every: int, distil_steps: int, redo: bool
) -> None:
    """From-scratch MLP for ``budget`` s, then hash grid → MLP with a quality curve, both on
    ``texture`` at ``size`` px; the speed-up in wall time and, as a check that contention did not
    decide it, in CPU time (both runs' steps only)."""
    from architectures.io import read
    from pvd.data import load_dataset
    from pvd.distill import convert
    from pvd.recipes import build_recipe
    from pvd.train import evaluate_test, train

    path = _cell_path("speedup", speedup_key(size, budget, distil_steps))
    if path.exists() and not redo:
        return
    teacher = speedup_teacher(size, teacher_steps)
    data = load_dataset(_dataset("texture", size))
    machine = _machine()
    recipe = build_recipe(
        "mlp", "cpu", None, [f"train.time_budget_s={budget}", "train.steps=100000"]
    )
    scratch = train(data, "mlp", recipe)
    scratch_psnr = evaluate_test(scratch, data)["psnr"]
    overrides = [f"distill.eval_every={eval_every}", f"distill.steps={distil_steps}"]
    _, report = convert(teacher, "mlp", overrides=overrides, data=data)
    reached = next((p for p in report.curve if p["quality_psnr"] >= scratch_psnr), None)
    t_scratch = scratch.provenance["train_seconds"]
    t_scratch_cpu = scratch.provenance["train_cpu_seconds"]
    t_distil = reached["seconds"] + report.setup_seconds if reached else None
    t_distil_cpu = reached["cpu_seconds"] + report.setup_seconds if reached else None
    cell = {
        "key": speedup_key(size, budget, distil_steps),
        "size": size,
        "teacher_file": str(teacher.relative_to(ROOT)),
        "scratch_budget_s": budget,
        "t_scratch_s": t_scratch,
        "t_scratch_cpu_s": t_scratch_cpu,
        "scratch_steps": scratch.provenance["steps"],
        "scratch_test_psnr": scratch_psnr,
        "teacher_test_psnr": report.teacher_quality["psnr"],
        "teacher_train_seconds": read(teacher)[0].provenance.get("train_seconds"),
        "distil_steps": report.steps,
        "distil_seconds": report.seconds,
        "distil_cpu_seconds": report.cpu_seconds,
        "distil_final_test_psnr": report.quality["psnr"],
        "distil_final_fidelity_psnr": report.fidelity["psnr"],
        "eval_every": eval_every,
        "curve": report.curve,
        "distil_setup_seconds": report.setup_seconds,
        "t_distil_s": t_distil,
        "t_distil_cpu_s": t_distil_cpu,
        "speedup": t_scratch / t_distil if reached else None,
        "speedup_cpu": t_scratch_cpu / t_distil_cpu if reached else None,
        **machine,
    }
    _write_json_atomic(path, cell)


# -- BENCHMARKS.md ---------------------------------------------------------------------------
def _student_table(cells: dict[str, dict]) -> str:
    lines = [
        "| student | fidelity PSNR (dB) | SSIM | quality PSNR (dB) | steps | time (s) | set-up (s) "
        "| stage 1/2/3 (s) | parameters | MB | load at start |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in ARCHS:
        c = cells.get(f"hashgrid->{s}")
        if c:
            lines.append(
                f"| {s} | {c['fidelity_psnr']:.2f} | {c['fidelity_ssim']:.3f} | "
                f"{c['quality_psnr']:.2f} | {c['steps']} | {c['seconds']:.0f} | "
                f"{c['setup_seconds']:.0f} | {'/'.join(f'{v:.0f}' for v in c['stage_seconds'])} | "
                f"{c['parameters']:,} | {c['bytes'] / 1e6:.2f} | {c['load_at_start']} |"
            )
    return "\n".join(lines)


def _cell_time(cell: dict) -> str:
    if "cpu_seconds" in cell:
        return f"{cell['cpu_seconds']:.0f} CPU-s"
    return f"{cell['seconds']:.0f} s *wall*"


def _matrix_table(cells: dict[str, dict]) -> str:
    head = "| teacher \\ student | " + " | ".join(ARCHS) + " |"
    lines = [
        "Each cell: fidelity vs teacher / quality vs ground truth (dB), conversion CPU time",
        "(CPU-seconds of one torch thread, evaluation excluded; wall time where a cell predates",
        "the CPU clock, marked *wall*).",
        "",
        head,
        "|---" * (len(ARCHS) + 1) + "|",
    ]
    for t in ARCHS:
        row = [t]
        for s in ARCHS:
            c = cells.get(f"{t}->{s}")
            row.append(
                "—"
                if t == s
                else (
                    f"{c['fidelity_psnr']:.1f} / {c['quality_psnr']:.1f}, {_cell_time(c)}"
                    if c
                    else "not run"
                )
            )
        lines.append("| " + " | ".join(row) + " |")
    teachers = {c["teacher"]: c["teacher_quality_psnr"] for c in cells.values()}
    if teachers:
        lines += [
            "",
            "Teachers' test PSNR vs ground truth: "
            + ", ".join(f"{a} {teachers[a]:.2f} dB" for a in ARCHS if a in teachers),
        ]
    return "\n".join(lines)


def _ablation_table(cells: dict[str, dict]) -> str:
    lines = [
        "| student | variant | fidelity PSNR (dB) | quality PSNR (dB) | wall (s) | CPU-s "
        "| set-up (s) | threads | load at start |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s, _ in ABLATION:
        c = cells.get(f"{s}: {name}")
        if c:
            cpu = f"{c['cpu_seconds']:.0f}" if "cpu_seconds" in c else "—"
            lines.append(
                f"| {s} | {name} | {c['fidelity_psnr']:.2f} | {c['quality_psnr']:.2f} | "
                f"{c['seconds']:.0f} | {cpu} | {c['setup_seconds']:.0f} | "
                f"{c['torch_threads']} | {c['load_at_start']} |"
            )
    return "\n".join(lines)


def _speedup_lines(c: dict) -> list[str]:
    teacher = (
        "the shipped hash grid"
        if c["teacher_file"] == str(SHIPPED.relative_to(ROOT))
        else f"a hash grid trained at {c['size']} px (`{c['teacher_file']}`)"
    )
    lines = [
        f"**{c['size']} px, {c['scratch_budget_s']:.0f}-s from-scratch budget** "
        f"({c['torch_threads']} threads, load {c['load_at_start']} at start, {c['date']}; "
        f"`python benchmarks/convert.py speedup --size {c['size']} --scratch-budget "
        f"{c['scratch_budget_s']:.0f} --distil-steps {c['distil_steps']} --eval-every "
        f"{c['eval_every']}`)",
        "",
        f"- from-scratch MLP (`cpu` preset, {c['scratch_steps']} steps): test PSNR "
        f"**{c['scratch_test_psnr']:.2f} dB**, T_scratch = {c['t_scratch_s']:.0f} s "
        f"({c['t_scratch_cpu_s']:.0f} CPU-s) of training",
        f"- teacher: {teacher}, test PSNR {c['teacher_test_psnr']:.2f} dB (its training took "
        f"{c['teacher_train_seconds']:.0f} s, not counted)",
        f"- distilled MLP (`cpu` recipe, {c['distil_steps']} steps, {c['distil_seconds']:.0f} s, "
        f"{c['distil_cpu_seconds']:.0f} CPU-s): final test PSNR {c['distil_final_test_psnr']:.2f}"
        f" dB, fidelity {c['distil_final_fidelity_psnr']:.2f} dB",
    ]
    if c["t_distil_s"] is not None:
        lines.append(
            f"- T_distil = {c['t_distil_s']:.1f} s ({c['t_distil_cpu_s']:.1f} CPU-s): set-up plus "
            f"distillation up to the first evaluation (every {c['eval_every']} steps) at or above "
            f"the from-scratch PSNR → **speed-up {c['speedup']:.1f}×** "
            f"({c['speedup_cpu']:.1f}× in CPU time)"
        )
    else:
        lines.append("- the distilled MLP did not reach the from-scratch PSNR: no speed-up")
    curve = ", ".join(f"{p['seconds']:.0f} s: {p['quality_psnr']:.2f}" for p in c["curve"])
    lines.append(f"- distilled MLP's test PSNR over time (dB): {curve}")
    return lines


def _speedup_text(cells: dict[str, dict]) -> str:
    if not cells:
        return "Not run yet."
    lines: list[str] = []
    for c in sorted(
        cells.values(), key=lambda c: (c["size"], c["scratch_budget_s"], c["distil_steps"])
    ):
        lines += [*_speedup_lines(c), ""]
    return "\n".join(lines[:-1])


def report() -> None:
    replace_markdown_block(
        "convert-students",
        _student_table(_cached("students")),
        "python benchmarks/convert.py students",
    )
    replace_markdown_block(
        "convert-matrix", _matrix_table(_cached("matrix")), "python benchmarks/convert.py matrix"
    )
    replace_markdown_block(
        "convert-ablation",
        _ablation_table(_cached("ablation")),
        "python benchmarks/convert.py ablation",
    )
    replace_markdown_block(
        "convert-speedup", _speedup_text(_cached("speedup")), "python benchmarks/convert.py speedup"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", nargs="?", choices=("students", "matrix", "ablation", "speedup"))
    parser.add_argument("--redo", default="", help="comma-separated cell keys to rerun")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th cell from the i-th")
    parser.add_argument("--size", type=int, default=64, help="image size of the speed-up (px)")
    parser.add_argument("--scratch-budget", type=float, default=600.0)
    parser.add_argument(
        "--teacher-steps", type=int, default=1200, help="steps of a speed-up teacher's training"
    )
    parser.add_argument(
        "--eval-every", type=int, default=25, help="steps between the distilled MLP's evaluations"
    )
    parser.add_argument(
        "--distil-steps", type=int, default=600, help="the distilled MLP's steps (its cpu recipe's)"
    )
    parser.add_argument("--report", action="store_true", help="only rewrite BENCHMARKS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.section and not args.report:
        redo = {k for k in args.redo.split(",") if k}
        if args.section == "speedup":
            run_speedup(
                args.size,
                args.scratch_budget,
                args.teacher_steps,
                args.eval_every,
                args.distil_steps,
                bool(redo),
            )
        else:
            i, n = (int(v) for v in args.shard.split("/"))
            run_section(args.section, redo, (i, n))
    report()


if __name__ == "__main__":
    main()
