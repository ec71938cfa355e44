"""Components shared by the architectures: activations, encodings, the canonical decoder and
trilinear interpolation on dense grids.

Conventions (ARCHITECTURES.md, "Shared components"):

- ``trunc_exp``: forward ``exp(x)``, backward ``exp(clamp(x, -15, 15))`` (torch-ngp / nerfstudio),
  so a large raw density cannot blow up the gradient.
- Real spherical harmonics of degree 4 (16 coefficients) of a *unit* direction, with the sign
  convention and order of tiny-cuda-nn's ``SphericalHarmonics`` encoding (also torch-ngp's
  ``shencoder`` and svox2's ``eval_sh_bases``). tcnn feeds directions in [0, 1] and maps them by
  ``2u - 1`` first; here directions are already in [-1, 1].
- Raw density of imported variants whose tool activates density with softplus / ReLU:
  :func:`log_density` reports it in pvd's log space ``ln σ`` above the floor
  ``e^LOG_DENSITY_FLOOR`` (TensoRF and Plenoxels variants share it).
- Colour from per-channel SH coefficients, :func:`sh_colour` (Plenoxels' grid, TensoRF's
  ``SHRender``).
- Positional encoding ``γ(p) = [p, sin(2^0 p), cos(2^0 p), …, sin(2^{L-1} p), cos(2^{L-1} p)]``
  (NeRF, Mildenhall et al. 2020, eq. 4, with the identity prepended as in its code; frequency-major,
  each block 3 wide).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Coefficients of tcnn's degree-4 real SH (``common_device.h::sh_enc``).
_SH_C = (
    0.28209479177387814,
    0.48860251190291987,
    1.0925484305920792,
    0.94617469575755997,
    0.31539156525251999,
    0.54627421529603959,
    0.59004358992664352,
    2.8906114426405538,
    0.45704579946446572,
    0.3731763325901154,
    1.4453057213202769,
)


class _TruncExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(-15.0, 15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """``exp(x)`` whose gradient is computed at ``clamp(x, -15, 15)``."""
    return _TruncExp.apply(x)


def activate_density(
    sigma_raw: torch.Tensor, sigma_clip: tuple[float, float] | None = None
) -> torch.Tensor:
    """The density activation of every pvd architecture: ``sigma = trunc_exp(sigma_raw)``.

    ``sigma_clip`` is the optional forward clamp of the reference PVD code, off by default
    (see :class:`architectures.base.FieldConfig`).
    """
    if sigma_clip is not None:
        sigma_raw = sigma_raw.clamp(sigma_clip[0], sigma_clip[1])
    return trunc_exp(sigma_raw)


#: The lowest raw density ``ln σ`` a ``softplus``/``relu`` variant reports (σ = e⁻²⁰ ≈ 2e-9 per
#: unit stands for the tool's exact 0; far below any clip range distillation uses).
LOG_DENSITY_FLOOR = -20.0
#: Colour modes of :func:`sh_colour`; ``None`` is pvd's sigmoid.
SH_COLOURS = ("svox2_clamp",)


def log_density(pre: torch.Tensor, activation: str | None, scale: float = 1.0) -> torch.Tensor:
    """pvd's raw density ``ln σ`` of ``σ = scale · activation(pre)`` (``pre`` already shifted).

    ``None`` (pvd's ``trunc_exp``) is already in log space (``pre + ln scale``); ``"softplus"``
    (official TensoRF's ``feature2density``) and ``"relu"`` (TensoRF's ``fea2denseAct relu``,
    nerfstudio's tensorf field, svox2) are evaluated and their log taken above the floor
    ``e^LOG_DENSITY_FLOOR`` (clamped *before* the log, so the gradient stays finite where the
    tool's density is 0).
    """
    if activation is None:
        return pre if scale == 1.0 else pre + math.log(scale)
    sigma = F.softplus(pre) if activation == "softplus" else F.relu(pre)
    return torch.log((scale * sigma).clamp_min(math.exp(LOG_DENSITY_FLOOR)))


def sh_encode(d: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """Real SH basis of unit directions ``d`` ``[N, 3]`` → ``[N, degree²]`` (degree 1..4)."""
    if not 1 <= degree <= 4:
        raise ValueError(f"SH degree must be 1..4, got {degree}")
    c = _SH_C
    x, y, z = d.unbind(-1)
    out = [torch.full_like(x, c[0])]
    if degree > 1:
        out += [-c[1] * y, c[1] * z, -c[1] * x]
    if degree > 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            c[2] * x * y,
            -c[2] * y * z,
            c[3] * zz - c[4],
            -c[2] * x * z,
            c[5] * (xx - yy),
        ]
    if degree > 3:
        out += [
            c[6] * y * (-3 * xx + yy),
            c[7] * x * y * z,
            c[8] * y * (1 - 5 * zz),
            c[9] * z * (5 * zz - 3),
            c[8] * x * (1 - 5 * zz),
            c[10] * z * (xx - yy),
            c[6] * x * (-xx + 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_colour(coefficients: torch.Tensor, d: torch.Tensor, mode: str | None = None) -> torch.Tensor:
    """``rgb`` ``[N, 3]`` from per-channel SH coefficients ``[N, 3, basis]`` (basis 1, 4, 9 or
    16: all of red, then green, then blue) at unit directions ``d``, with the first ``basis``
    functions of :func:`sh_encode`.

    ``mode`` ``None``: ``sigmoid(Σ_k SH_k(d)·c_k)`` (the reference PVD code's Plenoxels);
    ``"svox2_clamp"``: ``max(Σ_k SH_k(d)·c_k + 0.5, 0)`` (svox2's colour, TensoRF's ``SHRender``
    ``relu(· + 0.5)``), clamped at 1 per sample for pvd's ``rgb`` ∈ [0, 1] contract (the tools
    clamp only the composited pixel: identical wherever their sample colours stay within 1).
    """
    basis = sh_encode(d, degree=math.isqrt(coefficients.shape[-1]))
    logits = (coefficients * basis[:, None, :]).sum(-1)
    if mode == "svox2_clamp":
        return (logits + 0.5).clamp(0.0, 1.0)
    return torch.sigmoid(logits)


def positional_encoding(p: torch.Tensor, n_frequencies: int) -> torch.Tensor:
    """``γ(p)`` for ``p`` ``[N, 3]`` → ``[N, 3 + 6·n_frequencies]`` (see module docstring)."""
    freqs = 2.0 ** torch.arange(n_frequencies, device=p.device, dtype=p.dtype)
    scaled = p[:, None, :] * freqs[None, :, None]  # [N, L, 3]
    enc = torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=-1)  # [N, L, 6]
    return torch.cat([p, enc.flatten(1)], dim=-1)


class CanonicalDecoder(nn.Module):
    """The shared φ²: ``v = [sigma_raw, g(15)]``, unit ``d`` → (sigma, rgb).

    ``sigma = trunc_exp(sigma_raw)``; ``rgb = sigmoid(colour_mlp([SH_deg4(d) (16), g (15)]))``
    with ``colour_mlp`` 31→64→64→3, ReLU, no biases (the torch-ngp / reference PVD ``color_net``).
    ``bias=True`` gives every layer a bias (imported nerfacto heads and tcnn MLPs whose padding
    input is a constant 1: the hash grid's ``"biased"`` decoder); the state-dict keys are the same
    ``colour_mlp.{0,2,4}.weight`` either way, plus ``colour_mlp.{0,2,4}.bias`` with biases.
    """

    def __init__(
        self, sigma_clip: tuple[float, float] | None = None, width: int = 64, bias: bool = False
    ) -> None:
        super().__init__()
        self.sigma_clip = sigma_clip
        self.colour_mlp = nn.Sequential(
            nn.Linear(31, width, bias=bias),
            nn.ReLU(),
            nn.Linear(width, width, bias=bias),
            nn.ReLU(),
            nn.Linear(width, 3, bias=bias),
        )

    def forward(self, v: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = activate_density(v[:, 0], self.sigma_clip)
        rgb = torch.sigmoid(self.colour_mlp(torch.cat([sh_encode(d), v[:, 1:16]], dim=-1)))
        return sigma, rgb


def trilinear_dense(grid: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Trilinear interpolation of a dense vertex grid ``[C, Rx, Ry, Rz]`` at ``u`` in [0, 1]³.

    Vertex ``i`` sits at ``u = i / (R - 1)`` (``align_corners=True``); points outside are clamped
    to the border. Returns ``[N, C]``. Uses ``grid_sample``, whose 5-D input is ``(N, C, D, H, W)``
    indexed by coordinates ``(x→W, y→H, z→D)``, hence the permutation.
    """
    vol = grid.permute(0, 3, 2, 1).unsqueeze(0)  # [1, C, Rz, Ry, Rx]
    coords = (u * 2 - 1).view(1, -1, 1, 1, 3)
    out = F.grid_sample(vol, coords, mode="bilinear", align_corners=True, padding_mode="border")
    return out.view(grid.shape[0], -1).t()
