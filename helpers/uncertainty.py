"""Uncertainty and calibration (notebook 08): ECE and reliability diagrams, entropy and mutual information of an
ensemble, MC dropout, and the course's small deep ensemble.

* :func:`expected_calibration_error` / :func:`calibration_bins`: ECE with ``n_bins`` equal-width confidence bins
  (Guo et al. 2017); :func:`reliability_diagram` draws the bins.
* :func:`entropy`, :func:`predictive_entropy`, :func:`expected_entropy`, :func:`mutual_information`: the
  decomposition of an ensemble's (or of MC-dropout samples') uncertainty, in nats.
* :func:`head_dropout`: a context manager that puts dropout on the input of a model's classifier layer (``fc`` of a
  CourseCNN) with a forward pre-hook, in training mode (training with dropout) or always (``mc=True``: MC dropout).
* :func:`mc_dropout_probs`, :func:`ensemble_probs`: stacked softmax probabilities (S, N, C).
* :func:`load_ensemble`: the shipped ensemble members (``data/checkpoints``, ``tools/train_ensemble.py``).
* :func:`fit_temperature`, :func:`apply_temperature`: temperature scaling (Guo et al. 2017), fitted by NLL on
  held-out predictions.
* :func:`bootstrap_metric`: a metric (accuracy, ECE, NLL) averaged over several sets of predictions of the same
  images, under resampling of the images: the same ``seed`` gives the same resamples, so two methods' draws can be
  subtracted (a paired bootstrap) for an interval on their difference.

Probabilities are float tensors ``(N, C)`` (one model) or ``(S, N, C)`` (S members or dropout samples) whose rows
sum to 1; labels are int64 ``(N,)``. Logarithms are natural (nats).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ENSEMBLE_MEMBERS",
    "DROPOUT_P",
    "calibration_bins",
    "expected_calibration_error",
    "reliability_diagram",
    "negative_log_likelihood",
    "entropy",
    "predictive_entropy",
    "expected_entropy",
    "mutual_information",
    "head_dropout",
    "softmax_probs",
    "mc_dropout_probs",
    "ensemble_probs",
    "load_ensemble",
    "probe_predictions",
    "fit_temperature",
    "apply_temperature",
    "bootstrap_metric",
]

#: the shipped deep-ensemble members (tools/train_ensemble.py): quarter-width CourseCNNs, one seed each
ENSEMBLE_MEMBERS = ("cnn_small_ens0", "cnn_small_ens1", "cnn_small_ens2", "cnn_small_ens3")
#: the dropout rate on the classifier's input with which the members were trained (and MC dropout samples)
DROPOUT_P = 0.3


def _check_probs(probs: torch.Tensor, ndim: int, what: str = "probs") -> None:
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {type(probs).__name__}")
    if probs.ndim != ndim:
        shape = "(N, C)" if ndim == 2 else "(S, N, C)"
        raise ValueError(f"{what} must have shape {shape}, got {tuple(probs.shape)}")
    if probs.numel() and (probs.min() < 0 or not torch.allclose(probs.sum(-1), torch.ones(()).to(probs), atol=1e-3)):
        raise ValueError(f"{what}: rows must be probabilities (>= 0, summing to 1): apply softmax to logits first")


def calibration_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict[str, torch.Tensor]:
    """Bin the top-1 confidences of ``probs`` (N, C) into ``n_bins`` equal-width bins ``((b-1)/M, b/M]`` (the first
    bin also holds 0). Returns ``{"count", "accuracy", "confidence"}``, each (n_bins,) float64 (accuracy and
    confidence are 0 in empty bins), and ``"edges"`` (n_bins + 1,), computed in float64 on the CPU (Apple's MPS has
    no float64) whatever the device of ``probs``."""
    _check_probs(probs, 2)
    if labels.shape != probs.shape[:1]:
        raise ValueError(f"labels must have shape ({probs.shape[0]},), got {tuple(labels.shape)}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf, pred = probs.detach().cpu().double().max(dim=1)
    correct = (pred == labels.cpu()).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    idx = torch.bucketize(conf.cpu(), edges[1:-1], right=False)  # edges[b-1] < conf <= edges[b]
    count = torch.zeros(n_bins, dtype=torch.float64).scatter_add_(0, idx, torch.ones_like(conf.cpu()))
    acc = torch.zeros(n_bins, dtype=torch.float64).scatter_add_(0, idx, correct.cpu())
    cbin = torch.zeros(n_bins, dtype=torch.float64).scatter_add_(0, idx, conf.cpu())
    safe = count.clamp(min=1)
    return {"count": count, "accuracy": acc / safe, "confidence": cbin / safe, "edges": edges}


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE = sum_b (n_b / N) |acc_b - conf_b| over ``n_bins`` equal-width bins of the top-1 confidence (Guo et al.
    2017; the L1 calibration error of torchmetrics' ``CalibrationError``). ``probs`` (N, C), ``labels`` (N,)."""
    if len(labels) == 0:
        raise ValueError("ECE of an empty set is undefined")
    b = calibration_bins(probs, labels, n_bins)
    return float((b["count"] / b["count"].sum() * (b["accuracy"] - b["confidence"]).abs()).sum())


def negative_log_likelihood(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-12) -> float:
    """Mean -log p(true label) of ``probs`` (N, C) (a proper scoring rule, in nats), in float64 on the CPU."""
    _check_probs(probs, 2)
    return float(-probs.detach().cpu().double().gather(1, labels.cpu().view(-1, 1)).clamp_min(eps).log().mean())


def reliability_diagram(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15, ax: Any = None,
                        title: str | None = None, color: str = "tab:blue") -> Any:
    """Accuracy per confidence bin (bars) against the diagonal of perfect calibration, with the gap shaded red and
    the share of the images in each bin drawn as a line (right axis). ``probs`` (N, C). Returns the figure."""
    import matplotlib.pyplot as plt

    b = calibration_bins(probs, labels, n_bins)
    ece = expected_calibration_error(probs, labels, n_bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    centres = ((b["edges"][:-1] + b["edges"][1:]) / 2).numpy()
    width = 1.0 / n_bins
    filled = (b["count"] > 0).numpy()
    acc, conf = b["accuracy"].numpy(), b["confidence"].numpy()
    ax.bar(centres[filled], acc[filled], width=width, color=color, edgecolor="black", lw=0.5, label="accuracy")
    ax.bar(centres[filled], (conf - acc)[filled], bottom=acc[filled], width=width, color="tab:red", alpha=0.35,
           edgecolor="tab:red", lw=0.5, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(f"{title + ': ' if title else ''}ECE {100 * ece:.1f} %", fontsize=10)
    share = ax.twinx()
    share.plot(centres, (b["count"] / b["count"].sum()).numpy(), color="grey", lw=1, marker=".", ms=3)
    share.set_ylim(0, 1)
    share.set_ylabel("share of images", color="grey")
    share.tick_params(axis="y", colors="grey")
    ax.legend(loc="upper left", fontsize=7)
    return ax.figure


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``-sum_c p_c log p_c`` (nats) of each row of ``probs`` (..., C) -> (...); ``0 log 0 = 0``."""
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise TypeError("probs must be a floating-point tensor of probabilities (..., C)")
    return -torch.special.xlogy(probs, probs).sum(-1)


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Total uncertainty: the entropy of the mean prediction, ``H[mean_s p_s]``. (S, N, C) -> (N,)."""
    _check_probs(probs, 3)
    return entropy(probs.mean(0))


def expected_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Aleatoric part: the mean entropy of the members, ``mean_s H[p_s]``. (S, N, C) -> (N,)."""
    _check_probs(probs, 3)
    return entropy(probs).mean(0)


def mutual_information(probs: torch.Tensor) -> torch.Tensor:
    """Epistemic part (BALD, Houlsby et al. 2011): ``H[mean_s p_s] - mean_s H[p_s]`` >= 0, the information the
    prediction carries about which member (or dropout mask) is right; 0 when all members agree. (S, N, C) -> (N,)."""
    return (predictive_entropy(probs) - expected_entropy(probs)).clamp_min(0.0)


@contextlib.contextmanager
def head_dropout(model: nn.Module, p: float = DROPOUT_P, mc: bool = False,
                 module: nn.Module | None = None) -> Iterator[nn.Module]:
    """Dropout with rate ``p`` on the input of ``module`` (default ``model.fc``, the CourseCNN's classifier on the
    pooled features (B, D)), by a forward pre-hook that is removed on exit (also after an exception).

    ``mc=False``: dropout only while the module is in training mode (train with dropout, ``eval()`` turns it
    off, as ``nn.Dropout`` does). ``mc=True``: dropout also in eval mode (MC dropout, Gal & Ghahramani 2016);
    BatchNorm stays in eval mode. Yields the model."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout rate p must be in [0, 1), got {p}")
    target = module if module is not None else getattr(model, "fc", None)
    if not isinstance(target, nn.Module):
        raise ValueError("the model has no `fc` layer: pass module= (the layer whose input gets dropout)")

    def hook(mod: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (F.dropout(args[0], p, training=mc or mod.training), *args[1:])

    handle = target.register_forward_pre_hook(hook)
    try:
        yield model
    finally:
        handle.remove()


def _normalised(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        from .training import normalize_uint8

        return normalize_uint8(images)
    if not images.is_floating_point() or images.ndim != 4:
        raise ValueError(f"images must be uint8 or normalised float (N, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    return images


@torch.no_grad()
def softmax_probs(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Softmax probabilities (N, C) of ``model`` in eval mode for uint8 (normalised here) or normalised images."""
    model.eval()
    device = next(model.parameters()).device
    out = [model(_normalised(images[i:i + batch_size]).to(device)).float().softmax(-1).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 0)


@torch.no_grad()
def mc_dropout_probs(model: nn.Module, images: torch.Tensor, samples: int = 20, p: float = DROPOUT_P,
                     seed: int = 0, batch_size: int = 500, module: nn.Module | None = None) -> torch.Tensor:
    """MC dropout: ``samples`` stochastic forward passes with :func:`head_dropout` (``mc=True``), seeded (the global
    RNG is restored afterwards). Only the classifier's input is dropped, so the features are computed once per batch.
    uint8 or normalised images (N, 3, H, W) -> probabilities (samples, N, C)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    model.eval()
    device = next(model.parameters()).device
    head = module if module is not None else getattr(model, "fc", None)
    if head is None:
        raise ValueError("the model has no `fc` layer: pass module=")
    feats: list[torch.Tensor] = []

    def grab(mod: nn.Module, args: tuple[Any, ...]) -> None:
        feats.append(args[0])

    handle = head.register_forward_pre_hook(grab)
    try:
        for i in range(0, len(images), batch_size):
            model(_normalised(images[i:i + batch_size]).to(device))
    finally:
        handle.remove()
    z = torch.cat(feats) if feats else torch.empty(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.stack([head(F.dropout(z, p, training=True)).float().softmax(-1) for _ in range(samples)])
    return out.cpu()


def ensemble_probs(models: Sequence[nn.Module], images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Softmax probabilities of every member (in eval mode): (M, N, C). The ensemble's prediction is ``.mean(0)``."""
    if len(models) == 0:
        raise ValueError("an ensemble needs at least one member")
    return torch.stack([softmax_probs(m, images, batch_size) for m in models])


def load_ensemble(names: Sequence[str] = ENSEMBLE_MEMBERS) -> list[nn.Module]:
    """The shipped ensemble members (eval mode, CPU), verified by SHA-256 (``helpers.checkpoints``)."""
    from .checkpoints import load_checkpoint

    return [load_checkpoint(n) for n in names]


def probe_predictions(n: int = 500, num_classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic predictions for exercise checks: probabilities (n, num_classes) with top-1 confidences spread over
    (1/num_classes, 1), and labels (n,) that are right with probability ``clip(1.5 conf - 0.25, 0, 1)``, so the
    model is over-confident below a confidence of 0.5 and under-confident above it (a single overall gap hides this)."""
    gen = torch.Generator().manual_seed(seed)
    temperature = torch.empty(n, 1).uniform_(0.2, 6.0, generator=gen)
    probs = (temperature * torch.randn(n, num_classes, generator=gen)).softmax(-1)
    conf, pred = probs.max(1)
    right = torch.rand(n, generator=gen) < (1.5 * conf - 0.25).clamp(0, 1)
    other = (pred + torch.randint(1, num_classes, (n,), generator=gen)) % num_classes
    return probs, torch.where(right, pred, other)


def apply_temperature(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(log p / T)``: temperature scaling of probabilities (N, C) (or (..., C)). ``log p`` equals the
    logits up to a constant per row, which the softmax cancels, so this is ``softmax(z / T)`` of the logits ``z``
    (probabilities below 1e-30 are clamped first). T > 1 softens, T < 1 sharpens; the top-1 class never changes."""
    if temperature <= 0:
        raise ValueError(f"the temperature must be > 0, got {temperature}")
    return (probs.double().clamp_min(1e-30).log() / temperature).softmax(-1).to(probs.dtype)


def fit_temperature(probs: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T that minimises the NLL of :func:`apply_temperature` ``(probs, T)`` on held-out predictions
    ``probs`` (N, C) with ``labels`` (N,) (Guo et al. 2017 fit T on the validation set, not on the test set). A
    bounded scalar search over ``log T`` (scipy's ``minimize_scalar``): deterministic."""
    from scipy.optimize import minimize_scalar

    _check_probs(probs, 2)
    if labels.shape != probs.shape[:1] or len(labels) == 0:
        raise ValueError(f"labels must have shape ({probs.shape[0]},) with N > 0, got {tuple(labels.shape)}")
    logp = probs.double().clamp_min(1e-30).log()

    def nll(log_t: float) -> float:
        return float(-(logp / np.exp(log_t)).log_softmax(-1).gather(1, labels.view(-1, 1)).mean())

    res = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))


def bootstrap_metric(probs: torch.Tensor, labels: torch.Tensor, metric: str, n_boot: int = 1000, seed: int = 0,
                     n_bins: int = 15) -> torch.Tensor:
    """The bootstrap distribution of ``metric`` ("acc", "ece" or "nll") averaged over K sets of predictions of the
    same N images (``probs`` (K, N, C), e.g. the six corruptions at one severity; (N, C) for K = 1), resampling the
    N images with replacement (the same resample for all K sets). Returns (n_boot,) float64.

    The resamples depend only on ``seed``, ``n_boot`` and N: call it with the same ones for two methods and subtract
    the results for a paired bootstrap of their difference (``torch.quantile(a - b, [0.025, 0.975])``)."""
    if metric not in ("acc", "ece", "nll"):
        raise ValueError(f"metric must be 'acc', 'ece' or 'nll', got {metric!r}")
    p = probs.double()[None] if probs.ndim == 2 else probs.double()
    _check_probs(p, 3)
    k, n, _ = p.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=gen)  # (B, N)
    conf, pred = p.max(-1)  # (K, N)
    correct = (pred == labels.view(1, -1)).double()
    if metric == "nll":
        per = -p.gather(2, labels.view(1, -1, 1).expand(k, n, 1)).squeeze(2).clamp_min(1e-12).log()
        return per[:, idx].mean(-1).mean(0)  # (K, B, N) -> (B,)
    if metric == "acc":
        return correct[:, idx].mean(-1).mean(0)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    c, r = conf[:, idx], correct[:, idx]  # (K, B, N)
    b = torch.bucketize(c, edges[1:-1], right=False)
    flat = (torch.arange(k * n_boot).view(k, n_boot, 1) * n_bins + b).flatten()
    gap = torch.zeros(k * n_boot * n_bins, dtype=torch.float64).scatter_add_(0, flat, (r - c).flatten())
    return (gap.abs().view(k, n_boot, n_bins).sum(-1) / n).mean(0)
