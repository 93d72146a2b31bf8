"""One validator for image batches, shared by attribution, CAM, occlusion, evaluation, feature visualisation and
the course models, so that every function rejects bad input with the same clear message."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["check_images"]


def check_images(x: Any, name: str = "images", channels: int | None = None, floating: bool = True) -> None:
    """Raise unless ``x`` is a torch image batch ``(B, C, H, W)``; every helpers function calls this one directly.

    Args:
        x: the value to check.
        name: what the message calls it (``"images"`` everywhere in the course, so all errors read the same).
        channels: the required C (e.g. 3), or ``None`` for any.
        floating: require a floating-point dtype (normalised images, not uint8).
    Raises:
        TypeError: a non-tensor or a wrong dtype.
        ValueError: a wrong shape (with the fix for a single image ``(C, H, W)``).
    """
    c = "C" if channels is None else str(channels)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {c}, H, W), got {type(x).__name__}")
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        fix = f"; add a batch dimension with {name}.unsqueeze(0) (or {name}[None]) for a single image" \
            if x.ndim == 3 else ""
        raise ValueError(f"{name} must have shape (B, {c}, H, W), got {tuple(x.shape)}{fix}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (normalised images), got {x.dtype}; convert "
                        f"uint8 images with {name}.float() / 255 and normalise them")
