"""Shapley values of a cooperative game: exact (by enumeration) and estimated with Kernel SHAP, plus image games.

A game on ``n`` players is a value function ``v`` on coalitions ``S`` (subsets of the players). Here ``value_fn``
takes a boolean mask of shape (M, n) (row m: which players are in coalition m) and returns (M,) values. The Shapley
value of player ``i`` is

    phi_i = sum_{S not containing i} |S|! (n - |S| - 1)! / n!  * (v(S + i) - v(S)),

the only attribution that is efficient (``sum_i phi_i = v(N) - v(empty)``), symmetric, gives null players 0 and is
linear in the game (Shapley 1953). Kernel SHAP (Lundberg & Lee 2017) finds the same values as the solution of a
weighted least-squares problem over coalitions, weighted by the Shapley kernel
``pi(S) = (n - 1) / (C(n, |S|) |S| (n - |S|))``, with the efficiency constraint imposed exactly; sampling coalitions
estimates it. LIME (notebook 05) solves the same kind of regression with another kernel.

For an image, the players are segments (e.g. a 3 x 3 grid) and ``v(S)`` is the model's output on the image with the
segments outside ``S`` replaced by a fill (:func:`image_game`): what "absent" means is that choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .validation import check_images

__all__ = [
    "MAX_EXACT_PLAYERS",
    "ValueFn",
    "all_coalitions",
    "shapley_weight",
    "shapley_kernel",
    "exact_shapley",
    "kernel_shap",
    "image_game",
]

MAX_EXACT_PLAYERS = 16  # 2^16 = 65,536 coalitions; beyond that enumeration is too slow for a notebook
ValueFn = Callable[[np.ndarray], np.ndarray]


def _check_players(n_players: int) -> None:
    if isinstance(n_players, bool) or not isinstance(n_players, (int, np.integer)) or n_players < 1:
        raise ValueError(f"n_players must be a positive int, got {n_players!r}")


def _values(value_fn: ValueFn, masks: np.ndarray, batch_size: int) -> np.ndarray:
    out = []
    for start in range(0, len(masks), batch_size):
        chunk = masks[start:start + batch_size]
        v = value_fn(chunk.copy())
        v = v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)
        if v.shape != (len(chunk),):
            raise ValueError(f"value_fn must return one value per coalition, shape ({len(chunk)},), got {v.shape}")
        out.append(v)
    return np.concatenate(out)


def all_coalitions(n_players: int) -> np.ndarray:
    """Every coalition as a boolean mask (2^n, n); row ``k`` holds the binary digits of ``k`` (player 0 = bit 0)."""
    _check_players(n_players)
    if n_players > MAX_EXACT_PLAYERS:
        raise ValueError(_too_many(n_players))
    k = np.arange(2**n_players)[:, None]
    return ((k >> np.arange(n_players)) & 1).astype(bool)


def _too_many(n: int) -> str:
    return (f"n_players={n} needs 2^{n} = {2**n:,} coalitions, more than the {2**MAX_EXACT_PLAYERS:,} "
            f"(n <= {MAX_EXACT_PLAYERS}) enumerated here: estimate the values with kernel_shap(value_fn, {n}, "
            "n_samples=...) or use fewer players (a coarser grid of segments)")


def shapley_weight(n_players: int, size: np.ndarray | int) -> np.ndarray:
    """The Shapley weight ``|S|! (n - |S| - 1)! / n!`` of a coalition of ``size`` players not containing ``i``."""
    s = np.asarray(size, dtype=np.float64)
    n = n_players
    return np.exp([math.lgamma(k + 1) + math.lgamma(n - k) - math.lgamma(n + 1) for k in s.ravel()]).reshape(s.shape)


def shapley_kernel(n_players: int, size: np.ndarray | int) -> np.ndarray:
    """Kernel SHAP's weight ``(n - 1) / (C(n, s) s (n - s))`` of a coalition of ``s`` players (inf for s = 0, n)."""
    s = np.asarray(size, dtype=np.float64)
    n = n_players
    with np.errstate(divide="ignore"):
        comb = np.array([math.comb(n, int(k)) for k in s.ravel()], dtype=np.float64).reshape(s.shape)
        return np.where((s == 0) | (s == n), np.inf, (n - 1) / (comb * s * (n - s)))


def exact_shapley(value_fn: ValueFn, n_players: int, batch_size: int = 256) -> np.ndarray:
    """Exact Shapley values by enumerating all 2^n coalitions; (n_players,) float64.

    Args: ``value_fn`` maps a boolean mask (M, n_players) to values (M,) (numpy or torch); ``n_players`` <=
    :data:`MAX_EXACT_PLAYERS`. ``value_fn`` is called on batches of at most ``batch_size`` coalitions.
    """
    masks = all_coalitions(n_players)
    v = _values(value_fn, masks, batch_size)
    sizes = masks.sum(1)
    idx = np.arange(len(masks))
    phi = np.empty(n_players)
    for i in range(n_players):
        without = idx[~masks[:, i]]  # coalitions S without i; S + i is S | (1 << i)
        phi[i] = np.sum(shapley_weight(n_players, sizes[without]) * (v[without | (1 << i)] - v[without]))
    return phi


def kernel_shap(value_fn: ValueFn, n_players: int, n_samples: int = 1000, seed: int = 0, paired: bool = True,
                batch_size: int = 256) -> np.ndarray:
    """Kernel SHAP estimate of the Shapley values; (n_players,) float64.

    Coalitions are sampled from the Shapley kernel (a size ``s`` in 1..n-1 with probability proportional to
    ``1 / (s (n - s))``, then ``s`` players uniformly; ``paired``: each with its complement, which lowers the
    variance), so the least-squares weights are uniform. The estimate solves
    ``min_phi sum_m (v(S_m) - v(empty) - sum_{i in S_m} phi_i)^2`` subject to
    ``sum_i phi_i = v(N) - v(empty)`` (efficiency holds exactly). ``n_samples`` counts the sampled coalitions
    (plus the empty and full ones).
    """
    _check_players(n_players)
    if n_players == 1:
        v = _values(value_fn, np.array([[False], [True]]), batch_size)
        return np.array([v[1] - v[0]])
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    n = n_players
    rng = np.random.default_rng(seed)
    sizes = np.arange(1, n)
    p = 1.0 / (sizes * (n - sizes))
    m = n_samples // 2 if paired else n_samples
    draw = rng.choice(sizes, size=m, p=p / p.sum())
    order = np.argsort(rng.random((m, n)), axis=1)
    masks = order < draw[:, None]  # the first s players of a random permutation
    if paired:
        masks = np.concatenate([masks, ~masks])
    ends = np.array([np.zeros(n, bool), np.ones(n, bool)])
    v = _values(value_fn, np.concatenate([ends, masks]), batch_size)
    v0, v1 = v[0], v[1]
    z = masks.astype(np.float64)
    y = v[2:] - v0
    a = z.T @ z / len(z)
    b = z.T @ y / len(z)
    a_inv_b = np.linalg.lstsq(a, b, rcond=None)[0]
    a_inv_1 = np.linalg.lstsq(a, np.ones(n), rcond=None)[0]
    return a_inv_b - a_inv_1 * (a_inv_b.sum() - (v1 - v0)) / a_inv_1.sum()


def image_game(model: nn.Module, x: torch.Tensor, target: int, segments: torch.Tensor | np.ndarray,
               fill: torch.Tensor, probability: bool = False) -> ValueFn:
    """The game "which segments of the image are shown": ``v(S)`` = the target logit (or probability) of ``model``
    on ``x`` (1, C, H, W) with the pixels of the segments outside ``S`` taken from ``fill`` (1, C, H, W).

    ``segments``: (H, W) integer labels 0..K-1 (K players). The returned function takes a boolean mask (M, K) and
    returns (M,) float64 numpy values; it runs on ``x``'s device.
    """
    check_images(x, "x")
    check_images(fill, "fill")
    if x.shape[0] != 1 or fill.shape != x.shape:
        raise ValueError(f"x must be one image (1, C, H, W) and fill the same shape, got {tuple(x.shape)} and "
                         f"{tuple(fill.shape)}")
    seg = torch.as_tensor(np.asarray(segments), device=x.device).long()
    if seg.shape != x.shape[2:]:
        raise ValueError(f"segments must have shape {tuple(x.shape[2:])} (H, W), got {tuple(seg.shape)}")
    k = int(seg.max()) + 1
    if int(seg.min()) != 0 or len(torch.unique(seg)) != k:
        raise ValueError("segments must be labelled 0..K-1 without gaps (helpers.lime.relabel fixes that)")

    def value(mask: np.ndarray) -> np.ndarray:
        m = torch.as_tensor(np.asarray(mask), device=x.device)
        if m.dtype != torch.bool or m.ndim != 2 or m.shape[1] != k:
            raise ValueError(f"the mask must be boolean (M, {k}), got {m.dtype} {tuple(m.shape)}")
        keep = m[:, seg][:, None]  # (M, 1, H, W)
        images = torch.where(keep, x, fill)
        with torch.no_grad():
            out = model(images)
            out = out.softmax(1) if probability else out
        return out[:, target].detach().cpu().double().numpy()

    return value
