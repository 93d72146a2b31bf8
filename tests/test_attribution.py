"""Gradient attribution references (helpers.attribution) against captum and torchvision.

Models: a small CNN whose single ``nn.ReLU(inplace=True)`` module is used at several places of the forward pass
(the pattern of torchvision's ResNets), the course's CourseCNN (inplace ReLUs, residual sums) and torchvision's
``resnet18(weights=None)`` on small inputs. All in float64 so the comparisons can be tight.

SmoothGrad vs captum's NoiseTunnel: captum draws its own noise, so we compare in two independent ways:
(1) seeding: our noise is drawn from a generator seeded with ``seed`` in captum's order and with captum's call, so
    ``torch.manual_seed(seed)`` right before ``NoiseTunnel.attribute`` reproduces it (one image, one sigma);
(2) a wrapper: captum is run with ``stdevs=0`` on a model that adds OUR fixed noise tensor to its input, so
    captum's averaging (mean / squared / variance) is checked on exactly the noisy inputs we used (any batch).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from torch import nn

from helpers import attribution as A
from helpers.cifar_models import CNNConfig, CourseCNN
from tests.conftest import assert_no_hooks

warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
warnings.filterwarnings("ignore", message=".*required_grads has been set automatically.*")

DT = torch.float64


class ReusedReLUNet(nn.Module):
    """Conv-ReLU-Conv-ReLU-pool-linear-ReLU-linear with ONE inplace ReLU module used three times."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 5)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.fc2(self.relu(self.fc1(x)))


class SeparateReLUNet(ReusedReLUNet):
    """The same network with three separate, not inplace ReLU modules (an independent reference)."""

    def __init__(self) -> None:
        super().__init__()
        del self.relu
        self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.r1(self.conv1(x))
        x = self.r2(self.conv2(x))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.fc2(self.r3(self.fc1(x)))


def small_net(seed: int = 0) -> ReusedReLUNet:
    torch.manual_seed(seed)
    return ReusedReLUNet().to(DT).eval()


def course_cnn(seed: int = 0) -> CourseCNN:
    torch.manual_seed(seed)
    model = CourseCNN(CNNConfig(widths=(8, 16, 16, 16))).to(DT).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def resnet18():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return tv.models.resnet18(weights=None, num_classes=7).eval()  # float32: float64 convolutions are slow


def images(b: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=DT)


def close(a: torch.Tensor, b: torch.Tensor, atol: float | None = None, rtol: float | None = None) -> None:
    """Tight in float64; float32 (resnet18) gets float32 tolerances relative to the map's scale."""
    assert a.shape == b.shape and a.dtype == b.dtype
    if atol is None:
        atol, rtol = (1e-10, 1e-7) if a.dtype == DT else (1e-5 * float(b.abs().max()), 1e-4)
    elif rtol is None:
        rtol = 0.0
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


def test_assert_no_hooks_names_the_module_and_the_kind():
    """The shared hook-release check (tests/conftest.py) sees every kind of module hook and names where it is."""
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    assert_no_hooks(model)
    for register in ("register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
                     "register_full_backward_pre_hook"):
        handle = getattr(model[1][0], register)(lambda *args: None)
        with pytest.raises(AssertionError, match=r"module '1\.0' \(ReLU\): 1 "):
            assert_no_hooks(model)
        handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        with pytest.raises(AssertionError, match="global forward_hook"):
            assert_no_hooks(model)
    finally:
        handle.remove()
    assert_no_hooks(model)


MODELS = {"reused_relu": lambda: (small_net(), images(2, 12)),
          "course_cnn": lambda: (course_cnn(), images(2, 16)),
          "resnet18": lambda: (resnet18(), images(2, 32).float())}


# ---------------------------------------------------------------------------------------------- saliency & co


@pytest.mark.parametrize("name", list(MODELS))
def test_saliency_and_input_x_gradient_match_captum(name):
    model, x = MODELS[name]()
    target = torch.tensor([1, 3])
    for absolute in (True, False):
        close(A.saliency(model, x, target, abs=absolute), Saliency(model).attribute(x, target=target, abs=absolute))
    close(A.gradient_x_input(model, x, 2), InputXGradient(model).attribute(x, target=2))
    assert_no_hooks(model)


def test_gradient_is_per_image_and_leaves_parameters_alone():
    model, x = small_net(), images(3, 12)
    g = A.input_gradients(model, x, [0, 1, 2])
    for i in range(3):
        close(g[i:i + 1], A.input_gradients(model, x[i:i + 1], i))
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad


def test_class_indices_parses_and_checks_targets():
    # one parser for every method here and in helpers.cam
    assert A.class_indices(3, 4).tolist() == [3, 3, 3, 3]
    assert A.class_indices([2], 3, 5).tolist() == [2, 2, 2]
    t = A.class_indices(torch.tensor([1, 0]), 2, 2)
    assert t.dtype == torch.long and t.tolist() == [1, 0]
    with pytest.raises(TypeError, match="bool"):
        A.class_indices(True, 2)
    with pytest.raises(TypeError, match="dtype"):
        A.class_indices(torch.tensor([True, False]), 2)
    with pytest.raises(TypeError, match="dtype"):
        A.class_indices([0.5, 1.0], 2)
    with pytest.raises(ValueError, match="3 targets for a batch of 2"):
        A.class_indices([0, 1, 2], 2)
    with pytest.raises(ValueError, match="out of range"):
        A.class_indices([0, 10], 2, 10)
    with pytest.raises(ValueError, match="out of range"):
        A.class_indices(-1, 2, 10)
    assert A.class_indices([0, 99], 2).tolist() == [0, 99]  # no range check without num_classes


def test_bad_inputs_raise_clear_errors():
    model, x = small_net(), images(2, 12)
    with pytest.raises(ValueError, match="out of range"):
        A.saliency(model, x, 5)
    with pytest.raises(ValueError, match="2 images"):
        A.saliency(model, x, [0, 1, 2])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        A.saliency(model, x[0], 0)
    with pytest.raises(TypeError, match="floating"):
        A.saliency(model, x.long(), 0)
    with pytest.raises(ValueError, match="variant"):
        A.smoothgrad(model, x, 0, variant="median")
    with pytest.raises(ValueError, match="method"):
        A.integrated_gradients(model, x, 0, method="simpson")


# ---------------------------------------------------------------------------------------------- SmoothGrad


@pytest.mark.parametrize("variant,nt_type", [("mean", "smoothgrad"), ("squared", "smoothgrad_sq"),
                                             ("vargrad", "vargrad")])
def test_smoothgrad_matches_captum_with_the_same_seed(variant, nt_type):
    model, x = small_net(), images(1, 12)
    n, level, seed = 6, 0.2, 123
    ours = A.smoothgrad(model, x, 3, n_samples=n, noise_level=level, variant=variant, seed=seed)
    sigma = float(level * (x.max() - x.min()))
    torch.manual_seed(seed)  # captum draws with the global generator, in the same order as ours
    theirs = NoiseTunnel(Saliency(model)).attribute(x, nt_type=nt_type, nt_samples=n, stdevs=sigma, target=3,
                                                    abs=False)
    close(ours, theirs)


class AddNoise(nn.Module):
    """``model(z + noise)``: captum, given zero stdev, then sees exactly our noisy inputs."""

    def __init__(self, model: nn.Module, noise: torch.Tensor) -> None:
        super().__init__()
        self.model, self.noise = model, noise

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z + self.noise)


@pytest.mark.parametrize("name", ["course_cnn", "resnet18"])
@pytest.mark.parametrize("variant,nt_type", [("mean", "smoothgrad"), ("vargrad", "vargrad")])
def test_smoothgrad_matches_captum_on_the_same_noise_tensor(name, variant, nt_type):
    model, x = MODELS[name]()
    x[1] *= 3  # different ranges -> a different sigma per image
    n, level = 4, 0.15
    eps = A.smoothgrad_noise(x, n, seed=7)  # (n, B, C, H, W), standard normal
    sigma = level * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    scaled = sigma.view(1, -1, 1, 1, 1) * eps
    # captum repeats every image n times, image-major: row b * n + k is copy k of image b
    wrapped = AddNoise(model, scaled.transpose(0, 1).reshape(-1, *x.shape[1:])).eval()
    target = torch.tensor([0, 4])
    theirs = NoiseTunnel(Saliency(wrapped)).attribute(x, nt_type=nt_type, nt_samples=n, stdevs=0.0,
                                                      target=target, abs=False)
    close(A.smoothgrad(model, x, target, noise_level=level, variant=variant, noise=eps, batch_size=3), theirs)
    close(A.smoothgrad(model, x, target, n_samples=n, noise_level=level, variant=variant, seed=7), theirs)


def test_smoothgrad_noise_is_seeded():
    x = images(2, 8)
    assert torch.equal(A.smoothgrad_noise(x, 3, seed=1), A.smoothgrad_noise(x, 3, seed=1))
    assert not torch.equal(A.smoothgrad_noise(x, 3, seed=1), A.smoothgrad_noise(x, 3, seed=2))
    model = small_net()
    close(A.smoothgrad(model, x[:1], 0, noise_level=0.0, n_samples=3), A.saliency(model, x[:1], 0, abs=False))


# ---------------------------------------------------------------------------------------------- Integrated Gradients


@pytest.mark.parametrize("name,method", [(name, method) for name in ("reused_relu", "course_cnn")
                                         for method in ("riemann_trapezoid", "riemann_left", "riemann_middle",
                                                        "gausslegendre")] + [("resnet18", "riemann_trapezoid")])
def test_integrated_gradients_match_captum(name, method):
    model, x = MODELS[name]()
    base = A.blurred_baseline(x, sigma=2.0)
    target = torch.tensor([2, 0])
    ours = A.integrated_gradients(model, x, target, base, steps=8, method=method, internal_batch_size=6)
    theirs = IntegratedGradients(model).attribute(x, base, target=target, n_steps=8, method=method)
    close(ours, theirs)
    ours0 = A.integrated_gradients(model, x, 1, None, steps=5, method=method)
    close(ours0, IntegratedGradients(model).attribute(x, target=1, n_steps=5, method=method))


def test_ig_defaults_are_captums():
    model, x = small_net(), images(2, 12)
    close(A.integrated_gradients(model, x, 1), IntegratedGradients(model).attribute(x, target=1))


def test_ig_weights():
    for method in A.IG_METHODS:
        a, w = A.ig_weights(10, method)
        assert a.shape == w.shape == (10,) and 0 <= a.min() and a.max() <= 1
    assert abs(float(A.ig_weights(10, "trapezoid")[1].sum()) - 1) < 1e-12
    assert abs(float(A.ig_weights(10, "riemann_trapezoid")[1].sum()) - 0.9) < 1e-12  # captum's convention


def test_ig_is_exact_for_a_linear_model_and_equals_gradient_x_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).to(DT)
    x = images(2, 6)
    for method in ("trapezoid", "gausslegendre", "riemann_middle"):
        close(A.integrated_gradients(model, x, 3, steps=3, method=method), A.gradient_x_input(model, x, 3))
        assert float(A.ig_completeness_error(model, x, 3, A.black_baseline(x, (0.5,) * 3, (0.2,) * 3), 3,
                                             method).max()) < 1e-10


@pytest.mark.parametrize("method", ["gausslegendre", "trapezoid"])
def test_completeness_error_decreases_with_steps(method):
    model, x = course_cnn(), images(1, 16)
    base = A.blurred_baseline(x, 3.0)
    errs = [float(A.ig_completeness_error(model, x, 4, base, steps, method)) for steps in (4, 16, 128)]
    assert errs[-1] < errs[0] and errs[-1] < 0.01, errs
    assert errs[-1] <= min(errs[:-1]) + 1e-9, errs


def test_baselines():
    tv = pytest.importorskip("torchvision")
    x = images(2, 20)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    black = A.black_baseline(x, mean, std)
    close(black[:, 1], torch.full_like(black[:, 1], -0.5 / 0.25))
    assert torch.equal(A.zero_baseline(x), torch.zeros_like(x))
    for sigma in (1.0, 2.5):
        k = 2 * int(3 * sigma + 0.999) + 1
        close(A.gaussian_blur(x, sigma, k), tv.transforms.functional.gaussian_blur(x, [k, k], [sigma, sigma]),
              atol=1e-7)
    # blurring commutes with the per-channel normalisation
    pixels = torch.rand(1, 3, 20, 20, dtype=DT)
    norm = A._pixel_to_input(pixels, mean, std)
    close(A.blurred_baseline(norm, 2.0), A._pixel_to_input(A.blurred_baseline(pixels, 2.0), mean, std))
    u = A.uniform_baseline(x, mean, std, seed=3)
    pix = u * torch.tensor(std, dtype=DT).view(1, 3, 1, 1) + torch.tensor(mean, dtype=DT).view(1, 3, 1, 1)
    assert 0 <= float(pix.min()) and float(pix.max()) <= 1
    assert torch.equal(u, A.uniform_baseline(x, mean, std, seed=3))


def test_expected_ig_averages_captum_ig_over_fresh_baselines():
    model, x = small_net(), images(2, 12)
    attr, bases = A.expected_ig(model, x, 1, n_baselines=3, steps=6, seed=5, return_baselines=True)
    assert bases.shape == (3, *x.shape)
    assert not torch.equal(bases[0], bases[1])  # a new baseline per trial
    ig = IntegratedGradients(model)
    theirs = torch.stack([ig.attribute(x, b, target=1, n_steps=6) for b in bases]).mean(0)
    close(attr, theirs)
    again = A.expected_ig(model, x, 1, n_baselines=3, steps=6, seed=5)
    assert torch.equal(attr, again)


# ---------------------------------------------------------------------------------------------- guided / deconv


@pytest.mark.parametrize("name", list(MODELS))
def test_guided_backprop_and_deconvnet_match_captum(name):
    model, x = MODELS[name]()
    flags = [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)]
    assert any(flags)
    target = torch.tensor([1, 2])
    close(A.guided_backprop(model, x, target), GuidedBackprop(model).attribute(x, target=target))
    close(A.deconvnet(model, x, target), Deconvolution(model).attribute(x, target=target))
    assert_no_hooks(model)
    # plain gradients are back to normal afterwards, and in-place ReLUs are restored
    close(A.saliency(model, x, target, abs=False), Saliency(model).attribute(x, target=target, abs=False))
    assert [m.inplace for m in model.modules() if isinstance(m, nn.ReLU)] == flags


def test_reused_relu_equals_separate_relus():
    reused = small_net()
    separate = SeparateReLUNet().to(DT).eval()
    separate.load_state_dict(reused.state_dict(), strict=False)
    x = images(2, 12)
    close(A.guided_backprop(reused, x, 1), A.guided_backprop(separate, x, 1))
    close(A.deconvnet(reused, x, 1), A.deconvnet(separate, x, 1))
    # sanity: the modified maps really differ from the gradient and are non-negative where the rule says so
    g = A.saliency(reused, x, 1, abs=False)
    assert not torch.allclose(A.guided_backprop(reused, x, 1), g)


def test_hooks_are_removed_and_inplace_restored_after_an_exception():
    model, x = small_net(), images(2, 12)
    assert model.relu.inplace
    with pytest.raises(RuntimeError, match="boom"):
        with A.modified_relu_backward(model, "guided"):
            assert model.relu._forward_hooks and not model.relu.inplace
            raise RuntimeError("boom")
    assert_no_hooks(model)
    assert model.relu.inplace
    with pytest.raises(ValueError, match="out of range"):
        A.guided_backprop(model, x, 99)  # fails inside the context
    assert_no_hooks(model)
    assert model.relu.inplace
    with pytest.raises(ValueError, match="no nn.ReLU"):
        A.guided_backprop(nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 2)).to(DT), x, 0)
    with pytest.raises(ValueError, match="mode"):
        with A.modified_relu_backward(model, "excitation"):
            pass


# ---------------------------------------------------------------------------------------------- visualisation


def test_channel_aggregation_and_normalisation():
    a = torch.tensor([[[1.0, -3.0]], [[-2.0, 1.0]], [[0.5, 0.5]]])  # (C=3, H=1, W=2)
    assert torch.equal(A.aggregate_channels(a, "max_abs"), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(A.aggregate_channels(a, "sum"), torch.tensor([[-0.5, -1.5]]))
    assert torch.equal(A.aggregate_channels(a, "abs_sum"), torch.tensor([[3.5, 4.5]]))
    assert A.aggregate_channels(a.unsqueeze(0).repeat(2, 1, 1, 1), "l2").shape == (2, 1, 2)
    with pytest.raises(ValueError, match="aggregation"):
        A.aggregate_channels(a, "mean")
    m = torch.arange(100.0).view(1, 10, 10) - 30
    c = A.clip_percentile(m, 90)
    v = float(torch.quantile(m.abs().flatten(), 0.9))
    assert float(c.max()) == pytest.approx(v) and float(c.min()) == -30
    s = A.normalize_attribution(m, signed=True, percentile=90)
    assert float(s.max()) == pytest.approx(1.0) and float(s.min()) < 0
    u = A.normalize_attribution(m, signed=False, percentile=100)
    assert float(u.min()) >= 0 and float(u.max()) == pytest.approx(1.0)
    assert A.normalize_attribution(m[0], signed=True).shape == (10, 10)
