"""helpers.deeplift: DeepLIFT-Rescale (captum) and GradientSHAP (ours) against Integrated Gradients, where the
relation is exact (linear model; one hidden ReLU layer) or converges (GradientSHAP's Monte-Carlo over the path
position), plus a known wrong variant that must not converge. float64 on the CPU, random weights."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers import attribution
from helpers import deeplift as D
from helpers.cifar_models import CNNConfig, CourseCNN

captum_attr = pytest.importorskip("captum.attr")


def _mlp(*widths: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(nn.Flatten(), *layers).double().eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def _ig_one_relu_layer(net: nn.Sequential, x: torch.Tensor, base: torch.Tensor, target: int) -> torch.Tensor:
    """IG of Linear -> ReLU -> Linear in closed form: along the straight path each hidden pre-activation is linear
    in alpha, so int_0^1 relu'(z(alpha)) d alpha = (relu(z) - relu(z')) / (z - z')."""
    lin1, lin2 = net[1], net[3]
    z, z0 = lin1(x.flatten(1)), lin1(base.flatten(1))
    secant = torch.where((z - z0).abs() > 1e-12, (z.clamp(min=0) - z0.clamp(min=0)) / (z - z0), (z > 0).double())
    grad = (secant * lin2.weight[target]) @ lin1.weight  # (B, I)
    return ((x - base).flatten(1) * grad).reshape(x.shape)


def test_deeplift_equals_ig_on_a_linear_model(images):
    net = _mlp(48, 5)
    base = torch.randn_like(images)
    dl, delta = D.deeplift(net, images, 2, base)
    expected = (images - base).flatten(1) * net[1].weight[2]  # (x - x') w: IG and DeepLIFT, exactly
    torch.testing.assert_close(dl.flatten(1), expected, rtol=1e-10, atol=1e-12)
    assert delta.abs().max() < 1e-10


def test_deeplift_equals_ig_with_one_hidden_relu_layer(images):
    net = _mlp(48, 32, 5, seed=1)
    base = torch.randn_like(images) * 0.5
    dl, delta = D.deeplift(net, images, 1, base)
    exact = _ig_one_relu_layer(net, images, base, 1)
    assert D.relative_difference(dl, exact).max() < 1e-10
    assert delta.abs().max() < 1e-10  # summation-to-delta
    ig = attribution.integrated_gradients(net, images, 1, base, steps=4000, method="riemann_middle")
    assert D.relative_difference(ig, exact).max() < 1e-3  # numeric IG converges to the same closed form


def test_deeplift_and_ig_differ_with_two_hidden_relu_layers(images):
    """The exactness is special: with two ReLU layers the hidden path is no longer straight."""
    net = _mlp(48, 32, 32, 5, seed=3)
    base = torch.randn_like(images)
    dl, delta = D.deeplift(net, images, 0, base)
    ig = attribution.integrated_gradients(net, images, 0, base, steps=2000, method="riemann_middle")
    assert delta.abs().max() < 1e-10  # both complete ...
    assert D.relative_difference(dl, ig).max() > 1e-2  # ... but different attributions


def test_summation_to_delta_holds_without_max_pooling_and_not_with_it():
    torch.manual_seed(0)
    cnn = CourseCNN(CNNConfig(widths=(8, 16, 16, 32))).double().eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    avg = copy.deepcopy(cnn)
    for m in list(avg.modules()):
        for name, child in list(m.named_children()):
            if isinstance(child, nn.MaxPool2d):
                setattr(m, name, nn.AvgPool2d(2))
    base = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    _, delta_avg = D.deeplift(avg, x, 3, base)
    assert delta_avg.abs().max() < 1e-9  # BatchNorm, residual sums, in-place ReLUs: all conserved
    attr, delta = D.deeplift(cnn, x, 3, base)
    gap = D.summation_gap(cnn, x, 3, attr, base)
    torch.testing.assert_close(gap, delta, rtol=1e-6, atol=1e-9)  # our gap is captum's delta
    assert delta.abs().max() > 1e-6  # captum's max-pooling rule: the winner at x and at x' can differ
    assert all(isinstance(m, nn.ReLU) and m.inplace for m in cnn.modules() if isinstance(m, nn.ReLU))


def test_a_reused_relu_is_refused():
    relu = nn.ReLU()
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), relu, nn.Linear(8, 8), relu, nn.Linear(8, 2)).double()
    with pytest.raises(D.DeepLiftError, match="more than once"):
        D.deeplift(net, torch.randn(1, 3, 2, 2, dtype=torch.float64), 0)


def test_gradient_shap_with_one_baseline_converges_to_ig(images):
    net = _mlp(48, 32, 32, 5, seed=5)
    base = torch.randn_like(images[:1])
    ig = attribution.integrated_gradients(net, images, 4, base, steps=2000, method="riemann_middle")
    err = {n: D.relative_difference(D.gradient_shap(net, images, 4, base, n, seed=1), ig).mean().item()
           for n in (16, 4096)}
    assert err[4096] < 0.05 and err[4096] < err[16] / 5  # ~ 1 / sqrt(n): 16x fewer errors for 256x the samples


def test_a_wrong_variant_does_not_converge(images):
    """Alpha fixed at 1 (the gradient at x times (x - x'), no path): a common mistake; it stays far from IG."""
    net = _mlp(48, 32, 32, 5, seed=5)
    base = torch.randn_like(images[:1])
    ig = attribution.integrated_gradients(net, images, 4, base, steps=2000, method="riemann_middle")
    wrong = (images - base) * attribution.input_gradients(net, images, 4)
    assert D.relative_difference(wrong, ig).mean() > 0.1


def test_gradient_shap_over_several_baselines_is_their_average_ig_and_matches_captum(images):
    net = _mlp(48, 32, 5, seed=6)
    bases = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    avg_ig = torch.stack([_ig_one_relu_layer(net, images, b[None].expand_as(images), 2) for b in bases]).mean(0)
    ours = D.gradient_shap(net, images, 2, bases, 8192, seed=0)
    assert D.relative_difference(ours, avg_ig).max() < 0.05
    torch.manual_seed(0)
    theirs = captum_attr.GradientShap(net).attribute(images, bases, target=2, n_samples=8192, stdevs=0.0)
    assert D.relative_difference(theirs.detach(), avg_ig).max() < 0.05
    gap = D.summation_gap(net, images, 2, avg_ig, bases)  # the exact average IG adds up to f(x) - mean f(x')
    assert gap.abs().max() < 1e-9


def test_gradient_shap_noise_and_seed_and_errors(images):
    net = _mlp(48, 5)
    base = torch.zeros_like(images[:1])
    a = D.gradient_shap(net, images, 0, base, 8, stdev=0.1, seed=3)
    torch.testing.assert_close(a, D.gradient_shap(net, images, 0, base, 8, stdev=0.1, seed=3, batch_size=5))
    with pytest.raises(ValueError, match="baselines must be"):
        D.gradient_shap(net, images, 0, torch.zeros(1, 3, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_samples"):
        D.gradient_shap(net, images, 0, base, 0)
