"""Dataset examples (notebook 06): the real images that activate a channel most (exercise 6.3), and crops around
each one's strongest position."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .loop import _identity, _StopForward, record_activations
from .objectives import _check_index, to_spatial
from .regularizers import _check_images

__all__ = ["top_k_examples", "DatasetExamples", "channel_maps", "examples_from_maps", "dataset_examples",
           "crop_examples"]

Tensor = torch.Tensor


def top_k_examples(acts: Tensor, channel: int, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` images whose channel ``channel`` responds most (exercise 6.3). ``acts`` (N, C, h, w) (or (N, C)):
    score of image n = the mean of ``acts[n, channel]`` over the positions. Returns ``(indices, scores)``, both
    (k,), sorted by decreasing score."""
    if acts.ndim not in (2, 4):
        raise ValueError(f"expected activations (N, C, h, w) or (N, C), got {tuple(acts.shape)}")
    _check_index(channel, acts.shape[1], "channel")
    if not 1 <= k <= acts.shape[0]:
        raise ValueError(f"k must be between 1 and the number of images ({acts.shape[0]}), got {k}")
    a = acts[:, channel]
    scores = a.flatten(1).mean(1) if a.ndim == 3 else a
    top = torch.topk(scores, k)
    return top.indices, top.values


@dataclass
class DatasetExamples:
    """Top-activating images of one channel: ``indices`` (k,), ``scores`` (k,) (mean activation), ``positions``
    (k, 2) the (row, col) of each image's strongest position in the (h, w) feature map, ``feature_size`` (h, w),
    and ``all_scores`` (N,) for every image."""

    indices: Tensor
    scores: Tensor
    positions: Tensor
    feature_size: tuple[int, int]
    all_scores: Tensor


def channel_maps(model: nn.Module, layer: str, images: Tensor, channels: Sequence[int],
                 preprocess: Callable[[Tensor], Tensor] | None = None, num_prefix_tokens: int = 0,
                 batch_size: int = 250) -> Tensor:
    """Run ``images`` (N, 3, H, W) in [0, 1] through ``model`` in batches (the forward pass stops after ``layer``)
    and keep the maps of ``channels`` (a list of C' indices): (N, C', h, w) float on the CPU. One pass serves any
    number of channels: :func:`examples_from_maps` then picks each one's top (or most negative) images."""
    _check_images(images)
    channels = [int(c) for c in channels]
    if not channels:
        raise ValueError("channels must name at least one channel")
    preprocess = preprocess or _identity
    device = next(model.parameters()).device
    maps = []
    model.eval()
    with torch.no_grad(), record_activations(model, [layer], stop_early=True) as acts:
        for i in range(0, len(images), batch_size):
            with contextlib.suppress(_StopForward):
                model(preprocess(images[i:i + batch_size].to(device)))
            a = to_spatial(acts[layer], num_prefix_tokens)
            for c in channels:
                _check_index(c, a.shape[1], "channel")
            maps.append(a[:, channels].float().cpu())
    return torch.cat(maps)


def examples_from_maps(maps: Tensor, k: int = 9, negative: bool = False) -> DatasetExamples:
    """The ``k`` top-activating images of one channel from its maps (N, h, w) (``negative=True``: the ``k`` most
    negative), scored by the mean over positions, with each one's strongest position."""
    if maps.ndim != 3:
        raise ValueError(f"expected the maps of one channel, (N, h, w), got {tuple(maps.shape)}")
    sign = -1.0 if negative else 1.0
    idx, _ = top_k_examples(sign * maps[:, None], 0, k)
    flat = (sign * maps[idx]).flatten(1).argmax(1)
    w = maps.shape[2]
    positions = torch.stack([flat // w, flat % w], dim=1)
    all_scores = maps.flatten(1).mean(1)
    return DatasetExamples(idx, all_scores[idx], positions, (maps.shape[1], maps.shape[2]), all_scores)


def dataset_examples(model: nn.Module, layer: str, images: Tensor, channel: int, k: int = 9,
                     preprocess: Callable[[Tensor], Tensor] | None = None, num_prefix_tokens: int = 0,
                     batch_size: int = 250, negative: bool = False) -> DatasetExamples:
    """Run ``images`` (N, 3, H, W) in [0, 1] through ``model`` in batches, record channel ``channel`` of ``layer``
    and return its ``k`` top-activating images (``negative=True``: the ``k`` most negative). For several channels
    (or top and negative of one) compute :func:`channel_maps` once and call :func:`examples_from_maps` on each."""
    maps = channel_maps(model, layer, images, [channel], preprocess, num_prefix_tokens, batch_size)
    return examples_from_maps(maps[:, 0], k, negative)


def crop_examples(images: Tensor, examples: DatasetExamples, crop: int) -> Tensor:
    """Crops (k, 3, crop, crop) of the example images centred on each one's strongest position (feature
    position (i, j) -> pixel ((i + 0.5) H / h, (j + 0.5) W / w)), shifted to stay inside the image."""
    _check_images(images)
    h, w = images.shape[-2:]
    if not 1 <= crop <= min(h, w):
        raise ValueError(f"crop must be between 1 and {min(h, w)}, got {crop}")
    fh, fw = examples.feature_size
    out = []
    for n, (i, j) in zip(examples.indices.tolist(), examples.positions.tolist(), strict=True):
        cy, cx = int((i + 0.5) * h / fh), int((j + 0.5) * w / fw)
        y0 = min(max(cy - crop // 2, 0), h - crop)
        x0 = min(max(cx - crop // 2, 0), w - crop)
        out.append(images[n, :, y0:y0 + crop, x0:x0 + crop])
    return torch.stack(out)
