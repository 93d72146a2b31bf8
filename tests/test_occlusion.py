"""helpers.occlusion against captum's ``Occlusion``, known answers, fills, bad input and the check of exercise 5.3.

All in float64 on small models so the comparisons can be tight.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import attribution, checks
from helpers import occlusion as O

DT = torch.float64


def _small_cnn(size: int, classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * ((size + 1) // 2) ** 2, classes),
    ).to(DT).eval()


def _model_and_input(size: int = 12, batch: int = 2) -> tuple[nn.Module, torch.Tensor]:
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=DT)
    return _small_cnn(size), x


def _captum(model, x, target, window, stride, baseline):
    from captum.attr import Occlusion

    c = x.shape[1]
    out = Occlusion(model).attribute(x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                     baselines=baseline, target=target, perturbations_per_eval=16)
    # one window covers all channels: the attribution is the same in every channel
    torch.testing.assert_close(out, out[:, :1].expand_as(out), atol=0, rtol=0)
    return out[:, 0].to(x.dtype)  # captum 0.9 divides by the window counts in float32: compare at ~1e-7


def _close(ours: torch.Tensor, captum: torch.Tensor) -> None:
    torch.testing.assert_close(ours, captum, atol=1e-6, rtol=1e-5)


CASES = [(4, 4), (4, 2), (5, 3), (3, 2), (6, 5), (12, 1), (1, 1)]  # (window, stride); 5/3, 6/5: not dividing


@pytest.mark.parametrize("window,stride", CASES)
def test_matches_captum_scalar_baseline(window, stride):
    model, x = _model_and_input()
    target = torch.tensor([1, 3])
    for fill in (0.0, 0.7):
        ours = O.occlusion(model, x, target, window, stride, fill)
        assert ours.shape == (2, 12, 12) and ours.dtype == DT
        _close(ours, _captum(model, x, target, window, stride, fill))


@pytest.mark.parametrize("window,stride", [(4, 2), (5, 3)])
def test_matches_captum_tensor_baseline(window, stride):
    model, x = _model_and_input()
    baseline = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=DT)
    ours = O.occlusion(model, x, 2, window, stride, baseline)
    _close(ours, _captum(model, x, 2, window, stride, baseline))
    blur = O.occlusion_fill(x, "blur", sigma=1.5)
    _close(O.occlusion(model, x, [0, 4], window, stride, blur), _captum(model, x, [0, 4], window, stride, blur))


@pytest.mark.parametrize("window,stride", [(4, 2), (5, 3)])
def test_probability_matches_captum_on_a_softmax_model(window, stride):
    model, x = _model_and_input()
    target = torch.tensor([0, 2])
    ours = O.occlusion(model, x, target, window, stride, 0.0, probability=True)
    ref = _captum(nn.Sequential(model, nn.Softmax(dim=-1)), x, target, window, stride, 0.0)
    _close(ours, ref)
    assert not torch.allclose(ours, O.occlusion(model, x, target, window, stride, 0.0))


def test_known_answer_on_a_linear_model():
    """For a linear model ``y = sum_p a_p x_p`` with a zero fill, the drop of a window is the sum of ``a_p x_p`` inside
    it; with windows that tile the image (stride = window) each pixel gets its own window's drop."""
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2, bias=True)).to(DT).eval()
    x = torch.randn(1, 3, 8, 8, dtype=DT)
    contrib = (linear[1].weight[1].view(3, 8, 8) * x[0]).sum(0).detach()  # (8, 8)
    expected = contrib.view(4, 2, 4, 2).sum(dim=(1, 3)).repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(O.occlusion(linear, x, 1, window=2, stride=2)[0], expected, atol=1e-12, rtol=0)
    drops = O.window_drops(linear, x, 1, window=2, stride=2)
    assert drops.shape == (1, 4, 4)
    torch.testing.assert_close(drops[0], contrib.view(4, 2, 4, 2).sum(dim=(1, 3)), atol=1e-12, rtol=0)
    # one pixel window, stride 1: exactly a_p x_p per pixel (summed over channels)
    torch.testing.assert_close(O.occlusion(linear, x, 1, window=1, stride=1)[0], contrib, atol=1e-12, rtol=0)


def test_window_drops_shape_and_average():
    model, x = _model_and_input()
    drops = O.window_drops(model, x, 1, window=5, stride=3)
    assert drops.shape == (2, 4, 4)  # positions 0, 3, 6, 9 (the last one cut off at 12)
    # a pixel covered by exactly one window (the corner) gets that window's drop
    occ = O.occlusion(model, x, 1, window=5, stride=3)
    torch.testing.assert_close(occ[:, 0, 0], drops[:, 0, 0])
    torch.testing.assert_close(occ[:, 11, 11], drops[:, -1, -1])
    # pixel (3, 3) is covered by the windows at 0 and 3 in both directions: the mean of four drops
    torch.testing.assert_close(occ[:, 3, 3], drops[:, :2, :2].mean(dim=(1, 2)))


def test_batch_size_and_batch_do_not_change_the_result():
    model, x = _model_and_input()
    a = O.occlusion(model, x, [1, 2], 4, 2, batch_size=1)
    b = O.occlusion(model, x, [1, 2], 4, 2, batch_size=1000)
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    torch.testing.assert_close(O.occlusion(model, x[1:], 2, 4, 2)[0], a[1], atol=1e-12, rtol=0)


def test_window_positions():
    assert O.window_positions(32, 8, 4) == [0, 4, 8, 12, 16, 20, 24]
    assert O.window_positions(10, 4, 3) == [0, 3, 6]  # ends exactly at the border
    assert O.window_positions(11, 4, 3) == [0, 3, 6, 9]  # the last window is cut off (9..12 of 0..10)
    assert O.window_positions(12, 12, 5) == [0]
    assert O.window_positions(5, 1, 1) == [0, 1, 2, 3, 4]
    for size, window, stride in [(32, 8, 4), (11, 4, 3), (13, 5, 5), (7, 3, 2), (16, 16, 1)]:
        covered = torch.zeros(size)
        for p in O.window_positions(size, window, stride):
            assert p < size
            covered[p:p + window] += 1
        assert covered.min() >= 1  # every pixel in at least one window


@pytest.mark.parametrize("size,window,stride,match", [(10, 0, 1, "window"), (10, 11, 1, "window"),
                                                      (10, 4, 0, "stride"), (16, 4, 8, "larger than the window")])
def test_window_positions_bad_input(size, window, stride, match):
    with pytest.raises(ValueError, match=match):
        O.window_positions(size, window, stride)


def test_stride_larger_than_window_raises_instead_of_nan():
    model, x = _model_and_input(16)
    with pytest.raises(ValueError, match="larger than the window"):
        O.occlusion(model, x, 0, window=4, stride=8)


def test_bad_input():
    model, x = _model_and_input()
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        O.occlusion(model, x[0], 0)
    with pytest.raises(TypeError, match="floating-point"):
        O.occlusion(model, (x * 10).long(), 0, 4, 4)
    flat = nn.Sequential(model, nn.Flatten(0))  # returns (B * classes,)
    with pytest.raises(ValueError, match=r"\(B, classes\)"):
        O.occlusion(flat, x, 0, 4, 4)


def test_occlusion_fill_kinds():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=DT)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    black = O.occlusion_fill(x, "black", mean, std)
    assert black.shape == x.shape
    for c in range(3):
        torch.testing.assert_close(black[:, c], torch.full_like(x[:, c], -mean[c] / std[c]))
    # "black" in normalised space is pixel 0 after denormalising
    torch.testing.assert_close(black * torch.tensor(std, dtype=DT).view(1, 3, 1, 1)
                               + torch.tensor(mean, dtype=DT).view(1, 3, 1, 1), torch.zeros_like(x))
    torch.testing.assert_close(O.occlusion_fill(x, "black"), torch.zeros_like(x))
    torch.testing.assert_close(O.occlusion_fill(x, "zero", mean, std), torch.zeros_like(x))
    m = O.occlusion_fill(x, "mean")
    for b in range(2):
        for c in range(3):
            torch.testing.assert_close(m[b, c], torch.full((16, 16), float(x[b, c].mean()), dtype=DT))
    torch.testing.assert_close(O.occlusion_fill(x, "blur", sigma=2.0), attribution.gaussian_blur(x, 2.0))
    torch.testing.assert_close(O.occlusion_fill(x, "blur"), attribution.gaussian_blur(x, 1.6))  # 16 px / 10
    m[0, 0, 0, 0] = 9.0  # an independent tensor, not a view of x
    assert x.max() <= 1
    with pytest.raises(ValueError, match="unknown fill 'grey'"):
        O.occlusion_fill(x, "grey")
    assert set(O.FILLS) == {"black", "mean", "blur", "zero"}


def test_black_patch_on_a_black_region_changes_nothing():
    """The caveat of notebook 05: occluding pixels that already equal the fill gives exactly zero."""
    model, x = _model_and_input()
    x = x.clone()
    x[:, :, :6, :6] = 0.0
    occ = O.occlusion(model, x, 1, window=3, stride=3, fill=0.0)
    # the patch changes no input value; batched forward passes may round the logits differently (1e-17)
    torch.testing.assert_close(occ[:, :6, :6], torch.zeros(2, 6, 6, dtype=DT), atol=1e-12, rtol=0)
    assert occ[:, 6:, 6:].abs().max() > 0


# ----------------------------------------------------------------------------------------------------------------
# Exercise 5.3: my_occlusion(model, x, target, window, stride, fill)
# ----------------------------------------------------------------------------------------------------------------


def _loop_drops(model, x, target, window, stride, fill, reduce: str = "mean", sign: float = 1.0):
    """A from-scratch occlusion, one window at a time; ``reduce="sum"`` and ``sign=-1`` make known wrong ones."""
    b, _, h, w = x.shape
    t = torch.as_tensor(target).expand(b) if torch.as_tensor(target).ndim == 0 else torch.as_tensor(target)
    total = torch.zeros(b, h, w, dtype=x.dtype)
    count = torch.zeros(h, w, dtype=x.dtype)
    with torch.no_grad():
        base = model(x).gather(1, t.view(-1, 1))[:, 0]
        for r in range(0, h - window + stride, stride):
            for c in range(0, w - window + stride, stride):  # the last window may stick out of the image
                occluded = x.clone()
                occluded[:, :, r:r + window, c:c + window] = fill
                drop = base - model(occluded).gather(1, t.view(-1, 1))[:, 0]
                total[:, r:r + window, c:c + window] += sign * drop.view(b, 1, 1)
                count[r:r + window, c:c + window] += 1
    return total / count if reduce == "mean" else total


def occlusion_correct(model, x, target, window, stride, fill):
    return _loop_drops(model, x, target, window, stride, fill)


def occlusion_summed(model, x, target, window, stride, fill):
    """Wrong: sums the drops of overlapping windows instead of averaging them."""
    return _loop_drops(model, x, target, window, stride, fill, reduce="sum")


def occlusion_reversed(model, x, target, window, stride, fill):
    """Wrong: occluded score minus original score."""
    return _loop_drops(model, x, target, window, stride, fill, sign=-1.0)


def occlusion_unfinished(model, x, target, window, stride, fill):
    raise NotImplementedError("exercise 5.3")


@pytest.mark.parametrize("window,stride", [(4, 2), (5, 3)])
@pytest.mark.parametrize("solution,status", [(occlusion_correct, "passed"), (occlusion_summed, "failed"),
                                             (occlusion_reversed, "failed"), (occlusion_unfinished, "not done")])
def test_exercise_5_3_check(solution, status, window, stride):
    model, x = _model_and_input()
    result = checks.check_close("5.3 occlusion", solution, O.occlusion, args=(model, x, 1, window, stride, 0.0),
                                atol=1e-6, hint="", strict=False)
    assert result.status == status
