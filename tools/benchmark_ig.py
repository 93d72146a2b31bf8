"""Time the course's Integrated Gradients (helpers.attribution) against captum's on the same input and steps.

    python tools/benchmark_ig.py                               # CourseCNN, 8 CIFAR-sized images, 32 steps
    python tools/benchmark_ig.py --model resnet50 --batch 1 --size 224 --steps 16 --repeats 3

The two implementations run interleaved (A B, B A, A B, ...) so a busy machine slows both alike; the table shows
the median and min of the wall-clock times per call and the ratio ours / captum of the medians (the course's
target: <= 1.2). Both get the same ``internal_batch_size``; the attributions are compared too. The weights are
random (timing does not depend on them). Prints the command line and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from train_checkpoint import cpu_name

from helpers import attribution
from helpers.cifar_models import CNNConfig, CourseCNN


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "cnn_cifar10":
        return CourseCNN(CNNConfig()).eval()
    import torchvision

    if name in ("resnet18", "resnet50"):
        return getattr(torchvision.models, name)(weights=None).eval()
    raise SystemExit(f"unknown model {name!r}: choose cnn_cifar10, resnet18 or resnet50")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cnn_cifar10", help="cnn_cifar10 (default), resnet18 or resnet50")
    p.add_argument("--batch", type=int, default=8, help="images per call (default 8)")
    p.add_argument("--size", type=int, default=None, help="image size (default 32 for the CIFAR CNN, else 224)")
    p.add_argument("--steps", type=int, default=32, help="IG steps (default 32)")
    p.add_argument("--method", default="riemann_trapezoid", help="quadrature rule (default riemann_trapezoid)")
    p.add_argument("--internal-batch-size", type=int, default=None,
                   help="images per forward pass for both (default: all steps * batch at once)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per implementation (default 5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from captum.attr import IntegratedGradients

    model = build(args.model)
    size = args.size or (32 if args.model == "cnn_cifar10" else 224)
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    target = torch.arange(args.batch) % 10
    baseline = torch.zeros_like(x)
    ig = IntegratedGradients(model)

    def ours() -> torch.Tensor:
        return attribution.integrated_gradients(model, x, target, baseline, args.steps, args.method,
                                                args.internal_batch_size)

    def captum() -> torch.Tensor:
        return ig.attribute(x, baseline, target=target, n_steps=args.steps, method=args.method,
                            internal_batch_size=args.internal_batch_size)

    diff = float((ours() - captum()).abs().max())  # also a warm-up call for each
    times: dict[str, list[float]] = {"ours": [], "captum": []}
    for r in range(args.repeats):
        order = [("ours", ours), ("captum", captum)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)

    med = {k: statistics.median(v) for k, v in times.items()}
    print("command: python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]))
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; torch {torch.__version__} with {args.threads} "
          f"thread(s); python {platform.python_version()}")
    print(f"setup:   {args.model}, input {tuple(x.shape)}, {args.steps} steps ({args.method}), "
          f"internal_batch_size {args.internal_batch_size}, {args.repeats} interleaved repeats; "
          f"max |ours - captum| = {diff:.2g}")
    print()
    print("| implementation | median s/call | min s/call | all (s) |")
    print("| --- | ---: | ---: | --- |")
    for name, ts in times.items():
        print(f"| {name} | {med[name]:.3f} | {min(ts):.3f} | {' '.join(f'{t:.3f}' for t in ts)} |")
    print()
    ratio = med["ours"] / med["captum"]
    print(f"ratio ours / captum (medians): {ratio:.2f}  ({'within' if ratio <= 1.2 else 'ABOVE'} the 1.2x target)")


if __name__ == "__main__":
    main()
