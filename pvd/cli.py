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
DeviceOpt = Annotated[str, typer.Option(help="Torch device: cpu, cuda, cuda:1, or auto.")]


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
    preset: Annotated[str, typer.Option(help="cpu, paper or auto.")] = "auto",
    steps: Annotated[
        int | None, typer.Option(help="Training steps (overrides the recipe).")
    ] = None,
    time_budget: Annotated[
        float | None, typer.Option(help="Stop after this many seconds of training.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (overrides the recipe).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write.")] = None,
    recipe: Annotated[Path | None, typer.Option(help="Recipe TOML overriding the preset.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe value: section.key=value.")
    ] = None,
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
    teacher: Annotated[Path, typer.Argument(help="Teacher checkpoint (.safetensors).")],
    to: Annotated[str, typer.Option(help="Student architecture (mlp, plenoxels, tensorf, …).")],
    out: Annotated[Path | None, typer.Option(help="Student checkpoint to write.")] = None,
    recipe: Annotated[Path | None, typer.Option(help="Recipe TOML overriding the preset.")] = None,
    preset: Annotated[str, typer.Option(help="cpu, paper or auto.")] = "auto",
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
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a recipe value: section.key=value.")
    ] = None,
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
        )
    if as_json:
        _print_json(report.to_dict())
        return
    console = _console()
    for line in report.lines():
        console.print(line, highlight=False, soft_wrap=True)


@app.command(name="eval")
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="pvd checkpoint (.safetensors).")],
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
    import torch

    from .data import load_dataset
    from .errors import UserError
    from .model import TrainedModel, held_out_cameras

    if data is None and against is None:
        raise UserError(
            "nothing to compare with: pass --data DATASET and/or --against OTHER.safetensors"
        )
    dev = _device(device)
    model = TrainedModel.load(checkpoint, dev)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "arch": model.field.arch}
    if data is not None:
        dataset = load_dataset(data, aabb=_parse_aabb(aabb))
        part = dataset.split(split)
        scores = model.evaluate(
            part.cameras, list(part.composited(torch.tensor(model.scene.background)))
        )
        result["quality"] = {"split": split, "images": len(part), **scores.to_dict()}
    if against is not None:
        other = TrainedModel.load(against, dev)
        other.render = model.render  # both rendered with the same settings (DESIGN: fidelity)
        cameras = held_out_cameras(model, other)
        scores = model.evaluate(cameras, other.render_views(cameras))
        result["fidelity"] = {"against": str(against), "images": len(cameras), **scores.to_dict()}
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


@app.command()
def info(
    checkpoint: Annotated[Path, typer.Argument(help="pvd checkpoint (.safetensors).")],
    as_json: JsonFlag = False,
) -> None:
    """Architecture, config, size, scene and provenance of a checkpoint."""
    import architectures

    field = architectures.load(checkpoint)
    ckpt = field.checkpoint
    provenance = {k: v for k, v in ckpt.provenance.items() if k != "history"}
    occupancy = ckpt.group("occupancy").get("binary")
    result = {
        "checkpoint": str(checkpoint),
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
        "provenance": provenance,
    }
    if as_json:
        _print_json(result)
        return
    from rich.table import Table

    table = Table(title=str(checkpoint), show_header=False)
    for key in ("arch", "parameters", "tensor_bytes", "file_bytes", "cameras", "occupied_fraction"):
        value = result[key]
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    table.add_row("config", json.dumps(result["config"]))
    table.add_row("scene", json.dumps(result["scene"]))
    table.add_row("render", json.dumps(result["render"]))
    for key in ("source", "dataset", "steps", "seed", "train_seconds", "test_metrics", "time"):
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
