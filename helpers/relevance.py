"""Layer-wise relevance propagation (LRP) from scratch, for the course CNN and torchvision VGG / ResNet.

LRP (Bach et al. 2015) sends the target logit back through the network layer by layer. For a linear layer
``z_k = sum_j a_j w_jk + b_k`` the relevance ``R_k`` of each output is split over the inputs in proportion to their
contributions; the rules (Montavon et al. 2019) differ in which contributions they count:

* LRP-0:      ``R_j = sum_k a_j w_jk / z_k * R_k``
* epsilon:    ``R_j = sum_k a_j w_jk / (z_k + eps sign(z_k)) * R_k`` (absorbs weak, noisy contributions)
* gamma:      ``R_j = sum_k a_j (w_jk + gamma w_jk^+) / sum_j a_j (w_jk + gamma w_jk^+) * R_k`` (favours positive
  contributions; for inputs of both signs the generalised form of Andeol et al. 2021 that zennit implements, used
  only for outputs of the same sign as ``z_k``)
* z^B (box):  ``R_j = sum_k (x_j w_jk - l_j w_jk^+ - h_j w_jk^-) / sum_j (...) * R_k`` for the first layer, whose
  inputs are pixels bounded by ``l <= x <= h``.

Implementation: the model is copied and *canonised* (every BatchNorm merged into the convolution before it, in-place
ReLUs made out-of-place, residual additions replaced by a proportional split ``R_a = a / (a + b) * R``), then every
convolution / linear layer and every average pooling is wrapped so that its backward pass returns the relevance of
its input given the relevance of its output. ReLU and max-pooling pass relevance on as their gradient does
(winner-take-all for max-pooling). Propagating ``R = logit * one_hot`` from the output then yields the relevance of
the input pixels. The original model is never modified (no hooks are left behind).

Public API: :func:`lrp` ``(B, C, H, W)``, :func:`explain` (with per-layer relevance sums: conservation),
:func:`canonize`, the rules :func:`lrp0`, :func:`epsilon`, :func:`gamma`, :func:`zbox` and :class:`Composite`.
Transformers (LayerNorm, attention, GELU) are not handled here: :func:`lrp` raises :class:`LRPError` and names the
layer (transformers: :mod:`helpers.relevance_vit`). Nor is EfficientNet-Lite0 (``efficientnet-lite-pytorch`` 0.1.0):
its ``MBConvBlock`` adds the skip connection inside its own ``forward`` and calls one ``ReLU6`` module twice, and its
convolutions are ``Conv2dStaticSamePadding`` modules with a padding child; zennit 0.5.1 has no canonizer for it either
(its generic ``SequentialMergeBatchNorm`` merges none of the 49 BatchNorms; ``tests/test_relevance.py``). Supporting
it would need a block canonizer (split sum, merged BatchNorm, one ReLU6 per use), not a rule.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .attribution import class_indices
from .validation import check_images

__all__ = [
    "RULES",
    "PRESETS",
    "LRPError",
    "Rule",
    "Composite",
    "LRPResult",
    "lrp0",
    "epsilon",
    "gamma",
    "zbox",
    "preset",
    "canonize",
    "explain",
    "lrp",
    "cifar_box",
    "conservation_gap",
    "linear_rule",
]

RULES = ("lrp0", "epsilon", "gamma", "zbox", "norm")
PRESETS = ("lrp0", "epsilon", "gamma", "epsilon_gamma_box", "by_depth")


class LRPError(ValueError):
    """A model, layer, rule or composite that LRP cannot handle; the message says what to do instead."""


# ----------------------------------------------------------------------------------------------------------------
# Rules and composites
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One LRP rule. ``name`` in :data:`RULES`; ``eps`` is the epsilon of the epsilon rule and the stabiliser of
    the others (added with the sign of the denominator, +1 for 0); ``gamma`` the gamma rule's weight; ``low`` /
    ``high`` the box of z^B, broadcastable to the input (e.g. ``(1, 3, 1, 1)``)."""

    name: str
    eps: float = 1e-6
    gamma: float = 0.25
    low: torch.Tensor | float | None = None
    high: torch.Tensor | float | None = None

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise LRPError(f"unknown LRP rule {self.name!r}; use one of {', '.join(RULES)}")
        if self.name == "zbox" and (self.low is None or self.high is None):
            raise LRPError("the z^B rule needs the input box: zbox(low, high), e.g. helpers.relevance.cifar_box()")
        if self.eps < 0 or self.gamma < 0:
            raise LRPError(f"eps and gamma must be >= 0, got eps={self.eps}, gamma={self.gamma}")


def lrp0(stabilizer: float = 1e-9) -> Rule:
    """LRP-0 (``eps`` only guards against 0 / 0)."""
    return Rule("lrp0", eps=stabilizer)


def epsilon(eps: float = 0.25) -> Rule:
    """The epsilon rule."""
    return Rule("epsilon", eps=eps)


def gamma(gamma: float = 0.25, stabilizer: float = 1e-6) -> Rule:  # noqa: A002 - the rule's name in the papers
    """The (generalised) gamma rule."""
    return Rule("gamma", eps=stabilizer, gamma=gamma)


def zbox(low: torch.Tensor | float, high: torch.Tensor | float, stabilizer: float = 1e-6) -> Rule:
    """The z^B rule for the first layer; ``low`` / ``high``: the smallest / largest possible (normalised) input."""
    return Rule("zbox", eps=stabilizer, low=low, high=high)


def cifar_box(mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> tuple[torch.Tensor, ...]:
    """The normalised pixel range ``((0 - mean) / std, (1 - mean) / std)``, each ``(1, 3, 1, 1)`` (CIFAR-10 default)."""
    from .data import CIFAR10_MEAN, CIFAR10_STD

    m = torch.tensor(CIFAR10_MEAN if mean is None else mean, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(CIFAR10_STD if std is None else std, dtype=torch.float64).view(1, -1, 1, 1)
    return (0 - m) / s, (1 - m) / s


@dataclass
class Composite:
    """Which rule each layer gets. The weighted layers (convolutions, linear layers) are numbered 0..n-1 in
    registration order; ``first`` (if set) is used for layer 0, ``last`` (if set) for layer n-1, ``conv`` for the
    other convolutions and ``linear`` for the other linear layers; ``layers`` (index -> rule) overrides all of them.
    Average pooling and residual sums always use the stabilised LRP-0 ``pool`` rule."""

    conv: Rule = field(default_factory=epsilon)
    linear: Rule = field(default_factory=epsilon)
    first: Rule | None = None
    last: Rule | None = None
    pool: Rule = field(default_factory=lambda: Rule("norm", eps=1e-6))
    layers: dict[int, Rule] = field(default_factory=dict)

    def rule_for(self, index: int, n_layers: int, module: nn.Module) -> Rule:
        if index in self.layers:
            return self.layers[index]
        if index == 0 and self.first is not None:
            return self.first
        if index == n_layers - 1 and self.last is not None:
            return self.last
        return self.linear if isinstance(module, nn.Linear) else self.conv


def preset(name: str, box: tuple[torch.Tensor, torch.Tensor] | None = None, eps: float = 0.25,
           gamma_value: float = 0.25) -> Composite:
    """A named composite: ``"lrp0"``, ``"epsilon"``, ``"gamma"`` (the rule everywhere), ``"epsilon_gamma_box"``
    (z^B first, gamma for the other convolutions, epsilon for linear layers: zennit's ``EpsilonGammaBox``) or
    ``"by_depth"`` (Montavon et al. 2019's recipe: z^B first, gamma in the lower half of the convolutions, epsilon
    above, LRP-0 for the output layer; :func:`lrp` fills in the depth). ``box``: the z^B box (default
    :func:`cifar_box`)."""
    if name not in PRESETS:
        raise LRPError(f"unknown composite {name!r}; use one of {', '.join(PRESETS)} or a Composite(...)")
    lo, hi = box if box is not None else cifar_box()
    if name == "lrp0":
        return Composite(conv=lrp0(), linear=lrp0())
    if name == "epsilon":
        return Composite(conv=epsilon(eps), linear=epsilon(eps))
    if name == "gamma":
        return Composite(conv=gamma(gamma_value), linear=gamma(gamma_value))
    if name == "epsilon_gamma_box":
        return Composite(conv=gamma(gamma_value), linear=epsilon(eps), first=zbox(lo, hi))
    return Composite(conv=epsilon(eps), linear=epsilon(eps), first=zbox(lo, hi), last=lrp0(),
                     layers={-1: gamma(gamma_value)})  # -1: marker, resolved by depth in _assign_rules


# ----------------------------------------------------------------------------------------------------------------
# The propagation of one layer
# ----------------------------------------------------------------------------------------------------------------


def _stabilize(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + eps * torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))


def _linear_fn(module: nn.Module) -> Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor]:
    """``f(x, weight, bias)`` computing ``module`` with other parameters (None: the module itself, no weights)."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise LRPError(f"LRP here supports only zero-padded convolutions, got padding_mode={module.padding_mode!r}")
        return lambda x, w, b: F.conv2d(x, w, b, module.stride, module.padding, module.dilation, module.groups)
    if isinstance(module, nn.Linear):
        return lambda x, w, b: F.linear(x, w, b)
    return lambda x, w, b: module(x)  # pooling: linear in x, no parameters


def _vjp(fn: Callable, x: torch.Tensor, w: torch.Tensor | None, s: torch.Tensor) -> torch.Tensor:
    """``(d fn(x, w, None) / d x)^T s``: the transposed linear map applied to ``s`` (same shape as ``x``)."""
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(xx, w, None), xx, s)
    return g


def propagate(rule: Rule, module: nn.Module, x: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """Relevance of the input ``x`` of ``module`` (a Conv2d, Linear or pooling layer) from that of its output.

    Args: ``x`` the layer input (B, ...), ``relevance`` the output relevance (same shape as ``module(x)``).
    Returns: the input relevance, shape of ``x``.
    """
    fn = _linear_fn(module)
    x = x.detach()
    w = getattr(module, "weight", None)
    b = getattr(module, "bias", None)
    w = w.detach() if w is not None else None
    b = b.detach() if b is not None else None
    if rule.name in ("lrp0", "epsilon", "norm"):
        z = fn(x, w, b)
        return x * _vjp(fn, x, w, relevance / _stabilize(z, rule.eps))
    if w is None:
        raise LRPError(f"rule {rule.name!r} needs a layer with weights, got {type(module).__name__}")
    if rule.name == "gamma":
        g = rule.gamma
        w_up, w_dn = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        b_up = b + g * b.clamp(min=0) if b is not None else None
        b_dn = b + g * b.clamp(max=0) if b is not None else None
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        z = fn(x, w, b)
        z_pos = fn(xp, w_up, b_up) + fn(xn, w_dn, None)  # favour contributions with the sign of z > 0
        z_neg = fn(xp, w_dn, b_dn) + fn(xn, w_up, None)  # ... and of z < 0
        s_pos = relevance * (z > 0) / _stabilize(z_pos, rule.eps)
        s_neg = relevance * (z < 0) / _stabilize(z_neg, rule.eps)
        return (xp * (_vjp(fn, x, w_up, s_pos) + _vjp(fn, x, w_dn, s_neg))
                + xn * (_vjp(fn, x, w_dn, s_pos) + _vjp(fn, x, w_up, s_neg)))
    # z^B
    # the box copied into a tensor made like x (not torch.as_tensor(..., device=x.device)): this runs inside
    # autograd's backward, where the simulated GPU's placement mode is not active (XAI_DEVICE=sim would get a
    # data-less tensor); on a real device both forms are the same
    low = torch.zeros_like(x).copy_(torch.as_tensor(rule.low, dtype=x.dtype).expand(x.shape))
    high = torch.zeros_like(x).copy_(torch.as_tensor(rule.high, dtype=x.dtype).expand(x.shape))
    w_p, w_n = w.clamp(min=0), w.clamp(max=0)
    z = fn(x, w, None) - fn(low, w_p, None) - fn(high, w_n, None)
    s = relevance / _stabilize(z, rule.eps)
    return x * _vjp(fn, x, w, s) - low * _vjp(fn, x, w_p, s) - high * _vjp(fn, x, w_n, s)


class _Recorder:
    """Per-layer relevance sums (B,) of the last propagation, by layer name, in backward order (output first)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, name: str, relevance: torch.Tensor) -> None:
        self.sums[name] = relevance.detach().flatten(1).sum(1)


class _RuleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: _RuleLayer) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.layer = layer
        return layer.module(x)

    @staticmethod
    def backward(ctx, relevance: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        layer = ctx.layer
        r_in = propagate(layer.rule, layer.module, x, relevance)
        layer.recorder.add(layer.name, r_in)
        return r_in, None


class _RuleLayer(nn.Module):
    """Wraps a weighted or pooling layer: forward unchanged, backward = its LRP rule."""

    def __init__(self, module: nn.Module, rule: Rule, name: str, recorder: _Recorder) -> None:
        super().__init__()
        self.module, self.rule, self.name, self.recorder = module, rule, name, recorder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RuleFunction.apply(x, self)


class _SplitSum(torch.autograd.Function):
    """``a + b`` whose backward splits relevance in proportion: ``R_a = a / (a + b) R`` (stabilised)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, b)
        ctx.eps = eps
        return a + b

    @staticmethod
    def backward(ctx, relevance: torch.Tensor):  # type: ignore[override]
        a, b = ctx.saved_tensors
        s = relevance / _stabilize(a + b, ctx.eps)
        return a * s, b * s, None


class _ResidualLRP(nn.Module):
    """``x + body(x)`` (the course CNN's :class:`~helpers.cifar_models.Residual`) with the proportional split."""

    def __init__(self, body: nn.Module, eps: float) -> None:
        super().__init__()
        self.body, self.eps = body, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SplitSum.apply(x, self.body(x), self.eps)


class _TorchvisionBlockLRP(nn.Module):
    """A torchvision ResNet BasicBlock / Bottleneck (BatchNorms already merged) with the proportional split."""

    def __init__(self, block: nn.Module, eps: float) -> None:
        super().__init__()
        self.block, self.eps = block, eps
        self.n_convs = 3 if hasattr(block, "conv3") else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blk = self.block
        out = x
        for i in range(1, self.n_convs + 1):
            out = getattr(blk, f"bn{i}")(getattr(blk, f"conv{i}")(out))
            if i < self.n_convs:
                out = blk.relu(out)
        identity = blk.downsample(x) if blk.downsample is not None else x
        return blk.relu(_SplitSum.apply(out, identity, self.eps))


# ----------------------------------------------------------------------------------------------------------------
# Canonisation
# ----------------------------------------------------------------------------------------------------------------


def _merge_bn(layer: nn.Module, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
    """Fold an eval-mode BatchNorm into the conv / linear layer before it (in place): the same function, one layer."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(
        bn.running_var + bn.eps)
    shift = (bn.bias.detach() if bn.affine else 0) - bn.running_mean * scale
    w = layer.weight.detach()
    shape = (-1,) + (1,) * (w.ndim - 1)
    old_bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(scale)
    layer.weight = nn.Parameter(w * scale.reshape(shape), requires_grad=False)
    layer.bias = nn.Parameter(old_bias * scale + shift, requires_grad=False)


def _is_torchvision_block(m: nn.Module) -> bool:
    return type(m).__name__ in ("BasicBlock", "Bottleneck") and type(m).__module__.startswith("torchvision")


def canonize(model: nn.Module, sum_eps: float = 1e-6) -> nn.Module:
    """A copy of ``model`` that computes the same function in a form LRP can propagate: each BatchNorm merged into
    the convolution / linear layer right before it (registration order), ReLUs out of place, residual additions
    (course :class:`~helpers.cifar_models.Residual`, torchvision BasicBlock / Bottleneck) as proportional splits.
    The copy is in eval mode (BatchNorm merging needs the running statistics)."""
    from .cifar_models import Residual

    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)

    def visit(parent: nn.Module) -> None:
        names = list(parent._modules)
        prev: tuple[str, nn.Module] | None = None
        for name in names:
            child = parent._modules[name]
            if child is None:
                continue
            if isinstance(child, (nn.BatchNorm2d, nn.BatchNorm1d)) and prev is not None \
                    and isinstance(prev[1], (nn.Conv2d, nn.Linear)):
                _merge_bn(prev[1], child)
                parent._modules[name] = nn.Identity()
                prev = None
                continue
            if isinstance(child, nn.ReLU) and child.inplace:
                parent._modules[name] = nn.ReLU()
            visit(child)
            if isinstance(child, Residual):
                parent._modules[name] = _ResidualLRP(child.body, sum_eps)
            elif _is_torchvision_block(child):
                parent._modules[name] = _TorchvisionBlockLRP(child, sum_eps)
            prev = (name, parent._modules[name])

    visit(net)
    return net


# ----------------------------------------------------------------------------------------------------------------
# Attaching the rules, running LRP
# ----------------------------------------------------------------------------------------------------------------

_PASS = (nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity)
_POOL = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)
_CONTAINERS = (nn.Sequential, _ResidualLRP, _TorchvisionBlockLRP)
_ROOTS = ("CourseCNN", "ResNet", "VGG")  # models whose own forward only chains children (checked by name)


def _weighted_layers(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _check_supported(net: nn.Module) -> None:
    wrapped = {id(m.block) for m in net.modules() if isinstance(m, _TorchvisionBlockLRP)}  # forward not used
    for name, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, *_PASS, *_POOL, *_CONTAINERS)) or id(m) in wrapped:
            continue
        if name == "" and type(m).__name__ in _ROOTS:
            continue
        if list(m.children()):  # a container whose forward we do not know: it may add or multiply tensors
            raise LRPError(f"LRP cannot propagate relevance through module {name or 'the model'!r} "
                           f"({type(m).__name__}): its forward is unknown here and may add or multiply tensors, "
                           "which needs an explicit split; supported: the course CNN, torchvision VGG / ResNet and "
                           "nn.Sequential of Conv2d, Linear, ReLU, pooling, BatchNorm after a conv, Flatten, Dropout")
        else:  # a leaf of a type we do not know
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                hint = "put it right after a Conv2d / Linear (canonize merges only such BatchNorms)"
            else:
                hint = ("for a transformer use conservative propagation (helpers.relevance_vit); for other layers "
                        "use gradient x input (helpers.attribution.gradient_x_input)")
            raise LRPError(f"LRP cannot propagate relevance through layer {name!r} ({type(m).__name__}): "
                           f"no rule for it here; {hint}")


def _assign_rules(net: nn.Module, composite: Composite, recorder: _Recorder) -> list[tuple[str, Rule]]:
    layers = _weighted_layers(net)
    n = len(layers)
    if n == 0:
        raise LRPError("the model has no Conv2d or Linear layer to propagate relevance through")
    comp = composite
    if -1 in composite.layers:  # by_depth: gamma for the lower half of the convolutions after the first
        convs = [i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Conv2d) and i > 0]
        g = composite.layers[-1]
        comp = copy.copy(composite)
        comp.layers = {i: g for i in convs[: len(convs) // 2]}
    assigned = []
    for i, (name, m) in enumerate(layers):
        rule = comp.rule_for(i, n, m)
        _replace(net, name, _RuleLayer(m, rule, name, recorder))
        assigned.append((name, rule))
    for name, m in list(net.named_modules()):
        if isinstance(m, _POOL):
            _replace(net, name, _RuleLayer(m, comp.pool, name, recorder))
    return assigned


def _replace(net: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, attr = dotted.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    parent._modules[attr] = new


@dataclass
class LRPResult:
    """``relevance`` (B, C, H, W) of the input; ``logits`` (B,) the explained target logits; ``layer_sums``: the
    relevance summed over each layer's input (B,), by layer name, output layer first (conservation: each should be
    close to ``logits``; biases and stabilisers absorb the difference); ``rules``: (layer name, rule) pairs."""

    relevance: torch.Tensor
    logits: torch.Tensor
    layer_sums: dict[str, torch.Tensor]
    rules: list[tuple[str, Rule]]


def _composite(composite: str | Composite | Rule, box: tuple[torch.Tensor, torch.Tensor] | None) -> Composite:
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, Rule):
        return Composite(conv=composite, linear=composite)
    if isinstance(composite, str):
        return preset(composite, box)
    raise LRPError(f"composite must be a preset name ({', '.join(PRESETS)}), a Rule or a Composite, "
                   f"got {type(composite).__name__}")


def explain(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
            composite: str | Composite | Rule = "epsilon_gamma_box",
            box: tuple[torch.Tensor, torch.Tensor] | None = None) -> LRPResult:
    """LRP of the ``target`` logit (None: the predicted class) for the images ``x`` (B, C, H, W).

    The relevance at the output is the target logit; see :class:`LRPResult`. ``composite``: a preset name (see
    :func:`preset`), a single :class:`Rule` for every layer, or a :class:`Composite`. ``box``: z^B's input box
    for the presets (default: CIFAR-10's normalised pixel range). The model is not modified.
    """
    check_images(x, "x")
    comp = _composite(composite, box)
    net = canonize(model, sum_eps=comp.pool.eps)
    _check_supported(net)
    recorder = _Recorder()
    rules = _assign_rules(net, comp, recorder)
    net = net.to(x.device)
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        out = net(xg)
        if out.ndim != 2:
            raise LRPError(f"the model must return logits (B, K), got shape {tuple(out.shape)}")
        t = class_indices(out.argmax(1) if target is None else target, x.shape[0], out.shape[1], out.device)
        one_hot = torch.zeros_like(out).scatter_(1, t[:, None], 1.0)
        logit = out.gather(1, t[:, None]).squeeze(1)
        (rel,) = torch.autograd.grad(out, xg, one_hot * out.detach())
    return LRPResult(rel.detach(), logit.detach(), dict(recorder.sums), rules)


def lrp(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
        composite: str | Composite | Rule = "epsilon_gamma_box",
        box: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """LRP relevance of the input, (B, C, H, W): :func:`explain` without the bookkeeping."""
    return explain(model, x, target, composite, box).relevance


def conservation_gap(relevance: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """How far a relevance map is from conserving the explained logit: ``(sum R - f) / |f|`` per image.

    Args: ``relevance`` (B, ...) and ``logits`` (B,). Returns (B,): 0 = conserved, -0.3 = 30 % of the logit lost
    (absorbed by biases and stabilisers), +0.3 = 30 % created.
    """
    if relevance.shape[0] != logits.shape[0] or logits.ndim != 1:
        raise ValueError(f"relevance (B, ...) and logits (B,) must share B, got {tuple(relevance.shape)} and "
                         f"{tuple(logits.shape)}")
    return (relevance.flatten(1).sum(1) - logits) / logits.abs()


def linear_rule(rule: Rule, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                r_out: torch.Tensor) -> torch.Tensor:
    """One rule on one linear layer ``z = a @ weight.T + bias``: ``a`` (B, I), ``weight`` (O, I), ``bias`` (O,) or
    None, ``r_out`` (B, O) -> the input relevance (B, I). (The reference of notebook 09's exercise 9.1.)"""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).to(a.device, a.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return propagate(rule, layer, a, r_out)
