"""The figures of ``pvd compare``: quality vs size and vs time, fidelity curves, an image sheet.

matplotlib is imported inside each function with the non-interactive Agg backend (no display is
needed); every PNG is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .comparison import ComparisonTable, StudentRecord
    from .model import TrainedModel

#: Views of the image sheet (the first of the held-out cameras, evenly spread).
SHEET_VIEWS = 3
#: Absolute error (mean over RGB) shown as full scale in the sheet's error maps.
ERROR_SCALE = 0.2
_MARKERS = {"distilled": "o", "from scratch": "s"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        figure.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        _pyplot().close(figure)


def _colours(archs: list[str]) -> dict[str, Any]:
    cmap = _pyplot().get_cmap("tab10")
    return {arch: cmap(i % 10) for i, arch in enumerate(archs)}


def _quality_axis(table: ComparisonTable) -> tuple[str, str]:
    """(record attribute, axis label): quality vs ground truth when every record has it."""
    if table.records and all(r.quality_psnr is not None for r in table.records):
        return "quality_psnr", "test PSNR vs ground truth (dB)"
    return "fidelity_psnr", "fidelity PSNR vs teacher (dB)"


def plot_quality(table: ComparisonTable, x: str, path: Path) -> None:
    """Quality (or fidelity, without ground truth) against ``x``: ``"bytes"`` (stored size, MB,
    log axis) or ``"seconds"`` (conversion or training time, s). One colour per architecture,
    one marker per method; the teacher's quality as a dashed line."""
    plt = _pyplot()
    attribute, label = _quality_axis(table)
    archs = list(dict.fromkeys(r.arch for r in table.records))
    colours = _colours(archs)
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for record in table.records:
        value = record.bytes / 1e6 if x == "bytes" else record.seconds + record.setup_seconds
        axes.scatter(
            value,
            getattr(record, attribute),
            color=colours[record.arch],
            marker=_MARKERS[record.method],
            s=48,
            zorder=3,
        )
        axes.annotate(
            record.arch,
            (value, getattr(record, attribute)),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    teacher_quality = table.teacher.get("quality_psnr")
    handles = [
        axes.scatter([], [], color="black", marker=_MARKERS[m], label=m)
        for m in dict.fromkeys(r.method for r in table.records)
    ]
    if attribute == "quality_psnr" and teacher_quality is not None:
        handles.append(
            axes.axhline(
                teacher_quality,
                color="grey",
                linestyle="--",
                linewidth=1,
                label=f"teacher ({table.teacher['arch']}) {teacher_quality:.2f} dB",
            )
        )
    axes.legend(handles=handles, loc="best", fontsize=8)
    if x == "bytes":
        from matplotlib import ticker

        axes.set_xscale("log")
        axes.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axes.xaxis.set_minor_formatter(ticker.NullFormatter())
        axes.set_xlabel("stored size (MB, log scale)")
        axes.set_title("Quality vs size")
    else:
        axes.set_xlabel("conversion / training time (s, evaluation excluded)")
        axes.set_title("Quality vs time")
    axes.set_ylabel(label)
    axes.grid(True, alpha=0.3)
    _save(figure, path)


def plot_fidelity_curves(table: ComparisonTable, path: Path) -> None:
    """Fidelity to the teacher over the conversion steps, one line per distilled student."""
    plt = _pyplot()
    distilled = [r for r in table.records if r.method == "distilled" and r.curve]
    archs = list(dict.fromkeys(r.arch for r in distilled))
    colours = _colours(archs)
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for record in distilled:
        axes.plot(
            [p["step"] for p in record.curve],
            [p["fidelity_psnr"] for p in record.curve],
            marker=".",
            color=colours[record.arch],
            label=record.arch if record.seed == 0 else None,
            alpha=1.0 if record.seed == 0 else 0.4,
        )
    axes.set_xlabel("conversion step")
    axes.set_ylabel("fidelity PSNR vs teacher (dB)")
    axes.set_title(f"Fidelity over the conversion (teacher: {table.teacher['arch']})")
    if distilled:
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "no curve recorded", ha="center", transform=axes.transAxes)
    axes.grid(True, alpha=0.3)
    _save(figure, path)


def image_sheet(
    teacher: TrainedModel,
    students: list[tuple[StudentRecord, TrainedModel]],
    path: Path,
    views: int = SHEET_VIEWS,
) -> None:
    """Teacher and every student on the same held-out views; under each student its error map
    |student − teacher| (mean over RGB, full scale :data:`ERROR_SCALE`)."""
    from .model import held_out_cameras

    plt = _pyplot()
    cameras = held_out_cameras(teacher)
    count = min(views, len(cameras))
    indices = [round(i * len(cameras) / count) for i in range(count)]
    reference = teacher.render_views(cameras, indices)
    renders = [model.render_views(cameras, indices) for _, model in students]
    columns = 1 + len(students)
    figure, grid = plt.subplots(
        2 * count, columns, figsize=(1.9 * columns, 3.8 * count), squeeze=False
    )
    error_image = None
    for row, image in enumerate(reference):
        top, bottom = grid[2 * row], grid[2 * row + 1]
        top[0].imshow(image.numpy())
        top[0].set_title(f"teacher ({teacher.field.arch})", fontsize=8)
        bottom[0].text(
            0.5,
            0.5,
            f"view {indices[row]}\nerror |s − t|",
            ha="center",
            va="center",
            fontsize=8,
            transform=bottom[0].transAxes,
        )
        for column, ((record, _), images) in enumerate(zip(students, renders, strict=True), 1):
            error = (images[row] - image).abs().mean(-1)
            top[column].imshow(images[row].numpy())
            psnr = -10.0 * torch.log10((images[row] - image).pow(2).mean().clamp_min(1e-10))
            label = record.arch + (" (scratch)" if record.method == "from scratch" else "")
            top[column].set_title(f"{label}\n{float(psnr):.1f} dB", fontsize=8)
            error_image = bottom[column].imshow(
                error.numpy(), cmap="magma", vmin=0.0, vmax=ERROR_SCALE
            )
    for axes in grid.flat:
        axes.set_xticks([])
        axes.set_yticks([])
    if error_image is not None:
        bar = figure.colorbar(error_image, ax=list(grid.flat), shrink=0.5, pad=0.01)
        bar.set_label("absolute error (mean over RGB)")
    _save(figure, path)
