"""Benchmark notebook 01's training recipe on this machine: throughput and validation accuracy vs wall-clock.

    python tools/benchmark_vit.py                      # the shipped ViT (the hybrid), 30 min budget, all threads
    python tools/benchmark_vit.py --minutes 5 --threads 2 --out /tmp/bench.json
    python tools/benchmark_vit.py --model cnn_cifar10  # the CNN recipe, for comparison
    python tools/benchmark_vit.py --tokenizer conv --depth 6  # the earlier course ViT (3-conv tokenizer, 6 blocks)

The recipe is the one tools/train_checkpoint.py uses for the shipped checkpoint (the notebook's "train from
scratch" switch uses the same numbers), run under a wall-clock budget: the warm-up + cosine schedule then follows
elapsed time, so even a short budget ends with a small learning rate (the recipe's epochs then only fix the
warm-up's share of the budget, as in ``train_checkpoint.py --max-minutes``). The data split is the checkpoint's (45,000
training images, the last 500 per class held out for validation), loaded with train_checkpoint.load_jpeg_split.

It prints a table (one row per evaluation: epochs done, minutes, loss, train and validation accuracy, training
images/s) plus inference throughput, and writes everything as JSON (--out). This is a benchmark, not a test: run it
on an otherwise idle machine, the JSON records the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from train_checkpoint import DEFAULT_TAR, RECIPES, cpu_name, load_jpeg_split

from helpers.cifar_models import ViTConfig, build_model, config_dict
from helpers.training import History, predict, train, with_overrides

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CACHE = Path.home() / ".cache" / "xai-course" / "cifar10-jpeg-split.pt"  # train_checkpoint.py's default


def inference_throughput(model: torch.nn.Module, images: torch.Tensor, seconds: float = 5.0,
                         batch_size: int = 500) -> float:
    """Images per second of ``helpers.training.predict`` (eval mode, no grad) on uint8 ``images``."""
    predict(model, images[:batch_size], batch_size)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        predict(model, images[:batch_size], batch_size)
        done += min(batch_size, len(images))
    return done / (time.perf_counter() - start)


def format_table(hist: History) -> str:
    rows = [f"{'epochs':>7} {'minutes':>8} {'loss':>7} {'train acc':>9} {'val acc':>8} {'img/s':>7}"]
    for e, s, loss, tr, va, ips in zip(hist.epoch, hist.seconds, hist.train_loss, hist.train_acc, hist.val_acc,
                                       hist.images_per_second, strict=True):
        rows.append(f"{e:7.2f} {s / 60:8.2f} {loss:7.4f} {tr:9.4f} {va:8.4f} {ips:7.0f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(RECIPES), default="vit_cifar10")
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget (default 30)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--amp", choices=["on", "off"], help="override the recipe's autocast (bf16 on CPU)")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's peak learning rate")
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (an upper bound under the budget)")
    p.add_argument("--tokenizer", choices=["linear", "conv", "resnet"],
                   help="ViT only: another tokenizer than the shipped one ('resnet': the hybrid ViT)")
    p.add_argument("--depth", type=int, help="ViT only: another number of transformer blocks")
    p.add_argument("--stem-channels", type=int, nargs="+", help="ViT only: the tokenizer's stem widths")
    p.add_argument("--train-limit", type=int, help="use a random subset of N training images (seeded; quick checks)")
    p.add_argument("--val-limit", type=int, help="validate on N images spread over the classes (quick checks)")
    p.add_argument("--data", type=Path, default=DEFAULT_TAR, help="the CIFAR-10 JPEG tarball")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="decoded split cache (train_checkpoint's)")
    p.add_argument("--out", type=Path, default=Path("benchmark_vit.json"), help="JSON report path")
    args = p.parse_args(argv)
    if args.minutes <= 0:
        p.error("--minutes must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)

    model_cfg, recipe = RECIPES[args.model]
    arch = {k: v for k, v in (("tokenizer", args.tokenizer), ("depth", args.depth),
                              ("stem_channels", tuple(args.stem_channels) if args.stem_channels else None)) if v}
    if arch:
        if not isinstance(model_cfg, ViTConfig):
            p.error("--tokenizer, --depth and --stem-channels are for the ViT only")
        model_cfg = replace(model_cfg, **arch)
    # options not given keep the recipe's value (epochs: with a budget they only set the warm-up's share of it)
    cfg = with_overrides(recipe, epochs=args.epochs or None, amp=None if args.amp is None else args.amp == "on",
                         batch_size=args.batch_size or None, lr=args.lr or None)
    cfg = replace(cfg, max_minutes=args.minutes)

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    tx, ty, vx, vy = load_jpeg_split(args.data, args.cache)
    if args.train_limit:  # a seeded random subset: the split is sorted by class, so the first N would be one class
        keep = torch.randperm(len(tx), generator=torch.Generator().manual_seed(0))[: args.train_limit]
        tx, ty = tx[keep], ty[keep]
    if args.val_limit:
        keep = torch.randperm(len(vx), generator=torch.Generator().manual_seed(0))[: args.val_limit]
        vx, vy = vx[keep], vy[keep]
    load_s = time.perf_counter() - t0
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg).to(memory_format=torch.channels_last)
    n_params = sum(q.numel() for q in model.parameters())
    print(f"{args.model}: {n_params / 1e6:.2f} M parameters; {len(tx)} train / {len(vx)} val images "
          f"(loaded in {load_s:.1f} s); {torch.get_num_threads()} threads; load average {load_before[0]:.1f}")
    print(f"recipe: {cfg}", flush=True)

    hist = train(model, tx, ty, cfg, vx, vy, device="cpu", show_progress=False,
                 log=lambda m: print(m, flush=True))
    infer = inference_throughput(model, vx)
    load_after = os.getloadavg()

    print()
    print(format_table(hist))
    print(f"\ntraining: {sum(hist.images_per_second) / len(hist.images_per_second):.0f} img/s on average; "
          f"inference: {infer:.0f} img/s; final val accuracy {hist.val_acc[-1]:.4f} after "
          f"{hist.seconds[-1] / 60:.1f} min ({hist.epoch[-1]:.2f} epochs)")
    report = {
        "model": args.model,
        "parameters": n_params,
        "architecture": config_dict(model),
        "budget_minutes": args.minutes,
        "recipe": {k: v for k, v in vars(cfg).items()},
        "train_images": len(tx),
        "val_images": len(vx),
        "validation": "last 500 images per class of the CIFAR-10 training split (tools/train_checkpoint.py)",
        "machine": {
            "processor": cpu_name(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_start": round(load_before[0], 2),
            "load_average_end": round(load_after[0], 2),
        },
        "history": hist.__dict__,
        "train_images_per_second": sum(hist.images_per_second) / len(hist.images_per_second),
        "inference_images_per_second": infer,
        "final_val_accuracy": hist.val_acc[-1],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
