"""Teacher training benchmark: every architecture on every procedural scene, `cpu` preset.

For each (architecture, scene) cell: make the scene's dataset (deterministic, cached under
``benchmarks/work/``), train with the architecture's `cpu` recipe for ``--budget`` seconds
(``train.time_budget_s``, with the step limit raised to ``--max-steps`` so that the budget is what
stops the run and the schedules run on its time fraction), evaluate on the test split,
and record test PSNR/SSIM vs ground truth, steps, training wall time, parameters and checkpoint
bytes. Finished cells are cached in ``benchmarks/results/teachers.json`` (written atomically after
each cell) so an interrupted run resumes; the table is rewritten into BENCHMARKS.md between its
``teachers`` markers.

    python benchmarks/teachers.py                       # all six architectures, three scenes
    python benchmarks/teachers.py --archs hashgrid      # one architecture
    python benchmarks/teachers.py --redo hashgrid/texture

Wall-clock figures are only comparable on the same machine with nothing else running: each cell
records the 1-minute load average at its start.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "teachers.json"
WORK = ROOT / "benchmarks" / "work"
MARKDOWN = ROOT / "BENCHMARKS.md"
ARCHS = ("hashgrid", "mlp", "plenoxels", "tensorf", "mflod", "mulfagrid")
SCENES = ("texture", "glossy", "transparent")
COMMAND = "python benchmarks/teachers.py --size 64 --budget 300 --max-steps 20000"


def _write_json_atomic(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _dataset(scene: str, size: int) -> Path:
    from pvd.scenes import make_dataset

    folder = WORK / "data" / f"{scene}-{size}"
    if not (folder / "transforms_test.json").exists():
        make_dataset(scene, folder, size=size, overwrite=True)
    return folder


def run_cell(arch: str, scene: str, size: int, budget: float, max_steps: int) -> dict:
    from pvd.data import load_dataset
    from pvd.recipes import build_recipe
    from pvd.train import evaluate_test, train

    data = _dataset(scene, size)
    dataset = load_dataset(data)
    recipe = build_recipe(
        arch, "cpu", None, [f"train.time_budget_s={budget}", f"train.steps={max_steps}"]
    )
    load = os.getloadavg()[0]
    model = train(dataset, arch, recipe)
    metrics = evaluate_test(model, dataset)
    checkpoint = model.save(WORK / "checkpoints" / f"{arch}-{scene}-{size}.safetensors")
    return {
        "arch": arch,
        "scene": scene,
        "size": size,
        "test_psnr": round(metrics["psnr"], 3),
        "test_ssim": round(metrics["ssim"], 4),
        "steps": model.provenance["steps"],
        "train_seconds": model.provenance["train_seconds"],
        "eval_seconds": metrics["eval_seconds"],
        "parameters": model.field.num_parameters,
        "checkpoint_bytes": checkpoint.stat().st_size,
        "load_at_start": round(load, 2),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.date.today().isoformat(),
    }


def table(cells: dict[str, dict]) -> str:
    lines = [
        "| architecture | scene | test PSNR (dB) | SSIM | steps | train time (s) | parameters | "
        "checkpoint (MB) | load at start |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch in ARCHS:
        for scene in SCENES:
            c = cells.get(f"{arch}/{scene}")
            if c is None:
                continue
            lines.append(
                f"| {arch} | {scene} | {c['test_psnr']:.2f} | {c['test_ssim']:.3f} | "
                f"{c['steps']} | {c['train_seconds']:.0f} | "
                f"{c['parameters']:,} | {c['checkpoint_bytes'] / 1e6:.2f} | {c['load_at_start']} |"
            )
    return "\n".join(lines)


def replace_markdown_block(name: str, body: str, command: str) -> None:
    """Rewrite BENCHMARKS.md between ``<!-- name:begin -->`` and ``<!-- name:end -->`` (appended
    at the end when the markers are missing) with the command and ``body``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\nCommand: `{command}`\n\n{body}\n{end}"
    text = MARKDOWN.read_text() if MARKDOWN.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = MARKDOWN.with_name(f".{MARKDOWN.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, MARKDOWN)  # readers (and other benchmarks) never see a half-written file


def update_markdown(cells: dict[str, dict], command: str) -> None:
    replace_markdown_block("teachers", table(cells), command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--scenes", default=",".join(SCENES))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training per cell")
    parser.add_argument(
        "--max-steps", type=int, default=20000, help="step limit (the budget stops first)"
    )
    parser.add_argument("--redo", default="", help="comma-separated arch/scene cells to rerun")
    parser.add_argument(
        "--report", action="store_true", help="only rewrite BENCHMARKS.md from the cache"
    )
    args = parser.parse_args()
    cells = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.report:
        update_markdown(cells, COMMAND)
        return
    redo = {c for c in args.redo.split(",") if c}
    for arch in args.archs.split(","):
        for scene in args.scenes.split(","):
            key = f"{arch}/{scene}"
            if key in cells and key not in redo:
                continue
            print(f"[teachers] {key} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            cells[key] = run_cell(arch, scene, args.size, args.budget, args.max_steps)
            print(
                f"[teachers] {key}: {cells[key]['test_psnr']:.2f} dB "
                f"({time.perf_counter() - start:.0f} s with evaluation)",
                file=sys.stderr,
                flush=True,
            )
            _write_json_atomic(RESULTS, cells)
    update_markdown(cells, COMMAND)


if __name__ == "__main__":
    main()
