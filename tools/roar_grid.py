"""The full ROAR grid of notebook 07 (Hooker et al. 2019): 6 methods x 5 thresholds x 3 seeds, one retrain each.

    python tools/roar_grid.py --threads 1    # the shipped table, data/roar/roar_cifar10.json (its recorded command)
    python tools/roar_grid.py --quick        # a minute-long smoke run (2 methods, 2 thresholds) -> /tmp/roar_quick.json

Data: the CIFAR-10 JPEG training split (``../shared/data/cifar10-train-jpeg.tar.gz``, see tools/train_checkpoint.py):
``--train`` images from its training part (a seeded subset) to retrain on, ``--test`` images from the held-out part
(last 500 per class, a seeded subset) to test on. The maps explain the true label with the shipped ``cnn_cifar10``
(trained on the original training part) and are computed once per method (cached in ``--cache-dir``). For every
method, threshold ``t`` and seed the top ``t`` of the pixels of every training and test image are replaced by the
CIFAR-10 mean colour and a fresh small CNN (helpers.roar.RetrainConfig) is trained from scratch and tested. ``t = 0``
(no removal) is the baseline, once per seed.

The output JSON holds numbers only (never images): settings, baseline, ``results[method][t]`` = accuracy per seed,
the seconds per method's maps and per retrain, the total wall time, the command and the machine. It is rewritten
after every retrain with ``"complete": false`` until the grid is done, and an interrupted run resumes from it.
``--quick`` writes to ``/tmp/roar_quick.json`` unless ``--out`` says otherwise, and refuses to write the shipped table.
The maps' seconds are stored with the cached maps, so ``map_seconds`` is complete also when maps come from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from train_checkpoint import DEFAULT_TAR, cpu_name, load_jpeg_split

from helpers import roar
from helpers.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_TAR)
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "xai-course" / "cifar10-jpeg-split.pt")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "xai-course" / "roar-maps")
    p.add_argument("--train", type=int, default=5000, help="training images (seeded subset of the training part)")
    p.add_argument("--test", type=int, default=2000, help="test images (seeded subset of the held-out part)")
    p.add_argument("--methods", nargs="+", default=list(roar.DEFAULT_METHODS))
    p.add_argument("--fractions", nargs="+", type=float, default=list(roar.DEFAULT_FRACTIONS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=roar.RetrainConfig.epochs)
    p.add_argument("--ig-steps", type=int, default=8)
    p.add_argument("--sg-samples", type=int, default=8)
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 methods, 2 thresholds, 1 seed, 1 epoch")
    p.add_argument("--out", type=Path,
                   help="the JSON table (default data/roar/roar_cifar10.json; with --quick /tmp/roar_quick.json)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        if args.out is not None and args.out.resolve() == roar.TABLE_PATH.resolve():
            raise SystemExit(f"--quick would overwrite the shipped table {roar.TABLE_PATH}: give another --out")
        args.out = args.out or Path(tempfile.gettempdir()) / "roar_quick.json"
        args.train, args.test, args.methods, args.fractions, args.seeds, args.epochs = \
            min(args.train, 1000), min(args.test, 500), ["random", "gradient"], [0.5, 0.9], [0], 1
    args.out = args.out or roar.TABLE_PATH
    if args.threads:
        torch.set_num_threads(args.threads)
    wall = time.perf_counter()

    tx, ty, vx, vy = load_jpeg_split(args.data, args.cache)
    tr = torch.randperm(len(tx), generator=torch.Generator().manual_seed(0))[: args.train]
    te = torch.randperm(len(vx), generator=torch.Generator().manual_seed(1))[: args.test]
    train_x, train_y, test_x, test_y = tx[tr], ty[tr], vx[te], vy[te]
    cfg = roar.RetrainConfig(epochs=args.epochs)
    settings = {
        "train_images": len(train_x), "test_images": len(test_x), "methods": args.methods,
        "fractions": args.fractions, "seeds": args.seeds, "retrain": cfg.as_dict(), "ig_steps": args.ig_steps,
        "sg_samples": args.sg_samples, "explained_model": "cnn_cifar10", "target": "true label",
        "fill": "CIFAR-10 mean colour", "train_data": "seeded subset (seed 0) of the JPEG split's training part",
        "test_data": "seeded subset (seed 1) of the held-out part (last 500 per class)",
    }
    table: dict = {}
    if args.out.exists():
        old = json.loads(args.out.read_text())
        if old.get("settings") == settings:
            table = old
            print(f"resuming {args.out}")
    table.setdefault("settings", settings)
    table.setdefault("baseline", {})
    table.setdefault("results", {})
    table.setdefault("map_seconds", {})
    table.setdefault("retrain_seconds", [])
    before = float(table.get("wall_minutes", 0.0))
    command = "python tools/roar_grid.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    table.update(
        command=command.strip(),
        machine=f"{cpu_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
                f"torch {torch.__version__}, Python {platform.python_version()}",
        complete=False,
    )

    def save() -> None:
        table["wall_minutes"] = round(before + (time.perf_counter() - wall) / 60, 1)
        table["retrain_seconds_median"] = round(statistics.median(table["retrain_seconds"]), 1) \
            if table["retrain_seconds"] else None
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=1) + "\n")

    def timed_retrain(a, b, s: int) -> float:
        start = time.perf_counter()
        acc = roar.retrain(a, train_y, b, test_y, cfg, seed=s)
        table["retrain_seconds"].append(round(time.perf_counter() - start, 1))
        return acc

    for s in args.seeds:
        if str(s) not in table["baseline"]:
            table["baseline"][str(s)] = timed_retrain(train_x, test_x, s)
            print(f"baseline seed {s}: {table['baseline'][str(s)]:.4f}", flush=True)
            save()

    model = load_checkpoint("cnn_cifar10")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    for method in args.methods:
        key = f"{method}-{len(train_x)}-{len(test_x)}-ig{args.ig_steps}-sg{args.sg_samples}.pt"
        cached = args.cache_dir / key
        entry = torch.load(cached, weights_only=True) if cached.exists() else None
        if isinstance(entry, dict) and "seconds" in entry:  # maps and the seconds they took
            maps = entry["maps"]
            table["map_seconds"][method] = entry["seconds"]
        else:  # no cache, or one written before the seconds were stored with the maps: compute (and time) again
            start = time.perf_counter()
            both_x, both_y = torch.cat([train_x, test_x]), torch.cat([train_y, test_y])
            maps = roar.roar_maps(model, both_x, both_y, method, layer=model.features[-1], ig_steps=args.ig_steps,
                                  sg_samples=args.sg_samples, progress=False)
            table["map_seconds"][method] = round(time.perf_counter() - start, 1)
            torch.save({"maps": maps, "seconds": table["map_seconds"][method]}, cached)
            print(f"maps {method}: {table['map_seconds'][method]:.0f} s", flush=True)
        maps = maps.float()
        train_maps, test_maps = maps[: len(train_x)], maps[len(train_x):]
        res = table["results"].setdefault(method, {})
        for t in args.fractions:
            for s in args.seeds:
                done = res.setdefault(f"{t:g}", {})
                if str(s) in done:
                    continue
                done[str(s)] = timed_retrain(roar.roar_dataset(train_x, train_maps, t),
                                             roar.roar_dataset(test_x, test_maps, t), s)
                print(f"{method} t={t:g} seed {s}: {done[str(s)]:.4f}", flush=True)
                save()
    # seeds as lists, in the order of settings["seeds"]
    table["baseline_per_seed"] = [table["baseline"][str(s)] for s in args.seeds]
    table["table"] = {m: {t: [v[str(s)] for s in args.seeds] for t, v in table["results"][m].items()}
                      for m in args.methods}
    table["complete"] = True
    save()
    print(f"wrote {args.out} ({table['wall_minutes']} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
