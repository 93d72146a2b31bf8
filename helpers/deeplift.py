"""DeepLIFT-Rescale (through captum) and GradientSHAP / expected gradients (our own), next to Integrated Gradients.

* **DeepLIFT-Rescale** (Shrikumar et al. 2017) compares every neuron with its value on a reference input ``x'`` and
  backpropagates *multipliers* in which each non-linearity's derivative ``f'(z)`` is replaced by the secant
  ``(f(z) - f(z')) / (z - z')`` (Ancona et al. 2018's gradient formulation). The attributions then add up to
  ``f(x) - f(x')`` (*summation-to-delta*) when every layer is linear or element-wise. :func:`deeplift` runs captum's
  ``DeepLift`` with the guards it needs (in-place ReLUs switched off, no ReLU module used twice) and returns the
  delta captum reports.
* **GradientSHAP** (captum's ``GradientShap``; *expected gradients*, Erion et al. 2021) is a Monte-Carlo estimate of
  ``E_{x' ~ D, a ~ U(0, 1), e ~ N(0, s^2)} [(x + e - x') * grad f(x' + a (x + e - x'))]``: with one baseline and
  ``s = 0`` its expectation is Integrated Gradients with that baseline (the integral over ``a`` sampled instead of
  quadratured); with baselines drawn from a data set it is the average of their IGs. :func:`gradient_shap` is our
  implementation (same estimator, our own sampling), tested against captum's in expectation.

Both explain the logit of ``target``; inputs are (B, C, H, W) images normalised as the model expects.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from .attribution import class_indices, input_gradients, target_logits
from .hooks import relu_not_inplace
from .validation import check_images

__all__ = ["DeepLiftError", "deeplift", "gradient_shap", "relative_difference", "summation_gap"]


class DeepLiftError(ValueError):
    """A model that captum's DeepLift would explain wrongly; the message says why and what to do."""


def _check_no_reused_relu(model: nn.Module, x: torch.Tensor) -> None:
    """Raise when one ``nn.ReLU``-like module runs more than once per forward pass: captum keeps one input per
    module for its secant multipliers, so the second call would overwrite the first's."""
    acts = (nn.ReLU, nn.ReLU6, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)
    counts: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, acts):
            handles.append(m.register_forward_hook(
                lambda mod, i, o, n=name: counts.__setitem__(n, counts.get(n, 0) + 1)))
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    reused = [n for n, c in counts.items() if c > 1]
    if reused:
        raise DeepLiftError(f"activation module(s) {', '.join(reused[:3])} run more than once per forward pass; "
                            "captum's DeepLift stores one input per module, so its multipliers would be wrong. "
                            "Give every use its own module (e.g. copy.deepcopy the activation) first")


def deeplift(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor,
             baseline: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepLIFT-Rescale attributions of the ``target`` logit with captum's ``DeepLift``.

    Args:
        model: a classifier (eval mode) returning logits (B, K); its ReLUs may be in place (switched off while
            this runs and restored), but no activation module may be called twice in one forward pass.
        x: images (B, C, H, W).
        target: class index (int or (B,) ints).
        baseline: the reference ``x'``: None (zeros), a number or a tensor broadcastable to ``x``.
    Returns:
        ``(attr, delta)``: attributions (B, C, H, W) and captum's convergence delta (B,),
        ``sum(attr) - (f(x) - f(x'))``: 0 up to rounding when every layer is linear or element-wise; captum's
        max-pooling rule does not conserve it exactly.
    """
    from captum.attr import DeepLift

    check_images(x)
    x = x.detach()
    if baseline is None:
        base = torch.zeros_like(x)
    elif isinstance(baseline, (int, float)):
        base = torch.full_like(x, float(baseline))
    else:
        base = baseline.detach().to(x).expand_as(x).contiguous()
    t = class_indices(target, x.shape[0], None, x.device)
    _check_no_reused_relu(model, x)
    with relu_not_inplace(model), torch.enable_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting forward, backward hooks")  # captum's notice
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
        attr, delta = DeepLift(model).attribute(x.clone().requires_grad_(True), base, target=t,
                                                return_convergence_delta=True)
    return attr.detach(), delta.detach().reshape(-1)


def gradient_shap(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor,
                  baselines: torch.Tensor, n_samples: int = 32, stdev: float = 0.0, seed: int = 0,
                  batch_size: int = 256) -> torch.Tensor:
    """GradientSHAP / expected gradients: the Monte-Carlo mean over ``n_samples`` draws per image of
    ``(x + e - x') * grad f(x' + a (x + e - x'))`` with ``x'`` drawn uniformly from ``baselines``,
    ``a ~ U(0, 1)`` and ``e ~ N(0, stdev^2)`` (per pixel).

    Args:
        model: a classifier returning logits (B, K).
        x: images (B, C, H, W).
        target: class index (int or (B,) ints).
        baselines: (K, C, H, W) reference images (K = 1: a single baseline).
        n_samples: draws per image; the error falls like ``1 / sqrt(n_samples)``.
        stdev: the Gaussian noise added to the input (captum's ``stdevs``; 0: none).
        seed: seeds the draws (one generator on ``x``'s device).
        batch_size: at most this many path points per forward pass.
    Returns:
        (B, C, H, W) attributions; in expectation ``sum = f(x) - mean_k f(x'_k)`` when ``stdev = 0``.
    """
    check_images(x)
    check_images(baselines, "baselines")
    if baselines.shape[1:] != x.shape[1:]:
        raise ValueError(f"baselines must be (K, {', '.join(map(str, x.shape[1:]))}), got {tuple(baselines.shape)}")
    if n_samples < 1 or stdev < 0:
        raise ValueError(f"n_samples must be >= 1 and stdev >= 0, got {n_samples} and {stdev}")
    x = x.detach()
    b, k = x.shape[0], baselines.shape[0]
    t = class_indices(target, b, None, x.device)
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    # all draws first (so the result does not depend on batch_size): (B, n) indices and alphas, noise per draw
    idx = torch.randint(0, k, (b, n_samples), generator=gen, device=x.device)
    alpha = torch.rand(b, n_samples, generator=gen, device=x.device, dtype=x.dtype)
    noise = (torch.randn((b, n_samples, *x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype) * stdev
             if stdev > 0 else None)
    flat_img = torch.arange(b, device=x.device).repeat_interleave(n_samples)
    flat_base = baselines.detach().to(x)[idx.reshape(-1)]
    flat_alpha = alpha.reshape(-1)
    total = torch.zeros_like(x)
    for start in range(0, b * n_samples, batch_size):
        sl = slice(start, start + batch_size)
        xi = x[flat_img[sl]]
        if noise is not None:
            xi = xi + noise.reshape(-1, *x.shape[1:])[sl]
        diff = xi - flat_base[sl]
        a = flat_alpha[sl].view(-1, *([1] * (x.ndim - 1)))
        grads = input_gradients(model, flat_base[sl] + a * diff, t[flat_img[sl]])
        total.index_add_(0, flat_img[sl], diff * grads)
    return total / n_samples


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a - b|| / ||b||`` per image (L2 over all but the first dimension): (B, ...) x2 -> (B,)."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-12)


def summation_gap(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor,
                  attr: torch.Tensor, baselines: torch.Tensor) -> torch.Tensor:
    """``sum(attr) - (f(x) - mean_k f(x'_k))`` per image, (B,): how far attributions are from adding up to the
    logit's change from the (mean) baseline logit. ``baselines`` (K, C, H, W) or (B, C, H, W) with K = B."""
    t = class_indices(target, x.shape[0], None, x.device)
    with torch.no_grad():
        fx = target_logits(model, x.detach(), t)
        fb = torch.stack([target_logits(model, baselines[j:j + 1].expand_as(x), t) for j in range(len(baselines))])
    return attr.detach().flatten(1).sum(1) - (fx - fb.mean(0))
