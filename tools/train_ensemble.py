"""Train and save notebook 08's small deep ensemble: ``cnn_small_ens0`` .. ``cnn_small_ens3``.

    python tools/train_ensemble.py --threads 1                 # every member, one after the other
    python tools/train_ensemble.py --members 0 --no-save       # one member, report only

Each member is a quarter-width ``CourseCNN`` (widths 16/32/64/128, the architecture of notebook 07's ROAR retrains,
``helpers.checkpoints.ARCHITECTURES``) trained from random weights on the 45,000 training images of the JPEG split of
``tools/train_checkpoint.py``; the members differ only in their seed (initialisation, batch order, augmentation), as
in Lakshminarayanan et al. (2017). Every member is trained with dropout (rate ``helpers.uncertainty.DROPOUT_P``) on
the input of its classifier layer (``helpers.uncertainty.head_dropout``: a forward pre-hook, so the saved weights
are a plain CourseCNN), so each member is also an MC-dropout model. No label smoothing (it changes calibration,
which notebook 08 measures). Accuracy on the 5,000 held-out images (the last 500 per class) is measured after
reloading the saved fp16 weights and written with the command and the machine into ``manifest.json``.
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
from helpers.uncertainty import DROPOUT_P, ENSEMBLE_MEMBERS, head_dropout

ROOT = Path(__file__).resolve().parent.parent

#: the members' recipe: AdamW, one epoch of warm-up then cosine decay, crop + flip, no label smoothing; each member
#: gets its own seed and --epochs (evaluated once, at the end)
RECIPE = training.TrainConfig(epochs=6, batch_size=128, lr=2e-3, weight_decay=0.05, label_smoothing=0.0,
                              crop_padding=4, flip=True, amp=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_args(p)
    p.add_argument("--members", type=int, nargs="+", default=list(range(len(ENSEMBLE_MEMBERS))))
    p.add_argument("--epochs", type=int, default=RECIPE.epochs)
    p.add_argument("--train", type=int, help="use only N training images (a seeded subset; tests)")
    args = p.parse_args()
    tx, ty, vx, vy = load_split(args)
    if args.train:
        pick = torch.randperm(len(tx), generator=torch.Generator().manual_seed(0))[: args.train]  # classes mixed
        tx, ty = tx[pick], ty[pick]
    print(f"{len(tx):,} training images, {len(vx):,} held-out; dropout {DROPOUT_P} on the classifier's input",
          flush=True)
    for k in args.members:
        name = ENSEMBLE_MEMBERS[k]
        torch.manual_seed(k)
        model = build_model(ARCHITECTURES[name])
        start = time.perf_counter()
        with head_dropout(model, DROPOUT_P):
            cfg = training.with_overrides(RECIPE, epochs=args.epochs, seed=k, eval_every=args.epochs)
            hist = training.train(model, tx, ty, cfg, vx, vy, show_progress=False,
                                  log=lambda m, name=name: print(f"{name}: {m}", flush=True))
        minutes = (time.perf_counter() - start) / 60
        val = float(training.evaluate(model.eval(), vx, vy))
        print(f"{name}: validation accuracy {val:.4f} (fp32) after {minutes:.1f} min", flush=True)
        if args.no_save:
            continue
        command = f"python tools/train_ensemble.py --members {k} --epochs {args.epochs}" + (
            f" --threads {args.threads}" if args.threads else "")
        meta = {
            "epochs": args.epochs, "train_minutes": round(minutes, 1), "train_images": len(tx), "seed": k,
            "parameters": sum(q.numel() for q in model.parameters()), "dropout": DROPOUT_P,
            "train_accuracy": round(hist.train_acc[-1], 4),
            "validation": "last 500 images per class of the CIFAR-10 training split (fp16 weights after reloading)",
            "command": command,
            "machine": f"{platform.machine()} ({platform.processor() or 'cpu'}), {torch.get_num_threads()} threads, "
                       f"torch {torch.__version__}",
        }
        save_checkpoint(model, name, meta, args.out, half=True)
        loaded = load_checkpoint(name, args.out)
        val16 = float(training.evaluate(loaded, vx, vy))
        meta["val_accuracy"] = round(val16, 4)
        path = save_checkpoint(loaded, name, meta, args.out, half=True)
        print(f"{name}: saved {path} ({path.stat().st_size / 1e6:.2f} MB), fp16 validation accuracy {val16:.4f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
