"""A tiny CIFAR-10 in the real on-disk format, for offline tests.

:func:`write_fake_cifar10` writes ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` as the
pickled dicts of the original, with Python 2 ``str`` keys (so ``b"data"`` when read with ``encoding="bytes"``):
``b"data"`` (N, 3072) uint8 rows, channel-major; ``b"labels"`` a list of ints; ``b"batch_label"``; ``b"filenames"``;
the meta file holds ``b"label_names"``. torchvision's ``CIFAR10`` reads it (without its MD5 check, see
``helpers.data.cifar10``).

The images are :func:`helpers.data.standin_cifar10`'s (a class-specific colour tint plus stripes, learnable by a
small CNN in a few epochs): the stand-in that ``helpers.data.cifar10`` uses in smoke + offline mode without files,
so a test run on these files and a student's smoke run without data see the same images.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
from pathlib import Path

import numpy as np

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # imported from tests/ alone (tools/colab_standin.py)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers.data import standin_cifar10, standin_images  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


#: the class-patterned images (helpers.data.standin_images): (N,) labels -> (N, 32, 32, 3) uint8
fake_cifar_images = standin_images


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes ``bytes`` as Python 2 ``str`` (like the original files, pickled by Python 2).

    So ``pickle.load(f, encoding="latin1")`` (torchvision) gives ``str`` keys such as ``"data"`` and
    ``pickle.load(f, encoding="bytes")`` (the snippet on the CIFAR web page) gives ``b"data"``, as with the real files.
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _dump(obj: dict, path: Path) -> None:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray, name: str) -> None:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # (N, 3072): R plane, G plane, B plane
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(rows, dtype=np.uint8),
        b"filenames": [f"fake_{name.replace(' ', '_')}_{i:05d}.png".encode() for i in range(len(labels))],
    }
    _dump(batch, path)


def write_fake_cifar10(root: str | Path, n_train_per_class: int = 10, n_test_per_class: int = 5,
                       seed: int = 0) -> Path:
    """Write a fake CIFAR-10 under ``root`` (the folder to use as ``XAI_DATA_DIR``) and return the batch folder.

    The training set (``10 * n_train_per_class`` images, classes interleaved and shuffled) is split over the five
    ``data_batch_*`` files (some may be empty); the test set has ``10 * n_test_per_class`` images.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = standin_cifar10(True, n_train_per_class, n_test_per_class, seed)
    test_images, test_labels = standin_cifar10(False, n_train_per_class, n_test_per_class, seed)
    for k, part in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
        _write_batch(folder / f"data_batch_{k}", train_images[part], train_labels[part], f"training batch {k} of 5")
    _write_batch(folder / "test_batch", test_images, test_labels, "testing batch 1 of 1")
    meta = {b"num_cases_per_batch": int(np.ceil(len(train_labels) / 5)), b"label_names": [c.encode() for c in CLASSES],
            b"num_vis": 3072}
    _dump(meta, folder / "batches.meta")
    return folder
