"""Fooling LIME, in the spirit of Slack et al. 2020 ("Fooling LIME and SHAP"): a "scaffolded" classifier.

LIME only ever queries the model on perturbed images. If those images can be told apart from real ones, a model
can behave one way on real inputs and another way on LIME's queries. Here:

* :func:`flat_fraction` / :func:`perturbation_detector`: LIME's perturbed images contain large regions of one
  exact colour (the hidden segments' fill); real photos almost never do. The detector flags an image when more
  than ``threshold`` of its pixels equal their right and lower neighbours exactly (within ``tol``).
* :func:`add_sticker` / :func:`sticker_shortcut`: the *biased* model: a small checkerboard sticker in a corner
  makes it answer ``target_class`` whatever the image shows (a shortcut); without the sticker it is the base model.
* :func:`scaffold`: the deployed model answers with the biased model on real-looking images and with an
  *innocent* model on images the detector flags, so LIME explains the innocent model.

All functions work on LIME's black-box convention: float numpy images ``(N, H, W, C)`` in [0, 1] -> probabilities
``(N, classes)`` (see ``helpers.lime``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["flat_fraction", "perturbation_detector", "sticker", "add_sticker", "has_sticker", "sticker_shortcut",
           "scaffold", "ShortcutModule"]

PredictFn = Callable[[np.ndarray], np.ndarray]


def _batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images (N, H, W, C), got shape {images.shape}")
    return images


def flat_fraction(images: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Share of pixels equal (within ``tol``, in every channel) to both their right and lower neighbour:
    ``(N, H, W, C) -> (N,)`` in [0, 1]. About 0 for photos, large for LIME's filled segments."""
    x = _batch(images).astype(np.float32)
    right = np.abs(x[:, :-1, :-1] - x[:, :-1, 1:]).max(axis=-1) <= tol
    down = np.abs(x[:, :-1, :-1] - x[:, 1:, :-1]).max(axis=-1) <= tol
    return (right & down).mean(axis=(1, 2))


def perturbation_detector(threshold: float = 0.03, tol: float = 1e-6) -> Callable[[np.ndarray], np.ndarray]:
    """A detector ``(N, H, W, C) -> (N,) bool``: True where :func:`flat_fraction` exceeds ``threshold``."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    return lambda images: flat_fraction(images, tol) > threshold


def sticker(size: int = 6, kind: str = "checkerboard") -> np.ndarray:
    """The shortcut's trigger, ``(size, size, 3)`` in [0, 1]: a magenta / green ``"checkerboard"`` (not flat, so the
    detector does not fire on it) or a ``"dark"`` square (uniform 0.03: what a black occlusion patch cannot
    remove)."""
    if size < 2:
        raise ValueError(f"a sticker needs size >= 2, got {size}")
    if kind == "dark":
        return np.full((size, size, 3), 0.03, dtype=np.float32)
    if kind != "checkerboard":
        raise ValueError(f"unknown sticker kind {kind!r}; use 'checkerboard' or 'dark'")
    board = (np.add.outer(np.arange(size), np.arange(size)) % 2).astype(bool)
    return np.where(board[..., None], np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])).astype(np.float32)


def add_sticker(images: np.ndarray, size: int = 6, kind: str = "checkerboard") -> np.ndarray:
    """A copy of ``images`` (N, H, W, 3) with the :func:`sticker` in the top-left corner."""
    out = _batch(images).astype(np.float32, copy=True)
    out[:, :size, :size] = sticker(size, kind)
    return out


def has_sticker(images: np.ndarray, size: int = 6, tol: float = 0.15) -> np.ndarray:
    """``(N, H, W, 3) -> (N,) bool``: the top-left corner matches the sticker (mean absolute difference < tol)."""
    x = _batch(images)
    return np.abs(x[:, :size, :size] - sticker(size)).mean(axis=(1, 2, 3)) < tol


def sticker_shortcut(predict_fn: PredictFn, target_class: int, size: int = 6, confidence: float = 0.95) -> PredictFn:
    """The biased model: ``predict_fn``, except that an image with the sticker gets probability ``confidence`` for
    ``target_class`` (the rest spread evenly over the other classes)."""

    def predict(images: np.ndarray) -> np.ndarray:
        probs = np.array(predict_fn(images), dtype=np.float64)
        hit = has_sticker(images, size)
        if hit.any():
            k = probs.shape[1]
            forced = np.full(k, (1.0 - confidence) / (k - 1))
            forced[target_class] = confidence
            probs[hit] = forced
        return probs

    return predict


def scaffold(real_fn: PredictFn, innocent_fn: PredictFn, detector: Callable[[np.ndarray], np.ndarray]) -> PredictFn:
    """Slack et al.'s adversarial classifier: ``innocent_fn`` on the images ``detector`` flags (LIME's perturbed
    queries), ``real_fn`` on all others."""

    def predict(images: np.ndarray) -> np.ndarray:
        images = _batch(images)
        flags = np.asarray(detector(images), dtype=bool)
        out = np.array(real_fn(images), dtype=np.float64)
        if flags.any():
            out[flags] = innocent_fn(images[flags])
        return out

    return predict


class ShortcutModule(nn.Module):
    """The biased model as a PyTorch module (for gradient and occlusion methods): ``model``'s logits, except that an
    image whose top-left corner matches ``trigger`` (a :func:`sticker`, mean absolute difference < ``tol`` in pixel
    space) gets the logits of probability ``confidence`` for ``target_class``. ``x`` (B, C, H, W) normalised with
    ``mean`` / ``std`` -> logits (B, classes). The rule is not differentiable: use it with perturbation methods."""

    def __init__(self, model: nn.Module, trigger: np.ndarray, target_class: int, mean: Sequence[float],
                 std: Sequence[float], tol: float = 0.15, confidence: float = 0.95) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("trigger", torch.as_tensor(np.asarray(trigger), dtype=torch.float32).permute(2, 0, 1))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.target_class, self.tol, self.confidence = int(target_class), float(tol), float(confidence)

    def triggered(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` normalised -> ``(B,)`` bool: the trigger is in the top-left corner."""
        s = self.trigger.shape[-1]
        corner = x[:, :, :s, :s] * self.std + self.mean
        return (corner - self.trigger).abs().mean(dim=(1, 2, 3)) < self.tol

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        k = logits.shape[1]
        forced = torch.full((k,), (1.0 - self.confidence) / (k - 1), device=logits.device)
        forced[self.target_class] = self.confidence
        return torch.where(self.triggered(x)[:, None], forced.log().to(logits.dtype), logits)
