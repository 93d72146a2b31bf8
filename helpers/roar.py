"""ROAR at class scale (notebook 07): RemOve And Retrain (Hooker et al. 2019) with a small CNN that retrains in
seconds.

ROAR asks whether the pixels a method calls important are the ones the *data* needs: replace the top ``t`` of the
pixels of every training and test image (by the method's map) with the per-channel dataset mean, train a fresh model
on the modified training images and measure its accuracy on the modified test images. A method whose ranking is
informative makes the accuracy fall faster with ``t`` than a random ranking does. Retraining is what separates ROAR
from deletion curves: the new model is trained on images with holes, so the holes are no longer out of distribution.

* :func:`roar_maps`: the maps of one method for a whole uint8 dataset, in batches (computed once, then cached).
* :func:`dataset_mean` / :func:`roar_dataset`: the fill and the modified images (``helpers.evaluation.roar_remove``).
* :func:`retrain`: a fresh :class:`~helpers.cifar_models.CourseCNN` (:data:`RETRAIN_WIDTHS`) trained with
  ``helpers.training.train`` and evaluated, for one seed.
* :func:`run_roar`: one method over thresholds and seeds; :func:`plot_roar`: accuracy against ``t`` per method.
* :func:`interval` / :func:`compare`: a 95 % interval of an accuracy that counts the seed spread *and* the test
  set's binomial error, and a pairwise comparison that calls overlapping results a tie.
* :func:`load_table`: the shipped full grid, ``data/roar/roar_cifar10.json`` (written by ``tools/roar_grid.py``).

Images are uint8 ``(N, 3, 32, 32)``; labels int64 ``(N,)``; maps float ``(N, 32, 32)``, larger = more important.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import evaluation, training
from .cifar_models import CNNConfig, build_model
from .data import CIFAR10_MEAN

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_FRACTIONS",
    "RETRAIN_WIDTHS",
    "TABLE_PATH",
    "RetrainConfig",
    "roar_maps",
    "dataset_mean",
    "roar_dataset",
    "retrain",
    "run_roar",
    "summarize",
    "interval",
    "compare",
    "plot_roar",
    "load_table",
]

#: the methods of the full grid (keys of ``helpers.evaluation.MAP_METHODS``)
DEFAULT_METHODS = ("random", "gradient", "integrated_gradients", "smoothgrad_squared", "vargrad", "grad_cam")
#: the thresholds ``t`` of the full grid: the fraction of the pixels replaced
DEFAULT_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
#: the widths of the retrained CourseCNN (stem and three stages): half the shipped CNN's widths (32/64/128/256), so
#: about a quarter of its parameters (~0.4 M)
RETRAIN_WIDTHS = (16, 32, 64, 128)
#: the shipped full grid
TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "roar" / "roar_cifar10.json"


@dataclass
class RetrainConfig:
    """The retraining recipe of :func:`retrain` (the same for every method, threshold and seed)."""

    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    widths: tuple[int, int, int, int] = RETRAIN_WIDTHS
    crop_padding: int = 2
    flip: bool = True

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def _check_uint8(images: torch.Tensor, what: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        dtype = images.dtype if isinstance(images, torch.Tensor) else ""
        raise ValueError(f"{what} must be uint8 (N, 3, H, W), got {dtype} {shape}")


def roar_maps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, method: str,
              layer: nn.Module | None = None, batch_size: int = 250, seed: int = 0, ig_steps: int = 16,
              sg_samples: int = 16, progress: bool = True) -> torch.Tensor:
    """The map of ``method`` (a key of ``helpers.evaluation.MAP_METHODS``) for every image, explaining the true
    label with ``model`` (trained on the original data): uint8 ``(N, 3, H, W)`` -> float32 ``(N, H, W)``.

    Images are normalised with the CIFAR-10 statistics (``training.normalize_uint8``) and processed in batches of
    ``batch_size``; ``random`` maps are seeded per batch (``seed + batch index``). ``layer``: Grad-CAM's layer."""
    _check_uint8(images)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if method not in evaluation.MAP_METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(evaluation.MAP_METHODS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    device = next(model.parameters()).device
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"maps: {method}", unit="batch")
    out = []
    for i, s in enumerate(starts):
        x = training.normalize_uint8(images[s:s + batch_size].to(device))
        y = labels[s:s + batch_size].to(device)
        m = evaluation.explanation_maps(model, x, y, method, layer=layer, seed=seed + i, ig_steps=ig_steps,
                                        sg_samples=sg_samples)
        out.append(m.detach().float().cpu())
    return torch.cat(out)


def dataset_mean(images: torch.Tensor | None = None) -> tuple[float, float, float]:
    """The per-channel mean in uint8 units (0..255): of ``images`` (N, 3, H, W), or CIFAR-10's published mean when
    ``images`` is None. After ``normalize_uint8`` this colour is (about) 0, the value no channel prefers."""
    if images is None:
        return tuple(255.0 * m for m in CIFAR10_MEAN)  # type: ignore[return-value]
    _check_uint8(images)
    return tuple(images.cpu().double().mean(dim=(0, 2, 3)).tolist())  # type: ignore[return-value]


def roar_dataset(images: torch.Tensor, maps: torch.Tensor, fraction: float,
                 fill: Sequence[float] | None = None) -> torch.Tensor:
    """ROAR's modified images: the top ``fraction`` of the pixels of each image (by ``maps`` (N, H, W)) set to
    ``fill`` (default :func:`dataset_mean` of CIFAR-10). uint8 (N, 3, H, W) -> uint8 (N, 3, H, W)."""
    _check_uint8(images)
    return evaluation.roar_remove(images, maps, fraction, dataset_mean() if fill is None else fill)


def retrain(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
            test_labels: torch.Tensor, config: RetrainConfig | None = None, seed: int = 0,
            show_progress: bool = False, device: torch.device | str | None = None) -> float:
    """Train a fresh CourseCNN (``config.widths``, initialised with ``seed``) on the uint8 training images and
    return its top-1 accuracy in [0, 1] on the test images.

    ``device``: where the model trains and is evaluated (the notebook's ``DEVICE``; default the CPU). The model is
    built (and so initialised) on the CPU, then moved, so the initial weights do not depend on the device."""
    cfg = config or RetrainConfig()
    _check_uint8(train_images, "train_images")
    _check_uint8(test_images, "test_images")
    torch.manual_seed(seed)
    model = build_model(CNNConfig(num_classes=int(max(train_labels.max(), test_labels.max())) + 1,
                                  widths=tuple(cfg.widths)))
    tc = training.TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, label_smoothing=0.0,
                              crop_padding=cfg.crop_padding, flip=cfg.flip, seed=seed, eval_every=cfg.epochs)
    training.train(model, train_images, train_labels, tc, show_progress=show_progress,
                   device=device)
    return float(training.evaluate(model.eval(), test_images, test_labels))


def run_roar(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
             test_labels: torch.Tensor, train_maps: torch.Tensor, test_maps: torch.Tensor,
             fractions: Sequence[float] = DEFAULT_FRACTIONS, seeds: Sequence[int] = (0,),
             config: RetrainConfig | None = None, progress: bool = True,
             log: Callable[[str], None] | None = None,
             device: torch.device | str | None = None) -> dict[str, list[float]]:
    """ROAR for one method: for every threshold ``t`` and seed, modify the training and test images with the
    method's maps (:func:`roar_dataset`) and :func:`retrain` on ``device`` (default the CPU). Returns
    ``{f"{t:g}": [accuracy per seed]}``."""
    if train_maps.shape[0] != len(train_images) or test_maps.shape[0] != len(test_images):
        raise ValueError("train_maps / test_maps need one map per training / test image")
    jobs = [(t, s) for t in fractions for s in seeds]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="ROAR retrains", unit="model")
    out: dict[str, list[float]] = {}
    for t, s in jobs:
        start = time.perf_counter()
        acc = retrain(roar_dataset(train_images, train_maps, t), train_labels,
                      roar_dataset(test_images, test_maps, t), test_labels, config, seed=s, device=device)
        out.setdefault(f"{t:g}", []).append(acc)
        if log is not None:
            log(f"t={t:g} seed={s}: accuracy {acc:.4f} ({time.perf_counter() - start:.1f} s)")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def summarize(results: dict[str, list[float]]) -> tuple[list[float], list[float], list[float]]:
    """``{t: [accuracy per seed]}`` -> (thresholds, means, standard deviations over seeds (0 for one seed)),
    sorted by threshold."""
    ts = sorted(results, key=float)
    means = [sum(results[t]) / len(results[t]) for t in ts]
    sds = [math.sqrt(sum((a - m) ** 2 for a in results[t]) / (len(results[t]) - 1)) if len(results[t]) > 1 else 0.0
           for t, m in zip(ts, means, strict=True)]
    return [float(t) for t in ts], means, sds


def interval(accuracies: Sequence[float], n_test: int, z: float = 1.96) -> tuple[float, float]:
    """Mean accuracy over seeds and the half-width of a normal ``z`` interval (95 % by default) that includes both
    sources of noise: ``var = sd^2 / k`` over the ``k`` seeds (0 for one seed) ``+ p (1 - p) / n_test``, the
    binomial error of an accuracy ``p`` measured on ``n_test`` images (the same test images for every seed, so it
    does not average out over seeds)."""
    if n_test < 1 or not accuracies:
        raise ValueError("need at least one accuracy and n_test >= 1")
    k = len(accuracies)
    mean = sum(accuracies) / k
    seed_var = sum((a - mean) ** 2 for a in accuracies) / (k - 1) / k if k > 1 else 0.0
    return mean, z * math.sqrt(seed_var + mean * (1 - mean) / n_test)


def compare(a: Sequence[float], b: Sequence[float], n_test: int, z: float = 1.96) -> tuple[float, float, str]:
    """``a`` vs ``b`` (accuracies per seed of two methods at one threshold): the difference of the means, the
    half-width of its ``z`` interval (the two variances of :func:`interval` added: conservative, since both were
    measured on the same test images, whose shared error a paired test would cancel) and a verdict: ``"lower"`` or
    ``"higher"`` when the interval excludes 0, else ``"tie"``."""
    (ma, ha), (mb, hb) = interval(a, n_test, z), interval(b, n_test, z)
    diff, half = ma - mb, math.hypot(ha, hb)
    return diff, half, "tie" if abs(diff) <= half else ("lower" if diff < 0 else "higher")


def plot_roar(curves: dict[str, dict[str, list[float]]], baseline: Sequence[float] | None = None, ax: Any = None,
              title: str = "ROAR", n_test: int | None = None) -> Any:
    """Accuracy of the retrained model against the fraction ``t`` removed, one line per method (mean over seeds).

    Args:
        curves: ``{method: {t: [accuracy per seed]}}``.
        baseline: the accuracies without removal (drawn at ``t = 0`` for every method), or None.
        ax: the axes to draw on (None: a new figure).
        title: the axes' title.
        n_test: the number of test images. Given, the error bars are the 95 % intervals of :func:`interval` (seed
            spread and the test set's binomial error), and the methods' points are drawn slightly apart so the bars
            do not hide each other; None: one standard deviation over the seeds (nothing for one seed).

    Returns:
        The figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4))
    base = list(baseline) if baseline else None
    for k, (method, res) in enumerate(curves.items()):
        ts, means, sds = summarize(res)
        if n_test is not None:
            sds = [interval(res[key], n_test)[1] for key in sorted(res, key=float)]
        if base is not None:
            half0 = interval(base, n_test)[1] if n_test is not None else 0.0
            ts, means, sds = [0.0, *ts], [sum(base) / len(base), *means], [half0, *sds]
        shift = 0.6 * (k - (len(curves) - 1) / 2) if n_test is not None else 0.0
        style = dict(color="black", linestyle="--") if method == "random" else {}
        ax.errorbar([100 * t + shift for t in ts], means, yerr=sds, marker="o", ms=3, capsize=2, label=method,
                    **style)
    ax.set_xlabel("pixels removed t (%)")
    ax.set_ylabel("test accuracy after retraining")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax.figure


def load_table(path: str | Path = TABLE_PATH) -> dict[str, Any]:
    """The shipped ROAR table (``tools/roar_grid.py``): ``settings``, ``baseline`` (accuracy per seed without
    removal), ``results`` (``{method: {t: [accuracy per seed]}}``), timings, ``command`` and ``machine``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: restore it with git, or re-create it with "
                                "`python tools/roar_grid.py` (see its docstring)")
    return json.loads(path.read_text())
