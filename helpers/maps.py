"""Operations on explanation maps shared by the methods, the metrics and the figures (no model involved).

A *map* is one value per pixel, ``(B, H, W)`` (or ``(H, W)`` where stated); an *attribution* has the input's
channels, ``(B, C, H, W)`` or ``(C, H, W)``.

* :func:`aggregate_channels`, :func:`clip_percentile`, :func:`normalize_attribution` -- from an attribution to a
  displayable map (re-exported by :mod:`helpers.attribution`).
* :func:`check_maps`, :func:`concentration`, :func:`map_entropy` -- how peaked a map is, without ground truth
  (re-exported by :mod:`helpers.evaluation`; :func:`helpers.plotting.compare_methods` prints the concentration).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = [
    "AGGREGATIONS",
    "aggregate_channels",
    "clip_percentile",
    "normalize_attribution",
    "check_maps",
    "concentration",
    "map_entropy",
]


# ----------------------------------------------------------------------------------------------------------------
# From an attribution to a map
# ----------------------------------------------------------------------------------------------------------------


AGGREGATIONS = ("max_abs", "sum", "abs_sum", "l2")


def aggregate_channels(attr: torch.Tensor, how: str = "max_abs") -> torch.Tensor:
    """Reduce the colour channels of an attribution.

    Args:
        attr: an attribution (B, C, H, W) or (C, H, W).
        how: ``"max_abs"``: ``max_c |a_c|`` (Simonyan et al.; unsigned); ``"sum"``: ``sum_c a_c`` (signed; for IG
            keeps completeness: the map sums to the same total); ``"abs_sum"``: ``sum_c |a_c|``; ``"l2"``:
            ``||a||_2`` over c.
    Returns:
        The map, (B, H, W) or (H, W), detached.
    """
    if not isinstance(attr, torch.Tensor) or attr.ndim not in (3, 4):
        raise ValueError("attr must be a tensor of shape (B, C, H, W) or (C, H, W)")
    attr = attr.detach()
    dim = attr.ndim - 3
    if how == "max_abs":
        return attr.abs().amax(dim)
    if how == "sum":
        return attr.sum(dim)
    if how == "abs_sum":
        return attr.abs().sum(dim)
    if how == "l2":
        return attr.pow(2).sum(dim).sqrt()
    raise ValueError(f"unknown channel aggregation {how!r}; choose one of {AGGREGATIONS}")


def clip_percentile(m: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """Clip each map at the ``percentile``-th percentile ``v`` of its absolute values (per image): a few extreme
    pixels otherwise squash the rest to zero.

    Args:
        m: maps (B, H, W) or one map (H, W).
        percentile: in (0, 100].
    Returns:
        The same shape, values in ``[-v, v]``.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    m = m.detach()
    flat = m.reshape(m.shape[0], -1) if m.ndim == 3 else m.reshape(1, -1)
    v = torch.quantile(flat.abs().float(), percentile / 100, dim=1).to(m)
    v = v.view(-1, *([1] * (m.ndim - 1))) if m.ndim == 3 else v.reshape(())
    return torch.maximum(torch.minimum(m, v), -v)


def normalize_attribution(m: torch.Tensor, signed: bool = False, percentile: float = 99.0) -> torch.Tensor:
    """Scale a map for display, per image: clip at the ``percentile`` of ``|m|`` and divide by it.

    Args:
        m: maps (B, H, W) or one map (H, W).
        signed: keep the sign (range ``[-1, 1]``, show with a diverging colormap centred on 0); ``False`` shows
            the magnitude (range ``[0, 1]``).
        percentile: the clipping percentile, in (0, 100].
    Returns:
        The same shape, in ``[-1, 1]`` or ``[0, 1]``.
    """
    if not signed:
        m = m.abs()
    clipped = clip_percentile(m, percentile)
    flat = clipped.reshape(clipped.shape[0], -1) if clipped.ndim == 3 else clipped.reshape(1, -1)
    scale = flat.abs().amax(1).clamp_min(1e-12)
    scale = scale.view(-1, *([1] * (clipped.ndim - 1))) if clipped.ndim == 3 else scale.reshape(())
    return clipped / scale


# ----------------------------------------------------------------------------------------------------------------
# How peaked a map is
# ----------------------------------------------------------------------------------------------------------------


def check_maps(maps: torch.Tensor, what: str = "maps") -> None:
    """Raise unless ``maps`` is a floating-point ``(B, H, W)`` tensor (``ValueError`` / ``TypeError``)."""
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"{what} must be a (B, H, W) tensor, got {shape}; sum or aggregate the channels first")
    if not maps.is_floating_point():
        raise TypeError(f"{what} must be floating point, got {maps.dtype}")


def _mass(maps: torch.Tensor, what: str) -> torch.Tensor:
    """|maps| as float64 on the CPU (Apple's MPS has no float64), flattened to (B, H*W), after the shape check."""
    if not isinstance(maps, torch.Tensor):
        maps = torch.as_tensor(np.asarray(maps))
    if maps.ndim == 2:
        raise ValueError(f"{what} must be (B, H, W); for one map use map[None]")
    check_maps(maps, what)
    return maps.detach().cpu().abs().to(torch.float64).flatten(1)


def concentration(maps: torch.Tensor, fraction: float = 0.1) -> torch.Tensor:
    """Share of a map's mass ``|m|`` that lies in its top ``fraction`` of the pixels.

    A uniform map gives ``fraction`` (0.1 by default), a map with all its mass in fewer than ``fraction * H * W``
    pixels gives 1; an all-zero map gives ``fraction`` (no pixel stands out). Unlike a min-max normalised heatmap it
    does not make a nearly flat map look peaked: a map ``1 + 0.01 * noise`` scores about 0.1.

    Args:
        maps: (B, H, W) (one map: ``map[None]``).
        fraction: in (0, 1].
    Returns:
        (B,) float32 in [fraction, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    m = _mass(maps, "maps")
    k = max(1, math.ceil(fraction * m.shape[1]))
    total = m.sum(1)
    top = m.topk(k, dim=1).values.sum(1)
    return torch.where(total > 0, top / total.clamp(min=1e-300), torch.full_like(total, k / m.shape[1])).float()


def map_entropy(maps: torch.Tensor) -> torch.Tensor:
    """Normalised entropy of ``|m| / sum |m|`` as a distribution over pixels.

    Args:
        maps: (B, H, W) with at least 2 pixels.
    Returns:
        (B,) float32 in [0, 1]: 1 for a uniform (or all-zero) map, 0 for a map with one non-zero pixel.
    """
    m = _mass(maps, "maps")
    n = m.shape[1]
    if n < 2:
        raise ValueError("map_entropy needs maps with at least 2 pixels")
    total = m.sum(1, keepdim=True)
    p = torch.where(total > 0, m / total.clamp(min=1e-300), torch.full_like(m, 1.0 / n))
    h = -(p * torch.log(p.clamp(min=1e-300))).sum(1)
    return (h / math.log(n)).clamp(0.0, 1.0).float()
