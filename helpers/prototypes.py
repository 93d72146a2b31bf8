"""Explaining with data (notebook 08): embeddings, MMD-critic prototypes and criticisms (Kim, Khanna & Koyejo 2016),
and nearest training examples in the embedding as a cheap stand-in for influential examples.

* :func:`embeddings`: a model's penultimate features (CourseCNN: the globally pooled last feature map), (N, D).
* :func:`rbf_kernel`, :func:`median_gamma`, :func:`mmd2`: the kernel ``k(a, b) = exp(-gamma ||a - b||^2)`` and the
  squared maximum mean discrepancy between two samples.
* :func:`select_prototypes`: greedy MMD-critic prototypes (the points whose empirical distribution is closest in
  MMD to the data's); :func:`witness` and :func:`select_criticisms`: the points the prototypes explain worst
  (the largest witness: data denser than the prototypes), with the log-determinant diversity term of the paper.
* :func:`nearest_examples`: for a query embedding, the k most similar training embeddings (cosine).

**Limits of nearest examples as "influence".** Similarity in the embedding says which training images the model
*represents* like the test image, not which ones *caused* its prediction: influence is counterfactual (how would
the prediction change without that training image?), which influence functions (Koh & Liang 2017), TracIn (Pruthi
et al. 2020, gradients over saved checkpoints) or retraining estimate, at a much higher cost. Nearest neighbours
ignore the label and the loss, see only one layer, and favour images that are typical; mislabeled or atypical
training points, which often have the largest true influence, are rarely among them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "embeddings",
    "rbf_kernel",
    "median_gamma",
    "mmd2",
    "select_prototypes",
    "witness",
    "select_criticisms",
    "nearest_examples",
]


@torch.no_grad()
def embeddings(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The input of the model's classifier layer ``fc`` (a CourseCNN: the pooled last feature map), float32 (N, D),
    for uint8 (normalised here) or normalised float images (N, 3, H, W)."""
    head = getattr(model, "fc", None)
    if not isinstance(head, nn.Module):
        raise ValueError("embeddings() needs a model with an `fc` classifier layer (a CourseCNN)")
    from .training import normalize_uint8

    model.eval()
    device = next(model.parameters()).device
    store: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda _m, args: store.append(args[0].flatten(1).float().cpu()))
    try:
        for i in range(0, len(images), batch_size):
            xb = images[i:i + batch_size]
            model((normalize_uint8(xb) if xb.dtype == torch.uint8 else xb).to(device))
    finally:
        handle.remove()
    return torch.cat(store) if store else torch.empty(0, 0)


def _check_2d(x: torch.Tensor, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"{what} must be a float (N, D) tensor, got {getattr(x, 'dtype', type(x))} "
                         f"{tuple(getattr(x, 'shape', ()))}")


def rbf_kernel(a: torch.Tensor, b: torch.Tensor, gamma: float) -> torch.Tensor:
    """``k(a_i, b_j) = exp(-gamma ||a_i - b_j||^2)``: (N, D), (M, D) -> (N, M) float64, on the CPU (MPS has no
    float64; :func:`embeddings` returns CPU tensors anyway)."""
    _check_2d(a, "a")
    _check_2d(b, "b")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    return torch.exp(-gamma * torch.cdist(a.detach().cpu().double(), b.detach().cpu().double()).pow(2))


def median_gamma(x: torch.Tensor) -> float:
    """The median heuristic: ``gamma = 1 / median of the squared pairwise distances`` of ``x`` (N, D)."""
    _check_2d(x, "x")
    xd = x.detach().cpu().double()  # float64 on the CPU (MPS has no float64)
    d2 = torch.cdist(xd, xd).pow(2)
    off = d2[~torch.eye(len(x), dtype=torch.bool)]
    med = float(off.median()) if off.numel() else 1.0
    return 1.0 / med if med > 0 else 1.0


def mmd2(x: torch.Tensor, y: torch.Tensor, gamma: float) -> float:
    """Squared MMD (biased, V-statistic) between samples ``x`` (N, D) and ``y`` (M, D) with the RBF kernel:
    ``mean k(x, x') - 2 mean k(x, y) + mean k(y, y')``."""
    return float(rbf_kernel(x, x, gamma).mean() - 2 * rbf_kernel(x, y, gamma).mean() + rbf_kernel(y, y, gamma).mean())


def select_prototypes(x: torch.Tensor, m: int, gamma: float | None = None) -> torch.Tensor:
    """MMD-critic prototypes: greedily add the point that most increases
    ``J(S) = 2 / (n |S|) sum_{i, j in S} k(x_i, x_j) - 1 / |S|^2 sum_{i, j in S} k(x_j, x_j')``
    (= ``mean k(x, x') - MMD^2(X, S)``, so the greedy step is the one that most lowers the MMD between the data and
    the prototypes). ``x`` (N, D) -> indices (m,) in the order chosen. ``gamma``: :func:`median_gamma` if None."""
    _check_2d(x, "x")
    if not 1 <= m <= len(x):
        raise ValueError(f"m must be in 1..{len(x)}, got {m}")
    k = rbf_kernel(x, x, gamma if gamma is not None else median_gamma(x))
    col_mean = k.mean(0)  # (N,): mean_i k(x_i, x_j)
    chosen: list[int] = []
    available = torch.ones(len(x), dtype=torch.bool)
    for _ in range(m):
        size = len(chosen) + 1
        sel = torch.tensor(chosen, dtype=torch.long)
        # J(S + {j}) for every candidate j, in closed form
        fit = 2.0 / size * (col_mean[sel].sum() + col_mean)
        within = k[sel][:, sel].sum() + 2 * k[sel].sum(0) + k.diagonal()
        score = fit - within / size**2
        score[~available] = -torch.inf
        j = int(score.argmax())
        chosen.append(j)
        available[j] = False
    return torch.tensor(chosen, dtype=torch.long)


def witness(x: torch.Tensor, prototypes: torch.Tensor, gamma: float, at: torch.Tensor | None = None) -> torch.Tensor:
    """The MMD witness function ``f(z) = mean_i k(z, x_i) - mean_j k(z, p_j)`` at the points ``at`` (default
    ``x``): > 0 where the data is denser than the prototypes (under-represented), < 0 where it is sparser.
    ``x`` (N, D), ``prototypes`` (M, D) -> (len(at),) float64."""
    at = x if at is None else at
    return rbf_kernel(at, x, gamma).mean(1) - rbf_kernel(at, prototypes, gamma).mean(1)


def select_criticisms(x: torch.Tensor, prototype_idx: torch.Tensor, c: int, gamma: float | None = None,
                      diversity: bool = True, signed: bool = True) -> torch.Tensor:
    """MMD-critic criticisms: greedily choose ``c`` points (not prototypes) maximising the sum of their witness
    values, plus, with ``diversity``, the log-determinant of their kernel matrix (the paper's regulariser, which
    keeps criticisms from clustering). ``x`` (N, D), ``prototype_idx`` (M,) -> indices (c,) in the order chosen.

    ``signed=True`` (default) scores the witness itself: points where the data is denser than the prototypes, i.e.
    under-represented. ``signed=False`` scores ``|witness|`` as in the paper; with few prototypes each one is a point
    mass of weight 1/M, so the largest ``|witness|`` is usually the strongly negative witness right next to a
    prototype (over-represented, but typical), not an atypical image (tests/test_prototypes.py shows it)."""
    _check_2d(x, "x")
    g = gamma if gamma is not None else median_gamma(x)
    free = torch.ones(len(x), dtype=torch.bool)
    free[prototype_idx] = False
    if not 1 <= c <= int(free.sum()):
        raise ValueError(f"c must be in 1..{int(free.sum())} (points that are not prototypes), got {c}")
    wit = witness(x, x[prototype_idx], g)
    wit = wit if signed else wit.abs()
    k = rbf_kernel(x, x, g)
    chosen: list[int] = []
    for _ in range(c):
        score = wit.clone()
        if diversity and chosen:
            sel = torch.tensor(chosen, dtype=torch.long)
            eye = 1e-9 * torch.eye(len(chosen) + 1, dtype=torch.float64)
            cand = torch.nonzero(free).flatten()
            logdets = torch.full((len(x),), -torch.inf, dtype=torch.float64)
            for j in cand.tolist():
                idx = torch.cat([sel, torch.tensor([j])])
                logdets[j] = torch.logdet(k[idx][:, idx] + eye)
            score = score + logdets
        score[~free] = -torch.inf
        j = int(score.argmax())
        chosen.append(j)
        free[j] = False
    return torch.tensor(chosen, dtype=torch.long)


def nearest_examples(query: torch.Tensor, reference: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` reference embeddings most similar to each query (cosine similarity): ``query`` (Q, D),
    ``reference`` (N, D) -> (indices (Q, k), similarities (Q, k)), most similar first. See the module docstring for
    what this does and does not say about influence."""
    _check_2d(query, "query")
    _check_2d(reference, "reference")
    if not 1 <= k <= len(reference):
        raise ValueError(f"k must be in 1..{len(reference)}, got {k}")
    q = torch.nn.functional.normalize(query.detach().cpu().double(), dim=1)  # float64 on the CPU: results on the CPU
    r = torch.nn.functional.normalize(reference.detach().cpu().double(), dim=1)
    sims, idx = (q @ r.T).topk(k, dim=1)
    return idx, sims.float()
