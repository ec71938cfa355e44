"""The grid tangent kernel (pvd/tangent_kernel.py): exact against dense autograd for every
architecture, exact closed forms for a fixed-kernel grid, stationarity (fixed kernel) vs drift
(learned kernel, MLP), the report's figures, sampling, outputs and the ``pvd gtk`` command."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

import architectures
from pvd import tangent_kernel as gtk_module
from pvd.cli import main
from pvd.errors import UserError
from pvd.model import TrainedModel
from pvd.recipes import build_recipe
from pvd.render import OccupancyGrid
from pvd.scenes import get_scene
from pvd.tangent_kernel import (
    GTKReport,
    analyse,
    gtk,
    gtk_summary,
    sample,
    scene_occupancy,
    write_outputs,
)

from .conftest import TINY_MODELS

ARCHS = sorted(TINY_MODELS)


def tiny(arch: str, seed: int = 0, **changes: object) -> architectures.RadianceField:
    """The tests' tiny config of ``arch`` in float64, with O(1) grid values where the default
    init is ~1e-4 (so heads and MulFAGrid's kernel network see non-trivial inputs)."""
    model = build_recipe(arch, "cpu", None, list(TINY_MODELS[arch]))["model"]
    torch.manual_seed(seed)
    field = architectures.build(arch, {**model, **changes}).double()
    with torch.no_grad():
        if arch == "hashgrid":
            field.params.uniform_(-1.0, 1.0)
        if arch == "mulfagrid":
            field.grid.normal_()
            field.kernel.output.normal_()
        if arch == "plenoxels":
            field.grid.normal_()
    return field


def random_points(count: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, generator=generator, dtype=torch.float64) * 3.0 - 1.5


def grid_names(field: architectures.RadianceField) -> list[str]:
    """The grid tensors, named independently of pvd.tangent_kernel."""
    names = [n for n, _ in field.named_parameters()]
    rule = {
        "hashgrid": lambda n: n == "params",
        "plenoxels": lambda n: n == "grid",
        "mulfagrid": lambda n: n == "grid",
        "tensorf": lambda n: "plane" in n or "line" in n,
        "mflod": lambda n: n.endswith(".grid"),
        "mlp": lambda n: False,
    }[field.arch]
    return [n for n in names if rule(n)]


def dense_autograd_gram(
    field: architectures.RadianceField, x: torch.Tensor, channels: list[int], names: list[str]
) -> torch.Tensor:
    """G = Σ_c J_c J_cᵀ from the full dense Jacobian, one backward pass per point and channel."""
    params = dict(field.named_parameters())
    chosen = [params[n] for n in names]
    rows = []
    for i in range(x.shape[0]):
        v = field.phi1(x[i : i + 1])[0]
        for c in channels:
            grads = torch.autograd.grad(v[c], chosen, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).reshape(-1)
                        for g, p in zip(grads, chosen, strict=True)
                    ]
                )
            )
    jac = torch.stack(rows).view(x.shape[0], len(channels), -1)
    return torch.einsum("icp,jcp->ij", jac, jac)


@pytest.mark.parametrize("arch", ARCHS)
def test_sparse_kernel_equals_dense_autograd_kernel(arch: str):
    field = tiny(arch)
    x = random_points(12)
    non_decoder = [n for n, _ in field.named_parameters() if not n.startswith("decoder.")]
    for output in ("sigma", "feature"):
        channels = [0] if output == "sigma" else list(range(field.feature_dim))
        for params, names in (("grid", grid_names(field)), ("all", non_decoder)):
            if not names:
                continue
            report = gtk(field, x, output=output, params=params)
            expected = dense_autograd_gram(field, x, channels, names)
            assert report.matrix is not None
            scale = float(expected.abs().max())
            assert scale > 0
            assert torch.allclose(report.matrix, expected, rtol=1e-9, atol=1e-12 * scale), (
                output,
                params,
            )


def trilinear_matrix(field: architectures.RadianceField, x: torch.Tensor) -> torch.Tensor:
    """Φ ``[N, R³]``: the trilinear weights of each point on the vertices of a Plenoxels grid,
    written out from the definition (vertex (i, j, k) at u = (i, j, k)/(R − 1))."""
    r = field.config.resolution
    u = (x - field.aabb[0]) / (field.aabb[1] - field.aabb[0]) * (r - 1)
    phi = torch.zeros(x.shape[0], r**3, dtype=x.dtype)
    for n, point in enumerate(u):
        lo = [min(int(c), r - 2) for c in point]
        for corner in range(8):
            ijk = [lo[a] + ((corner >> a) & 1) for a in range(3)]
            w = math.prod(
                float(point[a] - lo[a]) if (corner >> a) & 1 else float(1 - (point[a] - lo[a]))
                for a in range(3)
            )
            phi[n, (ijk[0] * r + ijk[1]) * r + ijk[2]] += w
    return phi


def test_fixed_kernel_grid_is_phi_phi_transpose_whatever_its_values():
    field = tiny("plenoxels")
    x = random_points(40)
    phi = trilinear_matrix(field, x)
    sigma = gtk(field, x, output="sigma", params="grid").matrix
    feature = gtk(field, x, output="feature", params="grid").matrix
    assert torch.allclose(sigma, phi @ phi.T, rtol=1e-12, atol=1e-14)
    assert torch.allclose(feature, field.feature_dim * phi @ phi.T, rtol=1e-12, atol=1e-13)
    with torch.no_grad():
        field.grid.mul_(-7.0).add_(3.0)
    assert torch.equal(gtk(field, x, output="sigma", params="grid").matrix, sigma)


def test_distinct_vertices_give_a_white_kernel_with_closed_form_figures():
    field = tiny("plenoxels")
    generator = torch.Generator().manual_seed(3)
    r = field.config.resolution
    flat = torch.randperm(r**3, generator=generator)[:50]  # 50 distinct vertices (i, j, k)
    ijk = torch.stack([flat // (r * r), flat // r % r, flat % r], dim=-1).double()
    x = ijk / (r - 1) * 3.0 - 1.5
    y = torch.randn(50, generator=generator, dtype=torch.float64)
    report = gtk(field, x, targets=y, ridge=0.25)
    n = 50
    assert torch.allclose(report.matrix, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert report.effective_rank == pytest.approx(n, rel=1e-9)
    assert report.condition_number == pytest.approx(1.0, rel=1e-9)
    assert report.ridge_absolute == pytest.approx(0.25 / n)
    # Ĝ = I/N and λ = 0.25/N, so Δ = N·|Y|²/(1 + 0.25)
    assert report.delta == pytest.approx(n * float(y @ y) / 1.25, rel=1e-9)


def train_phi1(field: architectures.RadianceField, x: torch.Tensor, steps: int = 30) -> None:
    """A few Adam steps fitting every channel of φ¹ to random targets."""
    generator = torch.Generator().manual_seed(5)
    target = torch.randn(x.shape[0], field.feature_dim, generator=generator, dtype=x.dtype)
    optimizer = torch.optim.Adam(field.param_groups(1e-2))
    for _ in range(steps):
        loss = (field.phi1(x) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    return float((after - before).norm() / before.norm())


def test_fixed_kernel_is_stationary_learned_kernel_and_mlp_are_not():
    x = random_points(48)
    changes = {}
    for arch, params in (("plenoxels", "grid"), ("mulfagrid", "grid"), ("mulfagrid", "all")):
        field = architectures.build(
            arch,
            {"resolution": 12, "kernel_width": 8, "filter_layers": 2}
            if arch == "mulfagrid"
            else {"resolution": 12},
        ).double()
        before = gtk(field, x, params=params).matrix
        train_phi1(field, x)
        changes[arch, params] = relative_change(before, gtk(field, x, params=params).matrix)
    mlp = tiny("mlp")
    before = gtk(mlp, x).matrix
    train_phi1(mlp, x)
    changes["mlp", "all"] = relative_change(before, gtk(mlp, x).matrix)
    # Measured: 0, 0.15, 0.62 and 0.88 (relative Frobenius change after 30 Adam steps).
    assert changes["plenoxels", "grid"] == 0.0
    assert changes["mulfagrid", "grid"] > 0.05
    assert changes["mulfagrid", "all"] > 0.05
    assert changes["mlp", "all"] > 0.1


def test_mulfagrid_at_init_has_the_plain_grid_kernel():
    x = random_points(64)
    plain = architectures.build("plenoxels", {"resolution": 12}).double()
    mulfa = architectures.build("mulfagrid", {"resolution": 12, "filter_layers": 2}).double()
    grid_kernel = gtk(plain, x, params="grid").matrix
    assert torch.allclose(gtk(mulfa, x, params="grid").matrix, grid_kernel, rtol=1e-10)
    # The kernel network's block is proportional to the ~1e-4 grid features at init.
    with_kernel = gtk(mulfa, x, params="all").matrix
    assert relative_change(grid_kernel, with_kernel) < 1e-6


@pytest.mark.parametrize("arch", ARCHS)
def test_kernel_is_symmetric_psd_and_figures_follow_their_definitions(arch: str):
    field = tiny(arch).float()
    x, y, _ = sample(field, get_scene("transparent").scene_spec(), 96, scene="transparent")
    report = gtk(field, x, targets=y)
    g = report.matrix
    assert g is not None and g.dtype == torch.float64
    assert torch.allclose(g, g.T, rtol=0, atol=1e-12 * float(g.abs().max()))
    eigenvalues = torch.tensor(report.eigenvalues, dtype=torch.float64)
    assert float(eigenvalues.min()) >= -1e-10 * float(eigenvalues.max())
    assert float(eigenvalues.sum()) == pytest.approx(1.0, rel=1e-9)
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:])
    assert report.trace == pytest.approx(float(g.trace()))
    shares = report.trace_shares
    assert sum(shares.values()) == pytest.approx(1.0, rel=1e-9) and min(shares.values()) >= 0
    assert ("dense part" in shares) == (arch not in ("plenoxels",))
    p = eigenvalues.clamp_min(0) / eigenvalues.clamp_min(0).sum()
    entropy = -float((p[p > 0] * p[p > 0].log()).sum())
    assert report.effective_rank == pytest.approx(math.exp(entropy), rel=1e-9)
    assert 1.0 <= report.effective_rank <= 96
    lam = report.ridge / 96
    normalised = g / g.trace()
    system = normalised + lam * torch.eye(96, dtype=torch.float64)
    delta = float(y.double() @ torch.linalg.solve(system, y.double()))
    assert report.delta == pytest.approx(delta, rel=1e-6)
    assert report.condition_number == pytest.approx(float(torch.linalg.cond(system)), rel=1e-4)
    assert report.peak_bytes >= 2 * 96 * 96 * 8  # G and G/tr G at least
    assert set(report.to_dict(spectrum=False)) >= {"effective_rank", "delta", "memory"}


def test_scene_points_and_labels():
    spec = get_scene("transparent").scene_spec()
    field = tiny("plenoxels")
    x, y, described = sample(field, spec, 300, scene="transparent", seed=4)
    assert scene_occupancy(get_scene("transparent"), seed=4).query(x.float()).all()
    assert "transparent" in described and "max(log σ, -2)" in described
    expected = get_scene("transparent").sigma_raw(x.double()).clamp_min(-2.0)
    assert torch.allclose(y.double(), expected)
    assert y.unique().numel() > 2  # several densities, and empty space at the floor
    again, _, _ = sample(tiny("mlp"), spec, 300, scene="transparent", seed=4)
    assert torch.equal(x, again)  # the same points for every architecture
    other, _, _ = sample(field, spec, 300, scene="transparent", seed=5)
    assert not torch.equal(x, other)
    _, targets, described = sample(field, spec, 10, scene="transparent", output="feature")
    assert targets is None and "own feature output" in described


def test_bad_python_inputs_are_refused_with_one_line_messages(monkeypatch: pytest.MonkeyPatch):
    field = tiny("mlp")
    x = random_points(8)
    cases = [
        (dict(output="rgb"), "--output must be one of sigma, feature, got 'rgb'"),
        (dict(params="some"), "--params must be one of all, grid, got 'some'"),
        (dict(params="grid"), "mlp has no grid tensors"),
        (dict(ridge=-1.0), "--ridge must be a finite number >= 0"),
        (dict(targets=torch.zeros(7)), "targets must have shape [8] or [8, 1]"),
    ]
    for kwargs, message in cases:
        with pytest.raises(UserError) as info:
            gtk(field, x, **kwargs)
        assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match=r"must be in 1\.\.4096, got 4097"):
        gtk(field, random_points(4097))
    monkeypatch.setattr(gtk_module, "DENSE_JACOBIAN_BUDGET", 1000)
    with pytest.raises(UserError, match=r"dense Jacobian of mlp .* needs .* GiB"):
        gtk(field, x)


def test_a_field_gtk_cannot_reproduce_is_refused(monkeypatch: pytest.MonkeyPatch):
    field = tiny("hashgrid")
    original = field.phi1
    monkeypatch.setattr(field, "phi1", lambda x: original(x) + 1.0)
    with pytest.raises(UserError, match="cannot decompose this hashgrid field"):
        gtk(field, random_points(8), params="grid")


def test_outputs_are_written_atomically(tmp_path: Path):
    report = analyse(arch="plenoxels", scene="texture", points=64)
    assert isinstance(report, GTKReport) and report.targets.startswith("scene 'texture'")
    json_path, png = write_outputs(report, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert len(data["eigenvalues"]) == 64 and sum(data["eigenvalues"]) == pytest.approx(1.0)
    assert data["arch"] == "plenoxels" and data["delta"] == pytest.approx(report.delta)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gtk.json", "gtk_spectrum.png"]


def test_gtk_summary_gives_comparison_columns(tiny_checkpoint: Path):
    model = TrainedModel.load(tiny_checkpoint)
    summary = gtk_summary(model, points=128)
    assert set(summary) == {"effective_rank", "condition_number", "delta", "seconds"}
    assert all(math.isfinite(v) and v > 0 for v in summary.values())
    assert 1.0 <= summary["effective_rank"] <= 128
    with_scene = gtk_summary(model, points=128, scene="texture")
    assert with_scene["delta"] != summary["delta"]  # the scene's labels, not the model's own


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    """``pvd gtk ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["pvd", "gtk", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_on_a_checkpoint_with_json(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    code, out, err = run_cli(monkeypatch, capsys, str(tiny_checkpoint), "--points", "200", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["arch"] == "hashgrid" and data["points"] == 200 and data["params"] == "all"
    assert data["targets"] == "the field's own sigma output"
    assert data["dense_parameters"] > 0 and data["grid_parameters"] > 0
    assert "eigenvalues" not in data and data["files"] == []
    assert 1.0 <= data["effective_rank"] <= 200 and data["delta"] > 0


def test_cli_field_at_init_on_a_scene(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    args = ["--arch", "tensorf", "--preset", "cpu", "--scene", "glossy", "--points", "128"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--out", str(tmp_path / "g"))
    assert code == 0, err
    assert "effective rank (exp of spectral entropy)" in out and "scene 'glossy'" in out
    assert (tmp_path / "g" / "gtk_spectrum.png").exists()
    saved = json.loads((tmp_path / "g" / "gtk.json").read_text())
    assert saved["source"] == "cpu preset at initialisation, seed 0" and saved["points"] == 128


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.safetensors"], "missing.safetensors: no such file"),
        (["--arch", "mlp", "--scene", "texture", "--output", "rgb"], "--output must be one of"),
        (["--arch", "mlp", "--scene", "texture", "--points", "0"], "--points must be in 1..4096"),
        (["--arch", "mlp", "--scene", "texture", "--points", "5000"], "got 5000"),
        (["--arch", "gaussians", "--scene", "texture"], "unknown architecture 'gaussians'"),
        (["--arch", "mlp", "--scene", "forest"], "unknown scene 'forest'"),
        (["--arch", "mlp", "--scene", "texture", "--params", "grid"], "mlp has no grid tensors"),
        (["--arch", "mlp"], "--arch needs --scene NAME"),
        (["model.safetensors", "--arch", "mlp"], "not both"),
        (["--arch", "mlp", "--scene", "texture", "--preset", "huge"], "unknown preset 'huge'"),
        (["--arch", "mlp", "--scene", "texture", "--ridge", "-1"], "--ridge must be a finite"),
        ([], "give a checkpoint to analyse, or --arch NAME --scene NAME"),
    ],
)
def test_cli_bad_inputs_end_in_one_line_and_status_2(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_pvd_gtk_is_the_function_even_after_its_module_is_imported():
    import pvd
    import pvd.tangent_kernel as module

    field, x = tiny("plenoxels"), random_points(10)
    assert torch.equal(pvd.gtk(field, x).matrix, module.gtk(field, x).matrix)
    assert pvd.GTKReport is GTKReport


def test_kernel_is_the_same_under_no_grad_and_inference_mode():
    field, x = tiny("mulfagrid"), random_points(16)
    expected = gtk(field, x).matrix
    with torch.no_grad():
        assert torch.equal(gtk(field, x).matrix, expected)
    with torch.inference_mode():
        assert torch.equal(gtk(field, x.clone()).matrix, expected)  # an inference tensor


def test_imported_variants_and_empty_occupancy_are_refused(monkeypatch: pytest.MonkeyPatch):
    field = tiny("plenoxels")
    monkeypatch.setattr(field.config, "density_activation", "relu", raising=False)
    with pytest.raises(UserError, match="does not support plenoxels fields with density_activ"):
        gtk(field, random_points(8))
    hashed = tiny("hashgrid")
    monkeypatch.setattr(hashed.config, "layout", "gridencoder")
    with pytest.raises(UserError, match="hashgrid fields with layout='gridencoder'"):
        gtk(hashed, random_points(8))
    empty = OccupancyGrid((-1.5, -1.5, -1.5, 1.5, 1.5, 1.5), 8, 0.5)
    empty.binary.zero_()
    with pytest.raises(UserError, match=r"no occupied cell.*pass --scene NAME"):
        sample(field, get_scene("texture").scene_spec(), 16, grid=empty)
