"""Re-measure the numbers that the model card and notebooks 01-03 quote about the shipped checkpoints (maintainers).

    python tools/measure_checkpoints.py                          # data/checkpoints
    python tools/measure_checkpoints.py --checkpoints /tmp/stage_vit --threads 2

Run it after retraining a checkpoint, then update ``data/checkpoints/README.md``, notebook 01 (the accuracies and the
positional-embedding ablation), notebook 02 (the mean attention distances) and notebook 03 (the IG completeness
medians quoted after its section 4.1 figure). The inputs are the ones a notebook
sees in class mode (``tools/time_class_mode.py``): the stand-in CIFAR-10 test split, i.e. the 5,000 held-out
validation images in a fixed shuffled order. It prints:

- validation accuracy of both models;
- the ViT positional-embedding ablation of notebook 01: positions (a) zeroed, (b) all set to their mean,
  (c) permuted among the patches, (d) the 4x4 image patches shuffled (same permutation, ``randperm(64)`` with seed
  0); (d) for the CNN too;
- the mean cosine similarity of positional embeddings by grid distance (notebook 01's similarity figure);
- the mean attention distance in pixels per block and head on the first 128 images (notebook 02);
- the median relative IG completeness error of the CNN on the first 3 images (predicted class, black baseline) for
  each quadrature rule and step count (notebook 03, section 4.1, the notebook's own code and parameters).

A checkpoint directory must hold both ``vit_cifar10.pt`` and ``cnn_cifar10.pt`` and a ``manifest.json`` with their
hashes (what ``tools/train_checkpoint.py --out DIR`` writes; copy the other model's files in if you retrained one).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from time_class_mode import build_standin
from train_checkpoint import DEFAULT_TAR

ROOT = Path(__file__).resolve().parent.parent


def shuffle_patches(images: torch.Tensor, perm: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """Move the ``patch`` x ``patch`` tiles of (B, C, H, W) images so that tile ``k`` comes from tile ``perm[k]``."""
    b, c, h, w = images.shape
    gh, gw = h // patch, w // patch
    t = images.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c, patch, patch)
    t = t[:, perm].reshape(b, gh, gw, c, patch, patch)
    return t.permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def with_positions(vit: torch.nn.Module, positions: torch.Tensor) -> torch.nn.Module:
    """A copy of the ViT whose patch positional embeddings (64, D) are replaced (the CLS position is kept)."""
    m = copy.deepcopy(vit)
    with torch.no_grad():
        m.pos_embed[0, 1:] = positions
    return m


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", type=Path, default=ROOT / "data" / "checkpoints")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", type=Path, default=DEFAULT_TAR)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "xai-course" / "cifar10-jpeg-split.pt")
    p.add_argument("--standin", type=Path, default=Path.home() / ".cache" / "xai-course" / "cifar10-standin")
    p.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    build_standin(args.standin, args.data, args.cache)
    os.environ["XAI_DATA_DIR"] = str(args.standin)
    os.environ["XAI_OFFLINE"] = "1"  # the stand-in is there: never try to download CIFAR-10

    from helpers import attention, attribution, data, training
    from helpers.attention import record_attention
    from helpers.checkpoints import load_checkpoint

    vit = load_checkpoint("vit_cifar10", args.checkpoints)
    cnn = load_checkpoint("cnn_cifar10", args.checkpoints)
    images, labels = data.cifar10_tensors(train=False)
    print(f"checkpoints: {args.checkpoints}; {len(labels)} stand-in test images (the held-out validation split)")

    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    shuffled = shuffle_patches(images, perm)
    pos = vit.pos_embed.detach()[0, 1:]
    runs = {
        "vit": (vit, images),
        "vit_positions_zeroed": (with_positions(vit, torch.zeros_like(pos)), images),
        "vit_positions_mean": (with_positions(vit, pos.mean(0).expand_as(pos)), images),
        "vit_positions_permuted": (with_positions(vit, pos[perm]), images),
        "vit_patches_shuffled": (vit, shuffled),
        "cnn": (cnn, images),
        "cnn_patches_shuffled": (cnn, shuffled),
    }
    out: dict = {"accuracy": {}}
    for name, (model, x) in runs.items():
        out["accuracy"][name] = round(training.evaluate(model, x, labels), 4)
        print(f"  accuracy {name:24s} {100 * out['accuracy'][name]:.1f} %", flush=True)

    unit = F.normalize(pos, dim=1)
    sim = unit @ unit.T
    ii, jj = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    di = ii.flatten()[:, None] - ii.flatten()[None]
    dj = jj.flatten()[:, None] - jj.flatten()[None]
    dist = (di**2 + dj**2).float().sqrt()
    out["position_similarity"] = {}
    for lo, hi in ((0.5, 1.5), (1.5, 3), (3, 6), (6, 11)):
        value = round(float(sim[(dist > lo) & (dist <= hi)].mean()), 3)
        out["position_similarity"][f"{lo}-{hi}"] = value
        print(f"  positional-embedding cosine similarity at grid distance {lo}-{hi}: {value:.3f}")

    n_prefix, grid, patch = attention.vit_layout(vit)
    x = data.normalize(images[:128].float() / 255, data.CIFAR10_MEAN, data.CIFAR10_STD)
    with torch.no_grad(), record_attention(vit) as rec:
        vit(x)
    mad = torch.stack([attention.mean_attention_distance(a, grid, n_prefix, patch[0]).mean(0) for a in rec.attentions])
    t = n_prefix + grid[0] * grid[1]
    uniform = float(attention.mean_attention_distance(torch.full((1, 1, t, t), 1.0 / t), grid, n_prefix, patch[0]))
    out["mean_attention_distance_px"] = {
        "per_block_head": mad.numpy().round(2).tolist(),
        "block_means": mad.mean(1).numpy().round(2).tolist(),
        "min": round(float(mad.min()), 2),
        "max": round(float(mad.max()), 2),
        "uniform_attention": round(uniform, 2),
    }
    print("  mean attention distance (px), rows = blocks, columns = heads, first 128 images:")
    for row in mad:
        print("   ", "  ".join(f"{v:5.1f}" for v in row.tolist()))
    print(f"  min {mad.min():.1f}, max {mad.max():.1f}, block means "
          f"{', '.join(f'{v:.1f}' for v in mad.mean(1).tolist())}; uniform attention {uniform:.1f}")

    steps = (2, 4, 8, 16, 32, 64, 128)
    x = data.normalize(images[:3].float() / 255, data.CIFAR10_MEAN, data.CIFAR10_STD)
    with torch.no_grad():
        target = cnn(x).argmax(1)
    black = attribution.black_baseline(x, data.CIFAR10_MEAN, data.CIFAR10_STD)
    out["ig_completeness_median"] = {"steps": list(steps)}
    print("  IG completeness error of the CNN (median of 3 images, black baseline), steps", list(steps))
    for method in ("riemann_trapezoid", "trapezoid", "gausslegendre"):
        errors = [float(attribution.ig_completeness_error(cnn, x, target, black, m, method, internal_batch_size=64)
                        .median()) for m in steps]
        out["ig_completeness_median"][method] = [round(e, 5) for e in errors]
        below = [m for m, e in zip(steps, errors, strict=True) if e <= 0.01]
        print(f"    {method:18s}", " ".join(f"{e:.2%}" for e in errors),
              f"-> <= 1 % from {below[0]} steps" if below else "-> not <= 1 % within these steps")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
