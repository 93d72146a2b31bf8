"""Objectives of feature visualisation (notebook 06): functions of the recorded activations, (B,) scores to maximise,
that add, subtract, negate and scale; and :func:`to_spatial`, which reads ViT tokens as maps."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["to_spatial", "Objective", "channel", "neuron", "class_logit", "layer_l2", "direction", "diversity",
           "feature_match"]

Tensor = torch.Tensor


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


def feature_match(layer: str, target: Tensor) -> Objective:
    """Input reconstruction (Mahendran & Vedaldi 2015): minus the normalised squared distance between the
    activations of ``layer`` and ``target`` (the activations of the image to reconstruct, (B, ...) or (1, ...)),
    ``-||A(x) - A0||^2 / ||A0||^2`` per image. 0 is a perfect match; maximising it (with :func:`render` and a
    regulariser such as total variation) finds an image that the layer cannot tell from the original."""
    target = target.detach()
    norm = (target.flatten(1) ** 2).sum(1).clamp(min=1e-12)  # (B,) or (1,)

    def fn(acts: dict[str, Tensor]) -> Tensor:
        a = acts[layer]
        if a.shape[1:] != target.shape[1:]:
            raise ValueError(f"activations of {layer} have shape {tuple(a.shape[1:])} per image, the target "
                             f"{tuple(target.shape[1:])}: record the target at the same layer and image size")
        t, n = target.to(a), norm.to(a)
        return -((a - t).flatten(1) ** 2).sum(1) / n

    return Objective(fn, (layer,), f"feature match {layer}")
