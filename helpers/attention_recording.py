"""Recording attention: one recorder for the course ViT (``helpers.cifar_models.Attention``) and timm ViTs.

* :func:`record` (also ``record_attention``, ``timm_attention``) -- a context manager that collects every attention
  module's probabilities (B, heads, T, T), optionally q/k/v (B, heads, T, head_dim) and the gradients with respect
  to the attention, in an :class:`AttentionRecording`; everything it changed is undone on exit.
* :func:`vit_layout` -- the number of prefix tokens, the patch grid and the patch size of a ViT.

:mod:`helpers.attention` re-exports all of these; the maps built from them (rollout, ...) live there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .cifar_models import Attention as CourseAttention
from .hooks import forward_hook

__all__ = [
    "AttentionRecording",
    "record",
    "record_attention",
    "timm_attention",
    "TimmAttentionRecording",
    "vit_layout",
    "is_course_vit",
]


def _is_timm_attention(m: nn.Module) -> bool:
    return all(hasattr(m, name) for name in ("fused_attn", "attn_drop", "qkv", "num_heads", "head_dim")) \
        and isinstance(m.attn_drop, nn.Module)


def _course_attention_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, CourseAttention)]


def is_course_vit(model: nn.Module) -> bool:
    """Whether ``model`` contains attention modules of the course ViT (``helpers.cifar_models.Attention``)."""
    return bool(_course_attention_modules(model))


class AttentionRecording:
    """What :func:`record` collected, one entry per attention module, first block first (the course ViT's
    ``helpers.cifar_models.Attention`` or timm's ``Attention``).

    Properties (each raises ``RuntimeError`` saying what to do when it has nothing to give; entry i is None for a
    block that did not run inside the recording, e.g. when only ``model.blocks[0].attn(tokens)`` was called):
        attentions: list of (B, heads, T, T) attention probabilities (rows sum to 1). Detached, unless the recording
            keeps the graph (``gradients=True`` or ``detach=False``): then they are the tensors of the forward pass
            itself, so ``torch.autograd.grad(score, rec.attentions)`` works.
        queries, keys, values: lists of (B, heads, T, head_dim), always detached (only with ``qkv=True``). q and k
            are the ones that enter ``q k^T`` (after timm's optional q/k-norm, before the ``1/sqrt(d)`` scale).
        gradients: after ``backward()``, list of d(score)/d(attention) (B, heads, T, T) (only with
            ``gradients=True``); entry i belongs to block i although backward visits the blocks last first.
    """

    def __init__(self, n: int, qkv: bool, gradients: bool, detach: bool) -> None:
        self.n, self.want_qkv, self.want_grad = n, qkv, gradients
        self.detach = detach and not gradients  # gradients need the graph
        self._attn: list[torch.Tensor | None] = [None] * n
        self._q: list[torch.Tensor | None] = [None] * n
        self._k: list[torch.Tensor | None] = [None] * n
        self._v: list[torch.Tensor | None] = [None] * n
        self._grads: list[torch.Tensor | None] = [None] * n

    def _full(self, items: list[torch.Tensor | None], what: str) -> list[torch.Tensor]:
        if all(x is None for x in items):
            raise RuntimeError(f"{what}: all {self.n} blocks recorded nothing -- run the model's forward pass inside "
                               "the `with attention.record(model) as rec:` block")
        return list(items)  # type: ignore[arg-type]

    @property
    def attentions(self) -> list[torch.Tensor]:
        return self._full(self._attn, "attentions")

    @property
    def queries(self) -> list[torch.Tensor]:
        return self._full(self._need_qkv(self._q), "queries")

    @property
    def keys(self) -> list[torch.Tensor]:
        return self._full(self._need_qkv(self._k), "keys")

    @property
    def values(self) -> list[torch.Tensor]:
        return self._full(self._need_qkv(self._v), "values")

    @property
    def gradients(self) -> list[torch.Tensor]:
        if not self.want_grad:
            raise RuntimeError("gradients were not recorded: use attention.record(model, gradients=True)")
        if all(g is None for g in self._grads):
            raise RuntimeError("no gradients yet: call backward() on a score computed inside the recording first")
        return list(self._grads)  # type: ignore[arg-type]

    def _need_qkv(self, items: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        if not self.want_qkv:
            raise RuntimeError("q/k/v were not recorded: use attention.record(model, qkv=True)")
        return items

    def _store(self, i: int, attn: torch.Tensor | None = None, q: torch.Tensor | None = None,
               k: torch.Tensor | None = None, v: torch.Tensor | None = None) -> None:
        """Block ``i``'s attention (B, heads, T, T) and/or q, k, v (B, heads, T, head_dim)."""
        if attn is not None:
            if self.want_grad and attn.requires_grad:

                def save_grad(g: torch.Tensor) -> None:
                    self._grads[i] = g.detach()

                attn.register_hook(save_grad)
            self._attn[i] = attn.detach() if self.detach else attn
        if q is not None and k is not None and v is not None and self.want_qkv:
            self._q[i], self._k[i], self._v[i] = q.detach(), k.detach(), v.detach()


#: id() of every attention module inside an open :func:`record` (two recordings of one module would mix up)
_RECORDING: set[int] = set()
_MISSING = object()


@torch.no_grad()
def _timm_qkv(module: nn.Module, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """timm's ``qkv`` projection output (B, T, 3 * dim) -> q, k, v (B, heads, T, head_dim), q/k-norm applied."""
    b, t, _ = output.shape
    q, k, v = output.reshape(b, t, 3, module.num_heads, module.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    return module.q_norm(q), module.k_norm(k), v


def _unfuse(module: nn.Module) -> Callable[[], None]:
    """Switch a timm attention module to its explicit path; return the function that restores its flag."""
    saved = module.__dict__.get("fused_attn", _MISSING)
    module.fused_attn = False

    def restore() -> None:
        if saved is _MISSING:
            del module.fused_attn  # it was a class attribute: fall back to it again
        else:
            module.fused_attn = saved

    return restore


@contextlib.contextmanager
def record(
    model: nn.Module, *, qkv: bool = False, gradients: bool = False, detach: bool = True
) -> Iterator[AttentionRecording]:
    """Record the attention of every attention module of a ViT while the context is open: the course ViT
    (``helpers.cifar_models.Attention``) or a timm ViT/DeiT. Yields an :class:`AttentionRecording`.

    >>> with torch.no_grad(), record(vit, qkv=True) as rec:
    ...     vit(x)
    >>> rec.attentions[0].shape, rec.queries[0].shape  # (B, heads, T, T), (B, heads, T, head_dim)
    >>> with record(deit, gradients=True) as rec:
    ...     deit(x)[0, 281].backward()
    >>> len(rec.gradients)  # 12, first block first

    The course ViT's attention computes the probabilities explicitly while a recording is attached to it.
    timm's attention is fused (``F.scaled_dot_product_attention``, the default on current torch/timm): the
    probabilities never exist as a tensor and ``attn_drop`` is never called, so hooks on it see nothing. The
    recording therefore sets ``fused_attn = False`` on every timm attention module (the explicit
    ``softmax(q k^T * scale)`` path computes the same output), hooks ``attn_drop`` (its output is the attention that
    multiplies ``v``; dropout is the identity in eval mode) and, with ``qkv=True``, the ``qkv`` projection.

    ``gradients=True`` keeps the attention's graph and collects d(score)/d(attention) when you call ``backward()``;
    ``detach=False`` keeps the graph without collecting gradients. On exit, also after an exception, every hook is
    removed, every ``fused_attn`` flag restored and the course modules detached from the recording. A module that
    is already being recorded raises ``RuntimeError``; a model without attention modules ``ValueError``.
    """
    course = _course_attention_modules(model)
    modules = course or [m for m in model.modules() if _is_timm_attention(m)]
    if not modules:
        raise ValueError(f"{type(model).__name__} has no attention modules to record: neither "
                         "helpers.cifar_models.Attention (the course ViT) nor timm Attention (with fused_attn, qkv "
                         "and attn_drop)")
    if any(id(m) in _RECORDING for m in modules):
        raise RuntimeError("attention is already being recorded on (part of) this model")
    rec = AttentionRecording(len(modules), qkv=qkv, gradients=gradients, detach=detach)
    with contextlib.ExitStack() as undo:  # unwinds in reverse order, also after an exception
        for i, m in enumerate(modules):
            _RECORDING.add(id(m))
            undo.callback(_RECORDING.discard, id(m))
            if course:
                m.recording = functools.partial(rec._store, i)
                undo.callback(setattr, m, "recording", None)
                continue
            undo.callback(_unfuse(m))
            undo.enter_context(forward_hook(m.attn_drop, lambda _m, _in, out, i=i: rec._store(i, out)))
            if qkv:
                undo.enter_context(forward_hook(
                    m.qkv, lambda _m, _in, out, i=i, m=m: rec._store(i, None, *_timm_qkv(m, out))))
        yield rec


#: other names of :func:`record` and :class:`AttentionRecording` used by the notebooks (``record_attention`` for
#: the course ViT in 01, 02 and 07, ``timm_attention`` for a timm ViT)
record_attention = record
timm_attention = record
TimmAttentionRecording = AttentionRecording


def vit_layout(model: nn.Module) -> tuple[int, tuple[int, int], tuple[int, int]]:
    """``(num_prefix_tokens, (grid_h, grid_w), (patch_h, patch_w))`` of the course ViT or a timm ViT."""
    npt = int(getattr(model, "num_prefix_tokens", 1))
    if is_course_vit(model):
        g, p = model.grid_size, model.config.patch_size  # type: ignore[union-attr]
        return npt, (g, g), (p, p)
    pe = getattr(model, "patch_embed", None)
    if pe is None or not hasattr(pe, "grid_size"):
        raise ValueError(f"cannot find the patch grid of {type(model).__name__} (no patch_embed.grid_size)")
    grid, patch = pe.grid_size, pe.patch_size
    grid = tuple(grid) if isinstance(grid, (tuple, list)) else (grid, grid)
    patch = tuple(patch) if isinstance(patch, (tuple, list)) else (patch, patch)
    return npt, (int(grid[0]), int(grid[1])), (int(patch[0]), int(patch[1]))
