"""helpers.data: normalisation, CIFAR-10 through torchvision (fake on-disk copy), photos, image loading."""

from __future__ import annotations

import pickle
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data
from tests.fake_cifar import write_fake_cifar10


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    write_fake_cifar10(tmp_path, n_train_per_class=6, n_test_per_class=4)
    monkeypatch.setenv("XAI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XAI_OFFLINE", "1")
    return tmp_path


def test_constants_unchanged():
    assert data.CIFAR10_CLASSES[3] == "cat" and len(data.CIFAR10_CLASSES) == 10
    assert data.CIFAR10_MEAN == (0.4914, 0.4822, 0.4465)
    assert data.CIFAR10_STD == (0.2470, 0.2435, 0.2616)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 3, 5, 7)])
def test_normalize_roundtrip(shape):
    x = torch.rand(shape)
    y = data.normalize(x, data.IMAGENET_MEAN, data.IMAGENET_STD)
    assert y.shape == x.shape
    ref = (x - torch.tensor(data.IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(data.IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(y, ref)
    torch.testing.assert_close(data.denormalize(y, data.IMAGENET_MEAN, data.IMAGENET_STD), x)


def test_normalize_bad_input():
    with pytest.raises(TypeError, match="float"):
        data.normalize(torch.zeros(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        data.normalize(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="shape"):
        data.normalize(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="3 values"):
        data.normalize(torch.zeros(3, 4, 4), (0.5, 0.5), (0.5, 0.5))
    with pytest.raises(TypeError):
        data.normalize(np.zeros((3, 4, 4), np.float32))


def test_fake_cifar_is_the_real_format(tmp_path):
    folder = write_fake_cifar10(tmp_path, n_train_per_class=3, n_test_per_class=2)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["batches.meta", *[f"data_batch_{i}" for i in range(1, 6)], "test_batch"]
    with open(folder / "data_batch_1", "rb") as f:  # the CIFAR web page's snippet
        batch = pickle.load(f, encoding="bytes")
    assert {b"data", b"labels", b"batch_label", b"filenames"} <= set(batch)
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape[1] == 3072
    with open(folder / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="latin1")["label_names"][0] == "airplane"


def test_cifar10_reads_fake_copy_through_torchvision(fake_root):
    from torchvision.datasets import CIFAR10

    train = data.cifar10(train=True)
    test = data.cifar10(train=False)
    assert isinstance(train, CIFAR10)
    assert len(train) == 60 and len(test) == 40
    assert train.classes == list(data.CIFAR10_CLASSES)
    img, label = test[0]
    assert isinstance(img, Image.Image) and img.size == (32, 32) and 0 <= label < 10


def test_cifar10_tensors_selection(fake_root):
    x, y = data.cifar10_tensors(train=True)
    assert x.shape == (60, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    xp, yp = data.cifar10_tensors(train=True, per_class=2)
    assert torch.bincount(yp, minlength=10).tolist() == [2] * 10
    xl, yl = data.cifar10_tensors(train=False, limit=7)
    assert xl.shape[0] == 7
    x2, y2 = data.cifar10_tensors(train=True, per_class=2)
    assert torch.equal(xp, x2) and torch.equal(yp, y2)  # deterministic
    # the tensor is the torchvision image, channel-first
    ds = data.cifar10(train=False)
    assert np.array_equal(xl[0].permute(1, 2, 0).numpy(), np.asarray(ds[0][0]))
    with pytest.raises(ValueError):
        data.cifar10_tensors(limit=-1)


def test_fake_cifar_is_learnable(fake_root):
    """Class-mean colour alone (nearest centroid) already separates the fake classes: a model can learn them."""
    x, y = data.cifar10_tensors(train=True)
    xt, yt = data.cifar10_tensors(train=False)
    feats = lambda im: im.float().mean((2, 3))  # noqa: E731
    centroids = torch.stack([feats(x[y == c]).mean(0) for c in range(10)])
    pred = torch.cdist(feats(xt), centroids).argmin(1)
    assert (pred == yt).float().mean() > 0.8


def test_cifar10_missing_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("XAI_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="XAI_OFFLINE") as info:
        data.cifar10()
    assert "cifar-10-batches-py" in str(info.value)


def test_cifar10_download_failure_is_clear(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("XAI_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("XAI_OFFLINE", raising=False)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", no_network)
    with pytest.raises(RuntimeError, match="XAI_OFFLINE=1"):
        data.cifar10()


def test_imagenet_classes():
    names = data.imagenet_classes()
    assert len(names) == 1000 and names[281] == "tabby" and names[967] == "espresso"


def test_sample_photos():
    photos = data.sample_photos()
    assert set(photos) == {"chelsea", "coffee", "astronaut", "rocket"}
    for img in photos.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    small = data.sample_photos(["chelsea"], size=64)["chelsea"]
    assert small.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="available"):
        data.sample_photos(["dog"])


def test_load_image_sources(tmp_path):
    rgb = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(rgb).save(path)
    assert np.array_equal(data.load_image(path), rgb)
    assert np.array_equal(data.load_image(str(path)), rgb)
    assert np.array_equal(data.load_image(Image.fromarray(rgb)), rgb)
    assert np.array_equal(data.load_image(rgb), rgb)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    assert np.array_equal(data.load_image(chw), rgb)
    assert np.array_equal(data.load_image(chw.float() / 255), rgb)
    assert np.array_equal(data.load_image(rgb.astype(np.float64) / 255), rgb)
    # grey -> 3 channels; RGBA -> alpha dropped
    grey = data.load_image(rgb[..., 0])
    assert grey.shape == (20, 30, 3) and np.array_equal(grey[..., 2], rgb[..., 0])
    rgba = np.concatenate([rgb, np.zeros((20, 30, 1), np.uint8)], -1)
    assert np.array_equal(data.load_image(rgba), rgb)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(data.load_image(tmp_path / "rgba.png"), rgb)
    assert data.load_image(rgb, size=16).shape == (16, 16, 3)


def test_load_image_bad_input(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        data.load_image(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        data.load_image(np.full((4, 4, 3), 2.0))
    with pytest.raises(ValueError, match="shape"):
        data.load_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        data.load_image(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="0, 255"):
        data.load_image(np.full((4, 4, 3), 300, np.int32))
    with pytest.raises(TypeError):
        data.load_image(12)
    with pytest.raises(ValueError, match="size"):
        data.resize_center_crop(np.zeros((4, 4, 3), np.uint8), 0)


def test_load_url_offline_and_failing(monkeypatch):
    monkeypatch.setenv("XAI_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="XAI_OFFLINE"):
        data.load_image("https://example.com/cat.jpg")
    monkeypatch.delenv("XAI_OFFLINE")

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    with pytest.raises(RuntimeError, match="could not download"):
        data.load_image("https://example.com/cat.jpg")


def test_load_url_reads_bytes(monkeypatch):
    import io

    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[..., 1] = 200
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.delenv("XAI_OFFLINE", raising=False)
    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: Resp(buf.getvalue()))
    assert np.array_equal(data.load_image("https://example.com/x.png"), rgb)


def test_resize_center_crop_is_central():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # the central square is white
    out = data.resize_center_crop(img, 20)
    assert out.shape == (20, 20, 3) and out[2:-2, 2:-2].min() == 255
