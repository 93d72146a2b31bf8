"""The optimisation loop of feature visualisation (notebook 06): hooks that record activations, :func:`render` (Adam on
an image parameterisation), one plain gradient-ascent step :func:`ascent_step` (exercise 6.2), and the measures
:func:`evaluate`, :func:`transform_robustness` and :func:`high_frequency_fraction`."""

from __future__ import annotations

import contextlib
import difflib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .objectives import Objective
from .param import ImageParam
from .regularizers import _check_images
from .transforms import Resize, standard_transforms

__all__ = ["record_activations", "evaluate", "transform_robustness", "high_frequency_fraction", "RenderResult",
           "render", "ascent_step"]

Tensor = torch.Tensor


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
    ``cutoff`` cycles per pixel (0.5 is the Nyquist limit; the frequency is the radius ``sqrt(fx^2 + fy^2)``).
    White noise has a flat spectrum, so its share is the part of the square of frequencies [-1/2, 1/2]^2 outside
    the disc of radius ``cutoff``: ``1 - pi * cutoff^2``, at the default ``1 - pi/16 = 0.80`` (0.81 on the discrete
    grid of a 32-px image). Smooth images: small. (B, C, H, W) -> (B,)."""
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
