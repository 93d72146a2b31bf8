"""Random, differentiable transforms for transformation robustness (notebook 06). Each takes images (B, C, H, W) and a
``torch.Generator`` and returns (B, C, H', W')."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Pad", "Jitter", "RandomScale", "RandomRotate", "Resize", "standard_transforms"]

Tensor = torch.Tensor


def _randint(low: int, high: int, gen: torch.Generator) -> int:
    """An int in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=gen).item())


def _choice(values: Sequence[float], gen: torch.Generator) -> float:
    return float(values[int(torch.randint(len(values), (1,), generator=gen).item())])


@dataclass(frozen=True)
class Pad:
    """Constant padding by ``width`` pixels on every side (value 0.5: grey), so jitter and rotation do not always
    move the same border pixels out of view."""

    width: int
    value: float = 0.5

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:  # noqa: ARG002
        return F.pad(x, [self.width] * 4, mode="constant", value=self.value)


@dataclass(frozen=True)
class Jitter:
    """A random circular shift by (dy, dx), each an integer in [-d, d] (``torch.roll``: what leaves one side comes
    back on the other, and the size stays). Not Lucid's jitter, which takes a random crop d px smaller
    (``tf.random_crop``), nor lucent's, which translates by 0..d-1 px with kornia and fills the gap."""

    d: int

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        if self.d <= 0:
            return x
        dy, dx = _randint(-self.d, self.d, gen), _randint(-self.d, self.d, gen)
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@dataclass(frozen=True)
class RandomScale:
    """Bilinear zoom by a factor drawn from ``scales`` (the output size is rounded up to whole pixels)."""

    scales: tuple[float, ...]

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        s = _choice(self.scales, gen)
        h, w = x.shape[-2:]
        size = (int(math.ceil(s * h)), int(math.ceil(s * w)))  # Python ints: what nn.Upsample/interpolate need
        if size == (h, w):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


@dataclass(frozen=True)
class RandomRotate:
    """Rotation about the centre by an angle (degrees) drawn from ``angles``; pixels from outside are 0."""

    angles: tuple[float, ...]

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        a = math.radians(_choice(self.angles, gen))
        if a == 0:
            return x
        cos, sin = math.cos(a), math.sin(a)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class Resize:
    """Bilinear resize to ``size`` x ``size`` (e.g. back to the 32 px a ViT's position embedding expects)."""

    size: int

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:  # noqa: ARG002
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


def standard_transforms(size: int = 128) -> list[Callable[[Tensor, torch.Generator], Tensor]]:
    """The order and amounts of Lucid's ``standard_transforms`` (pad 12 with grey, jitter 8, scale 0.9..1.1, rotate
    -10..10 degrees with 0 five times more likely, jitter 4; Lucid's are for 128 px) scaled to an image of ``size``
    px -- the pixel amounts times ``size / 128``, at least 1. One difference: our :class:`Jitter` is a circular
    roll that keeps the size, where Lucid's crops (each jitter makes the image d px smaller)."""
    f = size / 128
    px = [max(1, round(v * f)) for v in (12, 8, 4)]
    return [
        Pad(px[0]),
        Jitter(px[1]),
        RandomScale(tuple(1 + (i - 5) / 50 for i in range(11))),
        RandomRotate(tuple(range(-10, 11)) + (0,) * 5),
        Jitter(px[2]),
    ]
