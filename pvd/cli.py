"""The ``pvd`` command line (typer + rich).

Heavy modules (torch, nerfacc) are imported inside the commands so ``pvd --help`` starts fast.
Results go to stdout (``--json`` for machine-readable output); progress and messages to stderr.
A user's mistake (:class:`pvd.errors.UserError`, :class:`architectures.ArchitectureError`) is
printed as one ``error: …`` line with exit status 2 and no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="pvd",
    help="Progressive volume distillation: train, inspect and convert radiance fields.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
scenes_app = typer.Typer(help="Procedural scenes with exact ground truth.", no_args_is_help=True)
app.add_typer(scenes_app, name="scenes")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="Format of another tool's checkpoint (e.g. tensorf-th, svox2, pvd-pth, "
        "nerfstudio-tensorf); default: detected from the file's content.",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1, or auto.")]
RecipeOpt = Annotated[Path | None, typer.Option(help="Recipe TOML overriding the preset.")]
PresetOpt = Annotated[str, typer.Option(help="cpu, paper or auto.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a recipe value: section.key=value.")
]


def _device(name: str) -> str:
    import torch

    from .errors import UserError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: pvd runs on cpu or cuda")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {name}: CUDA is not available on this machine; use --device cpu"
            )
        if (device.index or 0) >= torch.cuda.device_count():
            raise UserError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return name


def _parse_aabb(text: str | None) -> tuple[float, ...] | None:
    from .errors import UserError

    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise UserError(
            f"--aabb needs 6 numbers 'xmin ymin zmin xmax ymax zmax', got '{text}'"
        ) from None
    if len(values) != 6:
        raise UserError(
            f"--aabb needs 6 numbers 'xmin ymin zmin xmax ymax zmax', got {len(values)}"
        )
    return values


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _console():
    from rich.console import Console

    return Console()


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Dataset folder (Blender or nerfstudio format).")],
    arch: Annotated[str, typer.Option(help="Architecture (see `pvd info --help`).")] = "hashgrid",
    preset: PresetOpt = "auto",
    steps: Annotated[
        int | None, typer.Option(help="Training steps (overrides the recipe).")
    ] = None,
    time_budget: Annotated[
        float | None, typer.Option(help="Stop after this many seconds of training.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the recipe).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write.")] = None,
    recipe: RecipeOpt = None,
    set_: SetOpt = None,
    aabb: Annotated[
        str | None, typer.Option(help="Scene box 'xmin ymin zmin xmax ymax zmax'.")
    ] = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Train a field on a dataset's images and write a self-contained checkpoint."""
    import architectures

    from .data import load_dataset
    from .errors import UserError
    from .progress import RichReporter
    from .recipes import build_recipe, resolve_preset
    from .train import evaluate_test, settings_from_recipe
    from .train import train as run_training

    name = architectures.canonical_name(arch)
    dev = _device(device)
    chosen = resolve_preset(preset, dev)
    assignments = list(set_ or [])
    if steps is not None:
        assignments.append(f"train.steps={steps}")
    if time_budget is not None:
        assignments.append(f"train.time_budget_s={time_budget}")
    if seed is not None:
        assignments.append(f"train.seed={seed}")
    full_recipe = build_recipe(name, chosen, recipe, assignments)
    settings_from_recipe(name, full_recipe)
    dataset = load_dataset(data, aabb=_parse_aabb(aabb))
    out = out or Path(f"{name}-{dataset.root.name}.safetensors")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a .safetensors file name")
    with RichReporter() as reporter:
        reporter.message(
            f"preset: {chosen} · device: {dev} · {len(dataset.split('train'))} training images"
        )
        model = run_training(dataset, name, full_recipe, device=dev, reporter=reporter)
        model.save(out)  # saved before evaluation, so a failure there keeps the trained model
        metrics = None
        if "test" in dataset.splits:
            metrics = evaluate_test(model, dataset)
            model.save(out)
    result = {
        "checkpoint": str(out),
        "arch": name,
        "preset": chosen,
        "steps": model.provenance["steps"],
        "train_seconds": model.provenance["train_seconds"],
        "parameters": model.field.num_parameters,
        "bytes": out.stat().st_size,
        "test": metrics,
    }
    if as_json:
        _print_json(result)
        return
    test = (
        f"test PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}"
        if metrics
        else "no test split"
    )
    _console().print(
        f"wrote {out}: {name}, {result['parameters']:,} parameters, "
        f"{result['bytes'] / 1e6:.2f} MB, "
        f"{result['steps']} steps in {result['train_seconds']:.0f} s; {test}"
    )


@app.command()
def convert(
    teacher: Annotated[
        Path, typer.Argument(help="Teacher: a pvd checkpoint or another tool's (see `pvd import`).")
    ],
    to: Annotated[str, typer.Option(help="Student architecture (mlp, plenoxels, tensorf, …).")],
    from_: FromOpt = None,
    out: Annotated[Path | None, typer.Option(help="Student checkpoint to write.")] = None,
    recipe: RecipeOpt = None,
    preset: PresetOpt = "auto",
    steps: Annotated[
        int | None, typer.Option(help="Distillation steps (overrides the recipe).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset with ground truth: adds quality to the report.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted conversion writing --out.")
    ] = False,
    inherit_decoder: Annotated[
        bool | None,
        typer.Option("--inherit-decoder/--no-inherit-decoder", help="Copy the teacher's decoder."),
    ] = None,
    warm_start: Annotated[
        bool | None, typer.Option("--warm-start/--no-warm-start", help="Plenoxels/TensoRF fit.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the recipe).")] = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Convert a trained field into another architecture by progressive volume distillation."""
    import architectures

    from .data import load_dataset
    from .distill import convert as run_conversion
    from .errors import UserError
    from .progress import RichReporter
    from .recipes import resolve_preset

    name = architectures.canonical_name(to)
    dev = _device(device)
    chosen = resolve_preset(preset, dev)
    assignments = list(set_ or [])
    for key, value in (("inherit_decoder", inherit_decoder), ("warm_start", warm_start)):
        if value is not None:
            assignments.append(f"distill.{key}={str(value).lower()}")
    if seed is not None:
        assignments.append(f"distill.seed={seed}")
    out = out or teacher.with_name(f"{teacher.stem}-to-{name}.safetensors")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a .safetensors file name")
    if out.resolve() == teacher.resolve():
        raise UserError(f"--out {out}: would overwrite the teacher; choose another file name")
    dataset = load_dataset(data) if data is not None else None
    with RichReporter() as reporter:
        _, report = run_conversion(
            teacher,
            name,
            recipe,
            preset=chosen,
            overrides=assignments,
            steps=steps,
            data=dataset,
            out=out,
            resume=resume,
            device=dev,
            reporter=reporter,
            kind=from_,
        )
    if as_json:
        _print_json(report.to_dict())
        return
    console = _console()
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)


@app.command()
def compare(
    teacher: Annotated[Path, typer.Argument(help="Teacher checkpoint.")],
    to: Annotated[str, typer.Option(help="'all' or a comma list: mlp,tensorf,…")] = "all",
    out: Annotated[
        Path | None, typer.Option(help="Folder for students, results.*, plots, image sheet.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset: quality vs ground truth, --from-scratch images.")
    ] = None,
    from_scratch: Annotated[
        bool,
        typer.Option("--from-scratch", help="Also train each from the images, same wall time."),
    ] = False,
    gtk: Annotated[
        bool, typer.Option("--gtk", help="Add grid-tangent-kernel columns (pvd gtk).")
    ] = False,
    from_: FromOpt = None,
    recipe: RecipeOpt = None,
    preset: PresetOpt = "auto",
    seeds: Annotated[int, typer.Option(help="Repeat every student with seeds 0..N-1.")] = 1,
    steps: Annotated[int | None, typer.Option(help="Distillation steps per student.")] = None,
    set_: SetOpt = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Convert one teacher into several architectures and compare quality, size and speed."""
    from rich.table import Table

    from .comparison import compare as run_comparison
    from .progress import RichReporter
    from .recipes import resolve_preset

    dev = _device(device)
    with RichReporter() as reporter:
        table = run_comparison(
            teacher,
            to,
            out=out,
            data=data,
            from_scratch=from_scratch,
            gtk=gtk,
            recipe=recipe,
            preset=resolve_preset(preset, dev),
            seeds=seeds,
            steps=steps,
            overrides=list(set_ or []),
            device=dev,
            reporter=reporter,
            kind=from_,
        )
    if as_json:
        _print_json(table.to_dict())
        return
    view = Table(title=f"teacher: {table.teacher['arch']} ({table.teacher['source']})")
    columns = ["arch", "method", "seed", "MB", "time s", "fidelity dB", "quality dB", "rays/s"]
    for column in columns + (["GTK rank", "GTK Δ"] if gtk else []):
        view.add_column(column, justify="left" if column in ("arch", "method") else "right")
    for r in table:
        cells = [
            r.arch,
            r.method,
            str(r.seed),
            f"{r.bytes / 1e6:.2f}",
            f"{r.seconds + r.setup_seconds:.1f}",
            f"{r.fidelity_psnr:.2f}",
            "—" if r.quality_psnr is None else f"{r.quality_psnr:.2f}",
            f"{r.render_rays_per_s:,.0f}",
        ]
        if gtk and r.gtk:
            cells += [f"{r.gtk['effective_rank']:.1f}", f"{r.gtk['delta']:.4g}"]
        view.add_row(*cells)
    _console().print(view)
    if out is not None:
        _console().print(f"wrote {out}/results.json, results.csv, results.md and the PNGs")


@app.command(name="import")
def import_(
    checkpoint: Annotated[
        Path, typer.Argument(help="Another tool's checkpoint (.pth, .th, .ckpt, .npz, …).")
    ],
    from_: FromOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(help="The dataset it was trained on: its cameras become the teacher's."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="pvd checkpoint to write (default: FILE.safetensors).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Read another tool's trained checkpoint and write a self-contained pvd checkpoint."""
    from .data import load_dataset
    from .errors import UserError
    from .importers import get_importer, import_checkpoint, is_pvd_checkpoint

    if from_ is None and is_pvd_checkpoint(checkpoint):
        raise UserError(f"{checkpoint}: already a pvd checkpoint; nothing to import")
    out = out or checkpoint.with_suffix(".safetensors")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a .safetensors file name")
    if out.resolve() == checkpoint.resolve():
        raise UserError(f"--out {out}: would overwrite the input; choose another file name")
    dataset = load_dataset(data) if data is not None else None
    model = import_checkpoint(checkpoint, from_, dataset)
    model.save(out)
    kind = model.provenance["import"]["format"]
    result = {
        "checkpoint": str(out),
        "format": kind,
        "description": get_importer(kind).description,
        "arch": model.field.arch,
        "parameters": model.field.num_parameters,
        "bytes": out.stat().st_size,
        "cameras": {split: len(cams) for split, cams in model.cameras.items()},
        "scene": model.scene.to_dict(),
    }
    if as_json:
        _print_json(result)
        return
    _console().print(
        f"wrote {out}: {result['description']} ({kind}) as a pvd {result['arch']}, "
        f"{result['parameters']:,} parameters, {result['bytes'] / 1e6:.2f} MB, "
        f"cameras {result['cameras'] or 'none (pvd fits its own)'}",
        highlight=False,
        soft_wrap=True,
    )


@app.command(name="eval")
def evaluate(
    checkpoint: Annotated[
        Path, typer.Argument(help="A pvd checkpoint or another tool's (see `pvd import`).")
    ],
    from_: FromOpt = None,
    data: Annotated[Path | None, typer.Option(help="Dataset with ground truth.")] = None,
    against: Annotated[
        Path | None, typer.Option(help="Another checkpoint: fidelity on held-out cameras.")
    ] = None,
    split: Annotated[str, typer.Option(help="Dataset split for --data.")] = "test",
    aabb: Annotated[str | None, typer.Option(help="Scene box override for --data.")] = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """PSNR/SSIM against ground truth (--data) and/or against another checkpoint (--against)."""
    from .data import load_dataset
    from .errors import UserError
    from .importers import load_any
    from .model import fidelity_scores, quality_scores

    if data is None and against is None:
        raise UserError(
            "nothing to compare with: pass --data DATASET and/or --against OTHER.safetensors"
        )
    dev = _device(device)
    model = load_any(checkpoint, from_, dev)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "arch": model.field.arch}
    if data is not None:
        dataset = load_dataset(data, aabb=_parse_aabb(aabb))
        result["quality"] = quality_scores(model, dataset, split)  # in the model's space
    if against is not None:
        other = load_any(against, device=dev)
        result["fidelity"] = {"against": str(against), **fidelity_scores(model, other)}
    if as_json:
        _print_json(result)
        return
    console = _console()
    for key in ("quality", "fidelity"):
        if key in result:
            r = result[key]
            what = f"vs {split} ground truth" if key == "quality" else f"vs {against}"
            console.print(
                f"{key}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f} "
                f"({r['images']} views {what}); "
                f"LPIPS n/a: {r['lpips_reason']}"
            )


def _pvd_info(checkpoint: Path) -> dict[str, Any]:
    import architectures

    field = architectures.load(checkpoint)
    ckpt = field.checkpoint
    occupancy = ckpt.group("occupancy").get("binary")
    return {
        "checkpoint": str(checkpoint),
        "format": "pvd",
        "arch": field.arch,
        "schema": ckpt.schema,
        "parameters": field.num_parameters,
        "tensor_bytes": field.nbytes,
        "file_bytes": checkpoint.stat().st_size,
        "config": field.config.to_dict(),
        "scene": ckpt.scene.to_dict(),
        "render": ckpt.render,
        "cameras": {
            s: int(ckpt.group(f"cameras.{s}")["c2w"].shape[0])
            for s in ("train", "test")
            if ckpt.group(f"cameras.{s}")
        },
        "occupied_fraction": float(occupancy.float().mean()) if occupancy is not None else None,
        "provenance": {k: v for k, v in ckpt.provenance.items() if k != "history"},
    }


def _foreign_info(checkpoint: Path, kind: str | None) -> dict[str, Any]:
    """What :func:`info` shows of another tool's checkpoint: the pvd teacher it imports as."""
    from .importers import get_importer, import_checkpoint

    model = import_checkpoint(checkpoint, kind)
    detected = model.provenance["import"]["format"]
    return {
        "checkpoint": str(checkpoint),
        "format": f"{detected}: {get_importer(detected).description}",
        "arch": model.field.arch,
        "schema": None,
        "parameters": model.field.num_parameters,
        "tensor_bytes": model.field.nbytes,
        "file_bytes": checkpoint.stat().st_size,
        "config": model.field.config.to_dict(),
        "scene": model.scene.to_dict(),
        "render": model.render.to_dict(),
        "cameras": {},
        "occupied_fraction": model.grid.occupied_fraction,
        "provenance": model.provenance,
    }


@app.command()
def info(
    checkpoint: Annotated[
        Path, typer.Argument(help="A pvd checkpoint or another tool's (see `pvd import`).")
    ],
    from_: FromOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Architecture, config, size, scene and provenance of a checkpoint (for another tool's
    checkpoint: its detected format and the pvd teacher it imports as)."""
    from .importers import is_pvd_checkpoint

    if from_ is None and is_pvd_checkpoint(checkpoint):
        result = _pvd_info(checkpoint)
    else:
        result = _foreign_info(checkpoint, from_)
    provenance = result["provenance"]
    if as_json:
        _print_json(result)
        return
    from rich.table import Table

    table = Table(title=str(checkpoint), show_header=False)
    table.add_row("format", result["format"])
    for key in ("arch", "parameters", "tensor_bytes", "file_bytes", "cameras", "occupied_fraction"):
        value = result[key]
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    table.add_row("config", json.dumps(result["config"]))
    table.add_row("scene", json.dumps(result["scene"]))
    table.add_row("render", json.dumps(result["render"]))
    shown = ("source", "import", "dataset", "steps", "seed", "train_seconds", "test_metrics")
    for key in (*shown, "time"):
        if key in provenance:
            table.add_row(f"provenance.{key}", json.dumps(provenance[key], default=str))
    _console().print(table)


@app.command()
def render(
    checkpoint: Annotated[Path, typer.Argument(help="pvd checkpoint (.safetensors).")],
    out: Annotated[
        Path, typer.Option(help="A folder (test views as PNG) or a .gif/.mp4 turntable.")
    ],
    frames: Annotated[int, typer.Option(help="Turntable frames (.gif/.mp4).")] = 60,
    device: DeviceOpt = "auto",
) -> None:
    """Render the stored test views to PNGs, or a turntable to a GIF/MP4."""
    from .errors import UserError
    from .images import save_turntable, save_views
    from .model import TrainedModel

    if frames < 1:
        raise UserError(f"--frames must be >= 1, got {frames}")
    model = TrainedModel.load(checkpoint, _device(device))
    out = out.resolve()
    if out.suffix.lower() in (".gif", ".mp4"):
        save_turntable(model, out, frames)
    elif out.suffix:
        raise UserError(f"--out {out}: expected a folder, a .gif or a .mp4")
    else:
        save_views(model, out)
    _console().print(f"wrote {out}")


@app.command()
def gtk(
    checkpoint: Annotated[
        Path | None, typer.Argument(help="pvd checkpoint (.safetensors); or use --arch.")
    ] = None,
    arch: Annotated[
        str | None, typer.Option(help="Analyse this architecture at initialisation instead.")
    ] = None,
    preset: Annotated[str, typer.Option(help="Model preset for --arch: cpu or paper.")] = "cpu",
    scene: Annotated[
        str | None,
        typer.Option(help="Procedural scene: points in its occupied cells, Y = its sigma_raw."),
    ] = None,
    points: Annotated[int, typer.Option(help="Number of points N (1..4096).")] = 1024,
    output: Annotated[
        str, typer.Option(help="g: sigma (sigma_raw) or feature (all channels of v).")
    ] = "sigma",
    params: Annotated[
        str, typer.Option(help="w: grid (grid tensors only) or all (grid + dense parts of phi1).")
    ] = "all",
    ridge: Annotated[
        float, typer.Option(help="Ridge lambda of Delta, relative to mean diag(G/tr G).")
    ] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of the points (and of the --arch init).")] = 0,
    out: Annotated[
        Path | None, typer.Option(help="Folder for gtk.json and gtk_spectrum.png.")
    ] = None,
    device: DeviceOpt = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Grid tangent kernel: spectrum, effective rank, condition number and Delta = Y^T G^-1 Y."""
    from . import tangent_kernel as analysis

    report = analysis.analyse(
        checkpoint,
        arch=arch,
        preset=preset,
        scene=scene,
        points=points,
        output=output,
        params=params,
        ridge=ridge,
        seed=seed,
        device=_device(device),
    )
    written = analysis.write_outputs(report, out) if out is not None else ()
    if as_json:
        _print_json({**report.to_dict(spectrum=False), "files": [str(p) for p in written]})
        return
    console = _console()
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


@scenes_app.command("list")
def scenes_list(as_json: JsonFlag = False) -> None:
    """The procedural scenes and what each one tests."""
    from . import scenes

    rows = {name: scenes.describe(name) for name in scenes.scene_names()}
    if as_json:
        _print_json(rows)
        return
    for name, text in rows.items():
        sys.stdout.write(f"{name:12s} {text}\n")


@scenes_app.command("make")
def scenes_make(
    name: Annotated[str, typer.Argument(help="Scene name (see `pvd scenes list`).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (Blender format).")],
    size: Annotated[int, typer.Option(help="Image width in pixels.")] = 64,
    height: Annotated[int | None, typer.Option(help="Image height (default: square).")] = None,
    views: Annotated[int, typer.Option(help="Training views.")] = 100,
    test_views: Annotated[int, typer.Option(help="Test views (a ring).")] = 20,
    supersample: Annotated[int, typer.Option(help="Rays per pixel side (antialiasing).")] = 3,
    seed: Annotated[int, typer.Option(help="Camera-layout seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Render a procedural scene's exact ground truth as a Blender-format dataset."""
    from . import scenes
    from .errors import UserError

    for key, value in (
        ("size", size),
        ("views", views),
        ("test-views", test_views),
        ("supersample", supersample),
    ):
        if value < 1:
            raise UserError(f"--{key} must be >= 1, got {value}")
    if height is not None and height < 1:
        raise UserError(f"--height must be >= 1, got {height}")
    try:
        path = scenes.make_dataset(
            name,
            out_dir,
            size=size,
            height=height,
            views=views,
            test_views=test_views,
            supersample=supersample,
            seed=seed,
            overwrite=overwrite,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _console().print(f"wrote {path}")


def main() -> None:
    """Console entry point: run the app, turning user errors into one-line messages."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(130) from None
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None


def _is_user_error(exc: Exception) -> bool:
    from .errors import UserError

    if isinstance(exc, UserError):
        return True
    if "architectures" in sys.modules:
        from architectures import ArchitectureError

        return isinstance(exc, ArchitectureError)
    return False
