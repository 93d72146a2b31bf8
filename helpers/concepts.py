"""Concept-based explanations (notebook 08): procedural concept images, concept activation vectors (CAVs) and TCAV
(Kim et al. 2018), our own implementation and a wrapper over captum's ``TCAV``, with the significance test.

* Concept images, made offline and deterministic for a seed: :func:`stripes`, :func:`dots`, :func:`zigzags`,
  :func:`colour_patches`, and :func:`noise_images` (random images); :func:`make_concept` by name.
* :func:`layer_activations`: a layer's activations, flattened, (N, D); :func:`fit_cav` / :func:`cav_accuracy` /
  :func:`train_cav`: a linear classifier (L2-regularised logistic regression) between concept and random
  activations; the CAV is its unit weight vector, pointing towards the concept.
* :func:`layer_gradients`, :func:`directional_derivatives`: ``grad_h f_c(x) . v`` per input; :func:`tcav_score`:
  the share that is > 0.
* :func:`tcav_table` / :func:`tcav_test`: TCAV scores against many random sets, random-vs-random scores (the
  null), and the two-sided t-test, for every concept, class and layer (gradients computed once per class).
* :func:`plot_tcav`: the scores of a class as bars per concept and layer, with the null.
* :func:`captum_tcav`: the same with captum's ``TCAV``, in a fresh temporary cache folder per call (captum caches
  activations and CAVs on disk by model id, concept name/id and layer, and silently reuses a stale cache when
  the concept images change under the same name and id).

Images are uint8 ``(N, 3, H, W)`` (normalised here with ``helpers.training.normalize_uint8``) or already normalised
float images; activations float ``(N, D)``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .hooks import capture

__all__ = [
    "CONCEPTS",
    "stripes",
    "dots",
    "zigzags",
    "colour_patches",
    "noise_images",
    "make_concept",
    "layer_activations",
    "fit_cav",
    "cav_accuracy",
    "CAV",
    "train_cav",
    "layer_gradients",
    "directional_derivatives",
    "tcav_score",
    "TCAVResult",
    "welch_test",
    "tcav_table",
    "tcav_test",
    "captum_tcav",
    "plot_tcav",
]


# --------------------------------------------------------------------------------------------------------------
# Concept images
# --------------------------------------------------------------------------------------------------------------


def _check_n(n: int, size: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")


def _to_uint8(img: np.ndarray) -> torch.Tensor:
    """float (N, H, W, 3) in [0, 1] -> uint8 (N, 3, H, W)."""
    return torch.from_numpy(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)).permute(0, 3, 1, 2).contiguous()


def _two_colours(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two random colours per image (N, 3) whose brightness differs by at least 0.3 (the pattern stays visible)."""
    a = rng.uniform(0, 1, (n, 3))
    b = rng.uniform(0, 1, (n, 3))
    dark = a.mean(1, keepdims=True) < b.mean(1, keepdims=True)
    lo, hi = np.where(dark, a, b), np.where(dark, b, a)
    lo = lo * 0.45
    hi = 0.55 + 0.45 * hi
    return lo, hi


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return yy, xx


def stripes(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    """Straight stripes of a random orientation, period 4-10 px and phase, in two random colours of different
    brightness, plus a little pixel noise. -> uint8 (n, 3, size, size)."""
    _check_n(n, size)
    rng = np.random.default_rng(seed)
    yy, xx = _grid(size)
    lo, hi = _two_colours(rng, n)
    out = np.empty((n, size, size, 3))
    for i in range(n):
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(4, 10), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period + phase) > 0
        out[i] = np.where(wave[..., None], hi[i], lo[i]) + rng.normal(0, 0.03, (size, size, 3))
    return _to_uint8(out)


def dots(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    """Polka dots: discs of radius 1.5-3 px on a jittered grid (spacing 6-10 px) in one colour on another.
    -> uint8 (n, 3, size, size)."""
    _check_n(n, size)
    rng = np.random.default_rng(seed)
    yy, xx = _grid(size)
    lo, hi = _two_colours(rng, n)
    out = np.empty((n, size, size, 3))
    for i in range(n):
        spacing, radius = rng.uniform(6, 10), rng.uniform(1.5, 3.0)
        mask = np.zeros((size, size), dtype=bool)
        offset = rng.uniform(0, spacing, 2)
        for cy in np.arange(offset[0] - spacing, size + spacing, spacing):
            for cx in np.arange(offset[1] - spacing, size + spacing, spacing):
                jy, jx = rng.normal(0, spacing / 10, 2)
                mask |= (yy - cy - jy) ** 2 + (xx - cx - jx) ** 2 <= radius**2
        fg, bg = (hi[i], lo[i]) if rng.uniform() < 0.5 else (lo[i], hi[i])
        out[i] = np.where(mask[..., None], fg, bg) + rng.normal(0, 0.03, (size, size, 3))
    return _to_uint8(out)


def zigzags(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    """Zigzag bands: stripes whose centre line is a triangle wave (amplitude 2-4 px, wavelength 6-12 px), in a
    random one of the two axis orientations. -> uint8 (n, 3, size, size)."""
    _check_n(n, size)
    rng = np.random.default_rng(seed)
    yy, xx = _grid(size)
    lo, hi = _two_colours(rng, n)
    out = np.empty((n, size, size, 3))
    for i in range(n):
        amp, wavelength, period = rng.uniform(2, 4), rng.uniform(6, 12), rng.uniform(5, 9)
        u, v = (xx, yy) if rng.uniform() < 0.5 else (yy, xx)
        tri = amp * (2 * np.abs(2 * ((u / wavelength + rng.uniform()) % 1) - 1) - 1)  # triangle wave in [-amp, amp]
        band = ((v + tri + rng.uniform(0, period)) % period) < period / 2
        out[i] = np.where(band[..., None], hi[i], lo[i]) + rng.normal(0, 0.03, (size, size, 3))
    return _to_uint8(out)


#: the hues of :func:`colour_patches` (name -> RGB in [0, 1])
PATCH_COLOURS = {"red": (0.85, 0.1, 0.1), "green": (0.1, 0.7, 0.15), "blue": (0.1, 0.25, 0.85),
                 "yellow": (0.9, 0.85, 0.1)}


def colour_patches(n: int, seed: int = 0, size: int = 32, colour: str = "red") -> torch.Tensor:
    """Images dominated by one colour: a few overlapping rectangles of shades of ``colour`` (a key of
    :data:`PATCH_COLOURS`) on a background of another shade of it, no pattern. -> uint8 (n, 3, size, size)."""
    _check_n(n, size)
    if colour not in PATCH_COLOURS:
        raise ValueError(f"unknown colour {colour!r}; use one of {', '.join(PATCH_COLOURS)}")
    rng = np.random.default_rng(seed)
    base = np.array(PATCH_COLOURS[colour])
    out = np.empty((n, size, size, 3))
    for i in range(n):
        img = np.broadcast_to(np.clip(base * rng.uniform(0.6, 1.1) + rng.normal(0, 0.05, 3), 0, 1),
                              (size, size, 3)).copy()
        for _ in range(rng.integers(2, 5)):
            h, w = rng.integers(size // 4, size // 2 + 1, 2)
            y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
            img[y:y + h, x:x + w] = np.clip(base * rng.uniform(0.5, 1.15) + rng.normal(0, 0.05, 3), 0, 1)
        out[i] = img + rng.normal(0, 0.03, (size, size, 3))
    return _to_uint8(out)


def noise_images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    """Random images without a concept: smooth colour noise (uniform noise at a random scale of 2-8 px,
    upsampled). -> uint8 (n, 3, size, size). TCAV's random sets are usually random dataset images instead."""
    _check_n(n, size)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        cells = int(torch.randint(size // 8, size // 2 + 1, (1,), generator=gen))
        small = torch.rand(1, 3, cells, cells, generator=gen)
        out.append(torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False))
    return (torch.cat(out) * 255).round().clamp(0, 255).to(torch.uint8)


#: concept name -> generator ``f(n, seed, size)``
CONCEPTS: dict[str, Callable[..., torch.Tensor]] = {
    "stripes": stripes,
    "dots": dots,
    "zigzags": zigzags,
    **{f"{c}_patches": (lambda n, seed=0, size=32, c=c: colour_patches(n, seed, size, c)) for c in PATCH_COLOURS},
    "noise": noise_images,
}


def make_concept(name: str, n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    """``n`` images of the concept ``name`` (a key of :data:`CONCEPTS`): uint8 (n, 3, size, size)."""
    if name not in CONCEPTS:
        raise ValueError(f"unknown concept {name!r}; use one of {', '.join(CONCEPTS)}")
    return CONCEPTS[name](n, seed=seed, size=size)


# --------------------------------------------------------------------------------------------------------------
# Activations and CAVs
# --------------------------------------------------------------------------------------------------------------


def _normalised(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (N, 3, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if images.dtype == torch.uint8:
        from .training import normalize_uint8

        return normalize_uint8(images)
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or normalised float, got {images.dtype}")
    return images


@torch.no_grad()
def layer_activations(model: nn.Module, layer: nn.Module | str, images: torch.Tensor,
                      batch_size: int = 250) -> torch.Tensor:
    """The output of ``layer`` (a module or its name, e.g. ``"features.5"``) for every image, flattened per image:
    uint8 or normalised images (N, 3, H, W) -> float32 (N, D) on the CPU (a CNN block: D = C * h * w; a ViT
    block: D = tokens * dim). The model is put in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with capture(model, layer) as rec:  # the course's hook context manager (helpers.hooks)
        for i in range(0, len(images), batch_size):
            model(_normalised(images[i:i + batch_size]).to(device))
            out.append(rec.activations.flatten(1).float().cpu())
    return torch.cat(out)


def _xy(concept_acts: torch.Tensor, random_acts: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    for a, what in ((concept_acts, "concept_acts"), (random_acts, "random_acts")):
        if not isinstance(a, torch.Tensor) or a.ndim != 2 or len(a) < 2:
            raise ValueError(f"{what} must be a (N, D) tensor with N >= 2, got {getattr(a, 'shape', type(a))}")
    if concept_acts.shape[1] != random_acts.shape[1]:
        raise ValueError(f"concept and random activations differ in size: {concept_acts.shape[1]} vs "
                         f"{random_acts.shape[1]} (the same layer?)")
    x = torch.cat([concept_acts.detach().cpu(), random_acts.detach().cpu()]).double().numpy()  # NumPy: on the CPU
    y = np.r_[np.ones(len(concept_acts)), np.zeros(len(random_acts))]
    return x, y


def fit_cav(concept_acts: torch.Tensor, random_acts: torch.Tensor, c: float = 1.0) -> tuple[torch.Tensor, float]:
    """Fit the linear classifier of a CAV: scikit-learn's ``LogisticRegression(C=c, max_iter=2000)`` (lbfgs, L2) on
    the activations, concept = 1, random = 0, each activation divided by the mean norm of all of them (so ``c``
    means the same at every layer). ``concept_acts`` (Nc, D), ``random_acts`` (Nr, D) -> (the CAV: the unit normal
    of the decision boundary, pointing towards the concept, float32 (D,); the bias in those units)."""
    from sklearn.linear_model import LogisticRegression

    x, y = _xy(concept_acts, random_acts)
    scale = float(np.linalg.norm(x, axis=1).mean()) or 1.0
    clf = LogisticRegression(C=c, max_iter=2000).fit(x / scale, y)
    w = clf.coef_[0]
    norm = float(np.linalg.norm(w))
    if norm == 0:
        raise ValueError("the classifier learnt nothing (zero weights): are the concept and random sets identical?")
    return torch.from_numpy(w / norm).float(), float(clf.intercept_[0]) / norm


def cav_accuracy(cav: torch.Tensor, bias: float, concept_acts: torch.Tensor, random_acts: torch.Tensor) -> float:
    """Accuracy in [0, 1] of the CAV's classifier (concept where ``x . cav / scale + bias > 0``, ``scale`` as in
    :func:`fit_cav`, computed on these activations) on held-out concept (Nc, D) and random (Nr, D) activations."""
    x, y = _xy(concept_acts, random_acts)
    scale = float(np.linalg.norm(x, axis=1).mean()) or 1.0
    pred = (x / scale) @ cav.detach().cpu().double().numpy() + bias > 0
    return float((pred == (y == 1)).mean())


@dataclass
class CAV:
    """A concept activation vector: ``vector`` (D,) unit length, ``bias``, held-out ``accuracy`` in [0, 1]."""

    vector: torch.Tensor
    bias: float
    accuracy: float


def train_cav(concept_acts: torch.Tensor, random_acts: torch.Tensor, test_fraction: float = 0.3, seed: int = 0,
              c: float = 1.0) -> CAV:
    """Split both sets (seeded), :func:`fit_cav` on the training part, :func:`cav_accuracy` on the rest. A CAV whose
    accuracy is near 0.5 does not separate the concept from random images at that layer: its TCAV score means
    nothing. ``concept_acts`` (Nc, D), ``random_acts`` (Nr, D)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    gen = torch.Generator().manual_seed(seed)

    def split(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        perm = torch.randperm(len(a), generator=gen)
        k = max(1, round(test_fraction * len(a)))
        return a[perm[k:]], a[perm[:k]]

    (ct, ch), (rt, rh) = split(concept_acts), split(random_acts)
    vector, bias = fit_cav(ct, rt, c)
    return CAV(vector, bias, cav_accuracy(vector, bias, ch, rh))


# --------------------------------------------------------------------------------------------------------------
# TCAV
# --------------------------------------------------------------------------------------------------------------


def layer_gradients(model: nn.Module, layer: nn.Module | str, images: torch.Tensor, target: int,
                    batch_size: int = 100) -> torch.Tensor:
    """``grad_h f_c(x)``: the gradient of the class-``target`` logit with respect to the activations ``h`` of
    ``layer``, flattened per image. Images (N, 3, H, W) -> float32 (N, D) on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with capture(model, layer) as rec:
        for i in range(0, len(images), batch_size):
            model.zero_grad(set_to_none=True)
            logits = model(_normalised(images[i:i + batch_size]).to(device))
            if not 0 <= target < logits.shape[1]:
                raise ValueError(f"target {target} outside the model's {logits.shape[1]} classes")
            logits[:, target].sum().backward()
            out.append(rec.gradients.flatten(1).float().cpu())
    model.zero_grad(set_to_none=True)
    return torch.cat(out)


def directional_derivatives(model: nn.Module, layer: nn.Module | str, images: torch.Tensor, target: int,
                            cav: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """``S_c(x) = grad_h f_c(x) . v``: the derivative of the class-``target`` logit in the direction of the CAV
    ``v`` (D,) at the activations ``h`` of ``layer``, per image. Images (N, 3, H, W) -> float32 (N,)."""
    grad = layer_gradients(model, layer, images, target, batch_size)
    v = cav.float().flatten()
    if grad.shape[1] != v.numel():
        raise ValueError(f"the CAV has {v.numel()} entries but the layer's activations {grad.shape[1]}")
    return grad @ v


def tcav_score(derivatives: torch.Tensor) -> float:
    """TCAV_Q = |{x : S_c(x) > 0}| / |X|: the share of the inputs whose class logit increases along the CAV."""
    if derivatives.ndim != 1 or len(derivatives) == 0:
        raise ValueError(f"expected (N,) directional derivatives, got {tuple(derivatives.shape)}")
    return float((derivatives > 0).float().mean())


@dataclass
class TCAVResult:
    """The TCAV test of one concept, layer and class (:func:`tcav_table`)."""

    scores: list[float]  # TCAV score of the concept's CAV against each random set
    random_scores: list[float]  # TCAV score of random-vs-random CAVs (the null distribution)
    accuracies: list[float]  # held-out accuracy of each concept CAV
    t_statistic: float
    p_value: float  # two-sided Welch t-test of scores against random_scores

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    def significant(self, alpha: float = 0.05, n_tests: int = 1) -> bool:
        """p < alpha / n_tests (Bonferroni over the ``n_tests`` concept-layer-class tests reported together)."""
        return self.p_value < alpha / n_tests


def welch_test(scores: Sequence[float], null: Sequence[float]) -> tuple[float, float]:
    """Two-sided Welch t-test of concept TCAV scores against random ones: (t, p). Two constant samples give
    (0, 1) when equal and (inf, 0) when not (scipy would return NaN)."""
    from scipy import stats

    if np.std(scores) == 0 and np.std(null) == 0:
        return (0.0, 1.0) if np.mean(scores) == np.mean(null) else (math.copysign(math.inf, np.mean(scores) -
                                                                                np.mean(null)), 0.0)
    t, p = stats.ttest_ind(scores, null, equal_var=False)
    return float(t), float(p)


def _warn_if_constant(grad: torch.Tensor, layer: str, cls: int) -> None:
    """Warn when every image has the same gradient ``grad`` (N, D): then ``grad . v`` has one sign for all images and
    every TCAV score is 0 or 1 (a layer right before global average pooling and a linear head, e.g. a CourseCNN's
    ``features.5``)."""
    if len(grad) > 1 and torch.allclose(grad, grad[:1].expand_as(grad), rtol=1e-5,
                                        atol=1e-7 * float(grad.abs().max().clamp_min(1e-30))):
        import warnings

        warnings.warn(f"layer {layer!r}: the gradient of class {cls} is the same for every image (right before "
                      "global pooling and a linear head?): every TCAV score is 0 or 1 there; use an earlier, "
                      "spatial layer", UserWarning, stacklevel=3)


def tcav_table(model: nn.Module, layers: Sequence[str], class_images: dict[int, torch.Tensor],
               concept_images: dict[str, torch.Tensor], random_sets: Sequence[torch.Tensor], c: float = 1.0,
               seed: int = 0, test_fraction: float = 0.3) -> dict[tuple[str, int, str], TCAVResult]:
    """TCAV with the significance test of Kim et al. (2018), for every concept, class and layer.

    At each layer: one CAV of each concept against each of the K random sets and, as the null, one CAV of random
    set 0 against each other random set (:func:`train_cav`: fitted on ``1 - test_fraction`` of both sets, its
    accuracy measured on the rest); the gradients of each class's logit for its images (``class_images``: class
    index -> images (N, 3, H, W)) are computed once and reused for every CAV. The K concept scores are compared
    with the K - 1 null scores by a two-sided Welch t-test. Warns when a layer gives every image the same gradient
    (then every score is 0 or 1). Needs K >= 3. Returns ``{(concept, class, layer):
    TCAVResult}``."""
    if len(random_sets) < 3:
        raise ValueError(f"the t-test needs at least 3 random sets, got {len(random_sets)}")
    out: dict[tuple[str, int, str], TCAVResult] = {}
    for layer in layers:
        acts_r = [layer_activations(model, layer, r) for r in random_sets]
        null_cavs = [train_cav(acts_r[0], r, test_fraction, seed + 1000 + k, c) for k, r in enumerate(acts_r[1:])]
        concept_cavs = {}
        for name, imgs in concept_images.items():
            acts_c = layer_activations(model, layer, imgs)
            concept_cavs[name] = [train_cav(acts_c, r, test_fraction, seed + k, c) for k, r in enumerate(acts_r)]
        for cls, imgs in class_images.items():
            grad = layer_gradients(model, layer, imgs, cls)
            _warn_if_constant(grad, layer, cls)
            null = [tcav_score(grad @ v.vector) for v in null_cavs]
            for name, cavs in concept_cavs.items():
                scores = [tcav_score(grad @ v.vector) for v in cavs]
                t, p = welch_test(scores, null)
                out[name, cls, layer] = TCAVResult(scores, null, [v.accuracy for v in cavs], t, p)
    return out


def tcav_test(model: nn.Module, layer: str, images: torch.Tensor, target: int, concept_images: torch.Tensor,
              random_sets: Sequence[torch.Tensor], c: float = 1.0, seed: int = 0) -> TCAVResult:
    """:func:`tcav_table` for one concept (images (Nc, 3, H, W)), one class ``target`` (its images (N, 3, H, W))
    and one layer."""
    res = tcav_table(model, [layer], {target: images}, {"concept": concept_images}, random_sets, c, seed)
    return res["concept", target, layer]


class _SklearnCAVClassifier:
    """captum ``Classifier`` backed by :func:`fit_cav` (deterministic; captum's default shuffles with Python's global
    ``random`` and trains an SGD classifier). Fits on all the activations it is given and reports their accuracy."""

    def __init__(self, c: float = 1.0) -> None:
        self.c = c
        self._w: torch.Tensor | None = None
        self._classes: list[int] = []

    def train_and_eval(self, dataloader: Any, **_: Any) -> dict[str, torch.Tensor]:
        xs, ys = zip(*dataloader, strict=True)
        x, y = torch.cat(xs).float().cpu(), torch.cat(ys).cpu()
        self._classes = sorted(int(v) for v in y.unique())
        if len(self._classes) != 2:
            raise ValueError(f"a CAV separates two concepts, got {len(self._classes)}")
        pos, neg = x[y == self._classes[1]], x[y == self._classes[0]]
        vector, bias = fit_cav(pos, neg, self.c)
        self._w = vector
        return {"accs": torch.tensor(cav_accuracy(vector, bias, pos, neg))}

    def weights(self) -> torch.Tensor:
        assert self._w is not None, "train_and_eval first"
        return torch.stack([-self._w, self._w])  # rows in the order of classes(): towards classes[0], classes[1]

    def classes(self) -> list[int]:
        return self._classes


def captum_tcav(model: nn.Module, layers: Sequence[str], images: torch.Tensor, target: int,
                concept_sets: dict[str, torch.Tensor], random_sets: Sequence[torch.Tensor], c: float = 1.0,
                batch_size: int = 50, keep_cache: str | None = None) -> dict[str, dict[str, list[float]]]:
    """TCAV scores with captum's ``TCAV`` (sign count, ``LayerGradientXActivation`` without the multiplication,
    i.e. gradients), with the CAV classifier of :func:`fit_cav`.

    Every call uses a **fresh temporary folder** as captum's ``save_path`` and deletes it afterwards, so a CAV or
    activation cached for other concept images can never be reused (captum keys its cache by model id, concept
    name and id, and layer, not by the images). ``keep_cache``: a folder to use instead (it must not exist yet).

    ``concept_sets``: name -> uint8 images; ``random_sets``: K uint8 image sets. Returns
    ``{concept: {layer: [score against random set k for k < K]}}`` and ``{"random": {layer: [score of random set 0
    against random set k for 1 <= k < K]}}``: the inputs of :func:`tcav_test`'s t-test."""
    import warnings

    from captum.concept import TCAV, Concept
    from torch.utils.data import DataLoader

    from .training import normalize_uint8

    if len(random_sets) < 2:
        raise ValueError("captum_tcav needs at least 2 random sets")
    device = next(model.parameters()).device
    model.eval()

    def loader(x: torch.Tensor) -> DataLoader:
        x = normalize_uint8(x) if x.dtype == torch.uint8 else x
        return DataLoader(x.to(device), batch_size=batch_size, shuffle=False)

    names = list(concept_sets)
    concepts = [Concept(i, name, loader(concept_sets[name])) for i, name in enumerate(names)]
    randoms = [Concept(len(names) + k, f"random{k}", loader(r)) for k, r in enumerate(random_sets)]
    experiments = [[cc, r] for cc in concepts for r in randoms] + [[randoms[0], r] for r in randoms[1:]]
    folder = keep_cache or tempfile.mkdtemp(prefix="xai-tcav-")
    if keep_cache is not None:
        import os

        if os.path.exists(keep_cache):
            raise FileExistsError(f"{keep_cache} exists: captum would reuse its cached CAVs; pass a new folder")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tcav = TCAV(model, list(layers), model_id="course", classifier=_SklearnCAVClassifier(c),
                        save_path=folder + "/")
            x = normalize_uint8(images) if images.dtype == torch.uint8 else images
            raw = tcav.interpret(x.to(device), experimental_sets=experiments, target=target)
    finally:
        if keep_cache is None:
            shutil.rmtree(folder, ignore_errors=True)
    out: dict[str, dict[str, list[float]]] = {n: {la: [] for la in layers} for n in [*names, "random"]}
    for exp in experiments:
        key = "-".join(str(cc.id) for cc in exp)
        owner = exp[0].name if exp[0] in concepts else "random"
        for la in layers:
            out[owner][la].append(float(raw[key][la]["sign_count"][0]))
    return out


def plot_tcav(results: dict[tuple[str, int, str], TCAVResult], concept: Sequence[str], cls: int, layers: Sequence[str],
              class_name: str = "", n_tests: int = 1, alpha: float = 0.05, ax: Any = None) -> Any:
    """Bars: the mean TCAV score of each concept (groups) at each layer (bars), error bars one standard deviation
    over the random sets; grey dots: the random-vs-random scores (the null); bars whose test is not significant at
    ``alpha / n_tests`` (Bonferroni) are hatched and pale. ``results`` from :func:`tcav_table`. Returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(1.4 * len(concept) * max(1, len(layers)) / 2 + 2, 3.2))
    width = 0.8 / len(layers)
    colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.85, len(layers)))
    for j, layer in enumerate(layers):
        for i, name in enumerate(concept):
            r = results[name, cls, layer]
            x = i + (j - (len(layers) - 1) / 2) * width
            sig = r.significant(alpha, n_tests)
            ax.bar(x, r.mean, width * 0.95, yerr=float(np.std(r.scores)), color=colours[j], capsize=2,
                   alpha=1.0 if sig else 0.35, hatch=None if sig else "//", edgecolor="black", lw=0.5,
                   label=layer if i == 0 else None)
            ax.scatter(np.full(len(r.random_scores), x), r.random_scores, s=6, color="grey", zorder=3)
    ax.axhline(0.5, color="black", lw=0.8, ls=":")
    ax.set_xticks(range(len(concept)))
    ax.set_xticklabels(concept, fontsize=8, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("TCAV score")
    ax.set_title(f"class {class_name or cls}\nhatched = not significant (p >= {alpha:g}/{n_tests}); "
                 "grey = random CAVs", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return ax.figure
