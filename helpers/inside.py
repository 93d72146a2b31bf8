"""Inside the course ViT: the residual stream, the logit lens, direct logit attribution and activation patching.

Everything here runs the course's :class:`~helpers.cifar_models.CourseViT` by hand, block by block, from the same
weights as ``model.forward`` (tested to agree), so that every intermediate activation can be read (a *cache*) or
replaced (a *patch*) without hooks:

* ``resid_pre.{l}`` (B, T, D): the residual stream entering block ``l``; ``resid_pre.0`` is the embedding
  (CLS token + patch tokens + positions) and ``resid_pre.{L}`` (L = number of blocks) the stream after the last
  block, which the final LayerNorm and the head read at the CLS token (index 0);
* ``attn_out.{l}`` (B, T, D): what block ``l``'s attention adds to the stream (output projection and its bias);
* ``mlp_out.{l}`` (B, T, D): what block ``l``'s MLP adds;
* ``head.{l}.{h}`` (B, T, d_head): head ``h``'s output ``z = A V`` before the output projection (patchable);
* ``pattern.{l}`` (B, H, T, T): the attention probabilities (read only).

T = 1 + N tokens (CLS first), D the model width, H heads of width d_head = D / H.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Patch",
    "site_names",
    "run_with_cache",
    "residual_stream",
    "read_out",
    "logit_lens",
    "frozen_ln_logit",
    "direct_logit_attribution",
    "patch_activations",
    "logit_difference",
    "fraction_restored",
    "patching_sweep",
    "head_means",
    "ablate_heads",
]

_SITE = re.compile(r"^(resid_pre|attn_out|mlp_out|pattern)\.(\d+)$|^head\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Patch:
    """A replacement for one site: ``value`` has the site's shape (B, T, ...) or (T, ...) (broadcast over the
    batch); only the token positions ``tokens`` are replaced (``None``: every token)."""

    value: torch.Tensor
    tokens: Sequence[int] | None = None


def _check_model(model: nn.Module) -> None:
    needed = ("tokens", "blocks", "norm", "head")
    if not all(hasattr(model, name) for name in needed) or not hasattr(model.blocks[0], "attn"):
        raise TypeError(
            f"expected the course ViT (helpers.cifar_models.CourseViT, with {', '.join(needed)}); "
            f"got {type(model).__name__}"
        )


def site_names(model: nn.Module) -> list[str]:
    """Every site of ``model`` in the order the forward pass reaches it."""
    _check_model(model)
    names = []
    for layer, block in enumerate(model.blocks):
        names.append(f"resid_pre.{layer}")
        names += [f"head.{layer}.{h}" for h in range(block.attn.heads)]
        names += [f"pattern.{layer}", f"attn_out.{layer}", f"mlp_out.{layer}"]
    names.append(f"resid_pre.{len(model.blocks)}")
    return names


def _check_sites(model: nn.Module, sites: Mapping[str, Patch] | Sequence[str]) -> None:
    known = set(site_names(model))
    for site in sites:
        if site not in known:
            m = _SITE.match(site)
            hint = "a layer or head index is out of range" if m else "sites are named like 'resid_pre.2', 'head.1.3'"
            sample = ", ".join(site_names(model)[:7])
            raise KeyError(f"unknown site {site!r} ({hint}); this model's sites are {sample}, ...")
        if site.startswith("pattern.") and isinstance(sites, Mapping):
            raise ValueError(f"{site!r} is read-only: patch the heads' outputs ('head.l.h') instead")


def _apply(site: str, value: torch.Tensor, patches: Mapping[str, Patch] | None) -> torch.Tensor:
    if not patches or site not in patches:
        return value
    patch = patches[site]
    new = patch.value.to(device=value.device, dtype=value.dtype)
    if new.shape != value.shape:
        if new.shape == value.shape[1:]:
            new = new.expand_as(value)
        else:
            raise ValueError(f"patch for {site!r} has shape {tuple(new.shape)}; the site has {tuple(value.shape)}")
    if patch.tokens is None:
        return new.clone()
    out = value.clone()
    idx = torch.as_tensor(list(patch.tokens), dtype=torch.long, device=value.device)
    out[:, idx] = new[:, idx]
    return out


def run_with_cache(
    model: nn.Module, x: torch.Tensor, patches: Mapping[str, Patch] | None = None, *, embedded: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the course ViT by hand, recording every site and applying ``patches``.

    Args:
        model: a :class:`~helpers.cifar_models.CourseViT` (in eval mode: dropout is not applied here).
        x: images (B, 3, H, W), normalised as for the model; or the embedding (B, T, D) with ``embedded=True``.
        patches: site name -> :class:`Patch`; a patched site's new value flows into everything after it.

    Returns:
        ``(logits (B, classes), cache)``, the cache mapping every site name to its (patched) value.
    """
    _check_model(model)
    if patches:
        _check_sites(model, patches)
    cache: dict[str, torch.Tensor] = {}
    t = x if embedded else model.tokens(x)
    if t.dim() != 3:
        raise ValueError(f"expected the embedding (B, T, D), got shape {tuple(t.shape)}")
    for layer, block in enumerate(model.blocks):
        t = cache[f"resid_pre.{layer}"] = _apply(f"resid_pre.{layer}", t, patches)
        attn = block.attn
        b, n, d = t.shape
        qkv = attn.qkv(block.norm1(t)).reshape(b, n, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, H, T, d_head)
        pattern = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        cache[f"pattern.{layer}"] = pattern
        z = pattern @ v  # (B, H, T, d_head)
        heads = []
        for h in range(attn.heads):
            zh = cache[f"head.{layer}.{h}"] = _apply(f"head.{layer}.{h}", z[:, h], patches)
            heads.append(zh)
        a = attn.proj(torch.cat(heads, dim=-1))
        a = cache[f"attn_out.{layer}"] = _apply(f"attn_out.{layer}", a, patches)
        t = t + a
        m = block.mlp(block.norm2(t))
        m = cache[f"mlp_out.{layer}"] = _apply(f"mlp_out.{layer}", m, patches)
        t = t + m
    last = f"resid_pre.{len(model.blocks)}"
    t = cache[last] = _apply(last, t, patches)
    logits = model.head(model.norm(t)[:, 0])
    return logits, cache


def residual_stream(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The residual stream before each block and after the last: (L + 1, B, T, D)."""
    _, cache = run_with_cache(model, x)
    return torch.stack([cache[f"resid_pre.{i}"] for i in range(len(model.blocks) + 1)])


def read_out(model: nn.Module, stream: torch.Tensor) -> torch.Tensor:
    """The model's own read-out (final LayerNorm, then the head) applied to the CLS token of a residual stream
    (..., T, D) -> logits (..., classes): e.g. (L + 1, B, T, D) -> (L + 1, B, classes)."""
    _check_model(model)
    return model.head(model.norm(stream[..., 0, :]))


def logit_lens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The logit lens: the CLS residual after the embedding and after each block, read out through the model's own
    final LayerNorm and head, as if the network stopped there. (B, 3, H, W) -> logits (L + 1, B, classes); the last
    entry equals the model's logits."""
    return read_out(model, residual_stream(model, x))


def frozen_ln_logit(model: nn.Module, part: torch.Tensor, final: torch.Tensor, target: int | torch.Tensor
                    ) -> torch.Tensor:
    """What one part of the final CLS residual contributes to the ``target`` logit through the final LayerNorm with
    its scale frozen at its value on the whole residual: W_c . gamma * (part - mean(part)) / sigma(final).

    Args:
        part: (B, D), one summand of the final CLS residual. final: (B, D), the whole final CLS residual.
        target: a class index or one per image (B,).

    Returns:
        (B,) contributions; summed over all parts, plus W_c . beta and the head's bias, they give the logit.
    """
    _check_model(model)
    if part.shape != final.shape or part.dim() != 2:
        raise ValueError(f"part and final must both be (B, D), got {tuple(part.shape)} and {tuple(final.shape)}")
    tgt = _target_vector(target, final.shape[0], final.device)
    norm = model.norm
    sigma = torch.sqrt(final.var(dim=-1, unbiased=False, keepdim=True) + norm.eps)
    return ((part - part.mean(dim=-1, keepdim=True)) / sigma * model.head.weight[tgt] * norm.weight).sum(-1)


def _target_vector(target: int | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(target, device=device).long()
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"target must be an int or a (B,) tensor with B = {batch}, got shape {tuple(t.shape)}")
    return t


def direct_logit_attribution(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor) -> dict[str, torch.Tensor]:
    """Direct logit attribution: the ``target`` logit split into what each part wrote into the CLS residual.

    The final CLS residual is a sum of parts, r = embed + sum_l (sum_h head_lh + attn_bias_l + mlp_l). The final
    LayerNorm is LN(r) = gamma * (r - mean(r)) / sigma + beta; with its scale ``sigma`` frozen at its value on ``x``
    it is linear in r, so the logit W_c . LN(r) + b_c splits exactly into one term per part, W_c . gamma *
    (part - mean(part)) / sigma, plus ``norm_bias`` = W_c . beta. The returned terms, plus the head's bias
    ``model.head.bias[target]``, sum to the model's logit.

    Args:
        model: the course ViT. x: images (B, 3, H, W). target: a class index or one per image (B,).

    Returns:
        An ordered dict: ``"embed"``, then per block ``"block{l}.head{h}"``, ``"block{l}.attn_bias"``,
        ``"block{l}.mlp"``, and ``"norm_bias"``; each value (B,).
    """
    _, cache = run_with_cache(model, x)
    n_layers = len(model.blocks)
    final = cache[f"resid_pre.{n_layers}"][:, 0]  # (B, D)
    tgt = _target_vector(target, final.shape[0], final.device)
    norm = model.norm

    def term(part: torch.Tensor) -> torch.Tensor:  # part (B, D) -> (B,)
        return frozen_ln_logit(model, part, final, tgt)

    out: dict[str, torch.Tensor] = {"embed": term(cache["resid_pre.0"][:, 0])}
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        w = attn.proj.weight  # (D, D): out = z_cat @ w.T + b
        for h in range(attn.heads):
            sl = slice(h * attn.head_dim, (h + 1) * attn.head_dim)
            out[f"block{layer}.head{h}"] = term(cache[f"head.{layer}.{h}"][:, 0] @ w[:, sl].T)
        bias = attn.proj.bias if attn.proj.bias is not None else torch.zeros_like(final[0])
        out[f"block{layer}.attn_bias"] = term(bias.expand_as(final))
        out[f"block{layer}.mlp"] = term(cache[f"mlp_out.{layer}"][:, 0])
    beta = norm.bias if norm.bias is not None else torch.zeros_like(final[0])
    out["norm_bias"] = (model.head.weight[tgt] * beta).sum(-1)
    return out


def patch_activations(
    model: nn.Module,
    source: torch.Tensor,
    target_input: torch.Tensor,
    site: str | Sequence[str],
    tokens: Sequence[int] | None = None,
) -> torch.Tensor:
    """Activation patching: run ``target_input`` with the activation at ``site`` (one name or several) replaced by
    its value on ``source``, at the token positions ``tokens`` (``None``: all). Returns the patched logits
    (B, classes).

    *Denoising*: source = the clean image, target_input = the corrupted one (does this site restore the answer?).
    *Noising*: source = corrupted, target_input = clean (does this site break it?). Both batches are (B, 3, H, W).
    """
    sites = [site] if isinstance(site, str) else list(site)
    _check_sites(model, sites)
    if any(s.startswith("pattern.") for s in sites):
        raise ValueError("attention patterns are read-only: patch the heads' outputs ('head.l.h') instead")
    if source.shape != target_input.shape:
        raise ValueError(f"source {tuple(source.shape)} and target {tuple(target_input.shape)} must have one shape")
    _, cache = run_with_cache(model, source)
    patches = {s: Patch(cache[s], tokens) for s in sites}
    logits, _ = run_with_cache(model, target_input, patches)
    return logits


def logit_difference(logits: torch.Tensor, answer: int | torch.Tensor, foil: int | torch.Tensor) -> torch.Tensor:
    """logit[answer] - logit[foil] per image: (B, classes) -> (B,)."""
    b = logits.shape[0]
    a, f = _target_vector(answer, b, logits.device), _target_vector(foil, b, logits.device)
    return logits.gather(1, a[:, None])[:, 0] - logits.gather(1, f[:, None])[:, 0]


def fraction_restored(patched: torch.Tensor, clean: torch.Tensor, corrupted: torch.Tensor) -> torch.Tensor:
    """(patched - corrupted) / (clean - corrupted) for logit differences: 1 = the clean answer fully restored,
    0 = no effect. Shapes broadcast; entries where clean == corrupted give NaN."""
    gap = clean - corrupted
    return torch.where(gap.abs() > 1e-8, (patched - corrupted) / gap, torch.full_like(gap, float("nan")))


@torch.no_grad()
def patching_sweep(
    model: nn.Module,
    clean: torch.Tensor,
    corrupted: torch.Tensor,
    answer: int | torch.Tensor,
    foil: int | torch.Tensor,
    kind: str = "resid_pre",
    progress: bool = False,
) -> torch.Tensor:
    """Denoising patch of every site of one kind, one at a time, measured as the fraction of the logit difference
    restored (averaged over the batch).

    Args:
        kind: ``"resid_pre"`` (every block x token: returns (L + 1, T)), ``"attn_out"`` / ``"mlp_out"`` (every
            block x token: (L, T)) or ``"head"`` (every block x head, all tokens: (L, H)).
    """
    n_layers = len(model.blocks)
    clean_logits, clean_cache = run_with_cache(model, clean)
    corrupt_logits, _ = run_with_cache(model, corrupted)
    ld_clean = logit_difference(clean_logits, answer, foil)
    ld_corrupt = logit_difference(corrupt_logits, answer, foil)
    embedded = model.tokens(corrupted)
    t_len = embedded.shape[1]
    if kind == "head":
        grid = [(layer, h) for layer in range(n_layers) for h in range(model.blocks[layer].attn.heads)]
        shape = (n_layers, model.blocks[0].attn.heads)
    elif kind in ("resid_pre", "attn_out", "mlp_out"):
        rows = n_layers + 1 if kind == "resid_pre" else n_layers
        grid = [(layer, tok) for layer in range(rows) for tok in range(t_len)]
        shape = (rows, t_len)
    else:
        raise ValueError(f"unknown kind {kind!r}; use 'resid_pre', 'attn_out', 'mlp_out' or 'head'")
    out = torch.empty(shape)
    iterator = grid
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(grid, desc=f"patching {kind}", leave=False)
    for a, b in iterator:
        if kind == "head":
            site, patch = f"head.{a}.{b}", Patch(clean_cache[f"head.{a}.{b}"])
        else:
            site, patch = f"{kind}.{a}", Patch(clean_cache[f"{kind}.{a}"], (b,))
        logits, _ = run_with_cache(model, embedded, {site: patch}, embedded=True)
        out[a, b] = fraction_restored(logit_difference(logits, answer, foil), ld_clean, ld_corrupt).nanmean().cpu()
    return out


@torch.no_grad()
def head_means(model: nn.Module, x: torch.Tensor, batch_size: int = 256, embedded: bool = False
               ) -> dict[str, torch.Tensor]:
    """Each head's mean output over the images ``x`` (N, 3, H, W) (or their embeddings (N, T, D) with
    ``embedded=True``), per token position: ``"head.l.h"`` -> (T, d_head), for mean-ablation."""
    _check_model(model)
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, x.shape[0], batch_size):
        _, cache = run_with_cache(model, x[start : start + batch_size], embedded=embedded)
        for name, value in cache.items():
            if name.startswith("head."):
                sums[name] = sums.get(name, 0) + value.sum(0)
    return {name: s / x.shape[0] for name, s in sums.items()}


@torch.no_grad()
def ablate_heads(
    model: nn.Module, x: torch.Tensor, heads: Sequence[tuple[int, int]], means: Mapping[str, torch.Tensor],
    embedded: bool = False,
) -> torch.Tensor:
    """Logits (B, classes) with the heads ``[(layer, head), ...]`` mean-ablated: their output replaced, at every
    token, by its mean over a reference set (:func:`head_means`). ``x``: images, or embeddings with ``embedded``."""
    patches = {}
    for layer, h in heads:
        name = f"head.{layer}.{h}"
        if name not in means:
            raise KeyError(f"no mean for {name!r}: compute the means with head_means(model, images)")
        patches[name] = Patch(means[name])
    logits, _ = run_with_cache(model, x, patches, embedded=embedded)
    return logits


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of (B, classes) logits against (B,) labels."""
    return float((logits.argmax(-1) == labels.to(logits.device)).float().mean())


def true_class_rank(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The rank (0 = top) of the true class in each row of logits (..., B, classes) -> (..., B)."""
    labels = labels.to(logits.device)
    true = logits.gather(-1, labels.expand(*logits.shape[:-1]).unsqueeze(-1))
    return (logits > true).sum(-1)


__all__ += ["accuracy", "true_class_rank"]
