"""Image metrics and the evaluation protocol.

Protocol (DESIGN.md, "Evaluation"): composite on the scene background, clip to [0, 1], per-image
PSNR and SSIM, then the mean over images. SSIM follows Wang et al. 2004 with an 11×11 Gaussian
window, σ = 1.5, K1 = 0.01, K2 = 0.03 on the RGB channels ("valid" filtering, as the reference
implementations used by NeRF papers). LPIPS needs pretrained network weights, which pvd cannot
download; it is reported as ``null`` with the reason.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F

LPIPS_UNAVAILABLE = "LPIPS weights are not available locally (pvd never downloads weights)"


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1] (clipped); ``inf`` for identical images."""
    mse = float(((pred.clamp(0, 1) - target.clamp(0, 1)) ** 2).mean())
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM of two ``[H, W, 3]`` images in [0, 1] (Gaussian 11×11, σ = 1.5). Images
    smaller than 11 px use the largest odd window that fits (pvd's choice for tiny tests)."""
    a = pred.clamp(0, 1).double().permute(2, 0, 1)[:, None]  # [3, 1, H, W]
    b = target.clamp(0, 1).double().permute(2, 0, 1)[:, None]
    smallest = min(a.shape[-2:])
    g = _gaussian_window(min(11, smallest - 1 + smallest % 2))

    def blur(x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, g.view(1, 1, 1, -1))
        return F.conv2d(x, g.view(1, 1, -1, 1))

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return float((num / den).mean())


@dataclasses.dataclass
class ImageScores:
    """Mean scores over a set of images, with the per-image PSNR."""

    psnr: float
    ssim: float
    per_image_psnr: list[float]
    lpips: float | None = None
    lpips_reason: str = LPIPS_UNAVAILABLE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def score_images(preds: list[torch.Tensor], targets: list[torch.Tensor]) -> ImageScores:
    """PSNR/SSIM per image pair (``[H, W, 3]``), then their means."""
    if len(preds) != len(targets) or not preds:
        raise ValueError(
            f"need equally many predictions and targets, got {len(preds)} and {len(targets)}"
        )
    psnrs = [psnr(p, t) for p, t in zip(preds, targets, strict=True)]
    ssims = [ssim(p, t) for p, t in zip(preds, targets, strict=True)]
    return ImageScores(
        psnr=sum(psnrs) / len(psnrs), ssim=sum(ssims) / len(ssims), per_image_psnr=psnrs
    )
