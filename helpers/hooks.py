"""Hooks on PyTorch modules, in one place: find a layer, record what flows through it, guard against in-place
operations, stop a forward pass early, count the hooks left behind.

Every context manager here removes what it registered when it exits, also after an exception, so a failed cell
in a notebook never leaves a hook on the model. Used by :mod:`helpers.cam`, :mod:`helpers.attribution`,
:mod:`helpers.concepts` and :mod:`helpers.attention` (and feature visualisation).

* :func:`resolve_layer` -- a layer given as a module or a dotted name (``"layer4"``, ``"features.29"``); every
  failure raises :class:`LayerNotFoundError` with the closest names (``difflib``).
* :func:`forward_hook` -- one forward hook as a context manager (the building block of the rest).
* :func:`capture` -- record one layer's output and, after a backward pass, its gradient
  (:class:`ActivationsAndGradients`).
* :func:`record_outputs` -- record the outputs of several layers; ``stop_early=True`` raises :class:`StopForward`
  once all are recorded (skip the rest of the network) and :func:`run_until_stopped` runs a forward pass that may
  stop that way.
* :func:`relu_not_inplace` -- the in-place-ReLU guard: ``inplace=False`` on every ``nn.ReLU`` while open.
* :func:`count_hooks` -- how many hooks are registered on a model (tests and exercise checks).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "LayerNotFoundError",
    "resolve_layer",
    "forward_hook",
    "ActivationsAndGradients",
    "capture",
    "StopForward",
    "record_outputs",
    "run_until_stopped",
    "relu_not_inplace",
    "count_hooks",
]


# ----------------------------------------------------------------------------------------------------------------
# Finding a layer
# ----------------------------------------------------------------------------------------------------------------


class LayerNotFoundError(KeyError, ValueError):
    """The layer is not a submodule of the model. A ``KeyError`` (a name that is not there) and a ``ValueError``
    (a bad argument value), so either ``except`` clause catches it; the message names the closest layers."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _hint(model: nn.Module, name: str) -> str:
    names = [n for n, _ in model.named_modules() if n]
    close = difflib.get_close_matches(name, names, n=4)
    if close:
        return f"; did you mean {', '.join(repr(c) for c in close)}?"
    return "; list the names with [n for n, _ in model.named_modules()]"


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """``layer`` as a submodule of ``model``.

    Args:
        model: the network.
        layer: a module (checked to be inside ``model``) or a dotted name from ``model.named_modules()``, such as
            ``"layer4"`` or ``"features.29"``.
    Returns:
        The module.
    Raises:
        LayerNotFoundError: no such submodule (the message suggests the closest names).
        TypeError: ``layer`` is neither a module nor a string.
    """
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer and layer in modules:
            return modules[layer]
        raise LayerNotFoundError(f"{type(model).__name__} has no submodule named {layer!r}{_hint(model, layer)}")
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be an nn.Module or a submodule name, got {type(layer).__name__}")
    if not any(m is layer for m in model.modules()):
        raise LayerNotFoundError(f"the layer {type(layer).__name__} is not a submodule of {type(model).__name__}; "
                                 "pass a module of this model (e.g. model.features[-1]) or its name")
    return layer


@contextlib.contextmanager
def forward_hook(module: nn.Module, hook: Callable[[nn.Module, Any, Any], Any]) -> Iterator[None]:
    """``module.register_forward_hook(hook)`` while the context is open; removed on exit, also after an error.

    Args:
        module: the module to hook.
        hook: ``hook(module, inputs, output)``; a return value other than ``None`` replaces the output.
    """
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _first_tensor(module: nn.Module, output: Any) -> torch.Tensor:
    out = output[0] if isinstance(output, (tuple, list)) and output else output
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the layer {type(module).__name__} returns {type(output).__name__}, not a tensor; "
                        "pick a layer whose output is a tensor")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Recording one layer: activations and gradients
# ----------------------------------------------------------------------------------------------------------------


class ActivationsAndGradients:
    """What :func:`capture` recorded for one layer during the last forward (and backward) pass.

    Attributes:
        output: the layer's raw output, still attached to the autograd graph (take gradients w.r.t. it).
        activations: the output, detached and passed through ``reshape`` if given: (B, C, h, w).
        gradients: d(score)/d(output), reshaped the same way, (B, C, h, w); ``None`` until a backward pass
            (``score.backward()`` or ``torch.autograd.grad(score, rec.output)``) reached the layer.
        calls: how many times the layer ran while the context was open (a layer used twice in one forward pass,
            like torchvision ResNet's shared ``relu``, is not a valid target).
    """

    def __init__(self, reshape: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.reshape = reshape
        self.output: torch.Tensor | None = None
        self.activations: torch.Tensor | None = None
        self.gradients: torch.Tensor | None = None
        self.calls = 0
        self._tensor_hooks: list[Any] = []

    def _transform(self, t: torch.Tensor) -> torch.Tensor:
        return self.reshape(t) if self.reshape is not None else t

    def forward_hook(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        """The forward hook: store the output, hook its gradient, hand the rest of the network a copy."""
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"the target layer {type(module).__name__} returns {type(output).__name__}, not a tensor; "
                            "pick a layer whose output is one tensor")
        self.calls += 1
        self.output = output
        self.gradients = None
        self.activations = self._transform(output.detach())
        if output.requires_grad:
            self._tensor_hooks.append(output.register_hook(self.gradient_hook))
        # The rest of the network gets a copy: an in-place operation after the layer (ReLU(inplace=True), a
        # residual ``out += identity``) then cannot overwrite the recorded output. Same values, same gradients.
        return output.clone()

    def gradient_hook(self, grad: torch.Tensor) -> None:
        """The backward hook: runs when the gradient w.r.t. the layer's output has been computed."""
        self.gradients = self._transform(grad.detach()).clone()

    def release(self) -> None:
        """Remove the gradient hooks on the recorded output tensors."""
        for h in self._tensor_hooks:
            h.remove()
        self._tensor_hooks.clear()


@contextlib.contextmanager
def capture(
    model: nn.Module, layer: nn.Module | str, reshape: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> Iterator[ActivationsAndGradients]:
    """Record ``layer``'s output and its gradient while the context is open.

    >>> with capture(model, model.layer4) as rec:
    ...     score = model(x)[:, target].sum()
    ...     score.backward()
    >>> rec.activations.shape, rec.gradients.shape  # (B, C, h, w) twice

    Args:
        model: the network.
        layer: a module of ``model`` or its dotted name (:func:`resolve_layer`).
        reshape: maps the raw output to (B, C, h, w), e.g. ``helpers.cam.reshape_for`` a ViT.
    Returns:
        (yields) the :class:`ActivationsAndGradients` that the hooks fill. A forward hook stores the activations
        and registers a gradient hook on the output tensor; every hook is removed when the context exits.
    """
    module = resolve_layer(model, layer)
    rec = ActivationsAndGradients(reshape)
    try:
        with forward_hook(module, rec.forward_hook):
            yield rec
    finally:
        rec.release()


# ----------------------------------------------------------------------------------------------------------------
# Recording several layers, stopping the forward pass early
# ----------------------------------------------------------------------------------------------------------------


class StopForward(Exception):
    """Raised by :func:`record_outputs` (``stop_early=True``) once every layer is recorded, to skip the rest of the
    forward pass; :func:`run_until_stopped` catches it."""


@contextlib.contextmanager
def record_outputs(model: nn.Module, layers: Sequence[nn.Module | str],
                   stop_early: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """While open, every forward pass stores the output of each layer in the yielded dict.

    Args:
        model: the network.
        layers: modules of ``model`` or their names (:func:`resolve_layer`); a module is stored under its name in
            ``model.named_modules()``. A tuple output keeps its first element.
        stop_early: once all layers are recorded, raise :class:`StopForward` (run the model with
            :func:`run_until_stopped`), which saves the work of the layers after the last one needed.
    Returns:
        (yields) ``{name: output tensor}``, still attached to the graph. The network goes on with a copy, so an
        in-place operation after a layer cannot change what was recorded.
    """
    names_of = {id(m): n for n, m in model.named_modules()}
    modules: dict[str, nn.Module] = {}
    for layer in layers:
        m = resolve_layer(model, layer)
        modules[layer if isinstance(layer, str) else names_of[id(m)]] = m
    acts: dict[str, torch.Tensor] = {}

    def make_hook(name: str) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            out = _first_tensor(module, output)
            acts[name] = out
            if stop_early and len(acts) == len(modules):
                raise StopForward
            copy = out.clone()
            return (copy, *output[1:]) if isinstance(output, tuple) else copy

        return hook

    with contextlib.ExitStack() as stack:
        for name, m in modules.items():
            stack.enter_context(forward_hook(m, make_hook(name)))
        yield acts


def run_until_stopped(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``model(*args, **kwargs)``, or ``None`` when a hook stopped the forward pass with :class:`StopForward`."""
    try:
        return model(*args, **kwargs)
    except StopForward:
        return None


# ----------------------------------------------------------------------------------------------------------------
# The in-place-ReLU guard and hook counting
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def relu_not_inplace(model: nn.Module) -> Iterator[list[nn.ReLU]]:
    """``inplace=False`` on every ``nn.ReLU`` of ``model`` while open; the flags are restored on exit, also after
    an error. Needed by a hook that reads a ReLU's input (an in-place ReLU has overwritten it with the output) or
    that must see a layer's output before the ReLU after it changes it.

    Args:
        model: the network.
    Returns:
        (yields) the ``nn.ReLU`` modules of the model.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    flags = [m.inplace for m in relus]
    try:
        for m in relus:
            m.inplace = False
        yield relus
    finally:
        for m, flag in zip(relus, flags, strict=True):
            m.inplace = flag


def count_hooks(model: nn.Module) -> int:
    """Forward, forward-pre and backward hooks registered on any module of ``model`` (module hooks only: a
    gradient hook on a tensor is not counted)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())
