"""Grid tangent kernel benchmark: a small reproduction of the MulFAGrid paper's GTK result with
pvd's own architectures, and the cost of `pvd gtk` per architecture.

Reproduction. The paper (Zhao, Fan, Liao & Yan, "Grounding and Enhancing Grid-based Models for
Neural Fields", CVPR 2024) argues that a grid with a learned kernel (MulFAGrid) has a wider GTK
spectrum and a lower generalisation measure Δ = Yᵀ G⁻¹ Y than grids with a fixed kernel. Here
each 2-D signal (a z = const slice of a procedural scene's σ_raw, one colour channel, and a
smooth wave) is regressed by pvd's 3-D fields evaluated on that plane — a trilinear grid with a
linear readout (Plenoxels' density channel), a hash grid (with its density head), TensoRF and
MulFAGrid, plus the NeRF MLP as a non-grid reference — by full-batch Adam on the σ_raw channel
alone (each architecture's own ``param_groups`` rates, no regulariser). Before and after
fitting, ``pvd.gtk`` measures the σ_raw kernel on held-out points of the plane, with w = the grid
tensors (the paper's w; the MLP has none, so w = all its parameters) and with w = all
parameters, and the held-out RMSE of the fit. MulFAGrid starts as a plain trilinear grid of the
same resolution, so at initialisation the two kernels coincide.

Cost. ``pvd gtk --arch A --preset cpu --scene texture --points N`` for every architecture, timed
in one process after a warm-up (the first ``torch.func`` call of a process imports
``torch._dynamo``, measured separately as the cold start).

Finished cells are cached in ``benchmarks/results/gtk/results.json`` (written atomically after
each cell), so an interrupted run resumes; the figure goes to
``benchmarks/results/gtk/spectra.png`` and the tables into BENCHMARKS.md between its ``gtk``
markers.

    OMP_NUM_THREADS=1 python benchmarks/gtk.py             # everything (cached cells are kept)
    OMP_NUM_THREADS=1 python benchmarks/gtk.py --redo waves/mulfagrid,timing/mlp/1024
    python benchmarks/gtk.py --report                      # rewrite figure and tables only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from teachers import _write_json_atomic, replace_markdown_block  # noqa: E402

import architectures  # noqa: E402
from pvd.scenes import get_scene  # noqa: E402
from pvd.tangent_kernel import SCENE_TARGET_FLOOR, analyse, gtk, plot_spectra  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gtk"
CACHE = RESULTS / "results.json"
FIGURE = RESULTS / "spectra.png"
COMMAND = "OMP_NUM_THREADS=1 python benchmarks/gtk.py"
ARCHS = ("hashgrid", "mlp", "plenoxels", "tensorf", "mflod", "mulfagrid")
#: The box every field and scene lives in; signals are sampled on the square it cuts at z.
HALF = 1.5


def _scene_sigma(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    scene = get_scene(name)
    return lambda x: scene.sigma_raw(x).clamp_min(SCENE_TARGET_FLOOR)


def _texture_red(x: torch.Tensor) -> torch.Tensor:
    down = torch.tensor([[0.0, 0.0, -1.0]], dtype=x.dtype).expand_as(x)
    return get_scene("texture").forward(x, down)[1][:, 0]


def _waves(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(2.5 * x[:, 0] + 1.0) * torch.cos(3.5 * x[:, 1]) + 0.5 * torch.sin(
        9.0 * x[:, 0] - 6.0 * x[:, 1]
    )


#: name → (description, plane z, label function of float64 points [N, 3])
SIGNALS: dict[str, tuple[str, float, Callable[[torch.Tensor], torch.Tensor]]] = {
    "texture-sigma": ("texture σ_raw (floor −2), z = 0", 0.0, _scene_sigma("texture")),
    "glossy-sigma": ("glossy σ_raw (floor −2), z = 0.05", 0.05, _scene_sigma("glossy")),
    "transparent-sigma": (
        "transparent σ_raw (floor −2), z = 0",
        0.0,
        _scene_sigma("transparent"),
    ),
    "texture-red": ("texture red channel (0 in empty space), z = 0", 0.0, _texture_red),
    "waves": ("sin(2.5x + 1)·cos(3.5y) + 0.5·sin(9x − 6y)", 0.0, _waves),
}
#: name → (architecture, config). Grids of 32 vertices per axis (the hash grid's finest level 64);
#: the MLP is the cpu preset's trunk.
MODELS: dict[str, tuple[str, dict]] = {
    "trilinear grid": ("plenoxels", {"resolution": 32}),
    "hash grid": (
        "hashgrid",
        {"levels": 8, "base_resolution": 4, "max_resolution": 64, "log2_table_size": 14},
    ),
    "tensorf": (
        "tensorf",
        {
            "initial_resolution": 32,
            "final_resolution": 32,
            "upsample_fractions": [],
            "density_components": 8,
            "appearance_components": 8,
        },
    ),
    "mulfagrid": ("mulfagrid", {"resolution": 32}),
    "mlp": ("mlp", {"depth": 4, "width": 128}),
}
GRID_MODELS = ("trilinear grid", "hash grid", "tensorf", "mulfagrid")


def plane_points(count: int, z: float, seed: int) -> torch.Tensor:
    """``count`` points uniform on the square ``[−1.5, 1.5]²`` at height ``z`` (float64)."""
    generator = torch.Generator().manual_seed(seed)
    xy = (torch.rand(count, 2, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * HALF
    return torch.cat([xy, torch.full((count, 1), z, dtype=torch.float64)], dim=1)


def spectrum_points(eigenvalues: list[float], count: int = 160) -> dict[str, list]:
    """The spectrum at about ``count`` log-spaced indices (1-based, first and last included):
    enough for a log-log plot, and a small cache."""
    n = len(eigenvalues)
    steps = torch.logspace(0.0, math.log10(n), count, dtype=torch.float64).round().long()
    indices = sorted({*steps.tolist(), 1, n})
    return {"index": indices, "value": [float(f"{eigenvalues[i - 1]:.5g}") for i in indices]}


def kernel_figures(field: architectures.RadianceField, x: torch.Tensor, y: torch.Tensor) -> dict:
    """GTK figures of the σ_raw kernel with w = grid (where there is a grid) and w = all, and
    the spectrum of the first (w = grid, or all for the MLP)."""
    out = {}
    for params in ("grid", "all"):
        if params == "grid" and field.arch == "mlp":
            continue
        report = gtk(field, x.float(), "sigma", params, y.float())
        out[params] = {
            "effective_rank": report.effective_rank,
            "condition_number": report.condition_number,
            "delta": report.delta,
        }
        if len(out) == 1:
            out[params]["spectrum"] = spectrum_points(report.eigenvalues)
    return out


def run_fit_cell(signal: str, model: str, steps: int, train_points: int, points: int) -> dict:
    _, z, label = SIGNALS[signal]
    arch, config = MODELS[model]
    x_train, x_eval = plane_points(train_points, z, 0), plane_points(points, z, 1)
    y_train, y_eval = label(x_train).float(), label(x_eval).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        field = architectures.build(arch, config)
    load = os.getloadavg()[0]
    init = kernel_figures(field, x_eval, y_eval)
    optimizer = torch.optim.Adam(field.param_groups(1e-2))
    start = time.perf_counter()
    for _ in range(steps):
        loss = (field.sigma_raw(x_train.float()) - y_train).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        train_rmse = float((field.sigma_raw(x_train.float()) - y_train).square().mean().sqrt())
        test_rmse = float((field.sigma_raw(x_eval.float()) - y_eval).square().mean().sqrt())
    return {
        "signal": signal,
        "model": model,
        "arch": arch,
        "config": config,
        "steps": steps,
        "init": init,
        "fitted": kernel_figures(field, x_eval, y_eval),
        "train_rmse": train_rmse,
        "test_rmse": test_rmse,
        "fit_seconds": seconds,
        "label_std": float(y_eval.std()),
        "load_at_start": round(load, 2),
    }


def run_timing_cell(arch: str, points: int) -> dict:
    load = os.getloadavg()[0]
    out: dict = {"arch": arch, "points": points, "load_at_start": round(load, 2)}
    for params in ("grid", "all"):
        if params == "grid" and arch == "mlp":
            continue
        start = time.perf_counter()
        report = analyse(arch=arch, preset="cpu", scene="texture", points=points, params=params)
        out[params] = {
            "seconds": report.seconds,
            "wall_seconds": time.perf_counter() - start,
            "peak_bytes": report.peak_bytes,
            "grid_parameters": report.grid_parameters,
            "dense_parameters": report.dense_parameters,
            "effective_rank": report.effective_rank,
        }
    return out


def cold_start() -> dict:
    """Seconds of the first ``torch.func`` use in this process, minus the same call warm."""
    field = architectures.build("hashgrid", {"levels": 2, "log2_table_size": 10})
    x = plane_points(32, 0.0, 2).float()
    times = []
    for _ in range(2):
        start = time.perf_counter()
        gtk(field, x, params="all")
        times.append(time.perf_counter() - start)
    return {"first_call_seconds": times[0], "second_call_seconds": times[1]}


# -- report ------------------------------------------------------------------------------------
def _arrow(a: float, b: float, spec: str) -> str:
    return f"{a:{spec}} → {b:{spec}}"


def fit_table(cells: dict[str, dict]) -> str:
    rows = [
        "| signal | model | effective rank, init → fitted | Δ (w = grid), init → fitted "
        "| Δ (w = all), fitted | held-out RMSE (label std) |",
        "|---|---|---|---|---|---|",
    ]
    for signal in SIGNALS:
        for model in MODELS:
            cell = cells.get(f"fit/{signal}/{model}")
            if cell is None:
                continue
            main = "grid" if "grid" in cell["fitted"] else "all"
            rank = _arrow(
                cell["init"][main]["effective_rank"], cell["fitted"][main]["effective_rank"], ".1f"
            )
            delta = (
                _arrow(cell["init"]["grid"]["delta"], cell["fitted"]["grid"]["delta"], ".3g")
                if main == "grid"
                else "— (no grid)"
            )
            rows.append(
                f"| {signal} | {model}{' (w = all)' if main == 'all' else ''} | {rank} | {delta} "
                f"| {cell['fitted']['all']['delta']:.3g} | {cell['test_rmse']:.3f} "
                f"({cell['label_std']:.2f}) |"
            )
    return "\n".join(rows)


def verdict(cells: dict[str, dict]) -> tuple[str, dict[str, int]]:
    """Per signal, after fitting (w = grid): which grid model has the widest spectrum (largest
    effective rank) and the lowest Δ, MulFAGrid against the plain trilinear grid, and whether
    the lowest Δ went with the lowest held-out RMSE."""
    counts = dict.fromkeys(
        ("signals", "widest", "lowest", "wider_than_grid", "lower_than_grid", "delta_predicts"), 0
    )
    lines = []
    for signal in SIGNALS:
        fitted = {m: cells.get(f"fit/{signal}/{m}") for m in GRID_MODELS}
        if any(c is None for c in fitted.values()):
            continue
        rank = {m: c["fitted"]["grid"]["effective_rank"] for m, c in fitted.items()}
        delta = {m: c["fitted"]["grid"]["delta"] for m, c in fitted.items()}
        rmse = {m: c["test_rmse"] for m, c in fitted.items()}
        widest, lowest = max(rank, key=rank.get), min(delta, key=delta.get)
        counts["signals"] += 1
        counts["widest"] += widest == "mulfagrid"
        counts["lowest"] += lowest == "mulfagrid"
        counts["wider_than_grid"] += rank["mulfagrid"] > rank["trilinear grid"]
        counts["lower_than_grid"] += delta["mulfagrid"] < delta["trilinear grid"]
        counts["delta_predicts"] += lowest == min(rmse, key=rmse.get)
        lines.append(
            f"- {signal}: widest spectrum {widest}, lowest Δ {lowest}, lowest held-out RMSE "
            f"{min(rmse, key=rmse.get)}; MulFAGrid vs trilinear grid: effective rank "
            f"{rank['mulfagrid']:.1f} vs {rank['trilinear grid']:.1f}, Δ "
            f"{delta['mulfagrid']:.3g} vs {delta['trilinear grid']:.3g}"
        )
    return "\n".join(lines), counts


def conclusion(counts: dict[str, int]) -> str:
    """The sentence on the paper's claim, written from the counts."""
    n = counts["signals"]
    agree = counts["widest"] > n / 2 and counts["lowest"] > n / 2
    return (
        f"**Does pvd agree with the paper?** {'Yes' if agree else 'No'}: the paper finds that "
        f"MulFAGrid has the wider spectrum and the lower Δ for most labels; here, among the four "
        f"grids after fitting, it had the widest spectrum on {counts['widest']} of {n} signals "
        f"and the lowest Δ on {counts['lowest']} of {n}, and against the plain trilinear grid it "
        f"started from, a wider spectrum on {counts['wider_than_grid']} and a lower Δ on "
        f"{counts['lower_than_grid']}. The lowest Δ went with the lowest held-out RMSE on "
        f"{counts['delta_predicts']} of {n} signals. Caveats: pvd's MulFAGrid is its own reading "
        f"of an unpublished code base (a positive kernel t·exp(m), not the paper's aᵀz + e; see "
        f"`architectures/mulfagrid.py`), the fits are short (500 Adam steps on 4,096 points) and "
        f"there is one seed per cell."
    )


def timing_table(cells: dict[str, dict]) -> str:
    rows = [
        "| architecture | N | grid / dense parameters | w = grid: s (peak MiB) "
        "| w = all: s (peak MiB) | load at start |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(k for k in cells if k.startswith("timing/") and k != "timing/cold-start"):
        cell = cells[key]
        every = cell["all"]
        parts = [
            f"{cell[p]['seconds']:.2f} ({cell[p]['peak_bytes'] / 2**20:.0f})" if p in cell else "—"
            for p in ("grid", "all")
        ]
        rows.append(
            f"| {cell['arch']} | {cell['points']} | {every['grid_parameters']:,} / "
            f"{every['dense_parameters']:,} | {parts[0]} | {parts[1]} | {cell['load_at_start']} |"
        )
    return "\n".join(rows)


def write_report(cells: dict[str, dict]) -> None:
    def spectra(signal: str, when: str) -> dict[str, tuple[list[int], list[float]]]:
        """Each model's spectrum for ``signal`` at ``when`` ("init" or "fitted"), w = grid
        where the model has a grid."""
        curves = {}
        for model in MODELS:
            cell = cells.get(f"fit/{signal}/{model}")
            if cell is not None:
                main = "grid" if "grid" in cell[when] else "all"
                spectrum = cell[when][main]["spectrum"]
                curves[f"{model} (w = {main})"] = (spectrum["index"], spectrum["value"])
        return curves

    panels: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    first = next(iter(SIGNALS))
    if init := spectra(first, "init"):
        panels[f"at initialisation (points of {first})"] = init
    for signal, (description, _, _) in SIGNALS.items():
        if curves := spectra(signal, "fitted"):
            panels[f"fitted: {description}"] = curves
    if panels:
        plot_spectra(
            panels, FIGURE, "GTK spectra of σ_raw on 1,024 held-out points of a plane (G / tr G)"
        )
    per_signal, counts = verdict(cells)
    cold = cells.get("timing/cold-start", {})
    body = "\n".join(
        [
            "## Grid tangent kernel (`pvd gtk`): a small reproduction and its cost",
            "",
            "Each 2-D signal is sampled on the square [−1.5, 1.5]² of a plane z = const and "
            "regressed by pvd's 3-D fields evaluated on that plane: a trilinear grid with a "
            "linear readout (Plenoxels' density channel, 32³), a hash grid with its density head "
            "(8 levels, 4 → 64), TensoRF (32³, 8 components), MulFAGrid (32³) and the NeRF MLP "
            "(4 × 128) for reference, by 500 full-batch Adam steps on 4,096 points (each "
            "architecture's own learning rates, σ_raw channel only, no regulariser). The kernel "
            "is `pvd.gtk`'s σ_raw GTK on 1,024 held-out points of the plane, trace-normalised, "
            "with w = the grid tensors (the paper's w; w = all for the MLP), before and after "
            "fitting; Δ = Yᵀ(G/tr G + λI)⁻¹Y with λ = 1e-3 × mean diag and Y the signal at those "
            "points; the effective rank is exp of the spectral entropy (1,024 = a flat "
            "spectrum). MulFAGrid starts as the plain trilinear grid, so its initial kernel is "
            "the trilinear grid's exactly (identical figures in the first column, and its curve "
            "lies on the grid's in the first panel).",
            "",
            "![GTK spectra](benchmarks/results/gtk/spectra.png)",
            "",
            fit_table(cells),
            "",
            per_signal,
            "",
            conclusion(counts),
            "",
            "Cost of `pvd gtk --arch A --preset cpu --scene texture --points N` (σ_raw, seconds "
            "of the GTK computation after a warm-up call in the same process; peak = bytes of "
            "the pieces gtk builds; the 2-core machine was shared with other benchmarks, see the "
            "load column):",
            "",
            timing_table(cells),
            "",
            f"Cold start: the first `torch.func` call of a process took "
            f"{cold.get('first_call_seconds', math.nan):.2f} s against "
            f"{cold.get('second_call_seconds', math.nan):.2f} s for the same call warm (it "
            f"imports `torch._dynamo`); a `pvd gtk` command pays it once.",
        ]
    )
    replace_markdown_block("gtk", body, COMMAND)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", default=",".join(SIGNALS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=500, help="Adam steps per fit")
    parser.add_argument("--train-points", type=int, default=4096)
    parser.add_argument("--points", type=int, default=1024, help="N of the kernels")
    parser.add_argument("--timing-points", default="1024,4096")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--redo", default="", help="comma-separated cells to rerun")
    parser.add_argument("--report", action="store_true", help="only rewrite figure and tables")
    args = parser.parse_args()
    cells = _load()
    # cells: "signal/model" (a fit), "timing/cold-start", "timing/arch/N"
    redo = {
        c if c.startswith(("fit/", "timing/")) else f"fit/{c}" for c in args.redo.split(",") if c
    }
    cold = "timing/cold-start"
    if not args.report and not args.skip_timing and (cold not in cells or cold in redo):
        cells[cold] = cold_start()  # before anything else uses torch.func
        _write_json_atomic(CACHE, cells)
    if not args.report:
        for signal in args.signals.split(","):
            for model in args.models.split(","):
                key = f"fit/{signal}/{model}"
                if key in cells and key not in redo:
                    continue
                print(f"fitting {key} ...", file=sys.stderr, flush=True)
                cells[key] = run_fit_cell(signal, model, args.steps, args.train_points, args.points)
                _write_json_atomic(CACHE, cells)
        if not args.skip_timing:
            for points in (int(n) for n in args.timing_points.split(",")):
                for arch in ARCHS:
                    key = f"timing/{arch}/{points}"
                    if key in cells and key not in redo:
                        continue
                    print(f"timing {key} ...", file=sys.stderr, flush=True)
                    cells[key] = run_timing_cell(arch, points)
                    _write_json_atomic(CACHE, cells)
    write_report(cells)


def _load() -> dict[str, dict]:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {}


if __name__ == "__main__":
    main()
