"""Train and save the TopK sparse autoencoder that notebook 10 ships for the course ViT (``vit_cifar10``).

    python tools/train_sae.py --threads 2                      # block 2, 1024 features, k = 16 (the shipped one)
    python tools/train_sae.py --block 3 --k 8 --no-save        # another setting, report only

The SAE (:class:`helpers.sae.TopKSAE`) reads the residual stream entering block ``--block`` (site
``resid_pre.{block}`` of :mod:`helpers.inside`) at every token (CLS and the 64 patches) of ``--images`` CIFAR-10
training images (a seeded subset of the training part of the JPEG split of tools/train_checkpoint.py). It is
measured on the held-out validation images (the last 500 per class, never trained on): the fraction of variance
unexplained (FVU), the mean number of active features (L0), the share of features that never fire there (dead),
and the ViT's accuracy with that block's input replaced by the SAE's reconstruction (next to its clean accuracy on
the same images). All of it, the command and the machine go into ``manifest.json``; weights are saved as fp16.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers import checkpoints, data, inside  # noqa: E402
from helpers.sae import TopKSAE, feature_activations, fvu, load_sae, save_sae, train_sae  # noqa: E402
from tools.train_checkpoint import add_split_args, load_split  # noqa: E402


def normalise(u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, 32, 32) -> the ViT's normalised float input."""
    return data.normalize(u8.float() / 255, data.CIFAR10_MEAN, data.CIFAR10_STD)


@torch.no_grad()
def stream_at(model: torch.nn.Module, images: torch.Tensor, block: int, batch: int = 250) -> torch.Tensor:
    """The residual stream entering ``block`` at every token: uint8 images (N, 3, 32, 32) -> (N, T, D)."""
    out = []
    for i in range(0, len(images), batch):
        _, cache = inside.run_with_cache(model, normalise(images[i : i + batch]))
        out.append(cache[f"resid_pre.{block}"])
    return torch.cat(out)


@torch.no_grad()
def evaluate(model: torch.nn.Module, sae: TopKSAE, images: torch.Tensor, labels: torch.Tensor, block: int) -> dict:
    """FVU, L0, dead share and accuracies (clean / block input reconstructed) on uint8 ``images``."""
    acts = stream_at(model, images, block)
    n, t, d = acts.shape
    flat = acts.reshape(-1, d)
    codes = feature_activations(sae, flat)
    recon = sae.decode(codes)
    clean, patched = [], []
    for i in range(0, n, 250):
        x = normalise(images[i : i + 250])
        clean.append(model(x))
        rec = recon.reshape(n, t, d)[i : i + 250]
        patched.append(inside.run_with_cache(model, x, {f"resid_pre.{block}": inside.Patch(rec)})[0])
    return {
        "val_fvu": round(float(fvu(flat, recon)), 4),
        "val_l0": round(float((codes > 0).float().sum(-1).mean()), 2),
        "dead_fraction": round(float(((codes > 0).sum(0) == 0).float().mean()), 4),
        "val_accuracy_clean": round(inside.accuracy(torch.cat(clean), labels), 4),
        "val_accuracy_reconstructed": round(inside.accuracy(torch.cat(patched), labels), 4),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_args(p)
    p.add_argument("--block", type=int, default=2, help="the SAE reads the stream entering this block")
    p.add_argument("--d-sae", type=int, default=1024, help="number of features")
    p.add_argument("--k", type=int, default=16, help="active features per token")
    p.add_argument("--images", type=int, default=10000, help="training images (x 65 tokens)")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    tx, _, vx, vy = load_split(args)
    torch.manual_seed(args.seed)
    model = checkpoints.load_checkpoint("vit_cifar10").eval()
    pick = torch.randperm(len(tx), generator=torch.Generator().manual_seed(args.seed))[: args.images]
    start = time.perf_counter()
    acts = stream_at(model, tx[pick], args.block).reshape(-1, model.config.dim)
    print(f"activations {tuple(acts.shape)} in {time.perf_counter() - start:.0f} s", flush=True)
    sae = TopKSAE(model.config.dim, args.d_sae, args.k, seed=args.seed)
    history = train_sae(sae, acts, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        progress=True)
    minutes = (time.perf_counter() - start) / 60
    for h in history[:: max(1, len(history) // 5)] + history[-1:]:
        print(f"step {h['step']:5d}  loss {h['loss']:.4f}  fvu {h['fvu']:.3f}  l0 {h['l0']:.1f}")
    name = f"sae_vit_cifar10_block{args.block}"
    meta = {
        "kind": "topk_sae",
        "model": "vit_cifar10",
        "site": f"resid_pre.{args.block}",
        "d_model": model.config.dim,
        "d_sae": args.d_sae,
        "k": args.k,
        "train_images": args.images,
        "train_tokens": int(acts.shape[0]),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "train_minutes": round(minutes, 1),
        "command": "python " + shlex.join(["tools/train_sae.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "validation": "5,000 held-out CIFAR-10 training photos (last 500 per class), all 65 tokens",
    }
    if args.no_save:
        meta.update(evaluate(model, sae, vx, vy, args.block))
        print({k: v for k, v in meta.items() if k.startswith(("val", "dead"))})
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.pt"
    save_sae(sae, path, meta)
    loaded_dir = args.out
    # measure the saved (fp16-rounded) SAE, as the notebook loads it
    manifest = checkpoints.shipped_checkpoints(loaded_dir)
    manifest[name] = {"file": path.name, "sha256": checkpoints.sha256_file(path), **meta}
    checkpoints.write_manifest(manifest, loaded_dir)
    meta.update(evaluate(model, load_sae(name, loaded_dir), vx, vy, args.block))
    manifest[name].update(meta)
    checkpoints.write_manifest(manifest, loaded_dir)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB):",
          {k: v for k, v in meta.items() if k.startswith(("val", "dead"))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
