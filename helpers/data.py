"""Data: CIFAR-10, normalisation, ImageNet class names, sample photos and image loading.

* CIFAR-10 comes from torchvision, cached in :func:`helpers.env.data_dir` (``$XAI_DATA_DIR``). It is downloaded when
  online; under ``XAI_OFFLINE=1`` it is read from the standard ``cifar-10-batches-py`` folder in that directory.
  Under ``XAI_SMOKE=1 XAI_OFFLINE=1`` without those files a small generated stand-in is used instead (and said so):
  :func:`standin_cifar10`, patterned images, the same the test suite writes to disk (``tests/fake_cifar.py``).
* Images handed around by the course are **HWC uint8 RGB numpy arrays** (what ``PIL`` and ``skimage`` give);
  model inputs are float tensors ``(3, H, W)`` or ``(B, 3, H, W)`` normalised with a mean and std per channel.
* :func:`sample_photos` gives real photos that ship with scikit-image (no download), :func:`load_image` reads a
  path, URL, array, PIL image or tensor and validates it.
"""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import env

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "normalize",
    "denormalize",
    "cifar10",
    "cifar10_tensors",
    "standin_images",
    "standin_cifar10",
    "imagenet_classes",
    "SAMPLE_PHOTOS",
    "sample_photos",
    "load_image",
    "resize_center_crop",
]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: The ImageNet statistics used by torchvision's weights and by DeiT (timm's ``vit_base_patch16_224`` uses 0.5/0.5).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


# --------------------------------------------------------------------------------------------------- normalisation
def _stats(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"expected a float tensor, got {x.dtype} (convert uint8 images with x.float() / 255 first)")
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected a (3, H, W) or (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (one per channel), got {len(mean)} and {len(std)}")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    if (s <= 0).any():
        raise ValueError(f"std must be positive, got {tuple(std)}")
    return m, s


def normalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``(x - mean) / std`` per channel. ``x``: float (3, H, W) or (B, 3, H, W) in [0, 1]; same shape out."""
    m, s = _stats(x, mean, std)
    return (x - m) / s


def denormalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """The inverse of :func:`normalize`: ``x * std + mean`` per channel (not clipped). Same shape out."""
    m, s = _stats(x, mean, std)
    return x * s + m


# ----------------------------------------------------------------------------------------------------- CIFAR-10
def _cifar_folder(root: Path) -> Path:
    return Path(root) / "cifar-10-batches-py"


def _cifar_files_present(root: Path) -> bool:
    from torchvision.datasets import CIFAR10

    folder = _cifar_folder(root)
    names = [n for n, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
    return all((folder / n).is_file() for n in names)


def _cifar_class():
    """A torchvision ``CIFAR10`` subclass that can skip the MD5 check of the batch files.

    torchvision verifies the MD5 of every batch file, so a locally written (smaller) CIFAR-10 in the same format
    -- the test suite's fake CIFAR -- would be refused. With ``verify_md5=False`` (used when ``download=False`` and
    all files exist) the files only have to exist and unpickle; with ``download=True`` torchvision's full check runs
    and a mismatching copy is downloaded again.
    """
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    class CourseCIFAR10(CIFAR10):
        def __init__(self, *args: Any, verify_md5: bool = True, **kwargs: Any) -> None:
            self.verify_md5 = verify_md5
            super().__init__(*args, **kwargs)

        def _check_integrity(self) -> bool:
            if self.verify_md5:
                return super()._check_integrity()
            return _cifar_files_present(Path(self.root))

        def _load_meta(self) -> None:
            if self.verify_md5:
                return super()._load_meta()
            import pickle

            path = os.path.join(self.root, self.base_folder, self.meta["filename"])
            if not check_integrity(path):  # exists
                raise RuntimeError(f"CIFAR-10 metadata file {path} is missing")
            with open(path, "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return CourseCIFAR10


def _missing_cifar_message(root: Path) -> str:
    return (
        f"CIFAR-10 was not found in {_cifar_folder(root)} and XAI_OFFLINE=1 forbids downloading it. Fixes: "
        "(a) on Colab or any machine with internet, unset the flag (os.environ.pop('XAI_OFFLINE', None)) and run "
        f"again, it is downloaded once (170 MB); (b) download {CIFAR10_URL} yourself and extract it into {root} "
        f"so that {_cifar_folder(root) / 'data_batch_1'} exists; (c) point XAI_DATA_DIR at a folder that holds "
        "cifar-10-batches-py."
    )


def standin_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Class-patterned images standing in for CIFAR-10: (N, 32, 32, 3) uint8 for (N,) labels in 0..9.

    Each class has a simple, learnable pattern: a class-specific colour tint plus stripes whose orientation and
    frequency depend on the class, with random phase, brightness and noise (so a small CNN separates the classes
    in a few epochs while no two images are identical). Not photos: nothing learnt or explained on them carries
    over to CIFAR-10."""
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


def standin_cifar10(train: bool = False, n_train_per_class: int = 10, n_test_per_class: int = 5,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The generated stand-in for a CIFAR-10 split: images (N, 32, 32, 3) uint8 and labels (N,) int64, classes
    shuffled; ``10 * n_train_per_class`` training or ``10 * n_test_per_class`` test images (:func:`standin_images`).
    The same images as the test suite's on-disk fake CIFAR-10 with the same arguments (``tests/fake_cifar.py``)."""
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.repeat(np.arange(10), n_train_per_class))
    test_labels = rng.permutation(np.repeat(np.arange(10), n_test_per_class))
    labels = train_labels if train else test_labels
    return standin_images(labels, seed=seed + (1 if train else 2)), labels


class _StandInCIFAR10(torch.utils.data.Dataset):
    """A CIFAR-10-shaped dataset of :func:`standin_cifar10` images, with torchvision's ``CIFAR10`` interface:
    ``data`` (N, 32, 32, 3) uint8, ``targets`` (list of N ints), ``classes``, ``class_to_idx``; an item is
    ``(transform(PIL image), target)``."""

    def __init__(self, train: bool, transform: Any = None, target_transform: Any = None) -> None:
        self.train, self.transform, self.target_transform = train, transform, target_transform
        self.data, labels = standin_cifar10(train)
        self.targets = [int(v) for v in labels]
        self.classes = list(CIFAR10_CLASSES)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        img, target = Image.fromarray(self.data[index]), self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


_STANDIN_SAID: set[bool] = set()


def _standin(train: bool, root: Path, transform: Any) -> _StandInCIFAR10:
    ds = _StandInCIFAR10(train, transform)
    if train not in _STANDIN_SAID:
        _STANDIN_SAID.add(train)
        print(f"CIFAR-10 is not in {_cifar_folder(root)}: SMOKE + OFFLINE mode uses a generated STAND-IN instead "
              f"({len(ds)} patterned {'training' if train else 'test'} images, 10 classes; not photos, so accuracies "
              "and explanations on it mean nothing). For CIFAR-10 itself, run without XAI_OFFLINE (downloaded once).")
    return ds


def cifar10(train: bool = False, download: bool | None = None, transform: Any = None):
    """The CIFAR-10 test (default) or training split as a ``torchvision.datasets.CIFAR10`` rooted at ``env.data_dir()``.

    ``download=None`` downloads unless ``XAI_OFFLINE=1``. Without download the standard ``cifar-10-batches-py`` files
    must be in ``env.data_dir()``; their MD5 is then not checked (so a smaller copy in the same format loads, see
    ``tests/fake_cifar.py``). ``dataset.data`` is (N, 32, 32, 3) uint8, ``dataset.targets`` a list of N ints.
    Missing offline, in smoke mode (``XAI_SMOKE=1 XAI_OFFLINE=1``: tests, a quick look at a fresh release) a small
    generated stand-in with the same interface is returned instead, and a line says so (:func:`standin_cifar10`:
    100 training or 50 test images); otherwise ``FileNotFoundError`` is raised, saying how to get the files.
    ``RuntimeError`` when the download fails.
    """
    root = env.data_dir()
    if download is None:
        download = not env.offline()
    cls = _cifar_class()
    if not download:
        if not _cifar_files_present(root):
            if env.offline() and env.smoke():
                return _standin(train, root, transform)
            if env.offline():
                raise FileNotFoundError(_missing_cifar_message(root))
            raise FileNotFoundError(f"CIFAR-10 was not found in {_cifar_folder(root)}; call cifar10(download=True) "
                                    f"or extract {CIFAR10_URL} into {root}")
        return cls(str(root), train=train, download=False, transform=transform, verify_md5=False)
    try:
        return cls(str(root), train=train, download=True, transform=transform, verify_md5=True)
    except (urllib.error.URLError, OSError) as exc:
        raise RuntimeError(
            f"downloading CIFAR-10 from {CIFAR10_URL} into {root} failed ({exc}). Check the internet connection; "
            "offline, set XAI_OFFLINE=1 and put the extracted cifar-10-batches-py folder into XAI_DATA_DIR."
        ) from exc


def cifar10_tensors(train: bool = False, limit: int | None = None,
                    per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 as tensors: uint8 images (N, 3, 32, 32) and int64 labels (N,).

    Deterministic selection in file order: ``per_class`` keeps the first ``per_class`` images of every class (in
    their original order), then ``limit`` keeps the first ``limit`` of those.
    """
    for arg, value in (("limit", limit), ("per_class", per_class)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(f"{arg} must be a non-negative int or None, got {value!r}")
    ds = cifar10(train=train)
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    idx = torch.arange(len(labels))
    if per_class is not None:
        keep = torch.zeros(len(labels), dtype=torch.bool)
        for c in range(len(CIFAR10_CLASSES)):
            keep[idx[labels == c][:per_class]] = True
        idx = idx[keep]
    if limit is not None:
        idx = idx[:limit]
    images = torch.from_numpy(np.ascontiguousarray(ds.data[idx.numpy()])).permute(0, 3, 1, 2).contiguous()
    return images, labels[idx].clone()


# --------------------------------------------------------------------------------------------------- ImageNet
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (from torchvision's weights metadata; nothing is downloaded)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


#: Photos bundled with scikit-image (no download) and the ImageNet-1k classes they show (index: name).
#: The astronaut (Eileen Collins) has no ImageNet class of her own; ImageNet-1k has no "rocket" class, the rocket
#: photo is closest to "missile" / "projectile". Measured with a pretrained EfficientNet-Lite0 (224 px centre crop):
#: chelsea -> Egyptian cat 0.39, tiger cat 0.33, tabby 0.16; coffee -> espresso 0.95; rocket -> missile 0.31,
#: projectile 0.16; astronaut -> bobsled 0.28, football helmet 0.10 (no right answer).
SAMPLE_PHOTOS: dict[str, str] = {
    "chelsea": "a tabby cat -- 281 'tabby', 282 'tiger cat', 285 'Egyptian cat'",
    "coffee": "a cup of coffee on a saucer -- 967 'espresso', 968 'cup'",
    "astronaut": "the astronaut Eileen Collins with a flag -- no matching ImageNet class",
    "rocket": "a rocket on its launch pad -- 657 'missile', 744 'projectile'",
    "immunohistochemistry": "a stained tissue slide (out of distribution for ImageNet)",
    "hubble_deep_field": "galaxies (out of distribution for ImageNet)",
}


def sample_photos(names: Sequence[str] | None = None, size: int | None = None) -> dict[str, np.ndarray]:
    """Real photos from ``skimage.data``: name -> HWC uint8 RGB array (see :data:`SAMPLE_PHOTOS` for the classes).

    ``names`` defaults to chelsea, coffee, astronaut, rocket. ``size`` resizes the short side and centre-crops to
    ``size`` x ``size`` (see :func:`resize_center_crop`).
    """
    import skimage.data

    names = ["chelsea", "coffee", "astronaut", "rocket"] if names is None else list(names)
    out = {}
    for name in names:
        if name not in SAMPLE_PHOTOS:
            raise ValueError(f"unknown sample photo {name!r}; available: {', '.join(SAMPLE_PHOTOS)}")
        img = _validate_array(np.asarray(getattr(skimage.data, name)()), name)
        out[name] = resize_center_crop(img, size) if size is not None else img
    return out


def _validate_array(arr: np.ndarray, what: str = "image") -> np.ndarray:
    """Any HW / HWC / CHW uint8, bool or float-in-[0,1] array -> HWC uint8 RGB (grey repeated, alpha dropped)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))  # CHW -> HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"{what}: expected an image of shape (H, W), (H, W, 3|4) or (3, H, W), got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what}: empty image of shape {arr.shape}")
    arr = arr[..., :3]  # RGBA -> RGB
    if arr.dtype == np.uint8:
        return np.array(arr, order="C", copy=True)  # a writable copy, never a view of the caller's array
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr.astype(np.uint8) * 255)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{what}: float image contains NaN or inf")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{what}: float images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}] "
                             "(denormalise first, or pass uint8 in [0, 255])")
        return np.ascontiguousarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8))
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{what}: integer images must be in [0, 255], got values in [{lo}, {hi}]")
        return np.ascontiguousarray(arr.astype(np.uint8))
    raise TypeError(f"{what}: unsupported dtype {arr.dtype} (use uint8 in [0, 255] or float in [0, 1])")


def _from_pil(img: Any) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)[..., :3].copy()


def load_image(src: Any, size: int | None = None) -> np.ndarray:
    """Read and validate an image: HWC uint8 RGB array out.

    ``src`` is a file path, an ``http(s)://`` URL, a numpy array or torch tensor (HW, HWC or CHW; uint8 in
    [0, 255] or float in [0, 1]) or a PIL image. Greyscale becomes 3 identical channels, an alpha channel is
    dropped. ``size`` resizes the short side and centre-crops a square (:func:`resize_center_crop`).
    """
    from PIL import Image

    if isinstance(src, (str, Path)) and str(src).startswith(("http://", "https://")):
        url = str(src)
        if env.offline():
            raise RuntimeError(f"cannot download {url}: XAI_OFFLINE=1. Save the image next to the notebook and pass "
                               "its path, or use helpers.data.sample_photos()")
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "xai-course"})
            with urllib.request.urlopen(req, timeout=20) as resp:
                raw = resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"could not download {url} ({exc}); check the URL and the internet connection, or "
                               "pass a local file path instead") from exc
        try:
            arr = _from_pil(Image.open(io.BytesIO(raw)))
        except Exception as exc:  # noqa: BLE001 - PIL raises several types for non-images
            raise ValueError(f"{url} is not an image PIL can read ({exc})") from exc
    elif isinstance(src, (str, Path)):
        path = Path(src).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"image file not found: {path}")
        try:
            with Image.open(path) as im:
                arr = _from_pil(im)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path} is not an image PIL can read ({exc})") from exc
    elif isinstance(src, Image.Image):
        arr = _from_pil(src)
    elif isinstance(src, torch.Tensor):
        t = src.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
            t = t.float()
        arr = _validate_array(t.numpy(), "tensor image")
    elif isinstance(src, np.ndarray):
        arr = _validate_array(src, "array image")
    else:
        raise TypeError(f"cannot load an image from a {type(src).__name__}; pass a path, URL, numpy array, "
                        "PIL image or torch tensor")
    arr = _validate_array(arr)
    return resize_center_crop(arr, size) if size is not None else arr


def resize_center_crop(img: Any, size: int) -> np.ndarray:
    """Resize so the short side is ``size`` (bilinear, antialiased), then centre-crop ``size`` x ``size``.

    ``img``: anything :func:`load_image` accepts except paths/URLs are also fine. Returns HWC uint8 (size, size, 3).
    """
    from PIL import Image

    if not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    arr = img if isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] == 3 \
        else load_image(img)
    h, w = arr.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = np.asarray(Image.fromarray(arr).resize((nw, nh), Image.BILINEAR))
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.array(resized[top : top + size, left : left + size], order="C", copy=True)
