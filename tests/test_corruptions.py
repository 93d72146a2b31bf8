"""helpers.corruptions (notebook 08): shapes and dtypes, determinism for a seed, and severity that is monotone in a
measurable way (distance to the clean image; loss of fine detail for blur and contrast)."""

from __future__ import annotations

import pytest
import torch

from helpers import corruptions


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Four real photos (skimage) at 32 px: the periodic stripes of the fake CIFAR alias under pixelation."""
    from helpers import data

    photos = data.sample_photos(size=32)
    return torch.stack([torch.from_numpy(v).permute(2, 0, 1) for v in photos.values()]).contiguous()


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).pow(2).mean())


def _high_freq(x: torch.Tensor) -> float:
    """Mean squared difference between horizontal and vertical neighbours: the energy of the finest detail."""
    x = x.float()
    return float((x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean())


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_corruption_shape_determinism_and_monotone_severity(name: str, images: torch.Tensor) -> None:
    out = {s: corruptions.corrupt(images, name, s, seed=1) for s in range(6)}
    assert torch.equal(out[0], images) and out[0] is not images
    for s in range(1, 6):
        assert out[s].dtype == torch.uint8 and out[s].shape == images.shape
        assert torch.equal(out[s], corruptions.corrupt(images, name, s, seed=1)), "not deterministic"
    mse = [_mse(out[s], images) for s in range(6)]
    assert all(a < b for a, b in zip(mse, mse[1:], strict=False)), (name, mse)
    if name in ("gaussian_blur", "contrast"):
        hf = [_high_freq(out[s]) for s in range(6)]
        assert all(a > b for a, b in zip(hf, hf[1:], strict=False)), (name, hf)


def test_noise_depends_on_the_seed_only(images: torch.Tensor) -> None:
    a = corruptions.corrupt(images, "gaussian_noise", 3, seed=0)
    assert not torch.equal(a, corruptions.corrupt(images, "gaussian_noise", 3, seed=1))
    torch.manual_seed(123)  # the global RNG does not matter
    assert torch.equal(a, corruptions.corrupt(images, "gaussian_noise", 3, seed=0))
    # sigma 0.08 at severity 3: the measured noise std (before rounding and clipping) is close to it
    mid = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    std = (corruptions.corrupt(mid, "gaussian_noise", 3, seed=0).float() - 128).std() / 255
    assert float(std) == pytest.approx(0.08, rel=0.05)


def test_known_values() -> None:
    grey = torch.full((1, 3, 8, 8), 100, dtype=torch.uint8)
    assert torch.equal(corruptions.corrupt(grey, "contrast", 5), grey)  # a flat image has no contrast to lose
    assert torch.equal(corruptions.corrupt(grey, "gaussian_blur", 5), grey)
    bright = corruptions.corrupt(grey, "brightness", 1)  # grey: V + 0.05 on every channel, truncated
    assert int(bright[0, 0, 0, 0]) == int(100 + 0.05 * 255)
    red = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = 200
    red[:, 1] = 100  # HSV: hue and saturation kept, so the channels keep their ratio 2 : 1 : 0
    out = corruptions.corrupt(red, "brightness", 2)[0, :, 0, 0].tolist()
    assert out[0] == int(200 + 0.1 * 255) and abs(out[1] - out[0] / 2) <= 1 and out[2] == 0
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None]) % 2 * 255
    checker = checker.to(torch.uint8).expand(1, 3, 32, 32).contiguous()
    pix = corruptions.corrupt(checker, "pixelate", 5)  # 20 x 20 box averages of a 1-px checkerboard: about mid grey
    assert abs(float(pix.float().mean()) - 127.5) < 10


def test_corrupt_rejects_bad_input(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown corruption"):
        corruptions.corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity"):
        corruptions.corrupt(images, "jpeg", 6)
    with pytest.raises(ValueError, match="uint8"):
        corruptions.corrupt(images.float(), "jpeg", 1)


def test_corrupt_all_keys(images: torch.Tensor) -> None:
    out = corruptions.corrupt_all(images[:2], names=("contrast", "jpeg"))
    assert sorted(out) == [(n, s) for n in ("contrast", "jpeg") for s in range(1, 6)]


def test_parameters_are_cifar10c() -> None:
    """The severities of hendrycks/robustness ImageNet-C/create_c/make_cifar_c.py (CIFAR-10-C)."""
    assert corruptions.PARAMETERS["jpeg"] == (80, 65, 58, 50, 40)
    assert corruptions.PARAMETERS["pixelate"] == (0.95, 0.9, 0.85, 0.75, 0.65)
    assert corruptions.PARAMETERS["brightness"] == (0.05, 0.1, 0.15, 0.2, 0.3)
    assert corruptions.PARAMETERS["gaussian_blur"] == (0.4, 0.6, 0.7, 0.8, 1.0)


@pytest.mark.parametrize("name", ["gaussian_blur", "brightness", "contrast"])
def test_matches_scikit_image_within_one_level(name: str, images: torch.Tensor) -> None:
    """CIFAR-10-C computes these with scikit-image (``gaussian``, ``rgb2hsv``) or numpy and truncates with
    ``np.uint8``: ours agree to one grey level (float rounding at a truncation boundary)."""
    np = pytest.importorskip("numpy")
    skf = pytest.importorskip("skimage.filters")
    skc = pytest.importorskip("skimage.color")
    for s, c in zip(corruptions.SEVERITIES, corruptions.PARAMETERS[name], strict=True):
        ours = corruptions.corrupt(images, name, s).permute(0, 2, 3, 1).numpy().astype(int)
        for i, img in enumerate(images):
            x = img.permute(1, 2, 0).numpy() / 255.0
            if name == "gaussian_blur":
                ref = skf.gaussian(x, sigma=c, channel_axis=-1)
            elif name == "brightness":
                hsv = skc.rgb2hsv(x)
                hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
                ref = skc.hsv2rgb(hsv)
            else:
                mean = x.mean(axis=(0, 1), keepdims=True)
                ref = (x - mean) * c + mean
            ref = np.uint8(np.clip(ref, 0, 1) * 255).astype(int)
            assert np.abs(ours[i] - ref).max() <= 1, (name, s)
