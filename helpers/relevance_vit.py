"""Relevance for the course ViT: conservative propagation (CP-LRP) and AttnLRP in the gradient x input form.

Both methods compute gradient x input after changing the backward pass of the non-linear parts of a transformer,
so that relevance is neither created nor destroyed there:

* **CP-LRP** (Ali et al. 2022, "conservative propagation"): the attention probabilities and the LayerNorm's
  normalisation ``1 / std`` are treated as constants in the backward pass (detached); the rest is gradient x input.
* **AttnLRP** (Achtibat et al. 2024): the LayerNorm's ``1 / std`` detached as above; the element-wise GELU uses
  the *identity rule* (relevance passes unchanged: its gradient is replaced by ``gelu(z) / z``); the two matrix
  products of attention, ``q k^T`` and ``A v``, use the *uniform rule* (each factor gets half), i.e. the gradient
  reaching ``q`` and ``k`` is divided by 4 and the one reaching ``v`` by 2; the softmax keeps its gradient (its
  gradient x input is AttnLRP's softmax rule).

Everything runs on the course model's own modules (:class:`helpers.cifar_models.CourseViT`): their ``forward``
methods are replaced for the duration of one call by a context manager that restores them, also after an error.
The ResNet tokenizer (convolutions, BatchNorm, max-pooling, a residual sum) is propagated by gradient x input with
the GELU rule above. Biases, the CLS token and the positional embeddings absorb relevance, so the input relevance
does not add up to the logit exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attribution import class_indices
from .validation import check_images

__all__ = ["MODES", "GELU_RULES", "lrp_forward", "vit_relevance"]

MODES = ("cp", "attnlrp")
GELU_RULES = ("gradient", "identity")


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the backward multiplies the incoming gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad * ctx.factor, None


class _IdentityRule(torch.autograd.Function):
    """``y = f(z)`` element-wise, whose backward is ``grad * f(z) / z``: then ``z * grad_z = y * grad_y``."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, fn) -> torch.Tensor:  # type: ignore[override]
        y = fn(z)
        safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
        ctx.save_for_backward(y / safe)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (ratio,) = ctx.saved_tensors
        return grad * ratio, None


def _attention_forward(module: nn.Module, mode: str):
    def forward(x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = module.qkv(x).reshape(b, t, 3, module.heads, module.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if mode == "cp":
            q, k = q.detach(), k.detach()  # the attention probabilities are constants of the backward pass
        else:
            q, k, v = _ScaleGrad.apply(q, 0.25), _ScaleGrad.apply(k, 0.25), _ScaleGrad.apply(v, 0.5)
        attn = ((q * module.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return module.proj((attn @ v).transpose(1, 2).reshape(b, t, d))

    return forward


def _layer_norm_forward(module: nn.LayerNorm):
    def forward(x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(-1, keepdim=True)
        std = torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + module.eps)
        y = centred / std.detach()
        if module.weight is not None:
            y = y * module.weight
        return y + module.bias if module.bias is not None else y

    return forward


def _gelu_forward(module: nn.GELU):
    return lambda z: _IdentityRule.apply(z, lambda t: F.gelu(t, approximate=module.approximate))


@contextlib.contextmanager
def lrp_forward(model: nn.Module, mode: str = "attnlrp", gelu: str | None = None) -> Iterator[nn.Module]:
    """Within the block, ``model`` (a course ViT) computes the same outputs with the backward pass of ``mode``
    (:data:`MODES`); ``gelu`` (:data:`GELU_RULES`, default: ``"identity"`` for AttnLRP, ``"gradient"`` for CP-LRP).
    The original ``forward`` methods are restored on exit."""
    from .cifar_models import Attention, CourseViT

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    gelu = gelu or ("identity" if mode == "attnlrp" else "gradient")
    if gelu not in GELU_RULES:
        raise ValueError(f"unknown GELU rule {gelu!r}; use one of {', '.join(GELU_RULES)}")
    if not isinstance(model, CourseViT):
        raise TypeError(f"lrp_forward needs the course ViT (helpers.cifar_models.CourseViT), got "
                        f"{type(model).__name__}; for CNNs use helpers.relevance.lrp")
    patched: list[nn.Module] = []
    try:
        for m in model.modules():
            if isinstance(m, Attention):
                m.forward = _attention_forward(m, mode)
            elif isinstance(m, nn.LayerNorm):
                m.forward = _layer_norm_forward(m)
            elif isinstance(m, nn.GELU) and gelu == "identity":
                m.forward = _gelu_forward(m)
            else:
                continue
            patched.append(m)
        yield model
    finally:
        for m in patched:
            del m.forward  # the instance attribute; the class's forward is visible again


def vit_relevance(model: nn.Module, x: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
                  mode: str = "attnlrp", gelu: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Input relevance (B, C, H, W) of the ``target`` logit (None: predicted) and the explained logits (B,):
    gradient x input under :func:`lrp_forward`."""
    check_images(x, "x")
    with lrp_forward(model, mode, gelu), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        out = model(xg)
        t = class_indices(out.argmax(1) if target is None else target, x.shape[0], out.shape[1], out.device)
        logit = out.gather(1, t[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad(logit.sum(), xg)
    return (xg * grad).detach(), logit.detach()
