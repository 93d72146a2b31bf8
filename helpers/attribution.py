"""Gradient-based feature attribution: the course's reference implementations (notebook 03).

Every method is batched and model-agnostic: ``x`` is a float tensor of images ``(B, C, H, W)`` in the model's input
space (normalised), ``target`` is an int (the same class for every image) or a ``(B,)`` tensor / list of class
indices, and every method returns attributions of the input's shape ``(B, C, H, W)``. The model must return logits
``(B, K)``; put it in ``eval()`` mode first (dropout and batch-norm statistics would otherwise change the maps).

Methods (each tested against captum in ``tests/test_attribution.py``):

* :func:`saliency` -- ``|d f_c / d x|`` (Simonyan et al., 2014); :func:`gradient_x_input` -- ``x * d f_c / d x``;
* :func:`smoothgrad` -- gradients averaged over noisy copies ``x + N(0, sigma^2)`` with ``sigma = noise_level *
  (max(x) - min(x))`` per image; variants ``"mean"`` (SmoothGrad), ``"squared"`` (SmoothGrad^2) and ``"vargrad"``
  (Smilkov et al., 2017; Adebayo et al., 2018);
* :func:`integrated_gradients` -- ``(x - x') * int_0^1 grad f(x' + a (x - x')) da`` with captum's quadrature rules
  plus the exact composite ``"trapezoid"`` rule (Sundararajan et al., 2017); baselines :func:`black_baseline`,
  :func:`zero_baseline`, :func:`blurred_baseline`, :func:`uniform_baseline`; :func:`expected_ig` averages IG over
  random baselines; :func:`completeness_error` / :func:`ig_completeness_error` measure the completeness axiom;
* :func:`guided_backprop` and :func:`deconvnet` via the context manager :func:`modified_relu_backward`
  (Springenberg et al., 2015; Zeiler & Fergus, 2014);
* from an attribution to a displayable map: :func:`aggregate_channels`, :func:`clip_percentile`,
  :func:`normalize_attribution` (defined in :mod:`helpers.maps`, re-exported here); the figure of one map is
  :func:`helpers.plotting.show_attribution`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .hooks import forward_hook, relu_not_inplace
from .maps import AGGREGATIONS, aggregate_channels, clip_percentile, normalize_attribution
from .validation import check_images

__all__ = [
    "IG_METHODS",
    "SMOOTHGRAD_VARIANTS",
    "forward_logits",
    "target_logits",
    "input_gradients",
    "saliency",
    "gradient_x_input",
    "smoothgrad_noise",
    "smoothgrad",
    "ig_weights",
    "integrated_gradients",
    "black_baseline",
    "zero_baseline",
    "blurred_baseline",
    "gaussian_blur",
    "uniform_baseline",
    "expected_ig",
    "completeness_error",
    "ig_completeness_error",
    "modified_relu_backward",
    "guided_backprop",
    "deconvnet",
    "AGGREGATIONS",
    "aggregate_channels",
    "clip_percentile",
    "normalize_attribution",
]

Target = int | Sequence[int] | torch.Tensor

#: Quadrature rules for :func:`integrated_gradients`. The ``riemann_*`` and ``gausslegendre`` rules use exactly
#: captum's nodes and weights (note: captum's ``riemann_trapezoid`` weights sum to ``1 - 1/steps``, not 1);
#: ``"trapezoid"`` is the exact composite trapezoid rule on ``linspace(0, 1, steps)`` (weights sum to 1).
IG_METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre", "trapezoid")
SMOOTHGRAD_VARIANTS = ("mean", "squared", "vargrad")


# ------------------------------------------------------------------------------------------------------------------
# Input validation and the gradient primitive
# ------------------------------------------------------------------------------------------------------------------


def class_indices(target: Target, batch: int, num_classes: int | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Class indices as a ``(B,)`` long tensor on ``device``, from an int (the same class for every image) or B ints.

    Checks the type (no bools, no floats), the count (1 or ``batch``) and, given ``num_classes``, the range.
    Shared by the gradient methods here and by ``helpers.cam``.
    """
    if isinstance(target, bool):
        raise TypeError("target must be an int class index or a (B,) tensor of indices, not a bool")
    if isinstance(target, (int, np.integer)):
        t = torch.full((batch,), int(target), dtype=torch.long, device=device)
    else:
        t = torch.as_tensor(target, device=device)
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
        t = t.long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(batch)
        if t.numel() != batch:
            raise ValueError(f"got {t.numel()} targets for a batch of {batch} images")
    if num_classes is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"target {t.tolist()} out of range for a model with {num_classes} classes")
    return t


def forward_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` checked to be logits of shape ``(B, K)``."""
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return logits of shape (B, K) = ({x.shape[0]}, K), got {shape}")
    return out


def target_logits(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """The target class's logit for every image: ``(B, C, H, W) -> (B,)``."""
    check_images(x)
    out = forward_logits(model, x)
    t = class_indices(target, x.shape[0], out.shape[1], out.device)
    return out.gather(1, t[:, None]).squeeze(1)


def input_gradients(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """``d f_target(x) / d x`` for every image: ``(B, C, H, W) -> (B, C, H, W)``.

    The images are independent (the model must not mix the batch, i.e. be in eval mode), so the gradient of the
    summed target logits gives every image its own gradient in one backward pass. Parameter ``.grad`` fields are
    not touched.
    """
    check_images(x)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logits = target_logits(model, xg, target)
        (grad,) = torch.autograd.grad(logits.sum(), xg)
    return grad


# ------------------------------------------------------------------------------------------------------------------
# Saliency, gradient x input, SmoothGrad
# ------------------------------------------------------------------------------------------------------------------


def saliency(model: nn.Module, x: torch.Tensor, target: Target, abs: bool = True) -> torch.Tensor:  # noqa: A002
    """Vanilla gradient / saliency map (Simonyan et al., 2014): ``|d f_c / d x|`` (``abs=False``: the signed
    gradient). ``(B, C, H, W) -> (B, C, H, W)``; same as ``captum.attr.Saliency(model).attribute(x, target, abs)``."""
    grad = input_gradients(model, x, target)
    return grad.abs() if abs else grad


def gradient_x_input(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Gradient x input: ``x * d f_c / d x`` (elementwise). ``(B, C, H, W) -> (B, C, H, W)``; same as captum's
    ``InputXGradient``. It equals Integrated Gradients with a zero baseline for a linear model."""
    return x.detach() * input_gradients(model, x, target)


def smoothgrad_noise(x: torch.Tensor, n_samples: int, seed: int = 0) -> torch.Tensor:
    """Standard normal noise ``(n_samples, B, C, H, W)`` for :func:`smoothgrad`, drawn from a generator seeded with
    ``seed``. The draws are made as captum makes them (float32, image-major: ``B * n_samples`` copies), so
    ``torch.manual_seed(seed)`` before ``captum.attr.NoiseTunnel(...).attribute(x, stdevs=sigma, ...)`` sees the
    same noise."""
    check_images(x)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    b = x.shape[0]
    noise = torch.randn((b * n_samples, *x.shape[1:]), generator=gen, device=x.device, dtype=torch.float32)
    return noise.to(x.dtype).view(b, n_samples, *x.shape[1:]).transpose(0, 1)


def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    n_samples: int = 25,
    noise_level: float = 0.15,
    variant: str = "mean",
    seed: int = 0,
    noise: torch.Tensor | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al., 2017): average the gradient over noisy copies of each image.

    ``g_k = d f_c / d x`` at ``x + sigma * eps_k`` with ``eps_k ~ N(0, I)`` and, per image, ``sigma = noise_level *
    (max(x) - min(x))``. ``variant``: ``"mean"`` -> ``mean_k g_k`` (SmoothGrad), ``"squared"`` -> ``mean_k g_k^2``
    (SmoothGrad^2), ``"vargrad"`` -> ``mean_k g_k^2 - (mean_k g_k)^2`` (the variance, VarGrad). Signed gradients are
    averaged (take ``.abs()`` to display ``"mean"``). ``noise``: optional fixed standard normal noise ``(n_samples,
    B, C, H, W)`` (default: :func:`smoothgrad_noise` with ``seed``). ``batch_size``: images per forward pass.

    ``(B, C, H, W) -> (B, C, H, W)``; equals ``captum.attr.NoiseTunnel(Saliency(model)).attribute(x, nt_type=...,
    nt_samples=n_samples, stdevs=sigma, target=target, abs=False)`` with the same noise (see the tests).
    """
    check_images(x)
    if variant not in SMOOTHGRAD_VARIANTS:
        raise ValueError(f"unknown SmoothGrad variant {variant!r}; choose one of {SMOOTHGRAD_VARIANTS}")
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0 (a fraction of the input range), got {noise_level}")
    if noise is None:
        noise = smoothgrad_noise(x, n_samples, seed)
    elif noise.ndim != 5 or noise.shape[1:] != x.shape:
        raise ValueError(f"noise must have shape (n_samples, *x.shape) = (n, {', '.join(map(str, x.shape))}), "
                         f"got {tuple(noise.shape)}")
    n, b = noise.shape[0], x.shape[0]
    x = x.detach()
    span = x.flatten(1).amax(1) - x.flatten(1).amin(1)
    sigma = (noise_level * span).view(1, b, 1, 1, 1)
    noisy = (x.unsqueeze(0) + sigma * noise.to(x)).reshape(n * b, *x.shape[1:])
    t = target
    if not isinstance(target, (int, np.integer)):
        t = torch.as_tensor(target, device=x.device).reshape(-1)
        t = (t.expand(b) if t.numel() == 1 else t).repeat(n)  # noisy copies are ordered (n, B)
    per = max(1, batch_size)
    grads = torch.cat([input_gradients(model, noisy[i:i + per], t if isinstance(t, (int, np.integer))
                                       else t[i:i + per]) for i in range(0, n * b, per)])
    grads = grads.view(n, b, *x.shape[1:])
    mean = grads.mean(0)
    if variant == "mean":
        return mean
    sq = (grads * grads).mean(0)
    return sq if variant == "squared" else sq - mean * mean


# ------------------------------------------------------------------------------------------------------------------
# Integrated Gradients and baselines
# ------------------------------------------------------------------------------------------------------------------


def ig_weights(steps: int, method: str = "gausslegendre") -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature nodes ``alphas`` in [0, 1] and weights for ``int_0^1 g(a) da ~ sum_k w_k g(a_k)``; float64
    ``(steps,)`` tensors. The captum names give captum's nodes and weights; ``"trapezoid"`` the exact rule."""
    if method not in IG_METHODS:
        raise ValueError(f"unknown integration method {method!r}; choose one of {IG_METHODS}")
    if method == "gausslegendre":
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        nodes, w = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * w)
    if steps < 2:
        raise ValueError(f"steps must be >= 2 for {method!r}, got {steps}")
    n = steps
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    # captum computes the Riemann nodes with float32 linspace; we do the same so that the path points agree to the
    # last bit (a one-ulp difference can flip a ReLU or a max-pool winner and change a gradient noticeably).
    if method == "riemann_left":
        a = torch.linspace(0, 1 - 1 / n, n, dtype=torch.float32)
    elif method == "riemann_right":
        a = torch.linspace(1 / n, 1, n, dtype=torch.float32)
    elif method == "riemann_middle":
        a = torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n, dtype=torch.float32)
    else:  # the two trapezoid rules share the nodes
        a = torch.linspace(0, 1, n, dtype=torch.float32)
        if method == "trapezoid":
            w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        w[0] /= 2
        w[-1] /= 2
    return a.double(), w


def _broadcast_baseline(baseline: torch.Tensor | float | None, x: torch.Tensor) -> torch.Tensor:
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float)):
        return torch.full_like(x, float(baseline))
    if not isinstance(baseline, torch.Tensor):
        raise TypeError(f"baseline must be None, a number or a tensor, got {type(baseline).__name__}")
    try:
        return baseline.detach().to(x).expand_as(x)
    except RuntimeError as exc:
        raise ValueError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to the input's shape "
                         f"{tuple(x.shape)}") from exc


def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    baseline: torch.Tensor | float | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al., 2017):
    ``IG_i(x) = (x_i - x'_i) * int_0^1 d f_c(x' + a (x - x')) / d x_i da``, the integral approximated with
    ``steps`` quadrature nodes (:func:`ig_weights`; default: Gauss-Legendre, captum's default).

    ``baseline`` x': ``None`` (zeros), a number, or a tensor broadcastable to ``x`` (e.g. ``(1, C, H, W)`` or
    ``(B, C, H, W)``). ``internal_batch_size``: at most this many images per forward pass (default: the whole batch
    of ``steps * B`` path points). ``(B, C, H, W) -> (B, C, H, W)``; equals ``captum.attr.IntegratedGradients(model)
    .attribute(x, baseline, target, n_steps=steps, method=method)`` for the captum method names.
    """
    check_images(x)
    x = x.detach()
    base = _broadcast_baseline(baseline, x)
    alphas, weights = ig_weights(steps, method)
    b = x.shape[0]
    if not isinstance(target, (int, np.integer)):
        target = torch.as_tensor(target, device=x.device).reshape(-1)
        if target.numel() == 1:
            target = target.expand(b)
    per_pass = steps if internal_batch_size is None else max(1, internal_batch_size // b)
    diff = x - base
    total = torch.zeros_like(x)
    for start in range(0, steps, per_pass):
        a = alphas[start:start + per_pass].to(x)
        k = a.shape[0]
        path = (base.unsqueeze(0) + a.view(k, 1, 1, 1, 1) * diff.unsqueeze(0)).reshape(k * b, *x.shape[1:])
        t = target if isinstance(target, (int, np.integer)) else target.repeat(k)
        grads = input_gradients(model, path, t).view(k, b, *x.shape[1:])
        total += torch.tensordot(weights[start:start + k].to(x), grads, dims=1)
    return diff * total


def _pixel_to_input(pixels: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> torch.Tensor:
    """Map images in pixel space [0, 1] to the model's input space ``(p - mean) / std`` (identity if no mean/std)."""
    if mean is None and std is None:
        return pixels
    c = pixels.shape[1]
    m = torch.as_tensor(mean if mean is not None else [0.0] * c, dtype=pixels.dtype, device=pixels.device)
    s = torch.as_tensor(std if std is not None else [1.0] * c, dtype=pixels.dtype, device=pixels.device)
    if m.numel() != c or s.numel() != c:
        raise ValueError(f"mean and std need {c} values (one per channel), got {m.numel()} and {s.numel()}")
    return (pixels - m.view(1, c, 1, 1)) / s.view(1, c, 1, 1)


def black_baseline(x: torch.Tensor, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> torch.Tensor:
    """The black image (pixel value 0) in the model's input space: ``(0 - mean) / std`` per channel, NOT the zero
    tensor when the model takes normalised inputs. ``(B, C, H, W) -> (B, C, H, W)``."""
    check_images(x)
    return _pixel_to_input(torch.zeros_like(x), mean, std)


def zero_baseline(x: torch.Tensor) -> torch.Tensor:
    """The zero tensor in the model's input space (for a normalised input: the dataset's mean colour, a grey)."""
    check_images(x)
    return torch.zeros_like(x)


def gaussian_blur(x: torch.Tensor, sigma: float, kernel_size: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding, per channel. ``kernel_size`` defaults to ``2 * ceil(3 sigma) +
    1`` (capped so the padding fits the image). ``(B, C, H, W) -> (B, C, H, W)``; equals torchvision's
    ``gaussian_blur(x, kernel_size, sigma)``."""
    check_images(x)
    if sigma <= 0:
        return x.clone()
    if kernel_size is None:
        kernel_size = 2 * math.ceil(3 * sigma) + 1
        kernel_size = min(kernel_size, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)
    if kernel_size % 2 == 0 or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    r = kernel_size // 2
    if r >= min(x.shape[-2:]):
        raise ValueError(f"kernel_size {kernel_size} too large for an image of size {tuple(x.shape[-2:])}")
    t = torch.linspace(-r, r, kernel_size, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    out = F.pad(x, (r, r, r, r), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def blurred_baseline(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """A heavily blurred copy of the image (Sturmfels et al., 2020): keeps the colours, removes edges and texture.
    ``sigma`` in pixels (default: a tenth of the image size). Blurring commutes with the per-channel normalisation,
    so blur the normalised input directly. ``(B, C, H, W) -> (B, C, H, W)``."""
    check_images(x)
    if sigma is None:
        sigma = max(x.shape[-2:]) / 10
    return gaussian_blur(x.detach(), sigma)


def uniform_baseline(x: torch.Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     seed: int | None = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise images: every pixel ~ U[0, 1] in pixel space, then normalised with ``mean``/``std``.
    Pass ``generator`` to continue a stream (as :func:`expected_ig` does), else one is seeded with ``seed``.
    ``(B, C, H, W) -> (B, C, H, W)``."""
    check_images(x)
    if generator is None:
        generator = torch.Generator(device=x.device)
        if seed is not None:
            generator.manual_seed(int(seed))
        else:
            generator.seed()
    pixels = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return _pixel_to_input(pixels, mean, std)


def expected_ig(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    n_baselines: int = 8,
    sampler: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    steps: int = 16,
    method: str = "gausslegendre",
    seed: int = 0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    internal_batch_size: int | None = None,
    return_baselines: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated Gradients averaged over ``n_baselines`` random baselines, each drawn anew per trial from one
    generator seeded with ``seed``. With the default uniform-noise baselines this is the averaged noise baseline
    of Sturmfels et al. (2020); Expected Gradients (Erion et al., 2021) instead draws the baselines from the data
    (pass a ``sampler`` that returns training images) and also samples the position on the path.

    ``sampler(x, generator) -> baseline (B, C, H, W)``; default: :func:`uniform_baseline` with ``mean``/``std``.
    Returns the mean attribution ``(B, C, H, W)``, plus the baselines ``(n_baselines, B, C, H, W)`` when
    ``return_baselines``. Completeness holds on average: ``sum(attr) = f(x) - mean_k f(x'_k)``.
    """
    check_images(x)
    if n_baselines < 1:
        raise ValueError(f"n_baselines must be >= 1, got {n_baselines}")
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    if sampler is None:
        def sampler(inp: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return uniform_baseline(inp, mean, std, generator=g)
    total = torch.zeros_like(x)
    baselines = []
    for _ in range(n_baselines):
        base = _broadcast_baseline(sampler(x, gen), x)
        baselines.append(base)
        total += integrated_gradients(model, x, target, base, steps, method, internal_batch_size)
    attr = total / n_baselines
    return (attr, torch.stack(baselines)) if return_baselines else attr


def completeness_error(model: nn.Module, x: torch.Tensor, target: Target, baseline: torch.Tensor | float | None,
                       attr: torch.Tensor) -> torch.Tensor:
    """Relative violation of completeness for given attributions, per image:
    ``|sum_i attr_i - (f(x) - f(x'))| / |f(x) - f(x')|`` with ``f`` the target logit. ``(B,)``."""
    check_images(x)
    if attr.shape != x.shape:
        raise ValueError(f"attr must have the input's shape {tuple(x.shape)}, got {tuple(attr.shape)}")
    base = _broadcast_baseline(baseline, x.detach())
    with torch.no_grad():
        delta = target_logits(model, x.detach(), target) - target_logits(model, base, target)
    total = attr.detach().flatten(1).sum(1)
    return (total - delta).abs() / delta.abs().clamp_min(1e-12)


def ig_completeness_error(
    model: nn.Module,
    x: torch.Tensor,
    target: Target,
    baseline: torch.Tensor | float | None = None,
    steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Relative violation of IG's completeness axiom, per image: ``|sum_i IG_i - (f(x) - f(x'))| / |f(x) - f(x')|``
    (``f`` the target logit). ``(B, C, H, W) -> (B,)``; it shrinks as ``steps`` grows."""
    attr = integrated_gradients(model, x, target, baseline, steps, method, internal_batch_size)
    return completeness_error(model, x, target, baseline, attr)


# ------------------------------------------------------------------------------------------------------------------
# Guided Backprop and Deconvnet
# ------------------------------------------------------------------------------------------------------------------


class _ModifiedReLU(torch.autograd.Function):
    """ReLU in the forward pass; in the backward pass ``relu(g) * (x > 0)`` (guided) or ``relu(g)`` (deconvnet)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mode: str) -> torch.Tensor:  # type: ignore[override]
        out = x.clamp(min=0)
        ctx.mode = mode
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (out,) = ctx.saved_tensors
        g = grad.clamp(min=0)
        if ctx.mode == "guided":
            g = g * (out > 0)
        return g, None


@contextmanager
def modified_relu_backward(model: nn.Module, mode: str = "guided") -> Iterator[nn.Module]:
    """While open, every ``nn.ReLU`` module of ``model`` computes ``relu(x)`` forward but backpropagates
    ``relu(g) * (x > 0)`` (``mode="guided"``: Guided Backprop) or ``relu(g)`` (``mode="deconvnet"``).

    Implementation: a forward hook replaces the module's output by a custom autograd function of its input. A ReLU
    module used several times in one forward pass (torchvision ResNets) is hooked once and works at every use;
    ``inplace=True`` is switched off while the context is open (an in-place ReLU would overwrite the input the hook
    needs). On exit -- also after an exception -- the hooks are removed and ``inplace`` restored. ReLUs applied as
    functions (``F.relu``, ``torch.relu``) are NOT modified: such models need ``nn.ReLU`` modules.
    """
    if mode not in ("guided", "deconvnet"):
        raise ValueError(f"unknown mode {mode!r}; choose 'guided' or 'deconvnet'")
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("the model has no nn.ReLU modules; guided backprop / deconvnet would equal the plain "
                         "gradient (ReLUs applied with F.relu cannot be hooked)")

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return _ModifiedReLU.apply(inputs[0], mode)

    with relu_not_inplace(model), contextlib.ExitStack() as hooks:
        for m in relus:
            hooks.enter_context(forward_hook(m, hook))
        yield model


def guided_backprop(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Guided Backpropagation (Springenberg et al., 2015): the gradient with every ReLU backpropagating only
    positive signals at positive inputs. ``(B, C, H, W) -> (B, C, H, W)``; equals captum's ``GuidedBackprop``."""
    with modified_relu_backward(model, "guided"):
        return input_gradients(model, x, target)


def deconvnet(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Deconvnet (Zeiler & Fergus, 2014): the backward pass with every ReLU applied to the gradient instead of
    masked by the forward input. ``(B, C, H, W) -> (B, C, H, W)``; equals captum's ``Deconvolution``."""
    with modified_relu_backward(model, "deconvnet"):
        return input_gradients(model, x, target)
