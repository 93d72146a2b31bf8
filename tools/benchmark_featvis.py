"""Seconds per optimisation step: the course's render loop (helpers.featvis.render) vs lucent's render_vis.

    python tools/benchmark_featvis.py --threads 2 --out /tmp/benchmark_featvis.json
    python tools/benchmark_featvis.py --cases cifar_cnn --repeats 9 --steps 40

Both optimise the same objective on the same model at the same image size with the same parameterisation (Fourier,
ImageNet colour decorrelation, Adam lr 0.05, one image) and the same kinds of transforms (pad, jitter, random scale
0.9-1.1, random rotation -10..10 degrees, jitter; lucent's list from ``featvis.lucent_transforms`` with its broken
``random_scale`` replaced, ours from ``featvis.standard_transforms``; the pixel amounts scaled to the image size), and
the model sees the image at the same size. Cases:

* ``cifar_cnn``: the shipped CIFAR-10 CNN at 32 px, channel ``features.4.1``:17 (normalisation inside the
  transform list for lucent, ``preprocess`` for ours);
* ``inceptionv1``: lucent's InceptionV1 at 128 px with RANDOM weights (nothing is downloaded; the time of a step
  does not depend on the weights), channel ``mixed4a``:97, Lucid's input range for both.

Three loops per case: lucent's ``render_vis`` as it is (called directly, not through ``featvis.lucent_render``, so
it computes the gradients of the weights too, as it does for its users; its leaked hooks are removed after each
call); ours as the notebook runs it (weights frozen, forward pass stopped after the objective's layer); ours
without the early stop (CIFAR-10 CNN only: at 128 px InceptionV1's last pooling layer fails, which render_vis
catches and our loop avoids by stopping early). One warm-up run each, then ``--repeats`` timed runs of ``--steps``
steps in a rotating order, so a busy machine slows all alike; medians, and the ratios ours / lucent (the goal:
<= 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from train_checkpoint import cpu_name

from helpers import data
from helpers import featvis as fv

CASES = ("cifar_cnn", "inceptionv1")


def _case(name: str) -> dict[str, Any]:
    """model, size, our objective, lucent's objective string, our preprocess, lucent's extra transforms and flag."""
    if name == "cifar_cnn":
        from helpers.checkpoints import load_checkpoint

        model = load_checkpoint("cnn_cifar10").eval()

        def pre(x: torch.Tensor) -> torch.Tensor:
            return data.normalize(x, data.CIFAR10_MEAN, data.CIFAR10_STD)

        return {"model": model, "size": 32, "objective": fv.channel("features.4.1", 17),
                "lucent_objective": "features_4_1:17", "preprocess": pre, "lucent_tail": [pre],
                "lucent_preprocess": False, "weights": "shipped cnn_cifar10", "full_forward_ok": True}
    if name == "inceptionv1":
        from lucent.modelzoo import inceptionv1

        torch.manual_seed(0)
        model = inceptionv1(pretrained=False).eval()
        return {"model": model, "size": 128, "objective": fv.channel("mixed4a", 97),
                "lucent_objective": "mixed4a:97", "preprocess": fv.inceptionv1_preprocess, "lucent_tail": [],
                "lucent_preprocess": True, "weights": "lucent InceptionV1, RANDOM weights (timing only)",
                "full_forward_ok": False}
    raise ValueError(f"unknown case {name!r}; choose from {CASES}")


def runners(case: dict[str, Any], steps: int) -> dict[str, Callable[[], None]]:
    from lucent.optvis import param as lparam
    from lucent.optvis import render as lrender

    model, size = case["model"], case["size"]

    def lucent() -> None:
        chain = fv.lucent_transforms(size) + case["lucent_tail"]
        with fv._closing_lucent_hooks(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lrender.render_vis(model, case["lucent_objective"], param_f=lambda: lparam.image(size),
                               optimizer=lambda p: torch.optim.Adam(p, lr=0.05), transforms=chain,
                               thresholds=(steps,), preprocess=case["lucent_preprocess"], progress=False,
                               show_image=False, fixed_image_size=size)

    def ours(stop_early: bool) -> Callable[[], None]:
        def run() -> None:
            fv.render(model, case["objective"], size=size, steps=steps, lr=0.05, param="fourier", decorrelate=True,
                      transforms=fv.standard_transforms(size), preprocess=case["preprocess"], input_size=size,
                      stop_early=stop_early)

        return run

    loops = {"lucent render_vis": lucent, "ours": ours(True)}
    if case["full_forward_ok"]:  # InceptionV1 below 224 px fails after the objective's layer without the early stop
        loops["ours, no early stop"] = ours(False)
    return loops


def machine(threads: int) -> dict[str, Any]:
    """CPU model, core count, library versions and the load average now."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        lucent_version = version("torch-lucent")
    except PackageNotFoundError:
        lucent_version = "?"
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "torch_lucent": lucent_version, "python": platform.python_version(),
            "load_average": [round(v, 2) for v in os.getloadavg()]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--steps", type=int, default=20, help="optimisation steps per timed run (default 20)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per loop (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict[str, Any] = {"command": "python tools/benchmark_featvis.py " + " ".join(argv or sys.argv[1:]),
                              "machine_before": machine(args.threads), "steps": args.steps,
                              "repeats": args.repeats, "cases": {}}
    for name in args.cases:
        case = _case(name)
        run = runners(case, args.steps)
        for fn in run.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in run}
        keys = list(run)
        for r in range(args.repeats):
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:
                t0 = time.perf_counter()
                run[k]()
                times[k].append((time.perf_counter() - t0) / args.steps)
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["lucent render_vis"]
        result["cases"][name] = {
            "size": case["size"], "weights": case["weights"], "seconds_per_step": times,
            "median_seconds_per_step": med, "ratio_to_lucent": {k: v / base for k, v in med.items()},
        }
        print(f"{name} ({case['size']} px, {case['weights']}), median of {args.repeats} x {args.steps} steps:")
        for k, v in med.items():
            print(f"  {k:22s} {1000 * v:8.1f} ms/step   ratio to lucent {v / base:5.2f}")
    result["machine_after"] = machine(args.threads)
    print(f"machine: {result['machine_before']['cpu']}, {args.threads} threads, load average before "
          f"{result['machine_before']['load_average']}, after {result['machine_after']['load_average']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
