"""helpers.featvis: parameterisations, transforms, regularisers, objectives, the render loop, dataset examples, the
lucent workaround, and the exercise checks 6.1-6.3 (which must reject known wrong solutions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from helpers import checks
from helpers import featvis as fv
from tests.conftest import assert_no_hooks


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).eval()


# ---------------------------------------------------------------------------------------------- parameterisations
@pytest.mark.parametrize("kind", ["pixel", "fourier"])
@pytest.mark.parametrize("size", [16, (15, 20)])
@pytest.mark.parametrize("decorrelate", [False, True])
def test_image_param_shape_range_and_gradients(kind: str, size, decorrelate: bool) -> None:
    p = fv.ImageParam(size, batch=2, kind=kind, decorrelate=decorrelate, sd=0.5, seed=1)
    img = p()
    h, w = (size, size) if isinstance(size, int) else size
    assert img.shape == (2, 3, h, w)
    assert float(img.detach().min()) > 0 and float(img.detach().max()) < 1
    (img[:, 0].mean() - img[:, 2].mean()).backward()
    g = p.raw.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_image_param_seeded_and_bad_arguments() -> None:
    assert torch.equal(fv.ImageParam(8, seed=3)(), fv.ImageParam(8, seed=3)())
    assert not torch.equal(fv.ImageParam(8, seed=3)(), fv.ImageParam(8, seed=4)())
    with pytest.raises(ValueError, match="unknown parameterisation"):
        fv.ImageParam(8, kind="cppn")
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        fv.ImageParam(8, decorrelate=torch.eye(2))


def test_fourier_param_equals_an_inverse_fft_of_the_scaled_spectrum() -> None:
    p = fv.ImageParam(12, kind="fourier", decorrelate=False, sd=0.3, seed=2)
    spec = p.raw.detach().numpy()
    fy, fx = np.fft.fftfreq(12)[:, None], np.fft.rfftfreq(12)[None, :]
    scale = 1 / np.maximum(np.sqrt(fx**2 + fy**2), 1 / 12)
    c = (spec[..., 0] + 1j * spec[..., 1]) * scale
    expected = np.fft.irfft2(c, s=(12, 12), norm="ortho") / 4
    np.testing.assert_allclose(p.linear().detach().numpy(), expected, atol=1e-5)


def test_color_sqrt_is_a_square_root_of_the_covariance() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(20, 1, 8, 8, generator=gen)
    x = torch.cat([base, 0.8 * base + 0.1 * torch.rand(20, 1, 8, 8, generator=gen), torch.rand(20, 1, 8, 8,
                                                                                                generator=gen)], 1)
    s = fv.color_sqrt(x)
    cov = torch.cov(x.permute(0, 2, 3, 1).reshape(-1, 3).T.double()).float()
    torch.testing.assert_close(s @ s.T, cov, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="N, 3, H, W"):
        fv.color_sqrt(torch.rand(3, 8, 8))


# ---------------------------------------------------------------------------------------------- transforms
def test_transforms_shapes_and_reproducible() -> None:
    x = torch.rand(2, 3, 20, 20)
    g = torch.Generator().manual_seed(0)
    assert fv.Pad(3)(x, g).shape == (2, 3, 26, 26)
    assert float(fv.Pad(3)(x, g)[0, 0, 0, 0]) == 0.5
    j = fv.Jitter(2)(x, g)
    assert j.shape == x.shape and torch.allclose(j.sum(), x.sum())
    s = fv.RandomScale((1.1,))(x, g)
    assert s.shape == (2, 3, 22, 22)
    assert torch.equal(fv.RandomRotate((0,))(x, g), x)
    r = fv.RandomRotate((90,))(x, g)
    torch.testing.assert_close(r, torch.rot90(x, 1, (2, 3)), atol=1e-4, rtol=0)  # 90 degrees counter-clockwise
    assert fv.Resize(32)(x, g).shape == (2, 3, 32, 32)

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        y = x
        for t in fv.standard_transforms(20):
            y = t(y, gen)
        return y

    assert torch.equal(run(5), run(5))
    assert any(not torch.equal(run(5), run(s)) for s in (6, 7, 8))


# ---------------------------------------------------------------------------------------------- regularisers
def test_total_variation_known_values() -> None:
    x = torch.zeros(1, 1, 4, 4)
    x[..., :, 2:] = 1.0  # a vertical edge of height 1: 4 horizontal jumps of 1
    assert fv.total_variation(x).tolist() == [4.0]
    x2 = 0.5 * x
    assert fv.total_variation(x2).tolist() == [2.0]
    assert fv.total_variation(x2, p=2).tolist() == [1.0]
    noise = torch.rand(3, 3, 8, 8)
    assert fv.total_variation(noise).shape == (3,)
    assert fv.total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0
    with pytest.raises(ValueError, match="p must be"):
        fv.total_variation(noise, p=3)
    with pytest.raises(ValueError, match="B, C, H, W"):
        fv.total_variation(noise[0])


def test_l2_and_blur_penalties() -> None:
    assert fv.l2_penalty(torch.full((2, 3, 4, 4), 0.5)).tolist() == [0.0, 0.0]
    assert fv.l2_penalty(torch.ones(1, 3, 4, 4)).item() == pytest.approx(48 * 0.25)
    assert fv.blur_penalty(torch.full((1, 3, 8, 8), 0.7)).item() == pytest.approx(0, abs=1e-10)
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    fv.blur_penalty(x, 1.0).sum().backward()
    from helpers.attribution import gaussian_blur

    torch.testing.assert_close(x.grad, (x - gaussian_blur(x, 1.0)).detach())  # descent moves x towards blur(x)


# ---------------------------------------------------------------------------------------------- objectives
def test_objectives_on_maps_tokens_and_logits() -> None:
    a = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    acts = {"l": a, "logits": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}
    torch.testing.assert_close(fv.channel("l", 1)(acts), a[:, 1].mean((1, 2)))
    torch.testing.assert_close(fv.neuron("l", 2)(acts), a[:, 2, 2, 2])
    torch.testing.assert_close(fv.class_logit(1)(acts), torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(fv.layer_l2("l")(acts), (a**2).flatten(1).mean(1))
    combo = fv.channel("l", 1) - 2 * fv.class_logit(0) + 1.0
    torch.testing.assert_close(combo(acts), a[:, 1].mean((1, 2)) - 2 * acts["logits"][:, 0] + 1)
    assert set(combo.layers) == {"l", "logits"}
    tokens = torch.randn(2, 1 + 16, 5)  # CLS + a 4x4 grid of 5-dim tokens
    sp = fv.to_spatial(tokens, 1)
    assert sp.shape == (2, 5, 4, 4)
    torch.testing.assert_close(sp[:, 3, 1, 2], tokens[:, 1 + 1 * 4 + 2, 3])
    torch.testing.assert_close(fv.channel("t", 3, num_prefix_tokens=1)({"t": tokens}), tokens[:, 1:, 3].mean(1))
    with pytest.raises(ValueError, match="square grid"):
        fv.to_spatial(tokens, 0)
    with pytest.raises(IndexError, match="channel 7"):
        fv.channel("l", 7)(acts)
    torch.testing.assert_close(fv.channel("l", [2, 0])(acts), torch.stack([a[0, 2].mean(), a[1, 0].mean()]))
    torch.testing.assert_close(fv.class_logit([1, 0])(acts), torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(fv.neuron("l", [0, 1], 1, 3)(acts), torch.stack([a[0, 0, 1, 3], a[1, 1, 1, 3]]))
    with pytest.raises(ValueError, match="one per image"):
        fv.channel("l", [0, 1, 2])(acts)


def test_diversity_and_direction() -> None:
    one = {"l": torch.rand(1, 4, 3, 3)}
    assert fv.diversity("l")(one).tolist() == [0.0]
    same = {"l": torch.rand(1, 4, 3, 3).repeat(3, 1, 1, 1)}
    torch.testing.assert_close(fv.diversity("l")(same), -torch.ones(3))
    diff = {"l": torch.rand(3, 4, 3, 3)}
    assert (fv.diversity("l")(diff) > -1).all()
    v = torch.tensor([1.0, 0, 0, 0])
    acts = {"l": torch.zeros(1, 4, 2, 2)}
    acts["l"][:, 0] = 2.0
    torch.testing.assert_close(fv.direction("l", v)(acts), torch.ones(1))


# ---------------------------------------------------------------------------------------------- hooks and render
def test_record_activations_releases_hooks_and_restores_inplace() -> None:
    model = _tiny_cnn()
    with fv.record_activations(model, ["0", "2"]) as acts:
        assert not model[1].inplace
        model(torch.rand(1, 3, 8, 8))
        assert acts["0"].shape == (1, 8, 8, 8) and acts["2"].shape == (1, 16, 4, 4)
        assert (acts["0"] < 0).any()  # the pre-ReLU values survive the (formerly in-place) ReLU
    assert_no_hooks(model)
    assert model[1].inplace
    with pytest.raises(ZeroDivisionError), fv.record_activations(model, ["0"]):
        raise ZeroDivisionError
    assert_no_hooks(model)
    with pytest.raises(KeyError, match="did you mean"), fv.record_activations(model, ["00"]):
        pass
    with pytest.raises(KeyError, match="list them"), fv.record_activations(model, ["features.x"]):
        pass
    assert_no_hooks(model)


@pytest.mark.parametrize("kind", ["pixel", "fourier"])
def test_render_increases_its_objective_and_leaves_the_model_alone(kind: str) -> None:
    model = _tiny_cnn().train()
    obj = fv.channel("2", 3)
    start = fv.evaluate(model, obj, fv.ImageParam(16, kind=kind, seed=0)().detach())
    res = fv.render(model, obj, size=16, steps=25, lr=0.1, param=kind, transforms="standard", seed=0)
    end = fv.evaluate(model, obj, res.images)
    assert res.images.shape == (1, 3, 16, 16) and len(res.history) == 25
    assert float(end) > float(start) + 0.02
    assert np.mean(res.history[-5:]) > np.mean(res.history[:5])
    assert_no_hooks(model)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


def test_render_class_logit_regularised_with_snapshots_and_seeds() -> None:
    model = _tiny_cnn()
    kw = dict(size=12, batch=2, steps=8, lr=0.1, transforms=[fv.Jitter(1), fv.RandomScale((1.0, 1.2))],
              regularizers=[(1e-3, fv.total_variation), (1e-3, fv.l2_penalty), (0.1, fv.blur_penalty)],
              snapshot_steps=(4,))
    a = fv.render(model, fv.class_logit(2), seed=1, **kw)
    b = fv.render(model, fv.class_logit(2), seed=1, **kw)
    c = fv.render(model, fv.class_logit(2), seed=2, **kw)
    assert torch.equal(a.images, b.images) and a.history == b.history
    assert not torch.equal(a.images, c.images)
    assert set(a.snapshots) == {4} and a.snapshots[4].shape == (2, 3, 12, 12)
    assert a.history[-1] > a.history[0]
    assert a.seconds_per_step > 0


def test_render_gradients_finite_and_bad_objective() -> None:
    model = _tiny_cnn()
    p = fv.ImageParam(16, kind="fourier", seed=0)
    with fv.record_activations(model, ["2"]) as acts:
        model(p())
        fv.channel("2", 1)(acts).sum().backward()
    assert torch.isfinite(p.raw.grad).all() and p.raw.grad.abs().sum() > 0
    bad = fv.Objective(lambda a: a["2"].sum(), ("2",), "scalar")
    with pytest.raises(ValueError, match="one score per image"):
        fv.render(model, bad, size=8, steps=1)
    with pytest.raises(KeyError, match="no module named"):
        fv.render(model, fv.channel("nope", 0), size=8, steps=1)
    assert_no_hooks(model)


def _manual_step(model, objective, image, shift, lr, preprocess=None):
    """Exercise 6.2 written the DeepDream way: shift, gradient on the shifted image, step, shift back."""
    dy, dx = shift
    xs = torch.roll(image.detach(), (dy, dx), (2, 3)).requires_grad_(True)
    with fv.record_activations(model, objective.layers) as acts:
        out = model(preprocess(xs) if preprocess else xs)
        acts["logits"] = out
        score = objective(acts).sum()
    (g,) = torch.autograd.grad(score, xs)
    g = g / (g.abs().mean((1, 2, 3), keepdim=True) + 1e-8)
    return torch.roll(xs.detach() + lr * g, (-dy, -dx), (2, 3)).clamp(0, 1)


def test_ascent_step_matches_the_deepdream_recipe_and_ascends() -> None:
    model = _tiny_cnn()
    obj = fv.neuron("2", 4, 1, 2)
    img = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    new = fv.ascent_step(model, obj, img, (2, -1), 0.01)
    torch.testing.assert_close(new, _manual_step(model, obj, img, (2, -1), 0.01))
    shifted = lambda x: torch.roll(x, (2, -1), (2, 3))  # noqa: E731
    assert (fv.evaluate(model, obj, shifted(new)) > fv.evaluate(model, obj, shifted(img))).all()


# ---------------------------------------------------------------------------------------------- dataset examples
def test_top_k_examples_against_numpy() -> None:
    acts = torch.randn(30, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    idx, scores = fv.top_k_examples(acts, 2, 5)
    s = acts[:, 2].mean((1, 2)).numpy()
    order = np.argsort(-s)[:5]
    assert idx.tolist() == order.tolist()
    np.testing.assert_allclose(scores.numpy(), s[order], rtol=1e-6)
    idx2, _ = fv.top_k_examples(acts[:, :, 0, 0], 1, 3)  # (N, C) activations
    assert idx2.tolist() == np.argsort(-acts[:, 1, 0, 0].numpy())[:3].tolist()
    with pytest.raises(ValueError, match="k must be"):
        fv.top_k_examples(acts, 0, 31)


def test_dataset_examples_find_the_reddest_images_and_their_crops() -> None:
    class Red(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1, bias=False)
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[0, 0] = 1.0  # channel 0 = the red value of each pixel
                self.conv.weight[1, 1] = 1.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean((2, 3))

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(40, 3, 16, 16, generator=gen) * 0.2
    images[[7, 21, 3], 0, 10:14, 2:6] = torch.tensor([1.0, 0.9, 0.8]).view(3, 1, 1)  # three red squares
    ex = fv.dataset_examples(Red(), "conv", images, channel=0, k=3, batch_size=16)
    assert ex.indices.tolist() == [7, 21, 3]
    assert ex.feature_size == (16, 16) and ex.all_scores.shape == (40,)
    assert all(10 <= r < 14 and 2 <= c < 6 for r, c in ex.positions.tolist())
    crops = fv.crop_examples(images, ex, 4)
    assert crops.shape == (3, 3, 4, 4)
    torch.testing.assert_close(crops[:, 0].amax((1, 2)), torch.tensor([1.0, 0.9, 0.8]))
    neg = fv.dataset_examples(Red(), "conv", images, channel=0, k=2, negative=True)
    assert set(neg.indices.tolist()).isdisjoint({7, 21, 3})
    assert (neg.scores <= ex.all_scores.median()).all()
    maps = fv.channel_maps(Red(), "conv", images, [1, 0], batch_size=7)  # one pass, both channels
    assert maps.shape == (40, 2, 16, 16)
    for j, c in enumerate([1, 0]):
        for negative in (False, True):
            a = fv.examples_from_maps(maps[:, j], k=3, negative=negative)
            b = fv.dataset_examples(Red(), "conv", images, channel=c, k=3, negative=negative)
            assert torch.equal(a.indices, b.indices) and torch.equal(a.positions, b.positions)
            torch.testing.assert_close(a.all_scores, b.all_scores)
    with pytest.raises(IndexError, match="channel 2"):
        fv.channel_maps(Red(), "conv", images, [0, 2])


# ---------------------------------------------------------------------------------------------- lucent
def test_lucent_random_scale_workaround_matches_lucent() -> None:
    """Ours passes Python ints to interpolate; lucent passes numpy ints to nn.Upsample, reported to raise a TypeError
    on torch >= 2.1 (not on every build: where lucent's runs, both must give the same image for the same seed)."""
    pytest.importorskip("lucent")
    from lucent.optvis import transform

    x = torch.rand(1, 3, 20, 20)
    scales = [1 + (i - 5) / 50.0 for i in range(11)]
    for seed in range(4):
        np.random.seed(seed)
        ours = fv._lucent_random_scale(scales)(x)
        np.random.seed(seed)
        try:
            theirs = transform.random_scale(scales)(x)
        except TypeError:
            assert ours.shape[-1] >= 20
            continue
        torch.testing.assert_close(ours, theirs)


def test_lucent_render_works_is_seeded_cached_and_releases_its_hooks() -> None:
    pytest.importorskip("lucent")
    from lucent.optvis import objectives

    model = _tiny_cnn()
    kw = dict(size=16, steps=3, fixed_image_size=16, preprocess=False, seed=0)
    a = fv.lucent_render(model, objectives.channel("2", 1), cache=False, **kw)
    assert a.shape == (1, 16, 16, 3) and np.isfinite(a).all() and 0 <= a.min() and a.max() <= 1
    assert_no_hooks(model)  # render_vis removes its forward hooks
    assert all(p.requires_grad for p in model.parameters())
    b = fv.lucent_render(model, objectives.channel("2", 1), cache=False, **kw)
    np.testing.assert_array_equal(a, b)
    c = fv.lucent_render(model, "2:1", **kw)
    d = fv.lucent_render(model, "2:1", **kw)  # from the cache
    np.testing.assert_array_equal(c, d)
    with pytest.raises(ValueError, match="transforms must be"):
        fv.lucent_render(model, "2:1", transforms="lucid", cache=False, **kw)
    e = fv.lucent_render(model, fv.lucent_deepdream("2"), transforms=None, cache=False, **kw)
    assert e.shape == (1, 16, 16, 3)
    assert_no_hooks(model)


def test_lucent_cache_tells_signs_and_weights_apart() -> None:
    """lucent's description drops signs and weights: ``channel`` and ``-channel`` (and two weights of a diversity
    term) share one description, so a cache keyed by it would hand one objective's image to the other."""
    pytest.importorskip("lucent")
    from lucent.optvis import objectives

    model = _tiny_cnn()
    kw = dict(size=16, steps=4, fixed_image_size=16, preprocess=False, seed=0)
    pos, neg = objectives.channel("2", 1), -objectives.channel("2", 1)
    assert pos.description == neg.description  # the trap the cache must not fall into
    a, b = fv.lucent_render(model, pos, **kw), fv.lucent_render(model, neg, **kw)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(b, fv.lucent_render(model, neg, cache=False, **kw))
    np.testing.assert_array_equal(a, fv.lucent_render(model, pos, **kw))  # the same object: from the cache
    w1 = objectives.channel("2", 1) - 1.0 * objectives.diversity("2")
    w2 = objectives.channel("2", 1) - 1e3 * objectives.diversity("2")
    assert w1.description == w2.description
    c, d = fv.lucent_render(model, w1, batch=2, **kw), fv.lucent_render(model, w2, batch=2, **kw)
    assert not np.allclose(c, d)
    np.testing.assert_array_equal(d, fv.lucent_render(model, w2, batch=2, cache=False, **kw))
    # an explicit key is the caller's promise: the same key gives the cached image, whatever the object
    e = fv.lucent_render(model, pos, key="my channel", **kw)
    np.testing.assert_array_equal(e, fv.lucent_render(model, neg, key="my channel", **kw))
    assert_no_hooks(model)


def test_lucent_deepdream_per_image() -> None:
    pytest.importorskip("lucent")
    acts = {"l": torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)}
    whole = fv.lucent_deepdream("l")(acts.__getitem__)
    first = fv.lucent_deepdream("l", batch=1)(acts.__getitem__)
    torch.testing.assert_close(whole, -(acts["l"] ** 2).mean())
    torch.testing.assert_close(first, -(acts["l"][1] ** 2).mean())
    assert "batch 1" in fv.lucent_deepdream("l", batch=1).description


def test_feature_match_reconstructs_what_a_layer_keeps() -> None:
    model = _tiny_cnn()
    target_img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), fv.record_activations(model, ["0"]) as acts:
        model(target_img)
    obj = fv.feature_match("0", acts["0"])
    assert fv.evaluate(model, obj, target_img).item() == pytest.approx(0, abs=1e-10)
    start = fv.ImageParam(16, kind="pixel", decorrelate=False, seed=0)().detach()
    res = fv.render(model, obj, size=16, steps=60, lr=0.1, param="pixel", decorrelate=False, transforms=None)
    before, after = fv.evaluate(model, obj, start).item(), fv.evaluate(model, obj, res.images).item()
    assert before < -0.1 and after > 0.2 * before  # the distance falls by more than 5x
    r0 = np.corrcoef(start.flatten(), target_img.flatten())[0, 1]
    r1 = np.corrcoef(res.images.flatten(), target_img.flatten())[0, 1]
    assert r1 > r0 + 0.3  # a first conv layer keeps the pixels: the reconstruction resembles the image
    with pytest.raises(ValueError, match="same layer and image size"):
        fv.evaluate(model, obj, torch.rand(1, 3, 8, 8))


def test_load_inceptionv1_offline_random(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("lucent")
    monkeypatch.setenv("XAI_OFFLINE", "1")
    model, pretrained = fv.load_inceptionv1()
    assert not pretrained and not model.training
    assert "RANDOM" in capsys.readouterr().out
    res = fv.render(model, fv.channel("mixed3a", 0), size=48, steps=2, preprocess=fv.inceptionv1_preprocess)
    assert res.images.shape == (1, 3, 48, 48)
    assert_no_hooks(model)


# ---------------------------------------------------------------------------------------------- exercise checks
def _status(name, fn, ref, args) -> str:
    return checks.check_close(name, fn, ref, args=args, strict=False).status


def test_check_6_1_total_variation_rejects_wrong_solutions() -> None:
    x = torch.rand(2, 3, 10, 12, generator=torch.Generator().manual_seed(0))

    def right(img):
        return (img.diff(dim=2).abs().sum((1, 2, 3)) + img.diff(dim=3).abs().sum((1, 2, 3)))

    wrong = {
        "squared": lambda img: (img.diff(dim=2) ** 2).sum((1, 2, 3)) + (img.diff(dim=3) ** 2).sum((1, 2, 3)),
        "mean": lambda img: img.diff(dim=2).abs().mean((1, 2, 3)) + img.diff(dim=3).abs().mean((1, 2, 3)),
        "one direction": lambda img: img.diff(dim=3).abs().sum((1, 2, 3)),
        "wrap-around": lambda img: ((img - torch.roll(img, 1, 2)).abs().sum((1, 2, 3))
                                    + (img - torch.roll(img, 1, 3)).abs().sum((1, 2, 3))),
        "whole batch": lambda img: (img.diff(dim=2).abs().sum() + img.diff(dim=3).abs().sum()).expand(2),
        "isotropic": lambda img: torch.sqrt(img.diff(dim=2)[..., :-1] ** 2 + img.diff(dim=3)[:, :, :-1] ** 2
                                            + 1e-12).sum((1, 2, 3)),
    }
    assert _status("6.1 total variation", right, fv.total_variation, (x,)) == "passed"
    for name, fn in wrong.items():
        assert _status("6.1 total variation", fn, fv.total_variation, (x,)) == "failed", name


def test_check_6_2_ascent_step_rejects_wrong_solutions() -> None:
    model = _tiny_cnn()
    obj = fv.neuron("2", 4, 1, 2)
    img = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    args = (model, obj, img, (2, -1), 0.05)

    def opposite(model, objective, image, shift, lr, preprocess=None):
        return _manual_step(model, objective, image, (-shift[0], -shift[1]), lr, preprocess)

    def not_rolled_back(model, objective, image, shift, lr, preprocess=None):
        return torch.roll(_manual_step(model, objective, image, shift, lr, preprocess), shift, (2, 3))

    def descent(model, objective, image, shift, lr, preprocess=None):
        return _manual_step(model, objective, image, shift, -lr, preprocess)

    def unnormalised(model, objective, image, shift, lr, preprocess=None):
        xs = torch.roll(image, shift, (2, 3)).requires_grad_(True)
        with fv.record_activations(model, objective.layers) as acts:
            model(xs)
            (g,) = torch.autograd.grad(objective(acts).sum(), xs)
        return torch.roll(xs.detach() + lr * g, (-shift[0], -shift[1]), (2, 3)).clamp(0, 1)

    assert _status("6.2 ascent step", _manual_step, fv.ascent_step, args) == "passed"
    for fn in (opposite, not_rolled_back, descent, unnormalised):
        assert _status("6.2 ascent step", fn, fv.ascent_step, args) == "failed", fn.__name__


def test_check_6_3_top_k_rejects_wrong_solutions() -> None:
    acts = torch.randn(50, 6, 4, 4, generator=torch.Generator().manual_seed(2))

    def right(a, c, k):
        s = a[:, c].mean((1, 2))
        order = torch.argsort(s, descending=True)[:k]
        return order, s[order]

    def smallest(a, c, k):
        t = torch.topk(a[:, c].mean((1, 2)), k, largest=False)
        return t.indices, t.values

    def by_max(a, c, k):
        t = torch.topk(a[:, c].amax((1, 2)), k)
        return t.indices, t.values

    def ascending(a, c, k):
        i, v = right(a, c, k)
        return i.flip(0), v.flip(0)

    def wrong_axis(a, c, k):
        t = torch.topk(a[:, :, c].mean((1, 2)), k)
        return t.indices, t.values

    assert _status("6.3 top-k", right, fv.top_k_examples, (acts, 3, 5)) == "passed"
    for fn in (smallest, by_max, ascending, wrong_axis):
        assert _status("6.3 top-k", fn, fv.top_k_examples, (acts, 3, 5)) == "failed", fn.__name__


def test_transform_robustness_and_high_frequency_fraction() -> None:
    model = _tiny_cnn()
    obj = fv.channel("2", 1)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fv.transform_robustness(model, obj, x, [], n=3), fv.evaluate(model, obj, x))
    a = fv.transform_robustness(model, obj, x, fv.standard_transforms(16), n=4, seed=1)
    assert a.shape == (2,) and torch.equal(a, fv.transform_robustness(model, obj, x, fv.standard_transforms(16), n=4,
                                                                        seed=1))
    noise = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    smooth = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    hf = fv.high_frequency_fraction(noise)
    assert ((hf > 0.65) & (hf < 0.85)).all()  # white noise: the area outside the radius-0.25 disc, ~1 - pi/16
    assert fv.high_frequency_fraction(smooth).item() < 0.05


def test_benchmark_tool_runs_both_loops(tmp_path) -> None:
    pytest.importorskip("lucent")
    from tools import benchmark_featvis

    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        res = benchmark_featvis.main(["--cases", "cifar_cnn", "--steps", "1", "--repeats", "1", "--threads", "1",
                                      "--out", str(out)])
    finally:
        torch.set_num_threads(threads)  # the tool sets the process-wide thread count
    case = res["cases"]["cifar_cnn"]
    assert set(case["median_seconds_per_step"]) == {"lucent render_vis", "ours", "ours, no early stop"}
    assert all(v > 0 for v in case["median_seconds_per_step"].values())
    assert case["ratio_to_lucent"]["lucent render_vis"] == 1.0 and out.exists()
