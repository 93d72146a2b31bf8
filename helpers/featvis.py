"""Feature visualisation: optimise an input image so that a unit of a network responds strongly (notebook 06).

The pieces, each small enough to read in one go:

* **parameterisations** (:class:`ImageParam`): the image is a function of free parameters, either one value per
  pixel (``"pixel"``) or a spectrum scaled by ``1 / frequency`` (``"fourier"``, Olah et al. 2017), optionally with
  decorrelated colours; a sigmoid keeps every pixel in (0, 1). ``ImageParam()`` returns (B, 3, H, W).
* **transforms** (:class:`Pad`, :class:`Jitter`, :class:`RandomScale`, :class:`RandomRotate`, :class:`Resize`):
  random, differentiable changes applied at every step, so that the image must work under small shifts, zooms and
  rotations ("transformation robustness"). Each takes (B, 3, H, W) and a ``torch.Generator``.
* **regularisers** (:func:`l2_penalty`, :func:`total_variation`, :func:`blur_penalty`): (B, 3, H, W) -> (B,).
* **objectives** (:class:`Objective`: :func:`channel`, :func:`neuron`, :func:`class_logit`, :func:`layer_l2`
  (DeepDream), :func:`direction`, :func:`diversity`): functions of the recorded activations, (B,) scores to
  *maximise*; they add, subtract and scale (``channel(...) - 0.5 * diversity(...)``).
* the loop :func:`render` (Adam on the parameters), one plain gradient-ascent step :func:`ascent_step`
  (exercise 6.2), and :func:`record_activations`, a context manager whose forward hooks are removed on exit.
* **dataset examples**: :func:`top_k_examples` (exercise 6.3), :func:`dataset_examples`, :func:`crop_examples`.
* **lucent** (torch-lucent 0.1.8): :func:`lucent_transforms` (its standard transforms with the ``random_scale``
  reported to break on torch >= 2.1 replaced), :func:`lucent_render` (``render_vis`` with that list, its leaked hooks
  removed, seeded, cached per session) and :func:`load_inceptionv1` (random weights with ``XAI_OFFLINE=1``).

Activations of token models (ViTs: (B, T, D)) are turned into maps (B, D, g, g) by :func:`to_spatial`, so the
channel and neuron objectives and the dataset examples work on both families.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import env
from .validation import check_images

__all__ = [
    "IMAGENET_COLOR_SQRT",
    "color_sqrt",
    "ImageParam",
    "Pad",
    "Jitter",
    "RandomScale",
    "RandomRotate",
    "Resize",
    "standard_transforms",
    "l2_penalty",
    "total_variation",
    "blur_penalty",
    "to_spatial",
    "Objective",
    "channel",
    "neuron",
    "class_logit",
    "layer_l2",
    "direction",
    "diversity",
    "record_activations",
    "evaluate",
    "transform_robustness",
    "high_frequency_fraction",
    "RenderResult",
    "render",
    "ascent_step",
    "top_k_examples",
    "DatasetExamples",
    "dataset_examples",
    "crop_examples",
    "lucent_transforms",
    "lucent_render",
    "lucent_deepdream",
    "load_inceptionv1",
    "inceptionv1_preprocess",
]

Tensor = torch.Tensor

# ------------------------------------------------------------------------------------------------------------------
# Parameterisations
# ------------------------------------------------------------------------------------------------------------------

#: The square root of ImageNet's colour covariance as Lucid (Olah et al. 2017) publishes it (columns: directions
#: in RGB space scaled by the square root of their variance).
IMAGENET_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])


def color_sqrt(images: Tensor) -> Tensor:
    """A square root ``S`` of the colour covariance of ``images`` (N, 3, H, W) in [0, 1]: ``S @ S.T = cov``, with
    ``S = U diag(sqrt(lambda))`` from the eigendecomposition. Returns (3, 3) float32. Use it as
    ``ImageParam(..., decorrelate=S)`` to decorrelate with a dataset's own colour statistics (e.g. CIFAR-10)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    px = images.detach().cpu().double().permute(0, 2, 3, 1).reshape(-1, 3)  # float64 on the CPU (none on MPS)
    if px.shape[0] < 4:
        raise ValueError("need at least 4 pixels to estimate a colour covariance")
    cov = torch.cov(px.T)
    evals, evecs = torch.linalg.eigh(cov)
    order = evals.argsort(descending=True)
    return (evecs[:, order] * evals[order].clamp(min=0).sqrt()).float().to(images.device)


class ImageParam(nn.Module):
    """A batch of images as a function of free parameters. ``forward() -> (B, 3, H, W)`` in (0, 1).

    * ``kind="pixel"``: one parameter per pixel and channel, image = sigmoid(colour(params)).
    * ``kind="fourier"``: parameters are the real and imaginary parts of a 2-D real spectrum (B, 3, H, W//2+1, 2),
      multiplied by ``1 / max(f, 1/max(H, W)) ** decay_power`` (f in cycles per pixel) before the inverse FFT
      (orthonormal), so that every frequency changes the image by a similar amount per unit of parameter: gradient
      steps are no longer dominated by high frequencies. Divided by 4, as Lucid does, to start unsaturated.
    * ``decorrelate``: ``False``; ``True`` (ImageNet's colour square root, :data:`IMAGENET_COLOR_SQRT`); or a (3, 3)
      matrix such as :func:`color_sqrt` of a dataset. The parameters then live in decorrelated colour space and
      are mapped to RGB by the matrix, normalised so that its largest column has norm 1.
    * ``sd``: standard deviation of the random initialisation; ``seed`` makes it reproducible.
    """

    def __init__(self, size: int | tuple[int, int], batch: int = 1, kind: str = "fourier",
                 decorrelate: bool | Tensor = True, sd: float = 0.01, decay_power: float = 1.0, seed: int = 0,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        h, w = (size, size) if isinstance(size, int) else size
        if h < 2 or w < 2 or batch < 1:
            raise ValueError(f"need size >= 2 and batch >= 1, got size={size!r}, batch={batch}")
        if kind not in ("pixel", "fourier"):
            raise ValueError(f"unknown parameterisation {kind!r}; use 'pixel' or 'fourier'")
        self.kind, self.size, self.batch = kind, (h, w), batch
        gen = torch.Generator().manual_seed(seed)
        if kind == "pixel":
            self.raw = nn.Parameter(torch.randn(batch, 3, h, w, generator=gen) * sd)
            self.register_buffer("scale", torch.ones(()))
        else:
            fy = torch.fft.fftfreq(h)[:, None]
            fx = torch.fft.rfftfreq(w)[None, :]
            freqs = torch.sqrt(fx**2 + fy**2)  # (H, W//2+1)
            scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w)) ** decay_power
            self.raw = nn.Parameter(torch.randn(batch, 3, h, w // 2 + 1, 2, generator=gen) * sd)
            self.register_buffer("scale", scale[None, None, :, :, None].float())
        if decorrelate is True:
            matrix: Tensor | None = IMAGENET_COLOR_SQRT.clone()
        elif decorrelate is False or decorrelate is None:
            matrix = None
        else:
            matrix = torch.as_tensor(decorrelate, dtype=torch.float32)
            if matrix.shape != (3, 3):
                raise ValueError(f"decorrelate must be a bool or a (3, 3) matrix, got shape {tuple(matrix.shape)}")
        if matrix is not None:
            matrix = matrix / matrix.norm(dim=0).max()
        self.register_buffer("color", matrix)
        if device is not None:
            self.to(device)

    def linear(self) -> Tensor:
        """The image before the sigmoid: (B, 3, H, W), in decorrelated space mapped to RGB."""
        if self.kind == "pixel":
            x = self.raw
        else:
            spec = torch.view_as_complex((self.scale * self.raw).contiguous())
            x = torch.fft.irfft2(spec, s=self.size, norm="ortho") / 4.0
        if self.color is not None:
            x = torch.einsum("dc,bchw->bdhw", self.color, x)
        return x

    def forward(self) -> Tensor:
        return torch.sigmoid(self.linear())


# ------------------------------------------------------------------------------------------------------------------
# Transforms: (B, C, H, W) and a generator -> (B, C, H', W')
# ------------------------------------------------------------------------------------------------------------------


def _randint(low: int, high: int, gen: torch.Generator) -> int:
    """An int in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=gen).item())


def _choice(values: Sequence[float], gen: torch.Generator) -> float:
    return float(values[int(torch.randint(len(values), (1,), generator=gen).item())])


@dataclass(frozen=True)
class Pad:
    """Constant padding by ``width`` pixels on every side (value 0.5: grey), so jitter and rotation do not always
    move the same border pixels out of view."""

    width: int
    value: float = 0.5

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:  # noqa: ARG002
        return F.pad(x, [self.width] * 4, mode="constant", value=self.value)


@dataclass(frozen=True)
class Jitter:
    """A random circular shift by (dy, dx), each an integer in [-d, d] (``torch.roll``)."""

    d: int

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        if self.d <= 0:
            return x
        dy, dx = _randint(-self.d, self.d, gen), _randint(-self.d, self.d, gen)
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@dataclass(frozen=True)
class RandomScale:
    """Bilinear zoom by a factor drawn from ``scales`` (the output size is rounded up to whole pixels)."""

    scales: tuple[float, ...]

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        s = _choice(self.scales, gen)
        h, w = x.shape[-2:]
        size = (int(math.ceil(s * h)), int(math.ceil(s * w)))  # Python ints: what nn.Upsample/interpolate need
        if size == (h, w):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


@dataclass(frozen=True)
class RandomRotate:
    """Rotation about the centre by an angle (degrees) drawn from ``angles``; pixels from outside are 0."""

    angles: tuple[float, ...]

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        a = math.radians(_choice(self.angles, gen))
        if a == 0:
            return x
        cos, sin = math.cos(a), math.sin(a)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class Resize:
    """Bilinear resize to ``size`` x ``size`` (e.g. back to the 32 px a ViT's position embedding expects)."""

    size: int

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:  # noqa: ARG002
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)


def standard_transforms(size: int = 128) -> list[Callable[[Tensor, torch.Generator], Tensor]]:
    """Lucid's standard robustness transforms scaled to an image of ``size`` px (Lucid's are for 128 px): pad 12,
    jitter 8, scale 0.9..1.1, rotate -10..10 degrees (0 five times more likely), jitter 4 -- the pixel amounts
    times ``size / 128``, at least 1."""
    f = size / 128
    px = [max(1, round(v * f)) for v in (12, 8, 4)]
    return [
        Pad(px[0]),
        Jitter(px[1]),
        RandomScale(tuple(1 + (i - 5) / 50 for i in range(11))),
        RandomRotate(tuple(range(-10, 11)) + (0,) * 5),
        Jitter(px[2]),
    ]


# ------------------------------------------------------------------------------------------------------------------
# Regularisers: (B, 3, H, W) -> (B,), to be SUBTRACTED from the objective with a weight
# ------------------------------------------------------------------------------------------------------------------


def _check_images(x: Tensor) -> None:
    check_images(x, "images", floating=False)


def l2_penalty(x: Tensor, center: float = 0.5) -> Tensor:
    """Squared distance from a grey image: ``sum (x - center)^2`` per image. (B, C, H, W) -> (B,)."""
    _check_images(x)
    return ((x - center) ** 2).sum(dim=(1, 2, 3))


def total_variation(x: Tensor, p: int = 1) -> Tensor:
    """Anisotropic total variation per image: the sum over channels and all vertically and horizontally adjacent
    pixel pairs (no wrap-around) of ``|x_a - x_b| ** p``; ``p=1`` (the default: absolute differences, edges stay
    sharp) or ``p=2`` (squared: smooths everything). (B, C, H, W) -> (B,)."""
    _check_images(x)
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (absolute) or 2 (squared), got {p!r}")
    dv = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs() ** p
    dh = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs() ** p
    return dv.sum(dim=(1, 2, 3)) + dh.sum(dim=(1, 2, 3))


def blur_penalty(x: Tensor, sigma: float = 1.0) -> Tensor:
    """``0.5 * sum (x - blur(x))^2`` per image with the blurred copy held constant: a gradient step on
    ``-weight * penalty`` moves the image a fraction ``weight`` towards its blur (Nguyen et al. 2015's blurring
    every step, as a penalty). (B, C, H, W) -> (B,)."""
    from .attribution import gaussian_blur

    _check_images(x)
    with torch.no_grad():
        blurred = gaussian_blur(x, sigma)
    return 0.5 * ((x - blurred) ** 2).sum(dim=(1, 2, 3))


# ------------------------------------------------------------------------------------------------------------------
# Objectives
# ------------------------------------------------------------------------------------------------------------------


def to_spatial(act: Tensor, num_prefix_tokens: int = 0) -> Tensor:
    """Activations as maps: (B, C, H, W) unchanged; ViT tokens (B, T, D) -> (B, D, g, g) after dropping the first
    ``num_prefix_tokens`` tokens (CLS), with ``g * g = T - num_prefix_tokens``; (B, C) -> (B, C, 1, 1)."""
    if act.ndim == 4:
        return act
    if act.ndim == 2:
        return act[:, :, None, None]
    if act.ndim == 3:
        t = act[:, num_prefix_tokens:]
        g = math.isqrt(t.shape[1])
        if g * g != t.shape[1]:
            raise ValueError(f"{t.shape[1]} tokens after dropping {num_prefix_tokens} prefix token(s) are not a "
                             "square grid; pass num_prefix_tokens= (1 for a CLS token)")
        return t.transpose(1, 2).reshape(act.shape[0], act.shape[2], g, g)
    raise ValueError(f"cannot read activations of shape {tuple(act.shape)} as maps")


@dataclass
class Objective:
    """A score to maximise, per image: ``fn(acts) -> (B,)`` where ``acts[name]`` is the output of the module
    ``name`` (``"logits"``: the model output; ``"input"``: the image the model saw). ``layers`` lists the names it
    needs. Objectives add, subtract, negate and scale by numbers."""

    fn: Callable[[dict[str, Tensor]], Tensor]
    layers: tuple[str, ...]
    name: str = "objective"

    def __call__(self, acts: dict[str, Tensor]) -> Tensor:
        return self.fn(acts)

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            return Objective(lambda a: self.fn(a) + other, self.layers, f"{self.name} + {other:g}")
        layers = tuple(dict.fromkeys(self.layers + other.layers))
        return Objective(lambda a: self.fn(a) + other.fn(a), layers, f"{self.name} + {other.name}")

    __radd__ = __add__

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, (int, float)):
            raise TypeError(f"an objective can only be scaled by a number, got {type(k).__name__}")
        return Objective(lambda a: k * self.fn(a), self.layers, f"{k:g} * {self.name}")

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self.fn(a), self.layers, f"-{self.name}")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other if isinstance(other, Objective) else -float(other))


def _check_index(i: int, n: int, what: str) -> None:
    if not 0 <= i < n:
        raise IndexError(f"{what} {i} out of range: the layer has {n}")


Index = int | Sequence[int]


def _pick(a: Tensor, index: Index, what: str) -> Tensor:
    """``a[:, index]`` for one index; for a sequence of B indices, image b takes ``a[b, index[b]]`` (one render of a
    batch then visualises B channels or classes at once). (B, C, ...) -> (B, ...)."""
    if isinstance(index, int):
        _check_index(index, a.shape[1], what)
        return a[:, index]
    idx = [int(i) for i in index]
    if len(idx) != a.shape[0]:
        raise ValueError(f"{len(idx)} {what} indices for a batch of {a.shape[0]} images: give one per image")
    for i in idx:
        _check_index(i, a.shape[1], what)
    return a[torch.arange(a.shape[0], device=a.device), torch.as_tensor(idx, device=a.device)]


def channel(layer: str, index: Index, num_prefix_tokens: int = 0) -> Objective:
    """The mean activation of channel ``index`` of ``layer`` over all positions (tokens: over the patch tokens).
    ``index`` a list of B channels: image b of the batch maximises channel ``index[b]``."""

    def fn(acts: dict[str, Tensor]) -> Tensor:
        a = to_spatial(acts[layer], num_prefix_tokens)
        return _pick(a, index, "channel").mean(dim=(1, 2))

    return Objective(fn, (layer,), f"channel {layer}:{index}")


def neuron(layer: str, index: Index, y: int | None = None, x: int | None = None,
           num_prefix_tokens: int = 0) -> Objective:
    """The activation of channel ``index`` at one position (default: the centre, ``h // 2, w // 2``)."""

    def fn(acts: dict[str, Tensor]) -> Tensor:
        a = to_spatial(acts[layer], num_prefix_tokens)
        yy = a.shape[2] // 2 if y is None else y
        xx = a.shape[3] // 2 if x is None else x
        return _pick(a[:, :, yy, xx], index, "channel")

    return Objective(fn, (layer,), f"neuron {layer}:{index}@({y},{x})")


def class_logit(index: Index) -> Objective:
    """The logit of class ``index`` (Simonyan et al. 2014's class model visualisation; the logit, not the
    probability, so that the image cannot win by suppressing the other classes). A list: one class per image."""

    def fn(acts: dict[str, Tensor]) -> Tensor:
        return _pick(acts["logits"], index, "class")

    return Objective(fn, ("logits",), f"logit {index}")


def layer_l2(layer: str) -> Objective:
    """DeepDream (Mordvintsev et al. 2015): the mean squared activation of the whole layer -- amplify whatever the
    layer already sees."""

    def fn(acts: dict[str, Tensor]) -> Tensor:
        a = acts[layer]
        return (a**2).flatten(1).mean(1)

    return Objective(fn, (layer,), f"deepdream {layer}")


def direction(layer: str, vector: Tensor, num_prefix_tokens: int = 0) -> Objective:
    """The mean cosine similarity between the activation vector at each position and ``vector`` (C,)."""

    def fn(acts: dict[str, Tensor]) -> Tensor:
        a = to_spatial(acts[layer], num_prefix_tokens)
        v = vector.to(a).view(1, -1, 1, 1)
        return F.cosine_similarity(a, v, dim=1).mean(dim=(1, 2))

    return Objective(fn, (layer,), f"direction {layer}")


def diversity(layer: str, num_prefix_tokens: int = 0) -> Objective:
    """Minus the mean cosine similarity of each image's Gram matrix (C x C, over positions) with those of the other
    images of the batch (Olah et al. 2017): maximising it pushes the images of a batch to differ in style. A batch
    of one image scores 0. Add it with a weight to another objective: ``channel(...) + 0.5 * diversity(...)``."""

    def fn(acts: dict[str, Tensor]) -> Tensor:
        a = to_spatial(acts[layer], num_prefix_tokens)
        b = a.shape[0]
        if b == 1:
            return a.new_zeros(1)
        flat = a.flatten(2)  # (B, C, P)
        grams = F.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)  # (B, C*C), unit norm
        sim = grams @ grams.T  # (B, B)
        off = sim.sum(1) - sim.diagonal()
        return -off / (b - 1)

    return Objective(fn, (layer,), f"diversity {layer}")


# ------------------------------------------------------------------------------------------------------------------
# Hooks and the optimisation loop
# ------------------------------------------------------------------------------------------------------------------


class _StopForward(Exception):
    """Raised by a hook once every requested layer is recorded, to skip the rest of the forward pass."""


def _resolve(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=4)
    raise KeyError(f"the model has no module named {name!r}" + (f"; did you mean {close}?" if close else
                   "; list them with [n for n, _ in model.named_modules()]"))


@contextlib.contextmanager
def record_activations(model: nn.Module, layers: Sequence[str],
                       stop_early: bool = False) -> Iterator[dict[str, Tensor]]:
    """While open, every forward pass of ``model`` stores the output of each module named in ``layers`` (names from
    ``model.named_modules()``; ``"logits"`` and ``"input"`` are skipped: :func:`render` fills them) in the yielded
    dict. ``stop_early=True``: once all are recorded the forward pass is aborted (``_StopForward``, caught by
    :func:`render` / :func:`evaluate`), which saves the layers after the last one needed. The hooks are removed on
    exit, also after an exception. Tuple outputs keep their first element. While open, ``inplace=True`` is
    switched off on every ``nn.ReLU`` of the model (restored on exit): an in-place ReLU after a recorded layer (the
    course CNN's conv-BN-ReLU blocks) would otherwise overwrite the recorded pre-ReLU activation."""
    names = [n for n in dict.fromkeys(layers) if n not in ("logits", "input")]
    modules = {n: _resolve(model, n) for n in names}
    acts: dict[str, Tensor] = {}
    handles = []
    inplace = {m: m.inplace for m in model.modules() if isinstance(m, nn.ReLU)}

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:  # noqa: ARG001
            acts[name] = output[0] if isinstance(output, (tuple, list)) else output
            if stop_early and all(n in acts for n in names):
                raise _StopForward

        return hook

    try:
        for m in inplace:
            m.inplace = False
        for n, m in modules.items():
            handles.append(m.register_forward_hook(make_hook(n)))
        yield acts
    finally:
        for h in handles:
            h.remove()
        for m, flag in inplace.items():
            m.inplace = flag


@contextlib.contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Parameters without gradients while open (the image is optimised, not the model); restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _identity(x: Tensor) -> Tensor:
    return x


def _forward(model: nn.Module, objective: Objective, x: Tensor, preprocess: Callable[[Tensor], Tensor],
             acts: dict[str, Tensor], stop_early: bool) -> Tensor:
    """One forward pass of the [0, 1] images ``x`` (B, 3, H, W); returns the objective (B,)."""
    acts.clear()
    acts["input"] = x
    try:
        out = model(preprocess(x))
    except _StopForward:
        out = None
    if "logits" in objective.layers:
        if out is None:
            raise RuntimeError("the objective needs the logits but the forward pass was stopped early")
        acts["logits"] = out
    missing = [n for n in objective.layers if n not in acts]
    if missing:
        raise RuntimeError(f"the forward pass never reached {missing}: is the module used in model.forward?")
    score = objective(acts)
    if score.ndim != 1 or score.shape[0] != x.shape[0]:
        raise ValueError(f"an objective must return one score per image, shape ({x.shape[0]},); got "
                         f"{tuple(score.shape)}")
    return score


def evaluate(model: nn.Module, objective: Objective, images: Tensor,
             preprocess: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """The objective of ``images`` (B, 3, H, W) in [0, 1], without transforms or regularisers: (B,)."""
    _check_images(images)
    preprocess = preprocess or _identity
    stop = "logits" not in objective.layers
    with torch.no_grad(), record_activations(model, objective.layers, stop_early=stop) as acts:
        return _forward(model, objective, images, preprocess, acts, stop).detach()


def transform_robustness(model: nn.Module, objective: Objective, images: Tensor,
                         transforms: Sequence[Callable[[Tensor, torch.Generator], Tensor]], n: int = 8,
                         seed: int = 0, preprocess: Callable[[Tensor], Tensor] | None = None,
                         input_size: int | None = None) -> Tensor:
    """The objective averaged over ``n`` random draws of ``transforms`` (seeded): how well an image keeps its
    activation when it is shifted, zoomed and rotated a little. ``images`` (B, 3, H, W) -> (B,)."""
    gen = torch.Generator().manual_seed(seed)
    chain = list(transforms) + ([Resize(input_size)] if input_size is not None else [])
    total = torch.zeros(images.shape[0])
    for _ in range(n):
        x = images
        for t in chain:
            x = t(x, gen)
        total += evaluate(model, objective, x, preprocess).cpu()
    return total / n


def high_frequency_fraction(images: Tensor, cutoff: float = 0.25) -> Tensor:
    """The share of each image's spectral energy (mean removed per channel) at spatial frequencies above
    ``cutoff`` cycles per pixel (0.5 is the Nyquist limit): ~0.75 for white noise at the default cutoff, small for
    smooth images. (B, C, H, W) -> (B,)."""
    _check_images(images)
    x = images - images.mean(dim=(2, 3), keepdim=True)
    power = torch.fft.fft2(x).abs() ** 2  # (B, C, H, W)
    fy = torch.fft.fftfreq(x.shape[2])[:, None]
    fx = torch.fft.fftfreq(x.shape[3])[None, :]
    high = (torch.sqrt(fx**2 + fy**2) > cutoff).to(power)
    return (power * high).sum(dim=(1, 2, 3)) / power.sum(dim=(1, 2, 3)).clamp(min=1e-12)


@dataclass
class RenderResult:
    """The output of :func:`render`: ``images`` (B, 3, H, W) in [0, 1] (CPU), the objective per step
    (``history``, mean over the batch, on the transformed images, before penalties), ``snapshots`` {step: images},
    ``seconds`` of optimisation and ``seconds_per_step``."""

    images: Tensor
    history: list[float]
    snapshots: dict[int, Tensor] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, len(self.history))


Regularizer = tuple[float, Callable[[Tensor], Tensor]]


def render(model: nn.Module, objective: Objective, size: int = 32, batch: int = 1, steps: int = 128,
           lr: float = 0.05, param: str | ImageParam = "fourier", decorrelate: bool | Tensor = True,
           transforms: Sequence[Callable[[Tensor, torch.Generator], Tensor]] | str | None = "standard",
           regularizers: Sequence[Regularizer] = (), preprocess: Callable[[Tensor], Tensor] | None = None,
           input_size: int | None = None, seed: int = 0, snapshot_steps: Sequence[int] = (),
           stop_early: bool = True, device: torch.device | str | None = None) -> RenderResult:
    """Activation maximisation: find images (B, 3, size, size) in (0, 1) that maximise ``objective`` minus the
    weighted ``regularizers`` ``[(weight, fn), ...]`` (each fn: (B, 3, H, W) -> (B,)), with Adam (``lr``) on the
    parameters of ``param`` (``"fourier"``, ``"pixel"`` or an :class:`ImageParam`).

    Every step: image = param(); x = transforms(image) (``"standard"``: :func:`standard_transforms` for ``size``;
    ``None``/``[]``: none); then :class:`Resize` to ``input_size`` if given; loss = -(objective(model(preprocess(x)))
    - penalties(image)), averaged over the batch; one Adam step. ``preprocess`` maps [0, 1] pixels to the model's
    input (e.g. normalisation). The model is put in eval mode and its parameters get no gradients while it runs;
    the forward pass stops after the last layer the objective needs (``stop_early``). ``seed`` fixes the initial
    image and every random transform: the same call gives the same images.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if isinstance(param, ImageParam):
        image_param = param.to(device)
    else:
        image_param = ImageParam(size, batch, kind=param, decorrelate=decorrelate, seed=seed, device=device)
    if transforms == "standard":
        transforms = standard_transforms(image_param.size[0])
    elif isinstance(transforms, str):
        raise ValueError(f"transforms must be 'standard', None or a list, got {transforms!r}")
    chain = list(transforms or [])
    if input_size is not None:
        chain.append(Resize(input_size))
    preprocess = preprocess or _identity
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(image_param.parameters(), lr=lr)
    history: list[float] = []
    snapshots: dict[int, Tensor] = {}
    wanted = set(snapshot_steps)
    was_training = model.training
    model.eval()
    stop = stop_early and "logits" not in objective.layers
    start = time.perf_counter()
    try:
        with _frozen(model), record_activations(model, objective.layers, stop_early=stop) as acts:
            for step in range(1, steps + 1):
                opt.zero_grad(set_to_none=True)
                img = image_param()
                x = img
                for t in chain:
                    x = t(x, gen)
                score = _forward(model, objective, x, preprocess, acts, stop)
                loss = -score.mean()
                for weight, reg in regularizers:
                    loss = loss + weight * reg(img).mean()
                loss.backward()
                opt.step()
                history.append(float(score.detach().mean()))
                if step in wanted:
                    snapshots[step] = image_param().detach().cpu()
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        final = image_param().detach().cpu()
    return RenderResult(final, history, snapshots, seconds)


def ascent_step(model: nn.Module, objective: Objective, image: Tensor, shift: tuple[int, int], lr: float,
                preprocess: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """One step of normalised gradient ascent with jitter on a pixel image (exercise 6.2, as in DeepDream).

    ``image`` (B, 3, H, W) in [0, 1]; ``shift = (dy, dx)``. The model sees ``torch.roll(image, (dy, dx), (2, 3))``;
    with ``g`` the gradient of the summed objective with respect to the UNSHIFTED image (the shifted gradient
    rolled back by (-dy, -dx)), the new image is ``clamp(image + lr * g / (mean |g| + 1e-8), 0, 1)`` with the mean
    over each image's (3, H, W) values. Returns the new image, detached, same shape.
    """
    _check_images(image)
    preprocess = preprocess or _identity
    x = image.detach().clone().requires_grad_(True)
    with record_activations(model, objective.layers) as acts:
        score = _forward(model, objective, torch.roll(x, shifts=tuple(shift), dims=(2, 3)), preprocess, acts,
                         False)
        (g,) = torch.autograd.grad(score.sum(), x)
    g = g / (g.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-8)
    return (x + lr * g).clamp(0, 1).detach()


# ------------------------------------------------------------------------------------------------------------------
# Dataset examples
# ------------------------------------------------------------------------------------------------------------------


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


def dataset_examples(model: nn.Module, layer: str, images: Tensor, channel: int, k: int = 9,
                     preprocess: Callable[[Tensor], Tensor] | None = None, num_prefix_tokens: int = 0,
                     batch_size: int = 250, negative: bool = False) -> DatasetExamples:
    """Run ``images`` (N, 3, H, W) in [0, 1] through ``model`` in batches, record channel ``channel`` of ``layer``
    and return its ``k`` top-activating images (``negative=True``: the ``k`` most negative)."""
    _check_images(images)
    preprocess = preprocess or _identity
    device = next(model.parameters()).device
    maps = []
    model.eval()
    with torch.no_grad(), record_activations(model, [layer], stop_early=True) as acts:
        for i in range(0, len(images), batch_size):
            with contextlib.suppress(_StopForward):
                model(preprocess(images[i:i + batch_size].to(device)))
            a = to_spatial(acts[layer], num_prefix_tokens)
            _check_index(channel, a.shape[1], "channel")
            maps.append(a[:, channel].float().cpu())
    m = torch.cat(maps)  # (N, h, w)
    sign = -1.0 if negative else 1.0
    idx, _ = top_k_examples(sign * m[:, None], 0, k)
    flat = (sign * m[idx]).flatten(1).argmax(1)
    w = m.shape[2]
    positions = torch.stack([flat // w, flat % w], dim=1)
    all_scores = m.flatten(1).mean(1)
    return DatasetExamples(idx, all_scores[idx], positions, (m.shape[1], m.shape[2]), all_scores)


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


# ------------------------------------------------------------------------------------------------------------------
# lucent (torch-lucent 0.1.8) on current torch
# ------------------------------------------------------------------------------------------------------------------


def _lucent_random_scale(scales: Sequence[float]) -> Callable[[Tensor], Tensor]:
    """lucent's ``transform.random_scale`` with Python ints for the size (lucent passes numpy ints to
    ``nn.Upsample``, reported as a TypeError on torch >= 2.1; torch 2.14.1 CPU accepts them) and otherwise the
    same behaviour (numpy's global random state, ``align_corners=True``, the same padding call)."""

    def inner(image_t: Tensor) -> Tensor:
        scale = float(np.random.choice(scales))
        shp = image_t.shape[2:]
        size = [int(math.ceil(scale * d)) for d in shp]
        pad_x = max(0, int(math.ceil((shp[1] - size[1]) / 2)))
        pad_y = max(0, int(math.ceil((shp[0] - size[0]) / 2)))
        out = F.interpolate(image_t, size=size, mode="bilinear", align_corners=True)
        return F.pad(out, [pad_y, pad_x] * 2)

    return inner


def lucent_transforms(size: int = 128) -> list[Callable[[Tensor], Tensor]]:
    """lucent's ``transform.standard_transforms`` (pad 12, jitter 8, random_scale 0.9..1.1, random_rotate
    -10..10, jitter 4) with the broken ``random_scale`` replaced by :func:`_lucent_random_scale`; the pixel
    amounts scaled by ``size / 128`` like :func:`standard_transforms` (at 128 px exactly lucent's list)."""
    from lucent.optvis import transform

    f = size / 128
    px = [max(1, round(v * f)) for v in (12, 8, 4)]
    return [
        transform.pad(px[0], mode="constant", constant_value=0.5),
        transform.jitter(max(2, px[1])),  # lucent asserts d > 1
        _lucent_random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        transform.random_rotate(list(range(-10, 11)) + 5 * [0]),
        transform.jitter(max(2, px[2])),
    ]


_LUCENT_CACHE: dict[tuple, np.ndarray] = {}


@contextlib.contextmanager
def _closing_lucent_hooks() -> Iterator[None]:
    """``render_vis`` registers a forward hook on EVERY module of the model (``ModuleHook``) and never removes them:
    they pile up with each call. While open, every ``ModuleHook`` lucent creates is recorded and closed on exit."""
    from lucent.optvis import render as lrender

    created = []
    original = lrender.ModuleHook

    class _Recorded(original):  # type: ignore[misc, valid-type]
        def __init__(self, module: nn.Module) -> None:
            super().__init__(module)
            created.append(self)

    lrender.ModuleHook = _Recorded
    try:
        yield
    finally:
        lrender.ModuleHook = original
        for h in created:
            h.close()


def lucent_render(model: nn.Module, objective: Any, size: int = 128, steps: int = 512, batch: int = 1,
                  fft: bool = True, decorrelate: bool = True, lr: float = 0.05,
                  transforms: Sequence[Callable[[Tensor], Tensor]] | str | None = "standard",
                  fixed_image_size: int | None = None, preprocess: bool = True, seed: int = 0,
                  cache: bool = True) -> np.ndarray:
    """``lucent.optvis.render.render_vis`` made to work on the installed torch and to leave the model as it was.

    ``objective``: a lucent objective or its string form (``"mixed4a:476"``); ``transforms="standard"``:
    :func:`lucent_transforms` for ``size`` (lucent's own default list is reported to raise a TypeError on torch >= 2.1);
    ``None``: no transforms. ``fixed_image_size``: the size the model sees (lucent upsamples anything below 224 px to
    224 unless it is given; pass ``size`` to skip that). Seeds numpy and torch (lucent draws from their global
    generators), removes the forward hooks ``render_vis`` leaves on every module, shows nothing, and caches the
    result for the session (key: the model object and every argument; ``cache=False`` to recompute; objectives that
    are not strings are keyed by their description). Returns float images (B, H, W, 3) in [0, 1].
    """
    from lucent.optvis import param as lparam
    from lucent.optvis import render as lrender

    obj_key = objective if isinstance(objective, str) else getattr(objective, "description", repr(objective))
    key = (id(model), obj_key, size, steps, batch, fft, decorrelate, lr,
           transforms if isinstance(transforms, (str, type(None))) else id(transforms), fixed_image_size,
           preprocess, seed)
    if cache and key in _LUCENT_CACHE:
        return _LUCENT_CACHE[key].copy()
    if transforms == "standard":
        chain: list = lucent_transforms(size)
    elif transforms is None:
        chain = []
    elif isinstance(transforms, str):
        raise ValueError(f"transforms must be 'standard', None or a list, got {transforms!r}")
    else:
        chain = list(transforms)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model.eval()
    with _closing_lucent_hooks(), _frozen(model), warnings.catch_warnings():
        # below 224 px InceptionV1's last pooling layer fails; render_vis catches that and warns once per call
        warnings.filterwarnings("ignore", message="Some layers could not be computed")
        images = lrender.render_vis(
            model, objective, param_f=lambda: lparam.image(size, batch=batch, fft=fft, decorrelate=decorrelate),
            optimizer=lambda params: torch.optim.Adam(params, lr=lr), transforms=chain, thresholds=(steps,),
            preprocess=preprocess, progress=False, show_image=False, fixed_image_size=fixed_image_size,
        )
    out = np.asarray(images[-1], dtype=np.float32)
    if cache:
        _LUCENT_CACHE[key] = out.copy()
    return out


def lucent_deepdream(layer: str) -> Any:
    """A lucent objective for DeepDream (lucent 0.1.8 has none): minus the mean squared activation of ``layer``
    (lucent minimises), the counterpart of :func:`layer_l2`."""
    from lucent.optvis import objectives

    return objectives.Objective(lambda T: -(T(layer) ** 2).mean(), name=f"deepdream {layer}",
                                description=f"DeepDream [{layer}]")


def inceptionv1_preprocess(x: Tensor) -> Tensor:
    """[0, 1] pixels -> the input range of Lucid's TensorFlow InceptionV1, [-117, 138] (what lucent applies)."""
    return x * 255 - 117


def load_inceptionv1(device: torch.device | str | None = None, seed: int = 0) -> tuple[nn.Module, bool]:
    """lucent's InceptionV1 (GoogLeNet as trained for Lucid) in eval mode and whether it has its pretrained weights.

    The weights download from GitHub on first use (cached by ``torch.hub``). With ``XAI_OFFLINE=1`` nothing is
    downloaded: the model gets RANDOM weights (seeded) and a WARNING says so -- its visualisations then show what an
    untrained network responds to, not what InceptionV1 learned. A failed download raises a RuntimeError."""
    from lucent.modelzoo import inceptionv1

    from .models import _download_error, _warn_random

    if env.offline():
        torch.manual_seed(seed)
        model = inceptionv1(pretrained=False)
        _warn_random("inceptionv1")
        pretrained = False
    else:
        try:
            model = inceptionv1(pretrained=True)
        except (OSError, RuntimeError) as exc:  # urllib errors, a truncated file
            raise _download_error("inceptionv1", exc) from exc
        pretrained = True
    if device is not None:
        model.to(device)
    return model.eval(), pretrained
