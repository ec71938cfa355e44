"""``pvd compare`` on the shipped teacher: every architecture, ``cpu`` preset, 64-px ``texture``.

Runs :func:`pvd.compare` into ``benchmarks/work/compare-<preset>/`` (students are large and stay
out of git; the folder resumes: finished students are skipped), then copies ``results.md``,
``results.json`` and the four PNGs into ``benchmarks/results/compare/<preset>/`` and writes the
table into BENCHMARKS.md.

    python benchmarks/compare.py                  # distilled students only
    python benchmarks/compare.py --from-scratch   # plus each trained from the images, same time
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from teachers import WORK, _dataset, replace_markdown_block  # noqa: E402

SHIPPED = ROOT / "checkpoints" / "hashgrid-texture.safetensors"
FIGURES = ("quality_vs_size", "quality_vs_time", "fidelity_curves", "sheet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--from-scratch", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from pvd.comparison import compare
    from pvd.progress import RichReporter

    suffix = "-scratch" if args.from_scratch else ""
    work = WORK / f"compare-{args.preset}{suffix}"
    with RichReporter() as reporter:
        table = compare(
            SHIPPED,
            "all",
            out=work,
            data=_dataset("texture", 64),
            from_scratch=args.from_scratch,
            preset=args.preset,
            device=args.device,
            reporter=reporter,
        )
    results = ROOT / "benchmarks" / "results" / "compare" / f"{args.preset}{suffix}"
    results.mkdir(parents=True, exist_ok=True)
    for name in ("results.md", "results.json", *(f"{f}.png" for f in FIGURES)):
        shutil.copyfile(work / name, results / name)
    command = "python benchmarks/compare.py" + (" --from-scratch" if args.from_scratch else "")
    if args.preset != "cpu":
        command += f" --preset {args.preset} --device {args.device}"
    teacher = table.teacher
    body = (
        f"Teacher: the shipped {teacher['arch']} ({teacher['parameters']:,} parameters, test PSNR"
        f" {teacher['quality_psnr']:.2f} dB). Time: conversion wall time incl. set-up, evaluation"
        " excluded. Figures: "
        + ", ".join(
            f"[{f}](benchmarks/results/compare/{args.preset}{suffix}/{f}.png)" for f in FIGURES
        )
        + ".\n\n"
        + table.to_markdown()
    )
    replace_markdown_block(f"compare-{args.preset}{suffix}", body, command)
    print(table.to_markdown())


if __name__ == "__main__":
    main()
