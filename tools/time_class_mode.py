"""Time each solution notebook in class mode (full settings, shipped checkpoints) on this machine (maintainers).

    python tools/time_class_mode.py                      # every solution notebook
    python tools/time_class_mode.py 02_attention 03_gradient_attribution --threads 2

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
"""

from __future__ import annotations

import argparse
import os
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
    args = p.parse_args()

    import nbformat
    from nbclient import NotebookClient

    data_root = build_standin(args.standin, args.data, args.cache)
    os.environ.update(XAI_OFFLINE="1", XAI_STRICT="1", XAI_DATA_DIR=str(data_root), PYTHONHASHSEED="0")
    os.environ.pop("XAI_SMOKE", None)
    os.environ.pop("MPLBACKEND", None)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    paths = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names or p.stem[:2] in args.names]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"class mode on {os.cpu_count()} CPU cores, threads {args.threads or 'all'}; limit {args.limit:.0f} s")
    bad = 0
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
    print(f"executed notebooks: {args.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
