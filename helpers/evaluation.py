"""Evaluating explanations (notebook 07): ground truth, sanity checks, deletion / insertion and ROAR.

Maps are ``(B, H, W)`` float tensors (one value per pixel; aggregate the channels of a ``(B, C, H, W)`` attribution
first, e.g. ``attribution.aggregate_channels``); masks are ``(B, H, W)`` bool. Images ``x`` are ``(B, C, H, W)``
in the model's input space.

* Ground truth: :func:`pointing_game` (is the map's maximum on the object?), :func:`energy_in_mask` (share of the
  positive attribution inside the object; Wang et al. 2020).
* How peaked a map is, without ground truth: :func:`concentration` (share of the mass in the top 10 % of the
  pixels) and :func:`map_entropy` (normalised entropy of the map as a distribution).
* Model-parameter randomisation (Adebayo et al. 2018): :func:`layer_groups`, :func:`randomize_parameters`,
  :func:`cascading_randomization` / :func:`independent_randomization` (iterators that re-initialise *every*
  parameter, a ViT's ``pos_embed`` and ``cls_token`` included, and restore the model afterwards, also after an
  exception);
  similarity of maps: :func:`rank_similarity` (Spearman, signed or absolute; NaN for a constant map),
  :func:`ssim_similarity`, :func:`hog_similarity` (Pearson correlation of HOG features).
* Deletion / insertion curves (Petsiuk et al. 2018): :func:`deletion_curve`, :func:`insertion_curve`, :func:`auc`,
  substrates :func:`blur_substrate` / :func:`mean_substrate`, baseline maps :func:`random_map` / :func:`sobel_map`.
* ROAR (Hooker et al. 2019): :func:`roar_remove` replaces the top ``t`` of the pixels by a fill (the per-channel
  mean); ROAD (Rong et al. 2022): :func:`noisy_linear_imputation` fills them from their neighbours instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from . import attribution, cam, occlusion
from .attribution import class_indices, gaussian_blur
from .maps import check_maps as _check_maps
from .maps import concentration, map_entropy
from .validation import check_images as _check_input

__all__ = [
    "pointing_game",
    "energy_in_mask",
    "concentration",
    "map_entropy",
    "layer_groups",
    "randomize_parameters",
    "cascading_randomization",
    "independent_randomization",
    "rank_similarity",
    "ssim_similarity",
    "hog_similarity",
    "LayerGroup",
    "random_map",
    "sobel_map",
    "blur_substrate",
    "mean_substrate",
    "removal_order",
    "deletion_curve",
    "insertion_curve",
    "auc",
    "top_fraction_mask",
    "roar_remove",
    "noisy_linear_imputation",
    "MAP_METHODS",
    "explanation_maps",
    "cascading_maps",
]


def _check_masks(masks: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    masks = torch.as_tensor(masks, device=maps.device)
    if masks.dtype != torch.bool:
        raise TypeError(f"masks must be bool, got {masks.dtype}")
    if masks.shape != maps.shape:
        raise ValueError(f"masks {tuple(masks.shape)} and maps {tuple(maps.shape)} differ in shape")
    if not masks.flatten(1).any(1).all():
        raise ValueError("every mask needs at least one True pixel (an object)")
    return masks


# ----------------------------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------------------------


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """A hit when the map's maximum lies on the object (Zhang et al. 2016): ``(B, H, W), (B, H, W) bool -> (B,)``
    bool. ``tolerance`` (px) grows the mask by that many pixels first (the original paper uses 15 px on 224-px
    images). Ties: the first maximum in row-major order."""
    _check_maps(maps)
    masks = _check_masks(masks, maps)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if tolerance:
        k = 2 * tolerance + 1
        masks = torch.nn.functional.max_pool2d(masks[:, None].float(), k, stride=1, padding=tolerance)[:, 0] > 0
    peak = maps.flatten(1).argmax(1)
    return masks.flatten(1).gather(1, peak[:, None])[:, 0]


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the positive attribution that falls on the object: ``sum_{p in M} max(m_p, 0) / sum_p max(m_p, 0)``,
    ``(B,)`` in [0, 1] (0 for a map without positive values). Compare it with the object's share of the image,
    the value of a uniform map."""
    _check_maps(maps)
    masks = _check_masks(masks, maps)
    pos = maps.clamp(min=0).flatten(1)
    total = pos.sum(1)
    inside = (pos * masks.flatten(1)).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-30), torch.zeros_like(total))


# ----------------------------------------------------------------------------------------------------------------
# Model-parameter randomisation
# ----------------------------------------------------------------------------------------------------------------


class LayerGroup(list):
    """One "layer" of :func:`layer_groups`: a list of its parameters (``nn.Parameter``) that also knows the modules
    owning them (``.modules``), so :func:`randomize_parameters` can re-initialise each with its own init."""

    def __init__(self, params: Sequence[nn.Parameter], modules: Sequence[nn.Module] = ()) -> None:
        super().__init__(params)
        self.modules = list(modules)


def _owners(module: nn.Module) -> list[nn.Module]:
    """``module`` and its submodules that hold parameters directly (``recurse=False``)."""
    return [m for m in module.modules() if any(True for _ in m.parameters(recurse=False))]


def layer_groups(model: nn.Module) -> list[tuple[str, LayerGroup]]:
    """The model's parameters in "layers", bottom (input) to top (output), for randomisation tests.

    One group per child module, with ``nn.Sequential`` / ``nn.ModuleList`` children expanded one level (so the
    course CNN gives ``features.0 .. features.5, fc`` and the course ViT ``patch_embed, blocks.0 .. blocks.3,
    norm, head``); parameters registered directly on a module that is not expanded stay in its group, and the
    root module's own parameters (a ViT's ``cls_token`` and ``pos_embed``) form a group ``"embeddings"`` that
    comes first. Every parameter is in exactly one group. Each group is a :class:`LayerGroup`: a list of
    parameters whose ``.modules`` are the modules that own them."""
    groups: list[tuple[str, LayerGroup]] = []
    own = list(model.parameters(recurse=False))
    if own:
        groups.append(("embeddings", LayerGroup(own)))  # no module of their own: see randomize_parameters
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            direct = list(child.parameters(recurse=False))
            if direct:
                groups.append((name, LayerGroup(direct, [child])))
            for sub, grandchild in child.named_children():
                params = list(grandchild.parameters())
                if params:
                    groups.append((f"{name}.{sub}", LayerGroup(params, _owners(grandchild))))
        else:
            params = list(child.parameters())
            if params:
                groups.append((name, LayerGroup(params, _owners(child))))
    return groups


def randomize_parameters(params: Sequence[nn.Parameter], generator: torch.Generator, std: float = 0.02) -> None:
    """Re-initialise a layer, as if it had never been trained (Adebayo et al. 2018 re-initialise the weights).

    ``params``: a :class:`LayerGroup` of :func:`layer_groups` (or a plain list of parameters). Every module of
    ``params.modules`` that has a ``reset_parameters()`` gets it (its own PyTorch initialisation: Kaiming-uniform
    weights and uniform biases for convolutions and linear layers, gain 1 and bias 0 for normalisation layers, whose
    running statistics are reset too, to mean 0 and variance 1), seeded from ``generator`` so the result is
    reproducible. This is what Quantus' MPRT does. A parameter that no such module owns (a ViT's ``cls_token`` and
    ``pos_embed``, which Quantus leaves trained; or any parameter of a plain list) is drawn from a normal
    distribution of standard deviation ``std`` (0.02, the CourseViT's initialisation of these tensors), truncated at
    2 ``std``. In place, without gradient."""
    with torch.no_grad():
        done: set[int] = set()
        for module in getattr(params, "modules", []):
            reset = getattr(module, "reset_parameters", None)
            if not callable(reset):
                continue
            owned = list(module.parameters(recurse=False))
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            cuda = sorted({p.device.index or 0 for p in owned if p.device.type == "cuda"})
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                reset()
            done.update(id(p) for p in owned)
        for p in params:
            if id(p) in done:
                continue
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32) * std
            p.copy_(noise.clamp(-2 * std, 2 * std).to(p.device, p.dtype))


@contextmanager
def _restored(model: nn.Module) -> Iterator[None]:
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        yield
    finally:
        model.load_state_dict(saved)


def _named_groups(model: nn.Module, order: str) -> list[tuple[str, list[nn.Parameter]]]:
    if order not in ("top_down", "bottom_up"):
        raise ValueError(f"order must be 'top_down' or 'bottom_up', got {order!r}")
    groups = layer_groups(model)
    return groups[::-1] if order == "top_down" else groups


def cascading_randomization(model: nn.Module, order: str = "top_down",
                            seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Adebayo et al.'s cascading test: yield ``(layer name, model)`` after randomising each :func:`layer_groups`
    group in turn, keeping the groups randomised before it (top_down: from the output layer to the input). The
    first item is ``("original", model)``. The model is changed in place and restored when the loop ends, breaks
    or raises (use it in a ``for`` loop, or close the generator)."""
    groups = _named_groups(model, order)
    gen = torch.Generator().manual_seed(seed)
    with _restored(model):
        yield "original", model
        for name, params in groups:
            randomize_parameters(params, gen)
            yield name, model


def independent_randomization(model: nn.Module, order: str = "top_down",
                              seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """The independent test: yield ``(layer name, model)`` with only that group randomised (the others trained);
    first ``("original", model)``. Restores the model after each step and at the end."""
    groups = _named_groups(model, order)
    gen = torch.Generator().manual_seed(seed)
    with _restored(model):
        yield "original", model
        for name, params in groups:
            with _restored(model):
                randomize_parameters(params, gen)
                yield name, model


def rank_similarity(a: torch.Tensor, b: torch.Tensor, absolute: bool = False) -> torch.Tensor:
    """Spearman rank correlation between paired maps ``(B, H, W)`` -> ``(B,)`` (of ``|a|`` and ``|b|`` with
    ``absolute=True``; Adebayo et al. report both). Ties get their average rank. A constant map (e.g. all zeros:
    the method returned nothing) has no ranking: its entry is NaN, not 0, so count those apart (``torch.isnan``)
    and average the rest (``torch.nanmean``)."""
    from scipy.stats import spearmanr

    _check_maps(a, "a")
    _check_maps(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    a_np, b_np = (t.detach().flatten(1).cpu().double().numpy() for t in (a, b))
    if absolute:
        a_np, b_np = np.abs(a_np), np.abs(b_np)
    out = []
    for u, v in zip(a_np, b_np, strict=True):
        out.append(math.nan if np.ptp(u) == 0 or np.ptp(v) == 0 else float(spearmanr(u, v).statistic))
    return torch.tensor(out)


def hog_similarity(a: torch.Tensor, b: torch.Tensor, cell: int = 4) -> torch.Tensor:
    """Pearson correlation of the histograms of oriented gradients (HOG, scikit-image) of paired maps, Adebayo et
    al.'s third similarity: ``(B, H, W)`` -> ``(B,)``. Each map is min-max normalised to [0, 1] first; HOG with 9
    orientations, ``cell`` x ``cell`` px cells, 2 x 2 cell blocks (L2-Hys). NaN where a map is constant (no
    gradients, no correlation)."""
    from skimage.feature import hog

    _check_maps(a, "a")
    _check_maps(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if min(a.shape[1:]) < 2 * cell:
        raise ValueError(f"maps of {tuple(a.shape[1:])} px are too small for 2 x 2 cells of {cell} px")

    def feats(m: np.ndarray) -> np.ndarray | None:
        rng = np.ptp(m)
        if rng == 0:
            return None
        return hog((m - m.min()) / rng, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))

    out = []
    for u, v in zip(a.detach().cpu().double().numpy(), b.detach().cpu().double().numpy(), strict=True):
        fu, fv = feats(u), feats(v)
        ok = fu is not None and fv is not None and np.ptp(fu) > 0 and np.ptp(fv) > 0
        out.append(float(np.corrcoef(fu, fv)[0, 1]) if ok else math.nan)
    return torch.tensor(out)


def ssim_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity (scikit-image, Wang et al. 2004) of paired maps ``(B, H, W)`` -> ``(B,)``, each map
    first min-max normalised to [0, 1] (as Adebayo et al. do), ``data_range=1``."""
    from skimage.metrics import structural_similarity

    _check_maps(a, "a")
    _check_maps(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")

    def norm(m: np.ndarray) -> np.ndarray:
        rng = np.ptp(m)
        return (m - m.min()) / rng if rng > 0 else np.zeros_like(m)

    out = []
    for u, v in zip(a.detach().cpu().double().numpy(), b.detach().cpu().double().numpy(), strict=True):
        win = min(7, *u.shape) if min(u.shape) >= 3 else None
        win = win if win is None or win % 2 == 1 else win - 1
        out.append(float(structural_similarity(norm(u), norm(v), data_range=1.0, win_size=win)))
    return torch.tensor(out)


# ----------------------------------------------------------------------------------------------------------------
# Deletion and insertion
# ----------------------------------------------------------------------------------------------------------------


def random_map(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A random "explanation" ``(B, H, W)`` (uniform noise, seeded): the baseline every method must beat."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape), generator=gen)


def sobel_map(x: torch.Tensor) -> torch.Tensor:
    """An edge detector as an "explanation" (Adebayo et al.'s model-free baseline): the Sobel gradient magnitude
    of the channel-mean image, ``(B, C, H, W) -> (B, H, W)``."""
    _check_input(x)
    g = x.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    g = torch.nn.functional.pad(g, (1, 1, 1, 1), mode="replicate")
    gx = torch.nn.functional.conv2d(g, kx.view(1, 1, 3, 3))
    gy = torch.nn.functional.conv2d(g, kx.T.reshape(1, 1, 3, 3))
    return torch.sqrt(gx**2 + gy**2)[:, 0]


def blur_substrate(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """What deleted pixels become: a Gaussian blur of the image (``sigma`` px, default a tenth of its size)."""
    _check_input(x)
    return gaussian_blur(x.detach(), sigma if sigma is not None else max(x.shape[-2:]) / 10)


def mean_substrate(x: torch.Tensor, mean: Sequence[float] | None = None) -> torch.Tensor:
    """Deleted pixels become a constant colour: ``mean`` (C values in input space, e.g. 0 = the dataset mean of a
    normalised model) or, by default, each image's own mean colour."""
    _check_input(x)
    if mean is None:
        return x.detach().mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return m.expand_as(x).clone()


def removal_order(maps: torch.Tensor) -> torch.Tensor:
    """Pixel indices (row-major) sorted from most to least important: ``(B, H, W) -> (B, H*W)`` long (stable)."""
    _check_maps(maps)
    return torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)


def _curve(model: nn.Module, start: torch.Tensor, end: torch.Tensor, target: Any, maps: torch.Tensor, steps: int,
           batch_size: int, probability: bool) -> torch.Tensor:
    _check_input(start)
    _check_maps(maps)
    b, c, h, w = start.shape
    if maps.shape != (b, h, w):
        raise ValueError(f"maps must be (B, H, W) = {(b, h, w)}, got {tuple(maps.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    order = removal_order(maps)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=order.device).expand(b, -1))  # rank of every pixel
    counts = [round(k * h * w / steps) for k in range(steps + 1)]
    t = class_indices(target, b, None, start.device)
    scores = torch.empty(b, steps + 1)
    per = max(1, batch_size // b)
    with torch.no_grad():
        for s0 in range(0, steps + 1, per):
            ks = counts[s0:s0 + per]
            changed = torch.stack([rank < k for k in ks]).view(len(ks), b, 1, h, w)  # (n, B, 1, H, W)
            imgs = torch.where(changed, end.unsqueeze(0), start.unsqueeze(0)).reshape(-1, c, h, w)
            out = model(imgs)
            out = out.softmax(-1) if probability else out
            scores[:, s0:s0 + len(ks)] = out.gather(1, t.repeat(len(ks))[:, None])[:, 0].view(len(ks), b).T.cpu()
    return scores


def deletion_curve(model: nn.Module, x: torch.Tensor, target: Any, maps: torch.Tensor, substrate: torch.Tensor,
                   steps: int = 32, batch_size: int = 256, probability: bool = True) -> torch.Tensor:
    """Petsiuk et al.'s deletion curve: the score of ``target`` while the pixels are replaced by ``substrate``
    (B, C, H, W) from the most to the least important by ``maps``; ``(B, steps + 1)``, column ``k`` after
    ``round(k H W / steps)`` pixels (all channels of a pixel together). ``probability``: softmax score (the paper's),
    else the logit. A good map makes the curve fall fast (small :func:`auc`)."""
    return _curve(model, x, substrate, target, maps, steps, batch_size, probability)


def insertion_curve(model: nn.Module, x: torch.Tensor, target: Any, maps: torch.Tensor, substrate: torch.Tensor,
                    steps: int = 32, batch_size: int = 256, probability: bool = True) -> torch.Tensor:
    """The insertion curve: start from ``substrate`` and put the image's pixels back, most important first;
    ``(B, steps + 1)``. A good map makes it rise fast (large :func:`auc`)."""
    return _curve(model, substrate, x, target, maps, steps, batch_size, probability)


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under curves sampled at equally spaced fractions 0 .. 1 (trapezoid rule): ``(B, K) -> (B,)``."""
    if curves.ndim != 2 or curves.shape[1] < 2:
        raise ValueError(f"curves must be (B, K) with K >= 2, got {tuple(curves.shape)}")
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), dim=1)


# ----------------------------------------------------------------------------------------------------------------
# ROAR and ROAD
# ----------------------------------------------------------------------------------------------------------------


def top_fraction_mask(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """The ``round(fraction * H * W)`` highest-valued pixels of each map: ``(B, H, W) -> (B, H, W)`` bool (ties in
    row-major order, as :func:`removal_order`)."""
    _check_maps(maps)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    b, h, w = maps.shape
    top = torch.zeros(b, h * w, dtype=torch.bool, device=maps.device)
    top.scatter_(1, removal_order(maps)[:, :round(fraction * h * w)], True)
    return top.view(b, h, w)


def roar_remove(images: torch.Tensor, maps: torch.Tensor, fraction: float, fill: Sequence[float] | torch.Tensor
                ) -> torch.Tensor:
    """ROAR's modification: replace the ``fraction`` most important pixels of each image (by ``maps``, all
    channels of a pixel together) with ``fill`` (C values, e.g. the per-channel dataset mean). ``images``
    (B, C, H, W) float or uint8 -> a new tensor of the same dtype; exactly ``round(fraction * H * W)`` pixels per
    image change."""
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    _check_maps(maps)
    b, c, h, w = images.shape
    if maps.shape != (b, h, w):
        raise ValueError(f"maps must be (B, H, W) = {(b, h, w)}, got {tuple(maps.shape)}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    fill_t = torch.as_tensor(fill, dtype=images.dtype if images.is_floating_point() else torch.float32,
                             device=images.device).reshape(-1)
    if fill_t.numel() != c:
        raise ValueError(f"fill needs {c} values (one per channel), got {fill_t.numel()}")
    removed = top_fraction_mask(maps, fraction).to(images.device).view(b, 1, h, w)
    value = fill_t.view(1, c, 1, 1).to(images.dtype) if images.is_floating_point() else \
        fill_t.round().clamp(0, 255).to(images.dtype).view(1, c, 1, 1)
    return torch.where(removed, value, images)


def noisy_linear_imputation(images: torch.Tensor, removed: torch.Tensor, noise: float = 0.01,
                            seed: int = 0) -> torch.Tensor:
    """ROAD's fill (Rong et al. 2022): every removed pixel becomes the weighted mean of its 8 neighbours (weight
    1/6 for the 4 edge neighbours, 1/12 for the diagonals, renormalised at the border), solved jointly as one
    sparse linear system per image (all channels at once), then Gaussian noise of std ``noise`` is added to the
    imputed pixels. ``images`` (B, C, H, W) float, ``removed`` (B, H, W) bool -> (B, C, H, W)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    _check_input(images)
    b, c, h, w = images.shape
    removed = torch.as_tensor(removed)
    if removed.shape != (b, h, w) or removed.dtype != torch.bool:
        raise ValueError(f"removed must be a (B, H, W) = {(b, h, w)} bool tensor")
    offsets = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]
    gen = np.random.default_rng(seed)
    out = images.detach().cpu().double().numpy().copy()
    rem_all = removed.cpu().numpy()
    for i in range(b):
        rem = rem_all[i]
        ys, xs = np.nonzero(rem)
        n = len(ys)
        if n == 0:
            continue
        idx = np.full((h, w), -1, dtype=np.int64)
        idx[ys, xs] = np.arange(n)
        valid = [(0 <= ys + dy) & (ys + dy < h) & (0 <= xs + dx) & (xs + dx < w) for dy, dx, _ in offsets]
        total = sum(v * wt for v, (_, _, wt) in zip(valid, offsets, strict=True))  # (n,) weight of the neighbours
        rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.ones(n)]
        rhs = np.zeros((n, c))
        for v, (dy, dx, wt) in zip(valid, offsets, strict=True):
            k = np.flatnonzero(v)
            ny, nx = ys[k] + dy, xs[k] + dx
            coef = wt / total[k]
            unknown = rem[ny, nx]
            rows.append(k[unknown])
            cols.append(idx[ny[unknown], nx[unknown]])
            vals.append(-coef[unknown])
            known = ~unknown
            np.add.at(rhs, k[known], coef[known, None] * out[i][:, ny[known], nx[known]].T)
        a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
        sol = np.asarray(spsolve(a, rhs)).reshape(n, c)
        out[i][:, ys, xs] = sol.T + noise * gen.standard_normal((c, n))
    return torch.from_numpy(out).to(images.dtype).to(images.device)


# ----------------------------------------------------------------------------------------------------------------
# One call for the maps that are evaluated
# ----------------------------------------------------------------------------------------------------------------

#: the CNN methods :func:`explanation_maps` computes, with how each becomes one value per pixel
MAP_METHODS = {
    "random": "uniform noise (seeded): the floor every method must beat",
    "sobel": "edge magnitude of the image: a model-free baseline",
    "gradient": "max_c |d y_c / d x| (saliency, Simonyan et al. 2014)",
    "gradient_x_input": "sum_c x * d y_c / d x (signed)",
    "smoothgrad": "max_c |mean of gradients over noisy copies|",
    "smoothgrad_squared": "sum_c mean of squared gradients (SmoothGrad^2)",
    "vargrad": "sum_c variance of the gradients (VarGrad)",
    "integrated_gradients": "sum_c IG (signed; baseline: zeros = the dataset mean colour)",
    "guided_backprop": "max_c |guided backprop|",
    "grad_cam": "Grad-CAM at `layer`, upsampled bilinearly (ReLU: >= 0)",
    "occlusion": "average logit drop under an 8x8 black patch, stride 4 (helpers.occlusion)",
}


def explanation_maps(model: nn.Module, x: torch.Tensor, target: Any, method: str, layer: nn.Module | None = None,
                     seed: int = 0, ig_steps: int = 32, sg_samples: int = 16,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> torch.Tensor:
    """The map of ``method`` (a key of :data:`MAP_METHODS`) for a CNN: ``x`` (B, C, H, W) -> ``(B, H, W)``, one
    value per pixel, larger = more important, computed with the course's reference implementations
    (``helpers.attribution``, ``helpers.cam``, ``helpers.occlusion``). ``layer``: Grad-CAM's target layer;
    ``mean``/``std``: the normalisation, for the occlusion's black patch (default: 0 in input space)."""
    _check_input(x)
    b, _, h, w = x.shape
    if method not in MAP_METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(MAP_METHODS)}")
    if method == "random":
        return random_map((b, h, w), seed).to(x.device)
    if method == "sobel":
        return sobel_map(x)
    if method == "gradient":
        return attribution.aggregate_channels(attribution.saliency(model, x, target), "max_abs")
    if method == "gradient_x_input":
        return attribution.aggregate_channels(attribution.gradient_x_input(model, x, target), "sum")
    if method in ("smoothgrad", "smoothgrad_squared", "vargrad"):
        variant = {"smoothgrad": "mean", "smoothgrad_squared": "squared", "vargrad": "vargrad"}[method]
        sg = attribution.smoothgrad(model, x, target, n_samples=sg_samples, variant=variant, seed=seed)
        return attribution.aggregate_channels(sg, "max_abs" if method == "smoothgrad" else "sum")
    if method == "integrated_gradients":
        ig = attribution.integrated_gradients(model, x, target, baseline=None, steps=ig_steps)
        return attribution.aggregate_channels(ig, "sum")
    if method == "guided_backprop":
        return attribution.aggregate_channels(attribution.guided_backprop(model, x, target), "max_abs")
    if method == "grad_cam":
        if layer is None:
            raise ValueError("grad_cam needs layer= (e.g. model.features[-1] for the course CNN)")
        return cam.upsample(cam.grad_cam(model, x, target, layer), (h, w))
    fill = occlusion.occlusion_fill(x, "black", mean, std) if mean is not None else 0.0
    return occlusion.occlusion(model, x, target, 8, 4, fill=fill)


def cascading_maps(model: nn.Module, x: torch.Tensor, target: Any, explain: Any, order: str = "top_down",
                   seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """Run :func:`cascading_randomization` and collect ``explain(model, x, target)`` (a ``(B, H, W)`` map) after
    every step: returns the step names (``"original"`` first) and the maps ``(steps + 1, B, H, W)``. The model is
    restored afterwards."""
    names, maps = [], []
    for name, m in cascading_randomization(model, order, seed):
        names.append(name)
        maps.append(explain(m, x, target).detach())
    return names, torch.stack(maps)
