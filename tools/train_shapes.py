"""Train and save ``cnn_shapes`` (and ``vit_shapes``): notebook 07's models that classify helpers.synthetic's shapes.

    python tools/train_shapes.py                 # cnn_shapes: 20,000 training images, 3 epochs (about a minute)
    python tools/train_shapes.py --model vit_shapes --epochs 8   # the small ViT (linear 4-px patches) of notebook 07
    python tools/train_shapes.py --no-save       # train and report only

The backgrounds are CIFAR-10 photos from the JPEG training split (``../shared/data/cifar10-train-jpeg.tar.gz``, see
tools/train_checkpoint.py): training images from its training part, validation images from the held-out part
(last 500 per class), each with a random shape (class), colour and position (``helpers.synthetic.paste_shapes``).
The class is the shape alone, so a model that is right must use the shape's pixels: notebook 07's ground truth.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from train_checkpoint import add_split_args, load_split

from helpers import synthetic, training
from helpers.checkpoints import ARCHITECTURES, save_checkpoint
from helpers.cifar_models import build_model

ROOT = Path(__file__).resolve().parent.parent

RECIPE = training.TrainConfig(epochs=3, batch_size=128, lr=2e-3, crop_padding=2, label_smoothing=0.0)
#: the models this tool trains (architectures in helpers.checkpoints.ARCHITECTURES)
MODELS = ("cnn_shapes", "vit_shapes")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_args(p)
    p.add_argument("--train", type=int, default=20000, help="training images (a seeded random subset)")
    p.add_argument("--model", choices=MODELS, default="cnn_shapes")
    p.add_argument("--epochs", type=int, default=RECIPE.epochs)
    p.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's 2e-3)")
    args = p.parse_args()
    tx, _, vx, _ = load_split(args)
    pick = torch.randperm(len(tx), generator=torch.Generator().manual_seed(0))[: args.train]
    x_train, y_train, _ = synthetic.paste_shapes(tx[pick], seed=1)
    x_val, y_val, _ = synthetic.paste_shapes(vx, seed=2)
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES[args.model])
    cfg = training.with_overrides(RECIPE, epochs=args.epochs, lr=args.lr)
    start = time.perf_counter()
    hist = training.train(model, x_train, y_train, cfg, x_val, y_val, show_progress=False, log=print)
    minutes = (time.perf_counter() - start) / 60
    val = float(training.evaluate(model.eval(), x_val, y_val))
    print(f"validation accuracy {val:.4f} on {len(x_val)} images; {minutes:.1f} min")
    if not args.no_save:
        meta = {
            "val_accuracy": round(val, 4), "epochs": float(hist.epoch[-1]), "train_minutes": round(minutes, 1),
            "train_images": len(x_train), "parameters": sum(q.numel() for q in model.parameters()),
            "validation": "5,000 held-out CIFAR-10 photos (last 500 per class) with pasted shapes (seed 2)",
            "command": "python tools/train_shapes.py" + (f" --model {args.model}" if args.model != "cnn_shapes" else "")
                       + (f" --epochs {args.epochs}" if args.epochs != RECIPE.epochs else "")
                       + (f" --lr {args.lr:g}" if args.lr else "")
                       + (f" --threads {args.threads}" if args.threads else ""),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        }
        print("saved", save_checkpoint(model, args.model, meta, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
