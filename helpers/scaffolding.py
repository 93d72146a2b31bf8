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

from collections.abc import Callable

import numpy as np

__all__ = ["flat_fraction", "perturbation_detector", "sticker", "add_sticker", "has_sticker", "sticker_shortcut",
           "scaffold"]

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


def sticker(size: int = 6) -> np.ndarray:
    """The shortcut's trigger: a ``(size, size, 3)`` magenta / green checkerboard (not flat, so the detector does
    not fire on it)."""
    if size < 2:
        raise ValueError(f"a sticker needs size >= 2, got {size}")
    board = (np.add.outer(np.arange(size), np.arange(size)) % 2).astype(bool)
    return np.where(board[..., None], np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])).astype(np.float32)


def add_sticker(images: np.ndarray, size: int = 6) -> np.ndarray:
    """A copy of ``images`` (N, H, W, 3) with the sticker in the top-left corner."""
    out = _batch(images).astype(np.float32, copy=True)
    out[:, :size, :size] = sticker(size)
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
