"""Train and save a shipped CIFAR-10 checkpoint (maintainers only; see data/checkpoints/README.md).

    python tools/train_checkpoint.py cnn_cifar10
    python tools/train_checkpoint.py vit_cifar10
    # a second stage: a fresh warm-up + cosine schedule on the saved weights (the card lists every stage)
    python tools/train_checkpoint.py cnn_cifar10 --init data/checkpoints/cnn_cifar10.pt --epochs 10 --lr 0.1
    # the ViT's fourth stage: DeiT-style hard distillation from the shipped CNN (see the model card)
    python tools/train_checkpoint.py vit_cifar10 --init data/checkpoints/vit_cifar10.pt --epochs 30 --lr 5e-4 \
        --warmup 0.3 --cutout 8 --teacher data/checkpoints/cnn_cifar10.pt --distill hard --amp off --max-minutes 122
    # several teachers: distil from their ensemble (the weighted mean of their class probabilities)
    python tools/train_checkpoint.py cnn_cifar10 --init data/checkpoints/cnn_cifar10.pt --epochs 10 --lr 0.05 \
        --teacher data/checkpoints/cnn_cifar10.pt data/checkpoints/vit_cifar10.pt --teacher-weights 0.7 0.3 \
        --distill soft --cutout 16

Data: the JPEG-encoded CIFAR-10 training split (``train/<class>/NNNN.jpg``), by default
``../shared/data/cifar10-train-jpeg.tar.gz``. The last 500 images of each class (by file name) are held out for
validation; the official test split is not used. The decoded images are cached as a tensor file outside the repo.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tarfile
import time
from dataclasses import replace
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from helpers.checkpoints import ARCHITECTURES, record_training_curve, save_checkpoint, sha256_file
from helpers.cifar_models import CNNConfig, build_model
from helpers.data import CIFAR10_CLASSES
from helpers.training import EnsembleTeacher, TrainConfig, evaluate, train, with_overrides

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_TAR = ROOT.parent / "shared" / "data" / "cifar10-train-jpeg.tar.gz"
DEFAULT_CACHE = Path.home() / ".cache" / "xai-course" / "cifar10-jpeg-split.pt"
VAL_PER_CLASS = 500

RECIPES = {
    "cnn_cifar10": (
        ARCHITECTURES["cnn_cifar10"],
        TrainConfig(
            epochs=12,
            batch_size=256,
            lr=0.2,
            weight_decay=5e-4,
            optimizer="sgd",
            warmup_epochs=1.0,
            label_smoothing=0.1,
            grad_clip=None,
        ),
    ),
    "vit_cifar10": (
        ARCHITECTURES["vit_cifar10"],
        TrainConfig(
            epochs=200,
            batch_size=128,
            lr=1.5e-3,
            weight_decay=0.05,
            optimizer="adamw",
            warmup_epochs=1.0,
            label_smoothing=0.1,
            amp=False,
            grad_clip=1.0,
        ),
    ),
}


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else whatever ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_jpeg_split(tar_path: Path, cache: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, val_x, val_y): uint8 (N, 3, 32, 32) and int64 (N,), val = last 500 per class."""
    if cache.exists():
        d = torch.load(cache, weights_only=True)
        return d["train_x"], d["train_y"], d["val_x"], d["val_y"]
    if not tar_path.exists():
        raise FileNotFoundError(f"{tar_path} not found: pass --data PATH to the CIFAR-10 JPEG tarball")
    per_class: dict[str, list[tuple[str, np.ndarray]]] = {c: [] for c in CIFAR10_CLASSES}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-2] not in per_class:
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            img = np.asarray(Image.open(BytesIO(data)).convert("RGB"))
            per_class[parts[-2]].append((parts[-1], img))
    tx, ty, vx, vy = [], [], [], []
    for label, cls in enumerate(CIFAR10_CLASSES):
        items = sorted(per_class[cls], key=lambda t: t[0])
        for i, (_, img) in enumerate(items):
            (vx if i >= len(items) - VAL_PER_CLASS else tx).append(img)
            (vy if i >= len(items) - VAL_PER_CLASS else ty).append(label)

    def to_t(imgs: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()

    out = to_t(tx), torch.tensor(ty), to_t(vx), torch.tensor(vy)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"train_x": out[0], "train_y": out[1], "val_x": out[2], "val_y": out[3]}, cache)
    return out


def add_split_args(parser: argparse.ArgumentParser, out: Path | None = ROOT / "data" / "checkpoints") -> None:
    """The options the training tools share: ``--data`` and ``--cache`` (the JPEG split, see :func:`load_split`),
    ``--threads`` and, unless ``out`` is None, ``--out`` (default ``out``) and ``--no-save``."""
    parser.add_argument("--data", type=Path, default=DEFAULT_TAR, help="the CIFAR-10 JPEG tarball")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the decoded split (written on first use)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    if out is not None:
        parser.add_argument("--out", type=Path, default=out, help="the checkpoint directory")
        parser.add_argument("--no-save", action="store_true", help="train and report only")


def load_split(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Set torch's threads from ``--threads`` (if given), then :func:`load_jpeg_split` of ``--data`` / ``--cache``:
    (train_x, train_y, val_x, val_y), uint8 (N, 3, 32, 32) and int64 (N,)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return load_jpeg_split(args.data, args.cache)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(RECIPES))
    add_split_args(p)
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument("--lr", type=float, help="override the recipe's peak learning rate")
    p.add_argument("--warmup", type=float, help="override the recipe's warm-up epochs")
    p.add_argument(
        "--init",
        type=Path,
        help="continue from this checkpoint (a second stage: a fresh warm-up + cosine schedule on its weights)",
    )
    p.add_argument("--cutout", type=int, help="override the recipe's cutout square (pixels; 0 turns it off)")
    p.add_argument("--amp", choices=["on", "off"], help="override the recipe's bf16 autocast")
    p.add_argument("--schedule", choices=["cosine", "constant"], help="after the warm-up: cosine decay or constant")
    p.add_argument(
        "--teacher", type=Path, nargs="+",
        help="distil from this checkpoint (e.g. data/checkpoints/cnn_cifar10.pt, --distill); several: their ensemble",
    )
    p.add_argument(
        "--teacher-weights", type=float, nargs="+", help="weights of several --teacher checkpoints (default equal)"
    )
    p.add_argument("--distill", choices=["hard", "soft"], help="knowledge distillation from --teacher")
    p.add_argument("--distill-alpha", type=float, help="weight of the teacher's loss term (default 0.5)")
    p.add_argument("--swa-start", type=float, help="average the weights (SWA) from this fraction of the schedule on")
    p.add_argument("--swa-every", type=int, help="steps between two SWA snapshots (default 50)")
    p.add_argument("--widths", type=int, nargs=4, help="cnn_cifar10 only: the CNN's four widths (default: shipped)")
    p.add_argument("--fp16", action="store_true", help="store the weights as fp16 (half the file; see save_checkpoint)")
    p.add_argument("--max-minutes", type=float, help="stop at this wall-clock budget")
    p.add_argument("--log", type=Path, help="write the history as JSON here")
    args = p.parse_args()
    model_cfg, train_cfg = RECIPES[args.name]
    if args.widths:
        if not isinstance(model_cfg, CNNConfig):
            p.error("--widths is for cnn_cifar10 only")
        model_cfg = replace(model_cfg, widths=tuple(args.widths))
    if (args.teacher is None) != (args.distill is None):
        p.error("--teacher and --distill go together")
    train_cfg = with_overrides(  # a copy: RECIPES stay as they are; options not given keep the recipe's value
        train_cfg,
        epochs=args.epochs or None,
        lr=args.lr or None,
        warmup_epochs=args.warmup,
        cutout=args.cutout,
        amp=None if args.amp is None else args.amp == "on",
        schedule=args.schedule,
        distill=args.distill,
        distill_alpha=args.distill_alpha,
        swa_start=args.swa_start,
        swa_every=args.swa_every or None,
    )
    train_cfg = replace(train_cfg, max_minutes=args.max_minutes)  # no option: no budget
    torch.manual_seed(train_cfg.seed)
    t0 = time.time()
    tx, ty, vx, vy = load_split(args)
    print(f"data: {len(tx)} train / {len(vx)} val images, loaded in {time.time() - t0:.1f} s", flush=True)
    model = build_model(model_cfg)
    parent: dict | None = None
    if args.init:
        ckpt = torch.load(args.init, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
        parent = {"file": args.init.name, "sha256": sha256_file(args.init), **ckpt.get("meta", {})}
        print(f"continuing from {args.init} (val {parent.get('val_accuracy')})", flush=True)
    model = model.to(memory_format=torch.channels_last)
    teacher = None
    teacher_meta: list[dict] = []
    ensemble_acc: float | None = None
    if args.teacher_weights and len(args.teacher_weights) != len(args.teacher or []):
        p.error("--teacher-weights needs one weight per --teacher checkpoint")
    if args.teacher:
        members = []
        for path in args.teacher:
            tckpt = torch.load(path, map_location="cpu", weights_only=True)
            member = build_model(tckpt["config"])
            member.load_state_dict(tckpt["state_dict"])
            members.append(member.to(memory_format=torch.channels_last).eval())
            teacher_meta.append({"file": path.name, "sha256": sha256_file(path),
                                 "val_accuracy": tckpt.get("meta", {}).get("val_accuracy")})
            print(f"distilling ({args.distill}) from {path} (val {teacher_meta[-1]['val_accuracy']})", flush=True)
        teacher = members[0] if len(members) == 1 else EnsembleTeacher(members, args.teacher_weights)
        if len(members) > 1:
            ensemble_acc = round(evaluate(teacher, vx, vy), 4)
            print(f"teacher: the ensemble of {len(members)} (weights {args.teacher_weights or 'equal'}): "
                  f"val {ensemble_acc}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.name}: {n_params / 1e6:.2f} M parameters; recipe {train_cfg}", flush=True)
    hist = train(
        model, tx, ty, train_cfg, vx, vy, device="cpu", show_progress=False, log=lambda m: print(m, flush=True),
        teacher=teacher,
    )
    machine = (
        f"{platform.machine()} ({cpu_name()}), {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    meta = {
        "val_accuracy": round(hist.val_acc[-1], 4),
        "epochs": round(hist.epoch[-1], 2),
        "train_minutes": round(hist.seconds[-1] / 60, 1),
        "parameters": n_params,
        "machine": machine,
        "command": "python tools/train_checkpoint.py " + shlex.join(sys.argv[1:]),  # as it was run
        "validation": f"last {VAL_PER_CLASS} images per class of the CIFAR-10 training split",
    }
    if args.teacher:
        # one teacher: its file, hash and accuracy; an ensemble: a list of those, with the weights
        meta["teacher"] = teacher_meta[0] if len(teacher_meta) == 1 else {
            "ensemble": teacher_meta, "weights": args.teacher_weights, "val_accuracy": ensemble_acc
        }
    if parent is not None:
        # the stages before this one, so the model card can give the whole recipe and the total time
        stages = parent.get("stages", [{k: parent.get(k) for k in ("command", "epochs", "train_minutes", "machine")}])
        stage_keys = ("command", "epochs", "train_minutes", "machine", "teacher")
        meta["stages"] = [*stages, {k: meta[k] for k in stage_keys if k in meta}]
        # "epochs" and "train_minutes" count the whole training, all stages; "stages" has each stage's share
        meta["epochs"] = round(sum(st["epochs"] or 0 for st in meta["stages"]), 2)
        meta["train_minutes"] = round(sum(st["train_minutes"] or 0 for st in meta["stages"]), 1)
        meta["command"] = " && ".join(st["command"] for st in meta["stages"])
        meta["init_sha256"] = parent["sha256"]
    if args.log:
        args.log.write_text(json.dumps({"meta": meta, "history": hist.__dict__}, indent=2))
    if not args.no_save:
        path = save_checkpoint(model, args.name, meta, args.out, half=args.fp16)
        print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB): {meta}", flush=True)
        if hist.val_acc and parent is None:  # a run from random weights: its curve is notebook 01's figure
            label = f"{args.name}: {meta['epochs']} epochs in {meta['train_minutes']} min"  # a legend entry
            curves = record_training_curve(args.name, label, hist.epoch, hist.val_acc, len(tx), args.out)
            print(f"validation curve written to {curves}", flush=True)


if __name__ == "__main__":
    main()
