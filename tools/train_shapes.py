"""Train and save ``cnn_shapes``: the small CNN of notebook 07 that classifies helpers.synthetic's pasted shapes.

    python tools/train_shapes.py                 # 20,000 training images, 3 epochs (about a minute on 2 cores)
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers import synthetic, training  # noqa: E402
from helpers.checkpoints import ARCHITECTURES, save_checkpoint  # noqa: E402
from helpers.cifar_models import build_model  # noqa: E402
from tools.train_checkpoint import DEFAULT_TAR, load_jpeg_split  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_TAR)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "xai-course" / "cifar10-jpeg-split.pt")
    p.add_argument("--train", type=int, default=20000, help="training images (a seeded random subset)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "checkpoints")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tx, _, vx, _ = load_jpeg_split(args.data, args.cache)
    pick = torch.randperm(len(tx), generator=torch.Generator().manual_seed(0))[: args.train]
    x_train, y_train, _ = synthetic.paste_shapes(tx[pick], seed=1)
    x_val, y_val, _ = synthetic.paste_shapes(vx, seed=2)
    torch.manual_seed(0)
    model = build_model(ARCHITECTURES["cnn_shapes"])
    cfg = training.TrainConfig(epochs=args.epochs, batch_size=128, lr=2e-3, crop_padding=2, label_smoothing=0.0)
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
            "command": "python tools/train_shapes.py" + (f" --threads {args.threads}" if args.threads else ""),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        }
        print("saved", save_checkpoint(model, "cnn_shapes", meta, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
