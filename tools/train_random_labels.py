"""Train and save ``cnn_cifar10_random_labels``: notebook 07's data-randomisation model (Adebayo et al. 2018).

    python tools/train_random_labels.py --threads 2 --epochs 40     # about 7 minutes on 2 cores
    python tools/train_random_labels.py --no-save                   # train and report only

The same architecture as the shipped ``cnn_cifar10`` (helpers.checkpoints.ARCHITECTURES) is trained from scratch on
5,000 CIFAR-10 training photos (a seeded subset of the JPEG split of tools/train_checkpoint.py) whose labels are a
seeded random permutation, so the labels carry no information about the images. No augmentation, no weight decay
and no label smoothing: the network can only memorise. The script reports the accuracy on the permuted training
labels (memorisation, near 1.0), on the same images' true labels and on the 5,000 held-out validation photos
(chance, about 0.10), and stores them with the command and machine in the manifest. Weights are saved as fp16.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from train_checkpoint import add_split_args, load_split

from helpers import training
from helpers.checkpoints import ARCHITECTURES, load_checkpoint, save_checkpoint
from helpers.cifar_models import build_model

ROOT = Path(__file__).resolve().parent.parent

NAME = "cnn_cifar10_random_labels"
#: memorisation only: no augmentation, no weight decay, no label smoothing (--epochs overrides the epochs)
RECIPE = training.TrainConfig(epochs=40, batch_size=128, lr=2e-3, weight_decay=0.0, label_smoothing=0.0,
                              crop_padding=0, flip=False, eval_every=5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_args(p)
    p.add_argument("--train", type=int, default=5000, help="training images (a seeded random subset)")
    p.add_argument("--epochs", type=int, default=RECIPE.epochs)
    args = p.parse_args()
    tx, ty, vx, vy = load_split(args)
    pick = torch.randperm(len(tx), generator=torch.Generator().manual_seed(0))[: args.train]
    x_train, y_true = tx[pick], ty[pick]
    y_random = y_true[torch.randperm(len(y_true), generator=torch.Generator().manual_seed(1))]
    print(f"{len(x_train)} images; labels agreeing with the truth after permutation: "
          f"{(y_random == y_true).float().mean():.3f}")
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES[NAME])
    cfg = training.with_overrides(RECIPE, epochs=args.epochs)
    start = time.perf_counter()
    training.train(model, x_train, y_random, cfg, x_train, y_random, show_progress=False, log=print)
    minutes = (time.perf_counter() - start) / 60
    model.eval()
    memorised = float(training.evaluate(model, x_train, y_random))
    true_train = float(training.evaluate(model, x_train, y_true))
    val = float(training.evaluate(model, vx, vy))
    print(f"random-label training accuracy {memorised:.4f}; true labels of the same images {true_train:.4f}; "
          f"validation (true labels) {val:.4f}; {minutes:.1f} min")
    if args.no_save:
        return 0
    meta = {
        "train_accuracy_random_labels": round(memorised, 4), "train_accuracy_true_labels": round(true_train, 4),
        "val_accuracy": round(val, 4), "epochs": args.epochs, "train_minutes": round(minutes, 1),
        "train_images": len(x_train), "parameters": sum(q.numel() for q in model.parameters()),
        "labels": "a seeded random permutation (seed 1) of the true labels of a seeded subset (seed 0)",
        "validation": "5,000 held-out CIFAR-10 training photos (last 500 per class), true labels",
        "command": f"python tools/train_random_labels.py --epochs {args.epochs}"
                   + (f" --threads {args.threads}" if args.threads else ""),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    path = save_checkpoint(model, NAME, meta, args.out, half=True)
    loaded = load_checkpoint(NAME, args.out)
    after = float(training.evaluate(loaded, x_train, y_random))
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB); fp16 weights: random-label accuracy {after:.4f}")
    if abs(after - memorised) > 0.01:
        print("WARNING: the fp16 weights lost memorisation; save with half=False")
    return 0


if __name__ == "__main__":
    sys.exit(main())
