"""CIFAR-10 corruptions at five severities, written for the course (notebook 08).

Hendrycks & Dietterich (2019) built CIFAR-10-C from 15 corruptions at 5 severities; the PyPI package
``imagecorruptions`` no longer runs on current scikit-image (and has ImageNet-C's parameters, not CIFAR-10-C's), so
the six used here are re-implemented in torch (JPEG and pixelate with Pillow) with **CIFAR-10-C's parameters**, read
from the authors' ``make_cifar_c.py`` (github.com/hendrycks/robustness, ``ImageNet-C/create_c/``):

* ``gaussian_noise``: ``x + N(0, sigma^2)`` per pixel and channel; sigma = 0.04, 0.06, 0.08, 0.09, 0.10;
* ``gaussian_blur``: a Gaussian filter per channel, kernel truncated at 4 sigma, edges repeated (scikit-image's
  ``gaussian`` defaults: ``mode="nearest"``, ``truncate=4.0``); sigma = 0.4, 0.6, 0.7, 0.8, 1.0 px;
* ``contrast``: ``(x - mean) * f + mean`` with each channel's own mean over the image; f = 0.75, 0.5, 0.4, 0.3, 0.15;
* ``brightness``: in HSV, ``V + b`` clipped to [0, 1], hue and saturation kept; b = 0.05, 0.1, 0.15, 0.2, 0.3
  (with H and S fixed, RGB is proportional to V, so this is ``x * V' / V`` with ``V = max_c x_c``; a black pixel
  becomes grey ``V'``);
* ``jpeg``: JPEG encoding and decoding (Pillow's defaults, 4:2:0); quality = 80, 65, 58, 50, 40;
* ``pixelate``: Pillow ``BOX`` resize down to ``int(32 f)`` px and ``BOX`` back up; f = 0.95, 0.9, 0.85, 0.75, 0.65
  (30, 28, 27, 24, 20 px for 32 px images).

(``x`` in [0, 1].) As in ``make_cifar_c.py``, the result is clipped to [0, 1] and converted to uint8 by truncation
(``np.uint8(x * 255)``), not rounding. Where the course differs: the noise is seeded per call (``seed``) instead of
drawn from numpy's global generator, and the blur is our own separable filter (equal to scikit-image's up to float
rounding). CIFAR-10-C's other nine corruptions (shot and impulse noise, defocus, glass, motion and zoom blur, snow,
frost, fog, elastic) are not implemented.

:func:`corrupt` applies one corruption: uint8 ``(N, 3, H, W)`` -> uint8, the same shape; severity 0 returns an
unchanged copy. Only ``gaussian_noise`` is random, and it is seeded, so every call is deterministic. Each corruption
destroys more as the severity grows: the mean squared difference to the clean image increases with the severity
(tested on photos), and so does the loss of fine detail (neighbour differences) for blur and contrast.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CORRUPTIONS", "SEVERITIES", "PARAMETERS", "corrupt", "corrupt_all"]

#: the parameter of each corruption at severities 1..5: CIFAR-10-C's (see the module docstring)
PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "jpeg": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
}
SEVERITIES = (1, 2, 3, 4, 5)


def _gaussian_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)  # CPU draws: seeded anywhere


def _gaussian_blur(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    radius = int(4.0 * sigma + 0.5)  # scipy.ndimage's kernel radius for truncate=4
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.device, x.dtype)  # float64 built on the CPU, then the images' device
    c = x.shape[1]
    y = F.pad(x, (radius,) * 4, mode="replicate")  # "nearest": the edge pixel repeated
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _contrast(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    mean = x.mean(dim=(2, 3), keepdim=True)  # per image and channel
    return (x - mean) * factor + mean


def _brightness(x: torch.Tensor, b: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    v = x.amax(dim=1, keepdim=True)  # HSV value
    v_new = (v + b).clamp(0, 1)
    return torch.where(v > 0, x * v_new / v.clamp_min(1e-12), v_new.expand_as(x))


def _pil_roundtrip(x: torch.Tensor, fn: Callable) -> torch.Tensor:
    from PIL import Image

    u8 = (x.clamp(0, 1) * 255 + 1e-9).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # truncation; PIL: CPU
    out = [np.asarray(fn(Image.fromarray(img)).convert("RGB")) for img in u8]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.device, x.dtype) / 255


def _jpeg(x: torch.Tensor, quality: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    from PIL import Image

    def roundtrip(img: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        return Image.open(buf)

    return _pil_roundtrip(x, roundtrip)


def _pixelate(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:  # noqa: ARG001
    from PIL import Image

    h, w = x.shape[-2:]
    small = (max(1, int(w * factor)), max(1, int(h * factor)))
    return _pil_roundtrip(x, lambda img: img.resize(small, Image.BOX).resize((w, h), Image.BOX))


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
    (N, 3, H, W); returns new uint8 images of the same shape (clipped, then truncated as CIFAR-10-C's
    ``np.uint8``). Deterministic for a ``seed``."""
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
    x = images.double() / 255
    y = CORRUPTIONS[name](x, PARAMETERS[name][severity - 1], seed)
    # + 1e-9: an unchanged pixel k / 255 must come back as k despite float rounding before the truncation
    return (y.clamp(0, 1) * 255 + 1e-9).floor().to(torch.uint8)


def corrupt_all(images: torch.Tensor, seed: int = 0,
                names: tuple[str, ...] | None = None) -> dict[tuple[str, int], torch.Tensor]:
    """Every corruption at every severity 1..5: ``{(name, severity): uint8 images}`` (N, 3, H, W) each."""
    return {(n, s): corrupt(images, n, s, seed) for n in (names or tuple(CORRUPTIONS)) for s in SEVERITIES}
