"""Scripted architecture comparison: one teacher, several students, one table.

:func:`compare` converts a teacher into each listed architecture with the conversion engine
(:func:`pvd.distill.convert`) and records for every student its size, conversion time per stage,
fidelity to the teacher, quality vs ground truth (with a dataset), render throughput and the
fidelity curve over steps (the engine's evaluation hook; evaluation time is excluded from the
conversion time). With ``from_scratch=True`` every architecture is also trained from the
dataset's images for the same wall-clock time as its conversion took, so "distilled vs from
scratch" is one call. Fidelity and quality are computed from the *saved* checkpoints with the
functions ``pvd eval`` uses (:func:`pvd.model.fidelity_scores`, :func:`pvd.model.quality_scores`),
so the table agrees with ``pvd eval`` run on each student.

The output folder (only when ``out`` is given)::

    comparison.json                 the teacher and settings this folder belongs to
    students/<arch>-s<seed>.safetensors   distilled students
    scratch/<arch>-s<seed>.safetensors    students trained from the images (--from-scratch)
    records/<method>-<arch>-s<seed>.json  one record per finished student, written when it ends
    results.json, results.csv, results.md all records (JSON with configs and curves)
    quality_vs_size.png, quality_vs_time.png, fidelity_curves.png, sheet.png

A rerun with the same folder skips every student whose record and checkpoint exist and redoes a
half-done one from the start; a folder made for another teacher or other settings is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

import architectures

from .data import Dataset, load_dataset
from .distill import STAGES, build_conversion_recipe, convert, load_teacher
from .errors import UserError
from .model import TrainedModel, fidelity_scores, held_out_cameras, quality_scores
from .progress import Reporter
from .recipes import Recipe, build_recipe

#: Points of the fidelity curve per conversion when the recipe sets no ``distill.eval_every``.
CURVE_POINTS = 10
#: Views rendered to measure throughput (after one warm-up view).
THROUGHPUT_VIEWS = 4
METHODS = ("distilled", "from scratch")


@dataclasses.dataclass
class StudentRecord:
    """One student of a comparison (a plain dataclass; :meth:`row` flattens it for tables).

    ``seconds`` is the conversion's (or, from scratch, the training's) wall time with evaluation
    excluded; ``setup_seconds`` the conversion's warm start and inheritance before its steps;
    ``stage_seconds`` the time in each of the three stages. Fidelity is PSNR/SSIM vs the teacher
    on the held-out cameras, quality vs the dataset's test split (``None`` without a dataset).
    ``render_rays_per_s`` is measured on the held-out cameras. ``curve`` holds the engine's
    fidelity (and quality) evaluations over the steps. ``gtk`` (``pvd compare --gtk``): the
    student's grid tangent kernel on the teacher's points and σ_raw
    (:func:`pvd.tangent_kernel.gtk_summary`).
    """

    arch: str
    method: str
    seed: int
    config: dict[str, Any]
    parameters: int
    bytes: int
    steps: int
    seconds: float
    setup_seconds: float
    stage_seconds: dict[str, float]
    fidelity_psnr: float
    fidelity_ssim: float
    quality_psnr: float | None
    quality_ssim: float | None
    render_rays_per_s: float
    checkpoint: str | None
    warm_start: str | None = None
    inherited: list[str] = dataclasses.field(default_factory=list)
    curve: list[dict[str, float]] = dataclasses.field(default_factory=list)
    gtk: dict[str, float] | None = None

    @property
    def key(self) -> str:
        return record_key(self.method, self.arch, self.seed)

    def row(self) -> dict[str, Any]:
        """The flat columns of the CSV and Markdown tables (no config, no curve)."""
        out = {
            "arch": self.arch,
            "method": self.method,
            "seed": self.seed,
            "parameters": self.parameters,
            "bytes": self.bytes,
            "steps": self.steps,
            "seconds": round(self.seconds, 2),
            "setup_seconds": round(self.setup_seconds, 2),
        }
        for stage in STAGES:
            out[f"{stage}_seconds"] = self.stage_seconds.get(stage)
        out.update(
            fidelity_psnr=round(self.fidelity_psnr, 3),
            fidelity_ssim=round(self.fidelity_ssim, 4),
            quality_psnr=None if self.quality_psnr is None else round(self.quality_psnr, 3),
            quality_ssim=None if self.quality_ssim is None else round(self.quality_ssim, 4),
            render_rays_per_s=round(self.render_rays_per_s),
            checkpoint=self.checkpoint,
        )
        if self.gtk is not None:
            out.update({f"gtk_{k}": v for k, v in self.gtk.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def record_key(method: str, arch: str, seed: int) -> str:
    return f"{'scratch' if method == 'from scratch' else method}-{arch}-s{seed}"


@dataclasses.dataclass
class ComparisonTable:
    """The records of a comparison with the teacher they came from; iterate for the records."""

    teacher: dict[str, Any]
    records: list[StudentRecord]

    def __iter__(self) -> Iterator[StudentRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher, "records": [r.to_dict() for r in self.records]}

    def to_csv(self) -> str:
        rows = self.rows()
        buffer = io.StringIO()
        columns = list(rows[0]) if rows else list(_empty_row())
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return buffer.getvalue()

    def to_markdown(self) -> str:
        """One row per student; with several seeds, a second table of means ± std per group."""
        kernel = any(r.gtk for r in self.records)
        lines = [
            "| architecture | method | seed | parameters | MB | time s | fidelity PSNR dB | "
            "fidelity SSIM | quality PSNR dB | quality SSIM | rays/s |"
            + (" GTK effective rank | GTK Δ |" if kernel else ""),
            "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if kernel else ""),
        ]
        for r in self.records:
            line = (
                f"| {r.arch} | {r.method} | {r.seed} | {r.parameters:,} | {r.bytes / 1e6:.2f} "
                f"| {r.seconds + r.setup_seconds:.1f} | {r.fidelity_psnr:.2f} "
                f"| {r.fidelity_ssim:.4f} | {_fmt(r.quality_psnr, 2)} | {_fmt(r.quality_ssim, 4)} "
                f"| {r.render_rays_per_s:,.0f} |"
            )
            if kernel:
                rank, delta = (r.gtk or {}).get("effective_rank"), (r.gtk or {}).get("delta")
                line += f" {_fmt(rank, 1)} | {'—' if delta is None else f'{delta:.4g}'} |"
            lines.append(line)
        groups: dict[tuple[str, str], list[StudentRecord]] = {}
        for r in self.records:
            groups.setdefault((r.arch, r.method), []).append(r)
        if any(len(g) > 1 for g in groups.values()):
            lines += [
                "",
                "| architecture | method | seeds | time s | fidelity PSNR dB | quality PSNR dB |",
                "|---|---|---|---|---|---|",
            ]
            for (arch, method), group in groups.items():
                quality = [r.quality_psnr for r in group if r.quality_psnr is not None]
                lines.append(
                    f"| {arch} | {method} | {len(group)} "
                    f"| {_mean_std([r.seconds + r.setup_seconds for r in group], 1)} "
                    f"| {_mean_std([r.fidelity_psnr for r in group], 2)} "
                    f"| {_mean_std(quality, 2) if quality else '—'} |"
                )
        return "\n".join(lines) + "\n"


def _empty_row() -> dict[str, Any]:
    record = StudentRecord("", "", 0, {}, 0, 0, 0, 0.0, 0.0, {}, 0.0, 0.0, None, None, 0.0, None)
    return record.row()


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _mean_std(values: Sequence[float], digits: int) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


# -- argument checks ----------------------------------------------------------------------------
def parse_architectures(to: str | Sequence[str]) -> list[str]:
    """``"all"``, ``"mlp,tensorf"`` or a list of names → canonical names, in order, no repeats."""
    items = to.split(",") if isinstance(to, str) else list(to)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item == "all":
            candidates = list(architectures.names())
        else:
            try:
                candidates = [architectures.canonical_name(item)]
            except architectures.ArchitectureError as exc:
                raise UserError(f"--to: {exc}") from None
        names += [n for n in candidates if n not in names]
    if not names:
        raise UserError(f"--to: no architecture given; use 'all' or some of {_known()}")
    return names


def _known() -> str:
    return ", ".join(architectures.names())


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder (it is created if missing)")


# -- the run ------------------------------------------------------------------------------------
def compare(
    teacher: TrainedModel | str | os.PathLike[str],
    to: str | Sequence[str] = "all",
    *,
    out: str | os.PathLike[str] | None = None,
    data: Dataset | str | os.PathLike[str] | None = None,
    from_scratch: bool = False,
    gtk: bool = False,
    recipe: Recipe | str | os.PathLike[str] | None = None,
    preset: str = "cpu",
    seeds: int = 1,
    steps: int | None = None,
    overrides: list[str] | None = None,
    device: str = "cpu",
    reporter: Reporter | None = None,
    kind: str | None = None,
) -> ComparisonTable:
    """Convert ``teacher`` into every architecture of ``to`` and return their records.

    ``to`` is ``"all"``, a comma-separated string or a list; ``data`` (a dataset or its folder)
    is the ground truth for quality and the images for ``from_scratch``; ``recipe``,
    ``preset``, ``steps`` and ``overrides`` are those of :func:`pvd.distill.convert` (the
    from-scratch runs use the preset's training recipe with the conversion's wall time as their
    budget); ``gtk`` adds each student's grid-tangent-kernel figures
    (:func:`pvd.tangent_kernel.gtk_summary`; a student finished earlier without them gets them
    from its checkpoint); ``seeds`` repeats every student with seeds ``0 … seeds−1``; ``kind``
    names the format of another tool's teacher file (else detected). Nothing is written unless
    ``out`` (a folder) is given; see the module docstring for what it holds.
    """
    names = parse_architectures(to)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"--seeds must be a whole number >= 1, got {seeds!r}")
    folder = Path(out) if out is not None else None
    if folder is not None:
        _check_out(folder)
    dataset = load_dataset(data) if isinstance(data, str | os.PathLike) else data
    if from_scratch and (dataset is None or "train" not in dataset.splits):
        raise UserError("--from-scratch trains on images: pass --data DATASET with a train split")
    reporter = reporter or Reporter()
    teacher_model, source, teacher_hash = load_teacher(teacher, device, kind, dataset)
    # convert() reloads a pvd file (its provenance then names the file); an imported teacher is
    # passed as the model, not imported again for every student
    imported = teacher_model.provenance.get("source") == "pvd import"
    convert_from = teacher if isinstance(teacher, str | os.PathLike) and not imported else None
    if dataset is not None:  # an imported teacher lives in its tool's space: so must the cameras
        dataset = dataset.in_model_space(teacher_model.scene)
    teacher_info = {
        "arch": teacher_model.field.arch,
        "source": source,
        "sha256": teacher_hash,
        "parameters": teacher_model.field.num_parameters,
        "bytes": teacher_model.field.nbytes,
        "quality_psnr": quality_scores(teacher_model, dataset)["psnr"]
        if dataset is not None and "test" in dataset.splits
        else None,
    }
    recipes = {name: _student_recipe(name, recipe, preset, overrides, steps) for name in names}
    if folder is not None:
        _claim_folder(folder, teacher_info, recipes, preset, from_scratch, dataset)
    done = _finished_records(folder)
    run = _Run(
        convert_from or teacher_model, teacher_model, preset, dataset, folder, device, gtk, reporter
    )
    records: list[StudentRecord] = []
    total = len(names) * seeds * (2 if from_scratch else 1)
    for seed in range(seeds):
        for name in names:
            plan = [("distilled", name)] + ([("from scratch", name)] if from_scratch else [])
            for method, arch in plan:
                key = record_key(method, arch, seed)
                number = len(records) + 1
                if key in done:
                    reporter.message(f"[{number}/{total}] {key}: done earlier, skipped")
                    record = done[key]
                    if gtk and record.gtk is None:
                        student = TrainedModel.load(folder / record.checkpoint, device)
                        record.gtk = _kernel(student, teacher_model)
                        _write_text(folder / "records" / f"{key}.json", _json(record.to_dict()))
                    records.append(record)
                    continue
                reporter.message(f"[{number}/{total}] {key}")
                if method == "distilled":
                    record = _distil(run, arch, recipes[arch], seed)
                else:
                    budget = _conversion_seconds(records, arch, seed)
                    record = _from_scratch(run, arch, budget, seed)
                records.append(record)
                if folder is not None:
                    _write_text(folder / "records" / f"{key}.json", _json(record.to_dict()))
    table = ComparisonTable(teacher_info, records)
    if folder is not None:
        write_outputs(table, teacher_model, folder, reporter)
    return table


def _student_recipe(
    name: str,
    recipe: Recipe | str | os.PathLike[str] | None,
    preset: str,
    overrides: list[str] | None,
    steps: int | None,
) -> Recipe:
    """The conversion recipe of one student, with a fidelity curve of :data:`CURVE_POINTS`
    evaluations when the recipe asks for none."""
    built = build_conversion_recipe(name, recipe, preset, overrides, steps)
    distill = built["distill"]
    if not distill["eval_every"]:
        distill["eval_every"] = max(1, distill["steps"] // CURVE_POINTS)
    return built


def _claim_folder(
    folder: Path,
    teacher: dict[str, Any],
    recipes: dict[str, Recipe],
    preset: str,
    from_scratch: bool,
    dataset: Dataset | None,
) -> None:
    """Write ``comparison.json`` or check that the folder was made for the same comparison."""
    manifest = {
        "teacher_sha256": teacher["sha256"],
        "preset": preset,
        "dataset": None if dataset is None else str(dataset.root.resolve()),
        "recipes": json.loads(json.dumps(recipes)),
    }
    path = folder / "comparison.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise UserError(f"{path}: unreadable; delete it or choose another --out") from None
        for key, what in (
            ("teacher_sha256", "another teacher"),
            ("preset", "another preset"),
            ("dataset", "another dataset"),
        ):
            if old.get(key) != manifest[key]:
                raise UserError(
                    f"--out {folder} holds a comparison made with {what}; "
                    "choose another folder or delete it"
                )
        for name, built in manifest["recipes"].items():
            if name in old.get("recipes", {}) and old["recipes"][name] != built:
                raise UserError(
                    f"--out {folder} holds a comparison made with another {name} recipe; "
                    "choose another folder or delete it"
                )
        manifest["recipes"] = {**old.get("recipes", {}), **manifest["recipes"]}
    manifest["from_scratch"] = from_scratch
    _write_text(path, _json(manifest))


def _finished_records(folder: Path | None) -> dict[str, StudentRecord]:
    """Records of students finished in an earlier run (record and checkpoint both present)."""
    done: dict[str, StudentRecord] = {}
    if folder is None or not (folder / "records").is_dir():
        return done
    for path in sorted((folder / "records").glob("*.json")):
        try:
            record = StudentRecord.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError, TypeError):
            continue  # redone below
        if record.checkpoint and (folder / record.checkpoint).exists():
            done[record.key] = record
    return done


def _conversion_seconds(records: list[StudentRecord], arch: str, seed: int) -> float:
    for r in records:
        if r.method == "distilled" and r.arch == arch and r.seed == seed:
            return r.seconds + r.setup_seconds
    raise AssertionError(f"no conversion of {arch} seed {seed} before its from-scratch run")


@dataclasses.dataclass
class _Run:
    """What every student of one comparison shares."""

    source: TrainedModel | str | os.PathLike[str]  # what convert() gets: the file, or the model
    teacher: TrainedModel
    preset: str
    dataset: Dataset | None
    folder: Path | None
    device: str
    gtk: bool
    reporter: Reporter

    def checkpoint(self, kind: str, arch: str, seed: int) -> Path | None:
        """Where a student is written (None without an output folder)."""
        if self.folder is None:
            return None
        path = self.folder / kind / f"{arch}-s{seed}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a half-done student is redone from the start
        return path


def _distil(run: _Run, arch: str, recipe: Recipe, seed: int) -> StudentRecord:
    checkpoint = run.checkpoint("students", arch, seed)
    student, report = convert(
        run.source,
        arch,
        recipe,
        preset=run.preset,
        overrides=[f"distill.seed={seed}"],
        data=run.dataset,
        out=checkpoint,
        device=run.device,
        reporter=run.reporter,
    )
    return StudentRecord(
        arch=arch,
        method="distilled",
        seed=seed,
        config=report.student["config"],
        steps=report.steps,
        seconds=report.seconds,
        setup_seconds=report.setup_seconds,
        stage_seconds={s.name: round(s.seconds, 2) for s in report.stages},
        warm_start=report.warm_start,
        inherited=report.inherited,
        curve=report.curve,
        **_measure(run, student, checkpoint),
    )


def _from_scratch(run: _Run, arch: str, budget: float, seed: int) -> StudentRecord:
    """Train ``arch`` from the images for ``budget`` seconds (the conversion's wall time)."""
    from .train import train

    recipe = build_recipe(
        arch,
        run.preset,
        None,
        [
            f"train.time_budget_s={budget:.3f}",
            "train.steps=100000000",  # the budget ends the run; schedules follow time
            f"train.seed={seed}",
        ],
    )
    model = train(run.dataset, arch, recipe, device=run.device, reporter=run.reporter)
    checkpoint = run.checkpoint("scratch", arch, seed)
    if checkpoint is not None:
        model.save(checkpoint)
    return StudentRecord(
        arch=arch,
        method="from scratch",
        seed=seed,
        config=model.field.config.to_dict(),
        steps=model.provenance["steps"],
        seconds=model.provenance["train_seconds"],
        setup_seconds=0.0,
        stage_seconds={},
        **_measure(run, model, checkpoint),
    )


def _measure(run: _Run, model: TrainedModel, checkpoint: Path | None) -> dict[str, Any]:
    """Size, fidelity, quality, throughput (and with ``--gtk`` the tangent-kernel figures) of a
    student, measured on the saved checkpoint when there is one (what ``pvd eval`` reads)."""
    if checkpoint is not None:
        model = TrainedModel.load(checkpoint, run.device)
    teacher, dataset = run.teacher, run.dataset
    fidelity = fidelity_scores(model, teacher)
    quality = None
    if dataset is not None and "test" in dataset.splits:
        quality = quality_scores(model, dataset)
    return {
        "parameters": model.field.num_parameters,
        "bytes": model.field.nbytes,
        "fidelity_psnr": fidelity["psnr"],
        "fidelity_ssim": fidelity["ssim"],
        "quality_psnr": None if quality is None else quality["psnr"],
        "quality_ssim": None if quality is None else quality["ssim"],
        "render_rays_per_s": render_throughput(model, held_out_cameras(model, teacher)),
        "checkpoint": None if checkpoint is None else str(checkpoint.relative_to(run.folder)),
        "gtk": _kernel(model, teacher) if run.gtk else None,
    }


def _kernel(student: TrainedModel, teacher: TrainedModel) -> dict[str, float]:
    """``--gtk``: the student's tangent-kernel figures on the teacher's points and σ_raw."""
    from .tangent_kernel import gtk_summary

    return gtk_summary(student, reference=teacher)


def render_throughput(model: TrainedModel, cameras: Any, views: int = THROUGHPUT_VIEWS) -> float:
    """Rays per second rendering up to ``views`` of ``cameras`` after one warm-up view."""
    count = min(views, len(cameras))
    model.render_views(cameras, [0])
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    start = time.perf_counter()
    model.render_views(cameras, list(range(count)))
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    rays = sum(w * h for w, h in (cameras.size(i) for i in range(count)))
    return rays / max(time.perf_counter() - start, 1e-9)


# -- outputs ------------------------------------------------------------------------------------
def write_outputs(
    table: ComparisonTable, teacher: TrainedModel, folder: Path, reporter: Reporter
) -> None:
    """results.json/.csv/.md, the three plots and the image sheet."""
    from .figures import image_sheet, plot_fidelity_curves, plot_quality

    _write_text(folder / "results.json", _json(table.to_dict()))
    _write_text(folder / "results.csv", table.to_csv())
    _write_text(folder / "results.md", table.to_markdown())
    plot_quality(table, "bytes", folder / "quality_vs_size.png")
    plot_quality(table, "seconds", folder / "quality_vs_time.png")
    plot_fidelity_curves(table, folder / "fidelity_curves.png")
    students = [
        (r, TrainedModel.load(folder / r.checkpoint, teacher.device))
        for r in table.records
        if r.seed == 0 and r.checkpoint
    ]
    image_sheet(teacher, students, folder / "sheet.png")
    reporter.message(f"wrote {folder}/results.json, results.csv, results.md, 4 PNGs")


def _json(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
