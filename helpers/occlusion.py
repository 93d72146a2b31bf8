"""Occlusion (Zeiler & Fergus 2014): slide a patch over the image and record how much the class score drops.

For a window ``W`` placed at each position of a regular grid (stride ``s``), the occluded image is ``x`` with the
window's pixels replaced by a baseline ``b`` (black, the image mean, a blurred copy, ...). Every pixel gets the
average score drop ``f_c(x) - f_c(x_occluded)`` over the windows that cover it, as
``captum.attr.Occlusion`` computes it with ``sliding_window_shapes=(C, w, w)``, ``strides=(C, s, s)`` (tested).
A positive value means hiding that region lowers the score.

The fill is the catch: a black patch on a black region changes nothing, so a dark object gets no attribution
however much the model relies on it. :func:`occlusion_fill` gives the usual choices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .attribution import class_indices, gaussian_blur
from .validation import check_images as _check_input

__all__ = ["FILLS", "occlusion_fill", "window_positions", "window_drops", "occlusion"]

FILLS = ("black", "mean", "blur", "zero")


def occlusion_fill(x: torch.Tensor, kind: str = "black", mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, sigma: float | None = None) -> torch.Tensor:
    """A baseline image for occlusion, in the model's input space: ``(B, C, H, W) -> (B, C, H, W)``.

    ``"black"``: pixel value 0 (``-mean/std`` after normalisation with ``mean``/``std``); ``"zero"``: 0 in input
    space (the dataset mean colour for a normalised model); ``"mean"``: each image's own mean colour;
    ``"blur"``: a Gaussian blur of the image (``sigma`` px, default a tenth of the image size)."""
    _check_input(x)
    if kind == "black":
        if mean is None or std is None:
            return torch.zeros_like(x)
        m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (-m / s).expand_as(x).clone()
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        return gaussian_blur(x.detach(), sigma if sigma is not None else max(x.shape[-2:]) / 10)
    raise ValueError(f"unknown fill {kind!r}; use one of {', '.join(FILLS)}")


def window_positions(size: int, window: int, stride: int) -> list[int]:
    """Top (or left) edges of the windows along one axis: ``0, s, 2s, ...``, ``ceil((size - window) / s) + 1`` of
    them, so the last window reaches the border (it is cut off there when the stride does not divide; captum's
    convention). Every pixel is covered by at least one window: a stride larger than the window (which would leave
    pixels uncovered) is refused, as captum does."""
    if not 1 <= window <= size:
        raise ValueError(f"window {window} must be between 1 and the image size {size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if stride > window and window < size:
        raise ValueError(f"stride {stride} is larger than the window {window}: some pixels would never be occluded")
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


def window_drops(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor, window: int = 8,
                 stride: int = 4, fill: float | torch.Tensor = 0.0, batch_size: int = 64,
                 probability: bool = False) -> torch.Tensor:
    """The score drop of every window position: ``x`` (B, C, H, W) -> ``(B, R, Q)`` with ``R, Q`` the numbers of
    positions along the height and the width (:func:`window_positions`); entry ``[b, i, j]`` is
    ``y_c(x_b) - y_c(x_b with the window at (rows[i], cols[j]) replaced by fill)``.

    ``fill``: a number or a baseline broadcastable to ``x`` (e.g. :func:`occlusion_fill`). The score is the target
    logit, or its softmax probability with ``probability=True``. ``batch_size``: occluded images per forward pass.
    Costs one forward pass per window position and image."""
    _check_input(x)
    b, _, h, w = x.shape
    base = torch.as_tensor(fill, dtype=x.dtype, device=x.device).expand_as(x)
    rows, cols = window_positions(h, window, stride), window_positions(w, window, stride)
    windows = [(r, c) for r in rows for c in cols]

    def score(inp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = model(inp)
        if out.ndim != 2:
            raise ValueError(f"the model must return (B, classes), got shape {tuple(out.shape)}")
        out = out.softmax(-1) if probability else out
        return out.gather(1, t[:, None])[:, 0]

    drops = torch.empty(len(windows), b, dtype=x.dtype, device=x.device)
    with torch.no_grad():
        t = class_indices(target, b, None, x.device)
        y0 = score(x, t)  # (B,)
        per = max(1, batch_size // b)
        for start in range(0, len(windows), per):
            chunk = windows[start:start + per]
            batch = x.unsqueeze(0).repeat(len(chunk), 1, 1, 1, 1)  # (n, B, C, H, W)
            for i, (r, c) in enumerate(chunk):
                batch[i, :, :, r:r + window, c:c + window] = base[:, :, r:r + window, c:c + window]
            scores = score(batch.reshape(-1, *x.shape[1:]), t.repeat(len(chunk))).view(len(chunk), b)
            drops[start:start + len(chunk)] = y0[None] - scores
    return drops.T.reshape(b, len(rows), len(cols))


def occlusion(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor, window: int = 8,
              stride: int = 4, fill: float | torch.Tensor = 0.0, batch_size: int = 64,
              probability: bool = False) -> torch.Tensor:
    """Occlusion maps: ``x`` (B, C, H, W) in the model's input space -> ``(B, H, W)``, each pixel the average of the
    :func:`window_drops` of the windows that cover it (arguments as there)."""
    drops = window_drops(model, x, target, window, stride, fill, batch_size, probability)
    b, _, h, w = x.shape
    total = torch.zeros(b, h, w, dtype=x.dtype, device=x.device)
    count = torch.zeros(h, w, dtype=x.dtype, device=x.device)
    for i, r in enumerate(window_positions(h, window, stride)):
        for j, c in enumerate(window_positions(w, window, stride)):
            total[:, r:r + window, c:c + window] += drops[:, i, j].view(b, 1, 1)
            count[r:r + window, c:c + window] += 1
    return total / count
