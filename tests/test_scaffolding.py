"""helpers.scaffolding: the flat-region detector, the sticker shortcut, the scaffold, and that it fools LIME.

Photos are scikit-image's at 32 px (``helpers.data.sample_photos``); the black boxes are small numpy functions, so
everything here runs in a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import data
from helpers import lime as L
from helpers import scaffolding as S

NUM_CLASSES = 4


def _photos(size: int = 32) -> np.ndarray:
    """All six bundled photos, (6, size, size, 3) float32 in [0, 1]."""
    photos = data.sample_photos(list(data.SAMPLE_PHOTOS), size=size)
    return np.stack([p.astype(np.float32) / 255.0 for p in photos.values()])


_W = np.random.default_rng(0).normal(size=(8, NUM_CLASSES))


def base_model(images: np.ndarray) -> np.ndarray:
    """A fixed "classifier": softmax of a linear map of the mean and the contrast (std) of the grey value in each
    image quadrant. LIME's mean fill keeps the quadrant means of a 4 x 4 grid but removes contrast."""
    x = np.asarray(images, dtype=np.float64).mean(axis=-1)
    n, h, w = x.shape
    q = x.reshape(n, 2, h // 2, 2, w // 2)
    feats = np.concatenate([q.mean(axis=(2, 4)).reshape(n, 4), 8 * q.std(axis=(2, 4)).reshape(n, 4)], axis=1)
    logits = feats @ _W
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _lime_batch(image: np.ndarray, n: int = 200, hide_color=None, seed: int = 0):
    seg = L.grid_segments(image.shape[:2], 4)  # 16 segments
    masks = L.sample_masks(n, 16, seed)
    return masks, L.perturb_images(image, seg, masks, L.fill_image(image, seg, hide_color))


# ----------------------------------------------------------------------------------------------------------------
# flat_fraction and the detector
# ----------------------------------------------------------------------------------------------------------------


def test_flat_fraction_known_values():
    flat = np.full((1, 9, 11, 3), 0.4, np.float32)
    assert S.flat_fraction(flat)[0] == 1.0
    noise = np.random.default_rng(0).random((3, 9, 11, 3)).astype(np.float32)
    np.testing.assert_array_equal(S.flat_fraction(noise), 0.0)
    half = noise[:1].copy()
    half[:, :, :6] = 0.7  # columns 0..5 flat: pixels in columns 0..4 equal their right and lower neighbours
    assert S.flat_fraction(half)[0] == pytest.approx(5 / 10)
    one_channel = flat.copy()
    one_channel[..., 2] = noise[0, ..., 2]  # flat in two channels only: not flat
    assert S.flat_fraction(one_channel)[0] == 0.0
    nearly = flat + 1e-7 * np.random.default_rng(1).random(flat.shape).astype(np.float32)
    assert S.flat_fraction(nearly)[0] == 1.0 and S.flat_fraction(nearly, tol=1e-9)[0] < 1.0


def test_flat_fraction_is_small_on_photos_and_noise():
    # measured at 32 px: astronaut 0.0166, immunohistochemistry 0.0021, hubble 0.0031, the others 0
    assert S.flat_fraction(_photos(32)).max() < 0.025
    # chelsea and coffee at 224 px: 0.0009 and 0.0049 (astronaut and rocket have clipped flat regions at 224 px,
    # 0.094 and 0.14: the detector's threshold of 0.03 is meant for 32 px images)
    big = _photos(224)[:2]
    assert S.flat_fraction(big).max() < 0.01
    noisy = np.clip(_photos(32) + np.random.default_rng(0).normal(scale=0.02, size=(6, 32, 32, 3)), 0, 1)
    np.testing.assert_array_equal(S.flat_fraction(noisy.astype(np.float32)), 0.0)


@pytest.mark.parametrize("hide_color", [None, 0.0])
def test_flat_fraction_is_large_on_lime_perturbations(hide_color):
    image = _photos(32)[0]
    masks, batch = _lime_batch(image, hide_color=hide_color)
    frac = S.flat_fraction(batch)
    hidden = 1 - masks.mean(axis=1)
    assert frac[0] == 0.0  # the unperturbed image
    assert frac[1:].mean() > 0.3
    assert np.corrcoef(frac[1:], hidden[1:])[0, 1] > 0.95  # it measures how much is hidden


def test_detector_flags_lime_samples_and_no_photo():
    detect = S.perturbation_detector()
    photos = _photos(32)
    assert not detect(photos).any()
    assert not detect(S.add_sticker(photos)).any()
    for image in photos:
        masks, batch = _lime_batch(image, n=100)
        flags = detect(batch)
        assert not flags[0]
        assert flags[1:].mean() >= 0.99  # every sample that hides at least one of the 16 segments
        np.testing.assert_array_equal(flags, masks.min(axis=1) == 0)


def test_detector_threshold():
    image = _photos(32)[1]
    _, batch = _lime_batch(image, n=50)
    assert S.perturbation_detector(0.999)(batch).sum() == 0
    assert S.perturbation_detector(0.0)(batch)[1:].all()
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="threshold"):
            S.perturbation_detector(bad)


# ----------------------------------------------------------------------------------------------------------------
# The sticker and the biased model
# ----------------------------------------------------------------------------------------------------------------


def test_sticker():
    st = S.sticker(6)
    assert st.shape == (6, 6, 3) and st.dtype == np.float32 and st.min() == 0 and st.max() == 1
    np.testing.assert_array_equal(st[0, 0], [0, 1, 0])
    np.testing.assert_array_equal(st[0, 1], [1, 0, 1])
    assert S.flat_fraction(st[None])[0] == 0.0  # not flat: the detector does not fire on it
    dark = S.sticker(4, "dark")
    np.testing.assert_allclose(dark, 0.03)
    with pytest.raises(ValueError, match="size >= 2"):
        S.sticker(1)
    with pytest.raises(ValueError, match="unknown sticker kind"):
        S.sticker(6, "star")


def test_add_and_has_sticker():
    photos = _photos(32)
    stuck = S.add_sticker(photos)
    assert stuck.shape == photos.shape and stuck.dtype == np.float32
    np.testing.assert_array_equal(stuck[:, :6, :6], np.broadcast_to(S.sticker(), (6, 6, 6, 3)))
    np.testing.assert_array_equal(stuck[:, 6:], photos[:, 6:])
    np.testing.assert_array_equal(stuck[:, :, 6:], photos[:, :, 6:])
    assert S.has_sticker(stuck).all() and not S.has_sticker(photos).any()
    assert photos[0, 0, 0].tolist() != stuck[0, 0, 0].tolist()  # a copy: the input is unchanged
    np.testing.assert_array_equal(S.add_sticker(photos[:1], size=4)[0, :4, :4], S.sticker(4))
    assert S.has_sticker(S.add_sticker(photos, size=4), size=4).all()
    # LIME hiding the sticker's segment (grid cell 0, with its mean colour or black) removes it
    for hide_color in (None, 0.0):
        masks, batch = _lime_batch(stuck[2], n=64, hide_color=hide_color)
        np.testing.assert_array_equal(S.has_sticker(batch), masks[:, 0] == 1)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        S.has_sticker(photos[0])


def test_sticker_shortcut_forces_the_class_only_with_the_sticker():
    photos = _photos(32)
    biased = S.sticker_shortcut(base_model, target_class=2, confidence=0.9)
    np.testing.assert_allclose(biased(photos), base_model(photos), rtol=1e-12, atol=0)
    stuck = S.add_sticker(photos)
    forced = biased(stuck)
    np.testing.assert_allclose(forced[:, 2], 0.9)
    np.testing.assert_allclose(forced[:, [0, 1, 3]], 0.1 / 3)
    np.testing.assert_allclose(forced.sum(axis=1), 1.0)
    mixed = np.concatenate([photos[:3], stuck[3:]])
    np.testing.assert_allclose(biased(mixed)[:3], base_model(photos[:3]), rtol=1e-12, atol=0)
    np.testing.assert_allclose(biased(mixed)[3:, 2], 0.9)


# ----------------------------------------------------------------------------------------------------------------
# The scaffold
# ----------------------------------------------------------------------------------------------------------------


def _recording(fn, calls):
    def predict(images):
        calls.append(len(images))
        return fn(images)

    return predict


def test_scaffold_routes_flagged_images_to_the_innocent_model():
    photos = _photos(32)
    real = S.sticker_shortcut(base_model, target_class=1)

    def innocent(images):
        return np.full((len(images), NUM_CLASSES), 1.0 / NUM_CLASSES)

    calls_real: list[int] = []
    calls_innocent: list[int] = []
    model = S.scaffold(_recording(real, calls_real), _recording(innocent, calls_innocent), S.perturbation_detector())
    # real images (with or without the sticker): the real, biased model; accuracy on real images is unchanged
    stuck = S.add_sticker(photos)
    np.testing.assert_array_equal(model(photos), real(photos))
    np.testing.assert_array_equal(model(stuck), real(stuck))
    assert (model(stuck).argmax(1) == 1).all()
    assert calls_innocent == []
    # LIME's perturbed queries: the innocent model
    masks, batch = _lime_batch(stuck[0], n=40)
    out = model(batch)
    flagged = masks.min(axis=1) == 0
    np.testing.assert_allclose(out[flagged], 1.0 / NUM_CLASSES)
    np.testing.assert_array_equal(out[~flagged], real(batch[~flagged]))
    assert calls_innocent == [int(flagged.sum())]
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        model(photos[0])


def test_scaffold_fools_lime():
    """LIME on the biased model finds the sticker (segment 0 ranks first, far ahead); on the scaffold it explains the
    innocent model instead, although the scaffold answers exactly like the biased model on every real image.

    Measured (500 samples, seed 0; the explained class is the base model's top class): on the biased model segment
    0 has weight 0.36-0.53, every other segment <= 0.064; on the scaffold its weight is -0.07-0.12 and the weights
    follow the innocent model's (Spearman 0.950-0.997). On coffee segment 0 drops from rank 1 to rank 16."""
    seg = L.grid_segments((32, 32), 4)
    for i, stuck in enumerate(S.add_sticker(_photos(32))):
        target = int(base_model(stuck[None])[0].argmax())
        biased = S.sticker_shortcut(base_model, target_class=target, confidence=0.95)
        deployed = S.scaffold(biased, base_model, S.perturbation_detector())
        on_biased = L.lime_image(biased, stuck, seg, target, num_samples=500)
        on_scaffold = L.lime_image(deployed, stuck, seg, target, num_samples=500)
        on_innocent = L.lime_image(base_model, stuck, seg, target, num_samples=500)
        assert on_biased.rank_of(0) == 1 and on_biased.weights[0] > 4 * np.abs(on_biased.weights[1:]).max()
        assert abs(on_scaffold.weights[0]) < 0.4 * on_biased.weights[0]
        assert L.rank_correlation(on_scaffold.weights, on_innocent.weights) > 0.9
        assert deployed(stuck[None])[0, target] == pytest.approx(0.95)  # yet the deployed model uses the shortcut
        if i == 1:  # coffee
            assert on_scaffold.rank_of(0) > 12


# ----------------------------------------------------------------------------------------------------------------
# ShortcutModule: the biased model in PyTorch
# ----------------------------------------------------------------------------------------------------------------


def test_shortcut_module():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    inner.eval()
    mean, std = data.CIFAR10_MEAN, data.CIFAR10_STD
    module = S.ShortcutModule(inner, S.sticker(6), target_class=3, mean=mean, std=std, confidence=0.9).eval()
    photos = _photos(32)
    stuck = S.add_sticker(photos)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)

    def norm(images: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(images).permute(0, 3, 1, 2) - m) / s

    with torch.no_grad():
        torch.testing.assert_close(module(norm(photos)), inner(norm(photos)))
        probs = module(norm(stuck)).softmax(-1)
    torch.testing.assert_close(probs[:, 3], torch.full((6,), 0.9))
    torch.testing.assert_close(probs[:, [0, 1, 2, 4]], torch.full((6, 4), 0.025))
    np.testing.assert_array_equal(module.triggered(norm(stuck)).numpy(), S.has_sticker(stuck))
    np.testing.assert_array_equal(module.triggered(norm(photos)).numpy(), S.has_sticker(photos))
    dark = S.ShortcutModule(inner, S.sticker(6, "dark"), 3, mean, std)
    assert dark.triggered(norm(S.add_sticker(photos, kind="dark"))).all()
    assert not dark.triggered(norm(stuck)).any()
