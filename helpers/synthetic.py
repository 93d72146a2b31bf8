"""A dataset whose evidence is known (notebook 07): a coloured shape pasted on a CIFAR-10 photo.

The class is the shape (:data:`SHAPES`: square, disk, cross, ring); its colour (a random saturated hue), its
position and the background photo are random and carry no information about the class. A model that classifies
these images well must use the shape's pixels, so the shape's mask is a ground truth for explanations: the
pointing game and the energy in the mask (``helpers.evaluation``) measure how much of a map falls on it.
(The model could still use the shape's *border* with the background, which lies on the mask's edge: a mask one
pixel wider than the shape is a fair target.)
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

__all__ = ["SHAPES", "shape_mask", "paste_shapes"]

SHAPES = ("square", "disk", "cross", "ring")


def shape_mask(kind: str, size: int = 10) -> np.ndarray:
    """The ``(size, size)`` bool mask of a shape. Square: the full patch minus a 1-px margin; disk: radius
    ``size/2 - 0.5``; cross: a plus sign with arms ``size // 3`` wide; ring: the disk minus its inner half."""
    if size < 6:
        raise ValueError(f"shapes need size >= 6 px, got {size}")
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    c = size / 2
    r = np.hypot(yy - c, xx - c)
    if kind == "square":
        m = np.zeros((size, size), bool)
        m[1:-1, 1:-1] = True
        return m
    if kind == "disk":
        return r <= c - 0.5
    if kind == "cross":
        arm = max(2, size // 3)
        lo = (size - arm) // 2
        m = np.zeros((size, size), bool)
        m[lo:lo + arm, :] = True
        m[:, lo:lo + arm] = True
        return m
    if kind == "ring":
        return (r <= c - 0.5) & (r >= (c - 0.5) / 2)
    raise ValueError(f"unknown shape {kind!r}; use one of {', '.join(SHAPES)}")


def paste_shapes(backgrounds: torch.Tensor, seed: int = 0, size: int = 10,
                 labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste one random shape on each background.

    Args:
        backgrounds: uint8 images (N, 3, H, W), e.g. CIFAR-10 photos.
        seed: seeds the classes (unless given), the colours and the positions.
        size: the shape's patch size in pixels.
        labels: (N,) class indices into :data:`SHAPES`; random (balanced in expectation) when ``None``.
    Returns:
        ``(images uint8 (N, 3, H, W), labels int64 (N,), masks bool (N, H, W))``: the mask is the shape's pixels.
    """
    if backgrounds.ndim != 4 or backgrounds.shape[1] != 3 or backgrounds.dtype != torch.uint8:
        raise ValueError(f"backgrounds must be uint8 (N, 3, H, W), got {backgrounds.dtype} {tuple(backgrounds.shape)}")
    n, _, h, w = backgrounds.shape
    if size > min(h, w):
        raise ValueError(f"a {size}-px shape does not fit {h} x {w} images")
    rng = np.random.default_rng(seed)
    if labels is None:
        labels = torch.from_numpy(rng.integers(0, len(SHAPES), n)).long()
    labels = torch.as_tensor(labels).long()
    if labels.shape != (n,) or labels.min() < 0 or labels.max() >= len(SHAPES):
        raise ValueError(f"labels must be (N,) = ({n},) indices into {len(SHAPES)} shapes")
    stamps = [torch.from_numpy(shape_mask(k, size)) for k in SHAPES]
    images = backgrounds.clone()
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    ys = rng.integers(0, h - size + 1, n)
    xs = rng.integers(0, w - size + 1, n)
    hues = rng.random(n)
    values = rng.uniform(0.7, 1.0, n)
    for i in range(n):
        rgb = torch.tensor([round(255 * v) for v in colorsys.hsv_to_rgb(hues[i], 1.0, values[i])], dtype=torch.uint8)
        m = stamps[int(labels[i])]
        y, x = int(ys[i]), int(xs[i])
        patch = images[i, :, y:y + size, x:x + size]
        images[i, :, y:y + size, x:x + size] = torch.where(m[None], rgb.view(3, 1, 1), patch)
        masks[i, y:y + size, x:x + size] = m
    return images, labels, masks
