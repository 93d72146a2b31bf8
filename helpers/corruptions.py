"""CIFAR-10 corruptions at five severities, written for the course (notebook 08).

Hendrycks & Dietterich (2019) built CIFAR-10-C from 15 corruptions at 5 severities; the PyPI package
``imagecorruptions`` no longer runs on current scikit-image, so the six used here are re-implemented in torch (JPEG
with Pillow), with severities chosen in the same spirit (they are not CIFAR-10-C's exact parameters; pixelate is
stronger: with nearest upsampling, sizes that are not divisors of 32 misplace pixels by up to half a block, which
makes 30 / 29 / 27 px about as damaging as 24 px, and 16 px (exact 2 x 2 blocks) less damaging than 20 px):

* ``gaussian_noise``: ``x + N(0, sigma^2)`` per pixel and channel; sigma = 0.04, 0.06, 0.08, 0.10, 0.13;
* ``gaussian_blur``: a Gaussian filter (reflect padding); sigma = 0.5, 0.75, 1.0, 1.25, 1.6 px;
* ``contrast``: ``(x - mean) * f + mean`` with the image's own mean; f = 0.75, 0.55, 0.4, 0.3, 0.2;
* ``brightness``: ``x + b`` on every channel, clipped; b = 0.1, 0.2, 0.3, 0.4, 0.5;
* ``jpeg``: JPEG encoding and decoding (Pillow, 4:2:0); quality = 80, 50, 30, 18, 10;
* ``pixelate``: area downsampling to s x s, nearest upsampling; s = 20, 15, 12, 10, 8 (for 32 px images).

(``x`` in [0, 1].) :func:`corrupt` applies one corruption: uint8 ``(N, 3, H, W)`` -> uint8, the same shape;
severity 0 returns an unchanged copy. Only ``gaussian_noise`` is random, and it is seeded (``seed``), so every
call is deterministic. Each corruption destroys more as the severity grows: the mean squared difference to the
clean image increases with the severity (tested on photos), and so does the loss of fine detail (neighbour
differences) for blur and contrast.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CORRUPTIONS", "SEVERITIES", "PARAMETERS", "corrupt", "corrupt_all"]

#: the parameter of each corruption at severities 1..5 (see the module docstring)
PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.10, 0.13),
    "gaussian_blur": (0.5, 0.75, 1.0, 1.25, 1.6),
    "contrast": (0.75, 0.55, 0.4, 0.3, 0.2),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "jpeg": (80, 50, 30, 18, 10),
    "pixelate": (20, 15, 12, 10, 8),
}
SEVERITIES = (1, 2, 3, 4, 5)


def _gaussian_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)  # CPU draws: seeded anywhere


def _gaussian_blur(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:  # tiny images: reflect padding cannot exceed the size; replicate the rest
        y = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        y = F.pad(y, (radius - pad,) * 4, mode="replicate")
    else:
        y = F.pad(x, (radius,) * 4, mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _contrast(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def _brightness(x: torch.Tensor, b: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    return x + b


def _jpeg(x: torch.Tensor, quality: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    from PIL import Image

    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # PIL: on the CPU
    out = []
    for img in u8:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype) / 255


def _pixelate(x: torch.Tensor, side: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    h, w = x.shape[-2:]
    s = (max(1, round(side * h / 32)), max(1, round(side * w / 32)))  # the table's sizes are for 32 px images
    small = F.interpolate(x, size=s, mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest-exact")


#: name -> function ``f(x, parameter, seed)`` on float images in [0, 1] (N, 3, H, W), before clipping
CORRUPTIONS: dict[str, Callable[[torch.Tensor, float, int], torch.Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "gaussian_blur": _gaussian_blur,
    "contrast": _contrast,
    "brightness": _brightness,
    "jpeg": _jpeg,
    "pixelate": _pixelate,
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Apply corruption ``name`` (a key of :data:`CORRUPTIONS`) at ``severity`` 0..5 (0: none) to uint8 images
    (N, 3, H, W); returns new uint8 images of the same shape. Deterministic for a ``seed``."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; use one of {', '.join(CORRUPTIONS)}")
    if not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise ValueError(f"severity must be an int in 0..5, got {severity!r}")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or \
            images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {getattr(images, 'dtype', type(images))} "
                         f"{tuple(getattr(images, 'shape', ()))}")
    if severity == 0:
        return images.clone()
    x = images.float() / 255
    y = CORRUPTIONS[name](x, PARAMETERS[name][severity - 1], seed)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)


def corrupt_all(images: torch.Tensor, seed: int = 0,
                names: tuple[str, ...] | None = None) -> dict[tuple[str, int], torch.Tensor]:
    """Every corruption at every severity 1..5: ``{(name, severity): uint8 images}`` (N, 3, H, W) each."""
    return {(n, s): corrupt(images, n, s, seed) for n in (names or tuple(CORRUPTIONS)) for s in SEVERITIES}
