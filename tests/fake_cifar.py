"""A tiny CIFAR-10 in the real on-disk format, for offline tests.

:func:`write_fake_cifar10` writes ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` as the
pickled dicts of the original, with Python 2 ``str`` keys (so ``b"data"`` when read with ``encoding="bytes"``):
``b"data"`` (N, 3072) uint8 rows, channel-major; ``b"labels"`` a list of ints; ``b"batch_label"``; ``b"filenames"``;
the meta file holds ``b"label_names"``. torchvision's ``CIFAR10`` reads it (without its MD5 check, see
``helpers.data.cifar10``).

Each class has a simple, learnable pattern: a class-specific colour tint plus stripes whose orientation and
frequency depend on the class, with random phase, brightness and noise, so a small CNN separates the classes in a
few epochs while the images are still not identical.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def fake_cifar_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Class-dependent patterned images: (N, 32, 32, 3) uint8 for (N,) labels in 0..9."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 32.0
    images = np.empty((len(labels), 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        hue = np.array([(c * 37) % 256, (c * 91 + 60) % 256, (c * 151 + 120) % 256], dtype=np.float32) / 255.0
        angle = np.pi * (c % 5) / 5.0
        freq = 2.0 + 2.0 * (c // 5)
        phase = rng.uniform(0, 2 * np.pi)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
        img = 0.55 * wave[..., None] * hue[None, None, :] + 0.25 * hue[None, None, :] + 0.1 * rng.uniform()
        img = img + rng.normal(0.0, 0.04, size=img.shape)
        images[i] = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    return images


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
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.repeat(np.arange(10), n_train_per_class))
    test_labels = rng.permutation(np.repeat(np.arange(10), n_test_per_class))
    train_images = fake_cifar_images(train_labels, seed=seed + 1)
    test_images = fake_cifar_images(test_labels, seed=seed + 2)
    for k, part in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
        _write_batch(folder / f"data_batch_{k}", train_images[part], train_labels[part], f"training batch {k} of 5")
    _write_batch(folder / "test_batch", test_images, test_labels, "testing batch 1 of 1")
    meta = {b"num_cases_per_batch": int(np.ceil(len(train_labels) / 5)), b"label_names": [c.encode() for c in CLASSES],
            b"num_vis": 3072}
    _dump(meta, folder / "batches.meta")
    return folder
