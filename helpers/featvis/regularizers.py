"""Regularisers of feature visualisation (notebook 06): (B, 3, H, W) -> (B,), to be SUBTRACTED from the objective
with a weight."""

from __future__ import annotations

import torch

from ..validation import check_images

__all__ = ["l2_penalty", "total_variation", "blur_penalty"]

Tensor = torch.Tensor


def _check_images(x: Tensor) -> None:
    check_images(x, "images", floating=False)


def l2_penalty(x: Tensor, center: float = 0.5) -> Tensor:
    """Squared distance from a grey image: ``sum (x - center)^2`` per image. (B, C, H, W) -> (B,)."""
    _check_images(x)
    return ((x - center) ** 2).sum(dim=(1, 2, 3))


def total_variation(x: Tensor, p: int = 1) -> Tensor:
    """Anisotropic total variation per image: the sum over channels and all vertically and horizontally adjacent
    pixel pairs (no wrap-around) of ``|x_a - x_b| ** p``; ``p=1`` (the default: absolute differences, edges stay
    sharp) or ``p=2`` (squared: smooths everything). (B, C, H, W) -> (B,)."""
    _check_images(x)
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (absolute) or 2 (squared), got {p!r}")
    dv = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs() ** p
    dh = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs() ** p
    return dv.sum(dim=(1, 2, 3)) + dh.sum(dim=(1, 2, 3))


def blur_penalty(x: Tensor, sigma: float = 1.0) -> Tensor:
    """``0.5 * sum (x - blur(x))^2`` per image with the blurred copy held constant: a gradient step on
    ``-weight * penalty`` moves the image a fraction ``weight`` towards its blur (Nguyen et al. 2015's blurring
    every step, as a penalty). (B, C, H, W) -> (B,)."""
    from ..attribution import gaussian_blur

    _check_images(x)
    with torch.no_grad():
        blurred = gaussian_blur(x, sigma)
    return 0.5 * ((x - blurred) ** 2).sum(dim=(1, 2, 3))
