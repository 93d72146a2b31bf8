"""Where does a Vision Transformer look? Attention maps, q/k/v, attention rollout and its class-specific variants.

Notation: a ViT has ``L`` blocks; the input to every block is a sequence of ``T = P + N`` tokens, the ``P`` prefix
tokens first (``P = num_prefix_tokens``: 1 for the CLS token, 2 for DeiT-distilled's CLS + distillation token),
then the ``N = h * w`` patch tokens in row-major order. Attention probabilities are tensors ``(B, heads, T, T)``
whose rows (queries) sum to 1; a list of them is always ordered first block first.

* :func:`rollout` -- attention rollout (Abnar & Zuidema, 2020), with head fusion and a per-row discard ratio.
* :func:`grad_rollout` -- class-specific rollout of ``relu(attention * d score / d attention)``.
* :func:`chefer_relevance` -- Chefer, Gur & Wolf (ICCV 2021): ``R = I; R += mean_h(relu(grad * A)) @ R``.
* :func:`vit_gradcam` -- Grad-CAM on a ViT through ``pytorch-grad-cam`` with :func:`vit_reshape_transform`.
* :func:`record` -- record attention (and q/k/v, gradients) from the course ViT or a timm ViT (also when timm's
  attention is fused); one :class:`AttentionRecording` for both (defined in :mod:`helpers.attention_recording`).
* :func:`mean_attention_distance`, :func:`qk_similarity`, :func:`pca_rgb` -- looking inside the heads.

Why not the popular ``vit-explain`` code: it (1) normalises ``A + I`` by broadcasting the row sums over the columns
(``a / a.sum(dim=-1)`` without ``keepdim``), so rows are not stochastic; (2) flattens the batch before choosing the
entries to discard and then zeroes them only in the first sample; (3) protects only the single (CLS, CLS) entry from
being discarded; (4) pairs gradients, collected in backward order (last block first), with attentions collected in
forward order; and (5) on current timm its ``attn_drop`` hooks record nothing because attention is fused
(``F.scaled_dot_product_attention`` never calls ``attn_drop``). Every function here is written to avoid these bugs
and each one is tested in ``tests/test_attention.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .attention_recording import (
    AttentionRecording,
    TimmAttentionRecording,
    record,
    record_attention,
    timm_attention,
    vit_layout,
)
from .cam import vit_reshape

__all__ = [
    "HEAD_FUSIONS",
    "rollout",
    "grad_rollout",
    "chefer_relevance",
    "fuse_heads",
    "discard_lowest",
    "AttentionRecording",
    "record",
    "record_attention",
    "TimmAttentionRecording",
    "timm_attention",
    "vit_layout",
    "attention_to_grid",
    "mean_attention_distance",
    "qk_similarity",
    "pca_rgb",
    "vit_reshape_transform",
    "vit_gradcam",
    "explain_vit",
    "METHODS",
    "patch_deletion",
]

HEAD_FUSIONS = ("mean", "min", "max")


# --------------------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------------------


def _check_maps(maps: Sequence[torch.Tensor], what: str) -> list[torch.Tensor]:
    """Validate a list of (B, heads, T, T) tensors of one common shape; return them detached."""
    if isinstance(maps, torch.Tensor) or not isinstance(maps, (list, tuple)):
        raise TypeError(f"{what} must be a list of (B, heads, T, T) tensors (first block first), "
                        f"got {type(maps).__name__}")
    if len(maps) == 0:
        raise ValueError(f"{what} is empty: nothing was recorded (did the forward pass run inside the recorder?)")
    out = []
    for i, a in enumerate(maps):
        if a is None:
            raise ValueError(f"{what}[{i}] is None: block {i} did not run while its attention was recorded")
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"{what}[{i}] is {type(a).__name__}, expected a torch.Tensor")
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"{what}[{i}] has shape {tuple(a.shape)}, expected (B, heads, T, T)")
        if not a.is_floating_point():
            raise TypeError(f"{what}[{i}] has dtype {a.dtype}, expected a floating-point tensor")
        if a.shape != maps[0].shape:
            raise ValueError(f"{what}[{i}] has shape {tuple(a.shape)} but {what}[0] has {tuple(maps[0].shape)}: "
                             "all blocks must have the same batch, heads and tokens")
        out.append(a.detach().float() if a.dtype in (torch.float16, torch.bfloat16) else a.detach())
    return out


def _check_prefix(num_prefix_tokens: int, num_tokens: int) -> None:
    if not isinstance(num_prefix_tokens, int) or isinstance(num_prefix_tokens, bool):
        raise TypeError(f"num_prefix_tokens must be an int, got {type(num_prefix_tokens).__name__}")
    if not 1 <= num_prefix_tokens < num_tokens:
        raise ValueError(f"num_prefix_tokens must be in [1, T - 1] = [1, {num_tokens - 1}] (the CLS token is token 0), "
                         f"got {num_prefix_tokens}")


def _check_ratio(discard_ratio: float) -> None:
    if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float)):
        raise TypeError(f"discard_ratio must be a number in [0, 1), got {type(discard_ratio).__name__}")
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")


# --------------------------------------------------------------------------------------------------------------
# Rollout and friends
# --------------------------------------------------------------------------------------------------------------


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """Fuse the heads of one block's attention: (B, heads, T, T) -> (B, T, T) by ``mean``, ``min`` or ``max``."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    raise ValueError(f"unknown head_fusion {head_fusion!r}; use one of {HEAD_FUSIONS}")


def discard_lowest(fused: torch.Tensor, discard_ratio: float, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Zero the weakest attention links, row by row and sample by sample. (B, T, T) -> (B, T, T), a new tensor.

    Definition: with ``N = T - num_prefix_tokens`` patch tokens and ``k = floor(discard_ratio * N)``, in every row
    (one query token of one sample) the ``k`` smallest entries among the *patch columns* are set to 0. Prefix
    columns (CLS, distillation token) are never discarded, every sample of a batch and every row is treated on its
    own, and ties are broken by token index (lower index dropped first; ``stable`` sort).
    """
    _check_ratio(discard_ratio)
    n_patch = fused.shape[-1] - num_prefix_tokens
    k = int(math.floor(float(discard_ratio) * n_patch + 1e-9))
    out = fused.clone()
    if k == 0:
        return out
    patch = out[..., num_prefix_tokens:]
    drop = patch.argsort(dim=-1, stable=True)[..., :k]
    out[..., num_prefix_tokens:] = patch.scatter(-1, drop, 0.0)
    return out


def _roll(fused: list[torch.Tensor], discard_ratio: float, num_prefix_tokens: int) -> torch.Tensor:
    """Shared rollout core: list of fused (B, T, T) maps -> CLS row (B, N) of prod_l norm((A_l + I) / 2)."""
    b, t, _ = fused[0].shape
    eye = torch.eye(t, dtype=fused[0].dtype, device=fused[0].device)
    joint = eye.expand(b, t, t).clone()
    for a in fused:
        a = discard_lowest(a, discard_ratio, num_prefix_tokens)
        a = (a + eye) / 2  # the residual connection carries the token itself
        a = a / a.sum(dim=-1, keepdim=True)  # each row by ITS OWN sum
        joint = a @ joint  # later blocks act on the result of earlier ones
    return joint[:, 0, num_prefix_tokens:]


def rollout(
    attentions: Sequence[torch.Tensor],
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020).

    ``R = Ã_L ... Ã_2 Ã_1`` with ``Ã_l = rownorm((D(fuse_h A_l) + I) / 2)``: ``fuse_h`` fuses the heads
    (``head_fusion`` = ``"mean"``, ``"min"`` or ``"max"``), ``D`` is :func:`discard_lowest` (per sample, per row, the
    ``discard_ratio`` fraction of smallest patch entries; prefix tokens are kept), ``+ I`` models the residual
    connection and ``rownorm`` divides each row by its own sum, so every ``Ã_l`` and ``R`` are row-stochastic.

    Args:
        attentions: list (first block first) of attention probabilities (B, heads, T, T).
        head_fusion: how to fuse the heads of each block.
        discard_ratio: fraction in [0, 1) of the patch entries of every row to set to 0 before adding ``I``.
        num_prefix_tokens: prefix tokens before the patches (1 for ViT/DeiT, 2 for DeiT-distilled).

    Returns:
        (B, N) with ``N = T - num_prefix_tokens``: row 0 (the CLS token) of ``R`` over the patch tokens, detached,
        in row-major patch order (use :func:`attention_to_grid` to make it an image). The entries are >= 0 and sum
        to at most 1 (the rest of the CLS row's mass sits on the prefix tokens).
    """
    maps = _check_maps(attentions, "attentions")
    _check_prefix(num_prefix_tokens, maps[0].shape[-1])
    _check_ratio(discard_ratio)
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"unknown head_fusion {head_fusion!r}; use one of {HEAD_FUSIONS}")
    return _roll([fuse_heads(a, head_fusion) for a in maps], discard_ratio, num_prefix_tokens)


def _weighted(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per block ``mean_h(relu(A * dS/dA))``: (B, T, T) each, block i paired with gradient i."""
    maps = _check_maps(attentions, "attentions")
    grads = _check_maps(gradients, "gradients")
    if len(maps) != len(grads):
        raise ValueError(f"{len(maps)} attention maps but {len(grads)} gradients: give one gradient per block")
    if maps[0].shape != grads[0].shape:
        raise ValueError(f"attentions have shape {tuple(maps[0].shape)} but gradients {tuple(grads[0].shape)}")
    return [(a * g).clamp(min=0).mean(dim=1) for a, g in zip(maps, grads, strict=True)]


def grad_rollout(
    attentions: Sequence[torch.Tensor],
    gradients: Sequence[torch.Tensor],
    discard_ratio: float = 0.0,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Class-specific (gradient) attention rollout. Returns (B, N) like :func:`rollout`.

    Each block's heads are weighted by the gradient of the target score ``S`` with respect to the attention
    probabilities, negatives clamped to 0, then the heads are averaged: ``F_l = mean_h(relu(A_l * dS/dA_l))``
    (clamp *before* the mean; ``vit-explain`` clamps after it). ``F_l`` goes through the same
    ``rownorm((D(F_l) + I) / 2)`` and product as :func:`rollout`. ``gradients[i]`` must belong to
    ``attentions[i]`` (first block first, as ``rec.gradients`` of :func:`record` gives them).
    """
    fused = _weighted(attentions, gradients)
    _check_prefix(num_prefix_tokens, fused[0].shape[-1])
    _check_ratio(discard_ratio)
    return _roll(fused, discard_ratio, num_prefix_tokens)


def chefer_relevance(
    attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor], num_prefix_tokens: int = 1
) -> torch.Tensor:
    """Chefer, Gur & Wolf (ICCV 2021), "Generic attention-model explainability". Returns (B, N).

    ``R = I``; for each block, first to last, ``R <- R + Ā_l R`` with ``Ā_l = mean_h(relu(dS/dA_l * A_l))``.
    Returns row 0 (CLS) of ``R`` over the patch tokens. Unlike rollout there is no normalisation: the relevance
    accumulates, and a block whose gradient is 0 leaves ``R`` unchanged.
    """
    fused = _weighted(attentions, gradients)
    _check_prefix(num_prefix_tokens, fused[0].shape[-1])
    b, t, _ = fused[0].shape
    relevance = torch.eye(t, dtype=fused[0].dtype, device=fused[0].device).expand(b, t, t).clone()
    for a in fused:
        relevance = relevance + a @ relevance
    return relevance[:, 0, num_prefix_tokens:]


# --------------------------------------------------------------------------------------------------------------
# Looking inside the heads
# --------------------------------------------------------------------------------------------------------------


def _grid(grid_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(grid_size, int):
        return grid_size, grid_size
    if len(grid_size) != 2:
        raise ValueError(f"grid_size must be an int or (h, w), got {grid_size!r}")
    return int(grid_size[0]), int(grid_size[1])


def attention_to_grid(cls_row: torch.Tensor, grid_size: int | Sequence[int]) -> torch.Tensor:
    """Reshape patch scores to the patch grid: (N,) -> (h, w), or (..., N) -> (..., h, w); ``N`` must be ``h*w``."""
    h, w = _grid(grid_size)
    if cls_row.shape[-1] != h * w:
        raise ValueError(f"last dimension {cls_row.shape[-1]} is not h*w = {h}*{w} = {h * w}; drop the prefix "
                         "tokens first (rollout() already does)")
    return cls_row.reshape(*cls_row.shape[:-1], h, w)


def mean_attention_distance(
    attn: torch.Tensor, grid_size: int | Sequence[int], num_prefix_tokens: int = 1, patch_size: int = 1
) -> torch.Tensor:
    """Mean attention distance of every head (Dosovitskiy et al., 2021, Fig. 7): (B, heads, T, T) -> (B, heads).

    For each query patch ``i``: ``d_i = sum_j a_ij ||p_i - p_j|| / sum_j a_ij`` over the key patches ``j`` (prefix
    tokens are left out as queries and keys, and each patch row is renormalised over the patches), with patch centres
    ``p`` in pixels (``patch_size`` pixels apart). The result is ``d_i`` averaged over the query patches: how far,
    in pixels, a head typically looks. Computed in float64 on the CPU (Apple's MPS has no float64); the result is on
    ``attn``'s device, in its dtype.
    """
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attn must have shape (B, heads, T, T), got {tuple(attn.shape)}")
    h, w = _grid(grid_size)
    _check_prefix(num_prefix_tokens, attn.shape[-1])
    if attn.shape[-1] - num_prefix_tokens != h * w:
        raise ValueError(f"T - num_prefix_tokens = {attn.shape[-1] - num_prefix_tokens} is not h*w = {h * w}")
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([ys, xs], dim=-1).reshape(-1, 2).to(torch.float64) * patch_size
    dist = torch.cdist(pos, pos)  # (N, N)
    a = attn.detach()[..., num_prefix_tokens:, num_prefix_tokens:].cpu().double()
    a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return (a * dist).sum(dim=-1).mean(dim=-1).to(attn.device, attn.dtype)


def qk_similarity(
    q: torch.Tensor,
    k: torch.Tensor,
    patch_index: int | tuple[int, int],
    num_prefix_tokens: int = 1,
    scaled: bool = True,
) -> torch.Tensor:
    """How much does one query patch "like" every key patch: (B, heads, T, d) x2 -> (B, heads, N).

    ``s_j = q_i . k_j / sqrt(d)`` (``scaled=False``: without ``1/sqrt(d)``) for the query token
    ``i = num_prefix_tokens + patch_index`` and every patch token ``j``. ``patch_index`` is the index in the
    row-major patch grid, or ``(row, col)`` on a square grid. ``softmax`` of these logits over *all* keys (prefix
    included) is exactly row ``i`` of the attention.
    """
    if q.ndim != 4 or q.shape != k.shape:
        raise ValueError(f"q and k must both have shape (B, heads, T, d), got {tuple(q.shape)} and {tuple(k.shape)}")
    _check_prefix(num_prefix_tokens, q.shape[-2])
    n = q.shape[-2] - num_prefix_tokens
    if isinstance(patch_index, tuple):
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"(row, col) needs a square patch grid; {n} patches is not square: pass a flat index")
        r, c = patch_index
        if not (0 <= r < side and 0 <= c < side):
            raise IndexError(f"patch (row, col) = {patch_index} is outside the {side}x{side} grid")
        patch_index = r * side + c
    if not 0 <= patch_index < n:
        raise IndexError(f"patch_index {patch_index} is outside [0, {n})")
    i = num_prefix_tokens + patch_index
    s = (q[:, :, i : i + 1] @ k[:, :, num_prefix_tokens:].transpose(-2, -1)).squeeze(-2)
    return s * q.shape[-1] ** -0.5 if scaled else s


def pca_rgb(
    tokens: torch.Tensor, grid_size: int | Sequence[int], num_prefix_tokens: int = 0
) -> torch.Tensor:
    """Show token features as colours: the first 3 principal components of the patch tokens as RGB.

    Args:
        tokens: (B, T, D) token features, or (B, heads, T, d) per-head q/k/v (heads are concatenated to
            ``heads*d`` features), or (T, D) for one image.
        grid_size: the patch grid (h, w) (or an int for a square grid).
        num_prefix_tokens: leading tokens to drop first (0 when ``tokens`` are patches only).

    Returns:
        (B, h, w, 3) in [0, 1] ((h, w, 3) for a 2-D input). One PCA is fitted on the patches of *all* images
        together (so colours are comparable across images); each component is min-max scaled over all patches. The
        sign of each component is fixed so that its largest-magnitude loading is positive (deterministic output).
        The PCA runs in float64 on the CPU (Apple's MPS has no float64), so the colours are on the CPU, ready to plot.
    """
    single = tokens.ndim == 2
    x = tokens.detach()[None] if single else tokens.detach()
    if x.ndim == 4:
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)
    if x.ndim != 3:
        raise ValueError(f"tokens must have shape (B, T, D), (B, heads, T, d) or (T, D), got {tuple(tokens.shape)}")
    x = x[:, num_prefix_tokens:]
    h, w = _grid(grid_size)
    b, n, d = x.shape
    if n != h * w:
        raise ValueError(f"{n} tokens after dropping {num_prefix_tokens} prefix tokens, but the grid has {h * w}")
    if d < 3 or b * n < 3:
        raise ValueError(f"need at least 3 features and 3 tokens for a 3-component PCA, got {d} and {b * n}")
    flat = x.reshape(b * n, d).cpu().double()
    flat = flat - flat.mean(dim=0)
    _, _, vh = torch.linalg.svd(flat, full_matrices=False)
    comps = vh[:3]  # (3, D)
    sign = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    comps = comps * torch.where(sign == 0, torch.ones_like(sign), sign)
    scores = flat @ comps.T  # (B*N, 3)
    lo, hi = scores.amin(dim=0), scores.amax(dim=0)
    rgb = ((scores - lo) / (hi - lo).clamp_min(1e-12)).reshape(b, h, w, 3).float()
    return rgb[0] if single else rgb


# --------------------------------------------------------------------------------------------------------------
# Grad-CAM for ViTs and a one-call front end
# --------------------------------------------------------------------------------------------------------------


def vit_reshape_transform(
    num_prefix_tokens: int = 1, grid_size: int | Sequence[int] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``reshape_transform`` for pytorch-grad-cam: tokens (B, T, C) -> feature map (B, C, h, w).

    Drops the ``num_prefix_tokens`` prefix tokens and lays the patch tokens out on the grid (square if
    ``grid_size`` is None), so Grad-CAM can treat the ``C`` token features as channels: :func:`helpers.cam.vit_reshape`
    with its arguments fixed.
    """
    grid = None if grid_size is None else _grid(grid_size)
    return functools.partial(vit_reshape, num_prefix_tokens=num_prefix_tokens, grid=grid)


def vit_gradcam(
    model: nn.Module, x: torch.Tensor, target: int | Sequence[int], target_layer: nn.Module | None = None
) -> torch.Tensor:
    """Grad-CAM on a ViT with ``pytorch_grad_cam.GradCAM``: (B, 3, H, W) -> (B, H, W) in [0, 1] (per image).

    The target layer defaults to ``model.blocks[-1].norm1`` (the input of the last attention, whose patch tokens
    still influence the CLS token); tokens are reshaped with :func:`vit_reshape_transform`. ``target`` is one class
    for all images or one per image. pytorch-grad-cam min-max normalises each map and upsamples it to (H, W).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    npt, grid, _ = vit_layout(model)
    layer = target_layer if target_layer is not None else model.blocks[-1].norm1  # type: ignore[index]
    targets = [target] * x.shape[0] if isinstance(target, int) else list(target)
    if len(targets) != x.shape[0]:
        raise ValueError(f"{len(targets)} targets for a batch of {x.shape[0]} images")
    with GradCAM(model=model, target_layers=[layer], reshape_transform=vit_reshape_transform(npt, grid)) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return torch.from_numpy(maps).float()


METHODS = ("attention", "rollout", "grad_rollout", "chefer", "gradcam")


def explain_vit(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "rollout",
    target: int | Sequence[int] | None = None,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """One call for every map of this module, for the course ViT or a timm ViT. Returns (B, h, w) patch-grid maps
    (``"gradcam"``: (B, H, W) image-size maps in [0, 1]).

    ``method``: ``"attention"`` (last block's CLS attention, heads fused), ``"rollout"``, ``"grad_rollout"``,
    ``"chefer"`` or ``"gradcam"``. Class-specific methods need ``target`` (None: the predicted class of each image).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    npt, grid, _ = vit_layout(model)
    model.eval()
    if method in ("attention", "rollout"):
        with torch.no_grad(), record(model) as rec:
            model(x)
        if method == "attention":
            return attention_to_grid(fuse_heads(rec.attentions[-1], head_fusion)[:, 0, npt:], grid)
        return attention_to_grid(rollout(rec.attentions, head_fusion, discard_ratio, npt), grid)
    if target is None:
        with torch.no_grad():
            target = model(x).argmax(dim=1).tolist()
    targets = [target] * x.shape[0] if isinstance(target, int) else list(target)
    if method == "gradcam":
        return vit_gradcam(model, x, targets)
    with torch.enable_grad(), record(model, gradients=True) as rec:
        logits = model(x)
        model.zero_grad(set_to_none=True)
        logits.gather(1, torch.tensor(targets, device=logits.device)[:, None]).sum().backward()
    model.zero_grad(set_to_none=True)
    atts = [a.detach() for a in rec.attentions]
    if method == "grad_rollout":
        return attention_to_grid(grad_rollout(atts, rec.gradients, discard_ratio, npt), grid)
    return attention_to_grid(chefer_relevance(atts, rec.gradients, npt), grid)


# --------------------------------------------------------------------------------------------------------------
# A first faithfulness measurement
# --------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def patch_deletion(
    model: nn.Module,
    x: torch.Tensor,
    patch_scores: torch.Tensor,
    target: int,
    patch_size: int | Sequence[int],
    fractions: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
    baseline: float = 0.0,
) -> torch.Tensor:
    """Deletion curve on the patch grid: delete the highest-scoring patches first, watch the target probability.

    Args:
        model: classifier, (B, 3, H, W) -> logits.
        x: ONE normalised image (1, 3, H, W) (or (3, H, W)).
        patch_scores: (h, w) or (h*w,) importance of every patch (e.g. a rollout map); higher = deleted earlier;
            ties broken by patch index.
        target: the class whose softmax probability is tracked.
        patch_size: pixels per patch side (int or (ph, pw)); ``h*ph`` must equal H (and ``w*pw`` W).
        fractions: fractions of the patches deleted, each in [0, 1].
        baseline: the value deleted pixels get (0 = the dataset mean for normalised inputs).

    Returns:
        (len(fractions),) target probabilities. A faithful map makes the curve fall fast: its area (e.g.
        ``torch.trapezoid(probs, torch.tensor(fractions))``) is small compared with a random order's.
    """
    x = x[None] if x.ndim == 3 else x
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image (1, 3, H, W), got {tuple(x.shape)}")
    ph, pw = _grid(patch_size)
    h, w = x.shape[-2] // ph, x.shape[-1] // pw
    if h * ph != x.shape[-2] or w * pw != x.shape[-1]:
        raise ValueError(f"image size {tuple(x.shape[-2:])} is not a multiple of the patch size {(ph, pw)}")
    scores = patch_scores.detach().reshape(-1).to(x.device)
    if scores.numel() != h * w:
        raise ValueError(f"patch_scores has {scores.numel()} entries but the image has {h}x{w} patches")
    if any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must lie in [0, 1], got {list(fractions)}")
    order = torch.argsort(-scores.float(), stable=True)
    batch = []
    for f in fractions:
        keep = torch.ones(h * w, device=x.device)
        keep[order[: int(round(f * h * w))]] = 0.0
        mask = keep.reshape(1, 1, h, w).repeat_interleave(ph, dim=2).repeat_interleave(pw, dim=3)
        batch.append(x * mask + baseline * (1 - mask))
    return model(torch.cat(batch)).float().softmax(dim=-1)[:, target].cpu()
