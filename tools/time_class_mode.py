"""Time each solution notebook in class mode (full settings, shipped checkpoints) on this machine (maintainers).

    python tools/time_class_mode.py                      # every solution notebook
    python tools/time_class_mode.py 02_attention 03_gradient_attribution --threads 2
    python tools/time_class_mode.py --device cuda       # on a GPU machine (make gpu-check): the notebooks' GPU settings

"Class mode" is what a student runs in class: ``XAI_SMOKE`` unset, the shipped CIFAR-10 checkpoints, no training.
The issues ask for <= 5 min per notebook on 2 CPU cores. Offline (no downloads here) the pretrained ImageNet models
get random weights (``XAI_OFFLINE=1``): the same compute, so the times hold; downloads on Colab come on top.

CIFAR-10: the official test split cannot be downloaded here, so the script builds a stand-in ``cifar-10-batches-py``
(the real on-disk format, outside the repository) from the JPEG training split: the training images (all but the
last 500 per class) as ``data_batch_*`` and the held-out 5,000 validation images as ``test_batch``, each shuffled
with a fixed seed. A notebook that
evaluates the 10,000 test images therefore sees 5,000 here. Never commit the stand-in.

Each executed notebook is saved under ``--out`` so its figures and numbers (real checkpoints, real images) can be
read. Exit status 1 when a notebook fails or runs over ``--limit`` seconds.

``--device`` sets ``XAI_DEVICE`` for the kernels (``cuda``, ``mps``, ``cpu``, ``sim``; default: unset, the
notebooks' own choice). With a GPU the notebooks switch to their GPU settings themselves (``DEVICE.type != "cpu"``:
06's 224-px / 512-step lucent renders, 05's 1,000 LIME samples on photos, 04's Score-CAM on ResNet-50, AMP training),
so ``--device cuda`` times exactly what a student on a GPU runtime runs. The times (and the device the kernel
reported) are written to ``--out``/``times.json`` and ``times.md`` (a table for ``docs/time_estimates.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from train_checkpoint import DEFAULT_TAR, load_jpeg_split

ROOT = Path(__file__).resolve().parent.parent
# the CIFAR-10 pickle writer of the tests (not part of the helpers package; colab_standin.py does the same)
sys.path.insert(0, str(ROOT / "tests"))
from fake_cifar import CLASSES, _dump, _write_batch  # noqa: E402


def build_standin(root: Path, tar_path: Path, cache: Path) -> Path:
    """Write ``<root>/cifar-10-batches-py`` from the JPEG training split (once); return ``root``."""
    folder = root / "cifar-10-batches-py"
    if (folder / "test_batch").exists():
        return root
    folder.mkdir(parents=True, exist_ok=True)
    tx, ty, vx, vy = load_jpeg_split(tar_path, cache)
    # the split is sorted by class; shuffle (fixed seed) so that "the first N test images" mix the classes, as in
    # the real test batch
    gen = torch.Generator().manual_seed(0)
    pt, pv = torch.randperm(len(tx), generator=gen), torch.randperm(len(vx), generator=gen)
    tx, ty, vx, vy = tx[pt], ty[pt], vx[pv], vy[pv]
    hwc = tx.permute(0, 2, 3, 1).numpy()
    parts = [range(k * len(tx) // 5, (k + 1) * len(tx) // 5) for k in range(5)]
    for k, part in enumerate(parts, start=1):
        sel = list(part)
        _write_batch(folder / f"data_batch_{k}", hwc[sel], ty.numpy()[sel], f"training batch {k} of 5")
    _write_batch(folder / "test_batch", vx.permute(0, 2, 3, 1).numpy(), vy.numpy(), "held-out validation split")
    _dump({b"num_cases_per_batch": len(tx) // 5, b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072},
          folder / "batches.meta")
    return root


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="notebook names (default: all solutions)")
    p.add_argument("--data", type=Path, default=DEFAULT_TAR, help="the CIFAR-10 JPEG tarball")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "xai-course" / "cifar10-jpeg-split.pt")
    p.add_argument("--standin", type=Path, default=Path.home() / ".cache" / "xai-course" / "cifar10-standin")
    p.add_argument("--out", type=Path, default=Path("/tmp/xai-class-mode"), help="executed notebooks go here")
    p.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the kernel (default: all cores)")
    p.add_argument("--limit", type=float, default=300.0, help="seconds allowed per notebook")
    p.add_argument("--students", action="store_true",
                   help="run the student copies (notebooks/, exercises unsolved, XAI_STRICT=0), e.g. for the site")
    p.add_argument("--online", action="store_true",
                   help="do not set XAI_OFFLINE: download the pretrained weights (needs internet; for the site)")
    p.add_argument("--device", choices=("cuda", "mps", "cpu", "sim"),
                   help="XAI_DEVICE for the kernels (default: unset, the notebooks' own choice)")
    args = p.parse_args()
    if args.device in ("cuda", "mps"):  # fail here, before minutes of building the stand-in
        ok = torch.cuda.is_available() if args.device == "cuda" else torch.backends.mps.is_available()
        if not ok:
            print(f"--device {args.device}: torch finds no such GPU on this machine", file=sys.stderr)
            return 2

    import nbformat
    from nbclient import NotebookClient

    data_root = build_standin(args.standin, args.data, args.cache)
    os.environ.update(XAI_STRICT="0" if args.students else "1", XAI_DATA_DIR=str(data_root), PYTHONHASHSEED="0")
    if args.online:
        os.environ.pop("XAI_OFFLINE", None)
    else:
        os.environ["XAI_OFFLINE"] = "1"
    os.environ.pop("XAI_SMOKE", None)
    os.environ.pop("MPLBACKEND", None)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.device:
        os.environ["XAI_DEVICE"] = args.device
    else:
        os.environ.pop("XAI_DEVICE", None)
    paths = sorted((ROOT / ("notebooks" if args.students else "solutions")).glob("[0-9][0-9]_*.ipynb"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names or p.stem[:2] in args.names]
    args.out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    print(f"class mode on {os.cpu_count()} CPU cores, threads {args.threads or 'all'}, XAI_DEVICE "
          f"{args.device or 'unset'}{f' ({gpu})' if gpu else ''}; limit {args.limit:.0f} s")
    bad = 0
    rows = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=1200, startup_timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
            status = "ok"
        except Exception as exc:
            status = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[-1] if str(exc) else ''}"
        seconds = time.perf_counter() - start
        nbformat.write(nb, args.out / path.name)
        over = status == "ok" and seconds > args.limit
        bad += status != "ok" or over
        flag = "  OVER THE LIMIT" if over else ""
        print(f"{seconds:7.1f} s  {path.name}  {status}{flag}", flush=True)
        reported = next((o.get("text", "").splitlines()[0] for c in nb.cells if c.cell_type == "code"
                         for o in c.get("outputs", []) if "Running " in o.get("text", "")), "")
        rows.append({"notebook": path.stem, "seconds": round(seconds, 1), "status": status, "over_limit": over,
                     "setup_line": reported})
    meta = {"device": args.device or "unset", "gpu": gpu, "cpu_cores": os.cpu_count(), "threads": args.threads,
            "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"), "limit_s": args.limit}
    (args.out / "times.json").write_text(json.dumps({"settings": meta, "runs": rows}, indent=2) + "\n")
    head = f"class mode, XAI_DEVICE={meta['device']}" + (f" ({gpu})" if gpu else "") + f", {meta['date']}"
    table = [f"| notebook | run (s) | status |  <!-- {head} -->", "| --- | --- | --- |"]
    table += [f"| {r['notebook']} | {r['seconds']:.1f} | {r['status']} |" for r in rows]
    (args.out / "times.md").write_text("\n".join(table) + "\n")
    print(f"executed notebooks and times.json / times.md: {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
