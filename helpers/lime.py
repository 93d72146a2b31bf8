"""LIME for images (Ribeiro et al. 2016), written from scratch: the course's reference implementation (notebook 05).

The explained model is a black box ``predict_fn``: a float numpy batch ``(N, H, W, C)`` in [0, 1] -> class
probabilities ``(N, num_classes)`` (the ``lime`` library's convention; :func:`torch_predict_fn` wraps a PyTorch
classifier). An image is split into ``K`` segments (labels ``0 .. K-1``); a sample ``z`` in ``{0, 1}^K`` keeps the
segments with ``z_k = 1`` and fills the others with ``hide_color``. LIME fits a weighted linear model

    g(z) = b + sum_k w_k z_k,   min_w  sum_n pi(z_n) (f(x_{z_n}) - g(z_n))^2 + alpha ||w||^2,

with the kernel ``pi(z) = sqrt(exp(-d(z)^2 / width^2))`` on the cosine distance ``d(z) = 1 - cos(z, 1)`` between
the sample and the all-ones vector (the original image). ``w_k`` is the explanation; the weighted R^2 of the fit
(``score``) says how well a linear model in the segments describes the model locally. Defaults follow ``lime``
0.2.0.1 (kernel width 0.25, ridge ``alpha = 1``, 1000 samples, first sample = the image itself); with the same
samples the surrogate equals ``lime_base.LimeBase.explain_instance_with_data`` (tested).

Segmentations: :func:`grid_segments` (a fixed grid: CIFAR-10, ViT patches), :func:`superpixels` (scikit-image
quickshift / SLIC / Felzenszwalb, relabelled to ``0 .. K-1``), :func:`semantic_segments` (Sharp-LIME, Graziani et
al. 2021: an object mask plus a coarse background grid). Stability measures: :func:`topk_agreement`,
:func:`rank_correlation`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "PredictFn",
    "LimeExplanation",
    "validate_image",
    "validate_segments",
    "relabel",
    "grid_segments",
    "grid_for_count",
    "superpixels",
    "semantic_segments",
    "foreground_mask",
    "fill_image",
    "SAMPLING_SCHEMES",
    "sample_masks",
    "perturb_images",
    "cosine_distances",
    "lime_kernel",
    "weighted_ridge",
    "fit_surrogate",
    "lime_image",
    "library_lime",
    "torch_predict_fn",
    "topk_agreement",
    "rank_correlation",
    "to_hwc_float",
]

#: a black-box classifier: float images (N, H, W, C) in [0, 1] -> probabilities (N, num_classes)
PredictFn = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------------------------
# Input checks and segmentations
# ----------------------------------------------------------------------------------------------------------------


def validate_image(image: Any) -> np.ndarray:
    """Check an ``(H, W, C)`` float image in [0, 1] (LIME's convention) and return it as float32."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(f"image must be (H, W, C) with C = 1 or 3, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"image must be float in [0, 1], got dtype {arr.dtype} (divide uint8 images by 255)")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(f"image values must lie in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]")
    return arr.astype(np.float32, copy=False)


def to_hwc_float(image: Any) -> np.ndarray:
    """A CHW / HWC uint8 array or tensor, or a float one in [0, 1], -> ``(H, W, C)`` float32 in [0, 1]."""
    try:
        import torch

        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    return validate_image(arr)


def validate_segments(segments: Any, shape: Sequence[int] | None = None) -> np.ndarray:
    """Check a segmentation: integer labels ``(H, W)`` that use every value ``0 .. K-1`` (``lime`` silently
    misassigns segments otherwise, e.g. SLIC's default labels start at 1). Returns it as int64."""
    seg = np.asarray(segments)
    if seg.ndim != 2:
        raise ValueError(f"segments must be a 2-d (H, W) label array, got shape {seg.shape}")
    if shape is not None and tuple(seg.shape) != tuple(shape[:2]):
        raise ValueError(f"segments have shape {seg.shape} but the image is {tuple(shape[:2])}")
    if not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(f"segment labels must be integers, got dtype {seg.dtype}")
    labels = np.unique(seg)
    if labels[0] != 0 or labels[-1] != len(labels) - 1:
        raise ValueError(
            f"segment labels must be exactly 0 .. K-1 (got {len(labels)} labels from {labels[0]} to {labels[-1]}); "
            "use helpers.lime.relabel(segments), or start_label=0 for SLIC"
        )
    return seg.astype(np.int64, copy=False)


def relabel(segments: Any) -> np.ndarray:
    """Map any integer labels to consecutive ``0 .. K-1`` (in order of the original label values)."""
    seg = np.asarray(segments)
    _, inverse = np.unique(seg, return_inverse=True)
    return inverse.reshape(seg.shape).astype(np.int64)


def grid_segments(shape: Sequence[int], cells: int | tuple[int, int]) -> np.ndarray:
    """A fixed grid of ``rows x cols`` cells over an ``(H, W)`` image, labelled row by row ``0 .. rows*cols-1``.

    ``grid_segments((32, 32), 8)`` gives 64 cells of 4 x 4 px: one per token of the course ViT. Cells need not
    divide the image: cell ``i`` starts at row ``ceil(i * H / rows)`` (pixel ``y`` is in row ``y * rows // H``)."""
    h, w = int(shape[0]), int(shape[1])
    rows, cols = (cells, cells) if isinstance(cells, int) else (int(cells[0]), int(cells[1]))
    if not (1 <= rows <= h and 1 <= cols <= w):
        raise ValueError(f"a {rows} x {cols} grid does not fit an image of {h} x {w} px")
    r = np.arange(h)[:, None] * rows // h
    c = np.arange(w)[None, :] * cols // w
    return (r * cols + c).astype(np.int64)


def grid_for_count(shape: Sequence[int], num_segments: int) -> np.ndarray:
    """A grid of exactly ``num_segments`` cells over an ``(H, W)`` image: ``rows x cols`` with ``rows`` the largest
    divisor of ``num_segments`` that is at most its square root (10 -> 2 x 5, 9 -> 3 x 3, a prime K -> 1 x K
    stripes). For comparing a segmentation with a grid of the same K. Returns labels ``0 .. K-1``."""
    k = int(num_segments)
    if k < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    rows = max(d for d in range(1, int(np.sqrt(k)) + 1) if k % d == 0)
    h, w = int(shape[0]), int(shape[1])
    return grid_segments((h, w), (rows, k // rows) if w >= h else (k // rows, rows))


def superpixels(image: Any, method: str = "quickshift", seed: int = 0, **kwargs: Any) -> np.ndarray:
    """Superpixels of an ``(H, W, C)`` float image in [0, 1] with scikit-image, relabelled to ``0 .. K-1``.

    ``method``: ``"quickshift"`` (``lime``'s default: ``kernel_size=4, max_dist=200, ratio=0.2``), ``"slic"``
    (``n_segments=50, compactness=10``; ``start_label=0``) or ``"felzenszwalb"`` (``scale=100``). Extra keyword
    arguments go to the scikit-image function. ``seed`` seeds quickshift's tie-breaking noise (scikit-image's
    ``rng``; ``lime``'s ``random_seed`` does not reach it on current scikit-image)."""
    from skimage import segmentation

    img = validate_image(image).astype(np.float64)
    if method == "quickshift":
        params = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2, **kwargs}
        if "rng" in inspect.signature(segmentation.quickshift).parameters:
            params.setdefault("rng", seed)
        else:  # pragma: no cover - scikit-image < 0.22
            params.setdefault("random_seed", seed)
        seg = segmentation.quickshift(img, **params)
    elif method == "slic":
        seg = segmentation.slic(img, **{"n_segments": 50, "compactness": 10, "start_label": 0, **kwargs})
    elif method == "felzenszwalb":
        seg = segmentation.felzenszwalb(img, **{"scale": 100, **kwargs})
    else:
        raise ValueError(f"unknown superpixel method {method!r}; use 'quickshift', 'slic' or 'felzenszwalb'")
    return relabel(seg)


def semantic_segments(object_mask: Any, background_cells: int | tuple[int, int] = 3,
                      split_object: bool = False) -> np.ndarray:
    """Sharp-LIME's regions (Graziani et al. 2021): the object as one segment (label 0; with ``split_object`` each
    connected component of the mask gets its own label) and the background cut into a coarse grid, every cell
    minus the object being one segment. ``object_mask`` is a boolean ``(H, W)`` array or tensor. Returns labels
    ``0 .. K-1`` (object first; empty background cells are dropped)."""
    mask = np.asarray(object_mask.cpu() if hasattr(object_mask, "cpu") else object_mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"object_mask must be (H, W), got shape {mask.shape}")
    if not mask.any():
        raise ValueError("object_mask is empty: there is no object to keep as a segment")
    if split_object:
        from scipy import ndimage

        obj, n_obj = ndimage.label(mask)
        obj = obj - 1  # components 0 .. n_obj - 1, background -1
    else:
        obj, n_obj = np.where(mask, 0, -1), 1
    grid = grid_segments(mask.shape, background_cells)
    seg = np.where(mask, obj, n_obj + grid)
    return relabel(seg)


def foreground_mask(image: Any, border: int = 2) -> np.ndarray:
    """A rough object mask for an image on a fairly plain background (Sharp-LIME's "thresholded" regions): the
    colour distance of every pixel to the median colour of a ``border``-px frame, thresholded with Otsu's method,
    holes filled, and the largest connected component kept. ``(H, W, C)`` float in [0, 1] -> ``(H, W)`` bool.
    Model-independent, and wrong on cluttered backgrounds: look at it before you trust it."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    img = validate_image(image).astype(np.float64)
    if not 1 <= border < min(img.shape[:2]) // 2:
        raise ValueError(f"border must be between 1 and half the image size, got {border}")
    frame = np.concatenate([img[:border].reshape(-1, img.shape[2]), img[-border:].reshape(-1, img.shape[2]),
                            img[:, :border].reshape(-1, img.shape[2]), img[:, -border:].reshape(-1, img.shape[2])])
    dist = np.linalg.norm(img - np.median(frame, axis=0), axis=2)
    if np.ptp(dist) == 0:
        raise ValueError("the image is uniform: there is no foreground to find")
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(dist > threshold_otsu(dist)))
    labels, n = ndimage.label(mask)
    if n > 1:
        mask = labels == (1 + int(np.argmax(np.bincount(labels.ravel())[1:])))
    return mask


# ----------------------------------------------------------------------------------------------------------------
# The LIME pipeline, step by step
# ----------------------------------------------------------------------------------------------------------------


def fill_image(image: np.ndarray, segments: np.ndarray, hide_color: Any = None) -> np.ndarray:
    """The image every hidden segment is taken from, ``(H, W, C)``.

    ``hide_color``: ``None`` (each segment's own mean colour, ``lime``'s default), a number or a ``(C,)`` colour
    in [0, 1] (e.g. ``0`` for black), or a whole ``(H, W, C)`` image (e.g. a blurred copy)."""
    image = validate_image(image)
    segments = validate_segments(segments, image.shape)
    if hide_color is None:
        k = int(segments.max()) + 1
        counts = np.bincount(segments.ravel(), minlength=k).astype(np.float64)
        flat = image.reshape(-1, image.shape[2]).astype(np.float64)
        means = np.stack([np.bincount(segments.ravel(), weights=flat[:, c], minlength=k) / counts
                          for c in range(image.shape[2])], axis=1)  # (K, C)
        return means[segments].astype(np.float32)
    fill = np.asarray(hide_color, dtype=np.float32)
    if fill.shape == image.shape:
        return validate_image(fill)
    if fill.ndim > 1 or fill.size not in (1, image.shape[2]):
        raise ValueError(f"hide_color must be None, a number, a ({image.shape[2]},) colour or an image of shape "
                         f"{image.shape}; got shape {fill.shape}")
    if fill.min() < 0 or fill.max() > 1:
        raise ValueError("hide_color must lie in [0, 1] (the image's range)")
    return np.broadcast_to(fill, image.shape).astype(np.float32)


SAMPLING_SCHEMES = ("coin", "uniform_count")


def sample_masks(num_samples: int, num_segments: int, seed: int = 0, scheme: str = "coin") -> np.ndarray:
    """LIME's interpretable samples: ``(num_samples, K)`` int64 in {0, 1}, 1 = segment kept.

    ``scheme="coin"`` (``lime``'s image explainer, ``lime_image.py``: ``randint(0, 2, ...)``): every segment is kept
    with probability 1/2, so the number kept ``|z|`` is Binomial(K, 1/2), about ``K/2``; drawn as
    ``np.random.default_rng(seed).integers(0, 2, size=(num_samples, K))``. ``scheme="uniform_count"`` (the paper's
    "the number of such draws is also uniformly sampled", as ``lime``'s *text* explainer does it): the number of
    hidden segments is uniform on ``1 .. K``, then which ones are hidden is uniform. The first row is set to all
    ones (the unperturbed image, as in ``lime``) in both."""
    if num_samples < 2 or num_segments < 1:
        raise ValueError(f"need num_samples >= 2 and num_segments >= 1, got {num_samples}, {num_segments}")
    rng = np.random.default_rng(seed)
    if scheme == "coin":
        z = rng.integers(0, 2, size=(num_samples, num_segments), dtype=np.int64)
    elif scheme == "uniform_count":
        hidden = rng.integers(1, num_segments + 1, size=num_samples)  # (N,) how many segments each sample hides
        order = rng.random((num_samples, num_segments)).argsort(axis=1)  # a random permutation per row
        z = (np.argsort(order, axis=1) >= hidden[:, None]).astype(np.int64)  # the first `hidden` of it are hidden
    else:
        raise ValueError(f"unknown sampling scheme {scheme!r}; use one of {', '.join(SAMPLING_SCHEMES)}")
    z[0] = 1
    return z


def perturb_images(image: np.ndarray, segments: np.ndarray, masks: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The perturbed images of a batch of samples: ``(N, H, W, C)``, pixel ``p`` from ``image`` where
    ``masks[n, segments[p]] == 1`` and from ``fill`` where it is 0. ``masks``: ``(N, K)`` in {0, 1}."""
    masks = np.asarray(masks)
    if masks.ndim != 2:
        raise ValueError(f"masks must be (N, K), got shape {masks.shape}")
    if masks.shape[1] != int(segments.max()) + 1:
        raise ValueError(f"masks have {masks.shape[1]} columns but there are {int(segments.max()) + 1} segments")
    keep = masks.astype(bool)[:, segments]  # (N, H, W)
    return np.where(keep[..., None], image[None], fill[None]).astype(np.float32)


def cosine_distances(masks: np.ndarray) -> np.ndarray:
    """Cosine distance of every sample ``z`` (rows of ``masks``, ``(N, K)``) to the all-ones vector:
    ``1 - sqrt(|z| / K)`` (1 for the all-zeros sample, as sklearn's ``pairwise_distances(metric="cosine")``)."""
    masks = np.asarray(masks, dtype=np.float64)
    return 1.0 - np.sqrt(masks.sum(axis=1) / masks.shape[1])


def lime_kernel(distances: np.ndarray, kernel_width: float = 0.25) -> np.ndarray:
    """LIME's image kernel ``sqrt(exp(-d^2 / width^2)) = exp(-d^2 / (2 width^2))``: sample weights ``(N,)``."""
    if kernel_width <= 0:
        raise ValueError(f"kernel_width must be > 0, got {kernel_width}")
    d = np.asarray(distances, dtype=np.float64)
    return np.sqrt(np.exp(-(d**2) / kernel_width**2))


def weighted_ridge(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray,
                   alpha: float = 1.0) -> tuple[np.ndarray, float, float]:
    """Weighted ridge regression with an intercept, in closed form:
    ``min_{w, b} sum_n s_n (y_n - b - x_n w)^2 + alpha ||w||^2`` (``sklearn.linear_model.Ridge(alpha)`` with
    ``sample_weight``). ``x`` (N, K), ``y`` (N,), ``sample_weight`` (N,) >= 0. Returns ``(w (K,), b, R^2)`` with
    the weighted coefficient of determination ``1 - sum s (y - g)^2 / sum s (y - mean_s y)^2``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(sample_weight, dtype=np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or s.shape != y.shape:
        raise ValueError(f"need x (N, K), y (N,), sample_weight (N,); got {x.shape}, {y.shape}, {s.shape}")
    if np.any(s < 0) or s.sum() <= 0:
        raise ValueError("sample weights must be >= 0 and not all zero")
    x_mean = s @ x / s.sum()
    y_mean = float(s @ y / s.sum())
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ (s[:, None] * xc) + alpha * np.eye(x.shape[1])
    w = np.linalg.solve(gram, xc.T @ (s * yc))
    b = y_mean - float(x_mean @ w)
    resid = y - (x @ w + b)
    total, resid_ss = float(s @ (y - y_mean) ** 2), float(s @ resid**2)
    weighted = y[s > 0]
    if weighted.max() > weighted.min() and total > 0:
        r2 = 1.0 - resid_ss / total
    else:  # constant y (the weighted mean may be off by one ulp): sklearn's convention, 1 for a perfect fit
        r2 = 1.0 if np.allclose(resid[s > 0], 0.0, atol=1e-12) else 0.0
    return w, b, r2


def fit_surrogate(masks: np.ndarray, predictions: np.ndarray, kernel_width: float = 0.25,
                  alpha: float = 1.0) -> tuple[np.ndarray, float, float]:
    """LIME's surrogate: kernel weights from the cosine distance of each sample to the original, then a weighted
    ridge fit of ``predictions`` (N,) on ``masks`` (N, K). Returns ``(weights (K,), intercept, weighted R^2)``."""
    kw = lime_kernel(cosine_distances(masks), kernel_width)
    return weighted_ridge(masks, predictions, kw, alpha)


@dataclass
class LimeExplanation:
    """What :func:`lime_image` returns. Shapes: ``K`` segments, ``N`` samples."""

    weights: np.ndarray  # (K,) the surrogate's coefficient of each segment
    intercept: float
    score: float  # the surrogate's weighted R^2 on the samples
    local_pred: float  # g(1): the surrogate's prediction for the unperturbed image
    target: int
    segments: np.ndarray  # (H, W) labels 0..K-1
    masks: np.ndarray = field(repr=False)  # (N, K) the samples z
    predictions: np.ndarray = field(repr=False)  # (N,) f_target(x_z)
    kernel_weights: np.ndarray = field(repr=False)  # (N,) pi(z)
    seconds: float = 0.0

    @property
    def num_segments(self) -> int:
        return int(self.weights.shape[0])

    def heatmap(self) -> np.ndarray:
        """The weights painted on their segments: ``(H, W)`` float."""
        return self.weights[self.segments].astype(np.float32)

    def top_segments(self, k: int = 5, positive_only: bool = True) -> np.ndarray:
        """Indices of the ``k`` segments with the largest weight (``positive_only=False``: largest ``|weight|``)."""
        order = np.argsort(-self.weights if positive_only else -np.abs(self.weights), kind="stable")
        if positive_only:
            order = order[self.weights[order] > 0]
        return order[:k]

    def rank_of(self, segment: int) -> int:
        """The rank (1 = highest weight) of ``segment`` among all segments, ordered by signed weight."""
        if not 0 <= segment < self.num_segments:
            raise ValueError(f"segment {segment} out of range 0 .. {self.num_segments - 1}")
        return 1 + int(np.flatnonzero(np.argsort(-self.weights, kind="stable") == segment)[0])

    def mask(self, k: int = 5, positive_only: bool = True) -> np.ndarray:
        """Boolean ``(H, W)`` mask of the :meth:`top_segments` (like ``lime``'s ``get_image_and_mask``)."""
        return np.isin(self.segments, self.top_segments(k, positive_only))


def _probabilities(predict_fn: PredictFn, batch: np.ndarray) -> np.ndarray:
    out = np.asarray(predict_fn(batch))
    if out.ndim != 2 or out.shape[0] != batch.shape[0]:
        raise ValueError(f"predict_fn must return (N, num_classes) for a batch of N = {batch.shape[0]} images, "
                         f"got shape {out.shape}")
    return out


def lime_image(
    predict_fn: PredictFn,
    image: Any,
    segments: Any,
    target: int,
    num_samples: int = 1000,
    kernel_width: float = 0.25,
    hide_color: Any = None,
    seed: int = 0,
    batch_size: int = 100,
    alpha: float = 1.0,
    progress: bool = False,
) -> LimeExplanation:
    """Explain ``predict_fn``'s probability of class ``target`` on ``image`` with LIME.

    Args:
        predict_fn: float images ``(N, H, W, C)`` in [0, 1] -> probabilities ``(N, num_classes)``.
        image: ``(H, W, C)`` float in [0, 1].
        segments: ``(H, W)`` integer labels ``0 .. K-1``.
        target: the class whose probability is explained.
        num_samples: number of perturbed images (the first is the image itself).
        kernel_width: width of the exponential kernel on the cosine distance.
        hide_color: what hidden segments show, see :func:`fill_image` (default: the segment's mean colour).
        seed: seeds the samples (:func:`sample_masks`); the same seed gives the same explanation.
        batch_size: images per call of ``predict_fn`` (the only large memory use: ``batch_size * H * W * C``).
        alpha: ridge penalty (``lime``: 1).
        progress: show a progress bar over the batches.
    Returns:
        a :class:`LimeExplanation` (``weights`` (K,), ``intercept``, ``score`` = weighted R^2, ...).
    """
    start = time.perf_counter()
    image = validate_image(image)
    segments = validate_segments(segments, image.shape)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fill = fill_image(image, segments, hide_color)
    masks = sample_masks(num_samples, int(segments.max()) + 1, seed)
    preds = np.empty(num_samples, dtype=np.float64)
    batches = range(0, num_samples, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"LIME ({num_samples} samples)", leave=False)
    for i in batches:
        probs = _probabilities(predict_fn, perturb_images(image, segments, masks[i:i + batch_size], fill))
        if not 0 <= target < probs.shape[1]:
            raise ValueError(f"target {target} is not a class index of predict_fn's output ({probs.shape[1]} classes)")
        preds[i:i + batch_size] = probs[:, target]
    kw = lime_kernel(cosine_distances(masks), kernel_width)
    w, b, r2 = fit_surrogate(masks, preds, kernel_width, alpha)
    return LimeExplanation(weights=w, intercept=b, score=r2, local_pred=float(w.sum() + b), target=int(target),
                           segments=segments, masks=masks, predictions=preds, kernel_weights=kw,
                           seconds=time.perf_counter() - start)


def library_lime(
    predict_fn: PredictFn,
    image: Any,
    segments: Any,
    target: int,
    num_samples: int = 1000,
    kernel_width: float = 0.25,
    hide_color: Any = None,
    seed: int = 0,
    batch_size: int = 100,
):
    """The ``lime`` library on the same problem: ``LimeImageExplainer(kernel_width, random_state=seed)
    .explain_instance(...)`` with our fixed segmentation (``segmentation_fn`` returns ``segments``), only
    ``target`` explained, all segments kept. Returns ``(weights (K,), explanation)``; the explanation's
    ``score`` is its weighted R^2 (one number, overwritten for each explained label). ``lime`` prints a tqdm bar
    over the samples (it has no switch)."""
    from lime.lime_image import LimeImageExplainer

    image = validate_image(image).astype(np.float64)
    segments = validate_segments(segments, image.shape)
    explainer = LimeImageExplainer(kernel_width=kernel_width, random_state=seed)
    exp = explainer.explain_instance(
        image, predict_fn, labels=(target,), top_labels=None, hide_color=hide_color, num_features=segments.max() + 1,
        num_samples=num_samples, batch_size=batch_size, segmentation_fn=lambda _img: segments, random_seed=seed,
    )
    weights = np.zeros(int(segments.max()) + 1)
    for k, v in exp.local_exp[target]:
        weights[k] = v
    return weights, exp


def torch_predict_fn(model: Any, mean: Sequence[float], std: Sequence[float], device: Any = None,
                     batch_size: int = 256, softmax: bool = True) -> PredictFn:
    """Wrap a PyTorch classifier (logits ``(B, classes)`` from normalised ``(B, C, H, W)``) as a LIME black box:
    ``(N, H, W, C)`` float in [0, 1] -> probabilities ``(N, classes)`` numpy (softmax of the logits; with
    ``softmax=False`` the raw outputs). Runs under ``torch.no_grad()`` in chunks of ``batch_size``."""
    import torch

    device = torch.device(device) if device is not None else next(model.parameters()).device
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def predict(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise ValueError(f"predict_fn expects (N, H, W, C) images, got shape {images.shape}")
        outs = []
        with torch.no_grad():
            for i in range(0, images.shape[0], batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).to(device).permute(0, 3, 1, 2)
                y = model((x - m) / s)
                outs.append((y.softmax(-1) if softmax else y).float().cpu().numpy())
        return np.concatenate(outs)

    return predict


# ----------------------------------------------------------------------------------------------------------------
# Stability
# ----------------------------------------------------------------------------------------------------------------


def _weights(x: Any) -> np.ndarray:
    """A weight vector or map as a flat NumPy array; a torch tensor (on any device, e.g. ``DEVICE``) is copied to
    the CPU first (NumPy cannot read GPU memory)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        import torch

        x = x.detach().cpu()
        x = (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).numpy()
    return np.asarray(x).ravel()


def topk_agreement(a: Any, b: Any, k: int = 3) -> float:
    """Share of the ``k`` highest-weighted segments of ``a`` that are also among the ``k`` highest of ``b``
    (1 = the same top-k set). ``a``, ``b``: weight vectors ``(K,)`` (arrays, or tensors on any device)."""
    a, b = _weights(a), _weights(b)
    if a.shape != b.shape:
        raise ValueError(f"weight vectors differ in length: {a.shape} vs {b.shape}")
    k = min(k, a.size)
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def rank_correlation(a: Any, b: Any) -> float:
    """Spearman rank correlation of two weight vectors ``(K,)`` (scipy's ``spearmanr``; 0 if one is constant).
    ``a``, ``b``: arrays, or tensors on any device (copied to the CPU)."""
    from scipy.stats import spearmanr

    a, b = _weights(a), _weights(b)
    if a.shape != b.shape:
        raise ValueError(f"weight vectors differ in length: {a.shape} vs {b.shape}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)
