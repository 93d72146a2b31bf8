"""helpers.relevance: LRP rules against zennit (an independent implementation), conservation, LRP-0 = gradient x
input on ReLU networks, canonisation, and clear errors. All in float64 on the CPU, random weights (offline)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers import attribution, data
from helpers import relevance as R
from helpers.cifar_models import CNNConfig, CourseCNN, Residual

zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import AttributeCanonizer, SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import LayerMapComposite, SpecialFirstLayerMapComposite, layer_map_base  # noqa: E402
from zennit.layer import Sum  # noqa: E402
from zennit.rules import Epsilon, Gamma, ZBox  # noqa: E402
from zennit.types import Convolution  # noqa: E402

REL_TOL = 1e-5  # max |ours - zennit| / max |zennit|


def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics; eps = 0 because zennit's merged BatchNorm keeps computing
    x / sqrt(1 + eps) (it resets running_var to 1 but not eps), a 5e-6 relative change per layer that ours lacks."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.eps = 0.0
        if isinstance(m, nn.ReLU):
            m.inplace = False  # zennit's hooks need out-of-place ReLUs
    return model


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    torch.manual_seed(0)
    m = CourseCNN(CNNConfig(widths=(8, 16, 16, 32))).double().eval()
    with torch.no_grad():
        m.fc.weight.mul_(30)  # logits of a few units, like a trained model, so epsilon = 0.25 does not drown them
    return _randomise_bn(m)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


class _ResidualCanonizer(AttributeCanonizer):
    """For zennit: the course CNN's x + body(x) as zennit's Sum layer (which its composites give the Norm rule)."""

    def __init__(self) -> None:
        super().__init__(self._attributes)

    @staticmethod
    def _attributes(name: str, module: nn.Module):
        if not isinstance(module, Residual):
            return None

        def forward(self, x):
            return self.canonizer_sum(torch.stack([x, self.body(x)], dim=-1))

        return {"forward": forward.__get__(module), "canonizer_sum": Sum()}


def _zennit(model: nn.Module, x: torch.Tensor, target: torch.Tensor, conv, linear, first=None, canonizers=None):
    model = copy.deepcopy(model)
    layer_map = layer_map_base() + [(Convolution, conv), (nn.Linear, linear)]
    canonizers = canonizers or [SequentialMergeBatchNorm(), _ResidualCanonizer()]
    if first is None:
        composite = LayerMapComposite(layer_map=layer_map, canonizers=canonizers)
    else:
        composite = SpecialFirstLayerMapComposite(layer_map=layer_map, first_map=[(Convolution, first)],
                                                  canonizers=canonizers)
    with Gradient(model, composite) as attributor:
        _, rel = attributor(x.clone().requires_grad_(True),
                            lambda out: out * nn.functional.one_hot(target, out.shape[1]).to(out))
    return rel


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


BOX = R.cifar_box()
CASES = {
    "epsilon": (R.Composite(conv=R.epsilon(0.25), linear=R.epsilon(0.25)), (Epsilon(0.25), Epsilon(0.25), None)),
    "lrp0": (R.Composite(conv=R.lrp0(1e-6), linear=R.lrp0(1e-6)), (Epsilon(1e-6), Epsilon(1e-6), None)),
    "gamma": (R.Composite(conv=R.gamma(0.25), linear=R.gamma(0.5)), (Gamma(0.25), Gamma(0.5), None)),
    "zbox_first": (R.Composite(conv=R.epsilon(0.1), linear=R.epsilon(0.1), first=R.zbox(*BOX)),
                   (Epsilon(0.1), Epsilon(0.1), ZBox(BOX[0], BOX[1]))),
    "epsilon_gamma_box": ("epsilon_gamma_box", (Gamma(0.25), Epsilon(0.25), ZBox(BOX[0], BOX[1]))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rules_equal_zennit_on_the_course_cnn(cnn, images, case):
    ours_comp, (conv, linear, first) = CASES[case]
    target = torch.tensor([3, 7])
    ours = R.lrp(cnn, images, target, ours_comp)
    ref = _zennit(cnn, images, target, conv, linear, first)
    assert ours.shape == images.shape
    assert _rel_err(ours, ref) < REL_TOL, case


def test_by_depth_assigns_rules_by_depth(cnn, images):
    res = R.explain(cnn, images, 1, "by_depth")
    names = [rule.name for _, rule in res.rules]
    n_conv = sum(isinstance(m, nn.Conv2d) for m in cnn.modules())
    assert names[0] == "zbox" and names[-1] == "lrp0"
    assert names[1: 1 + (n_conv - 1) // 2] == ["gamma"] * ((n_conv - 1) // 2)
    assert set(names[1 + (n_conv - 1) // 2: -1]) == {"epsilon"}


def test_torchvision_resnet_equals_zennit():
    tv = pytest.importorskip("torchvision")
    from zennit.composites import EpsilonGammaBox
    from zennit.torchvision import ResNetCanonizer

    torch.manual_seed(0)
    net = _randomise_bn(tv.models.resnet18(weights=None).double().eval())
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    box = R.cifar_box(data.IMAGENET_MEAN, data.IMAGENET_STD)
    ours = R.lrp(net, x, 7, "epsilon_gamma_box", box=box)
    comp = EpsilonGammaBox(low=box[0], high=box[1], epsilon=0.25, gamma=0.25, canonizers=[ResNetCanonizer()])
    with Gradient(copy.deepcopy(net), comp) as attributor:
        _, ref = attributor(x.clone().requires_grad_(True), lambda o: o * nn.functional.one_hot(
            torch.tensor([7]), 1000).to(o))
    assert _rel_err(ours, ref) < REL_TOL


def _bias_free_relu_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10, bias=False)).double().eval()


def test_lrp0_equals_gradient_times_input_on_a_bias_free_relu_net(images):
    net = _bias_free_relu_net()
    ours = R.lrp(net, images, [0, 4], R.Composite(conv=R.lrp0(1e-12), linear=R.lrp0(1e-12),
                                                   pool=R.Rule("norm", eps=1e-12)))
    gxi = attribution.gradient_x_input(net, images, [0, 4])
    assert _rel_err(ours, gxi) < 1e-9
    eps = R.lrp(net, images, [0, 4], "epsilon")  # the epsilon rule is not gradient x input
    assert _rel_err(eps, gxi) > 1e-3


def test_lrp0_equals_gradient_times_input_on_the_course_cnn_with_biases(cnn, images):
    tiny = R.Composite(conv=R.lrp0(1e-14), linear=R.lrp0(1e-14), pool=R.Rule("norm", eps=1e-14))
    ours = R.lrp(cnn, images, [2, 5], tiny)
    assert _rel_err(ours, attribution.gradient_x_input(cnn, images, [2, 5])) < 1e-7


def test_conservation_is_exact_without_biases_and_measured_with_them(cnn, images):
    net = _bias_free_relu_net()
    tiny = R.Composite(conv=R.lrp0(1e-14), linear=R.lrp0(1e-14), pool=R.Rule("norm", eps=1e-14))
    res = R.explain(net, images, [1, 2], tiny)
    assert len(res.layer_sums) == 4  # 3 weighted layers + the average pooling
    for name, s in res.layer_sums.items():
        torch.testing.assert_close(s, res.logits, rtol=1e-8, atol=1e-10, msg=name)
    torch.testing.assert_close(res.relevance.sum((1, 2, 3)), res.logits, rtol=1e-8, atol=1e-10)
    res = R.explain(cnn, images, [1, 2], "epsilon")  # biases and epsilon absorb relevance: not conserved
    gap = (res.relevance.sum((1, 2, 3)) - res.logits).abs()
    assert torch.all(gap > 1e-6)
    assert list(res.layer_sums)[0] == "fc"  # output layer first


def test_canonize_keeps_the_function_and_merges_every_batchnorm(cnn, images):
    canon = R.canonize(cnn)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in canon.modules())
    torch.testing.assert_close(canon(images), cnn(images), rtol=1e-10, atol=1e-10)


def test_model_is_left_unchanged(cnn, images):
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    out = cnn(images)
    R.lrp(cnn, images, 0)
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in cnn.modules())
    assert hooks == 0
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
    torch.testing.assert_close(cnn(images), out)


def test_predicted_class_is_the_default_target(cnn, images):
    res = R.explain(cnn, images)
    torch.testing.assert_close(res.logits, cnn(images).max(1).values)


def test_float32_course_checkpoint_architecture_runs():
    model = CourseCNN().eval()
    x = torch.randn(2, 3, 32, 32)
    res = R.explain(model, x, [0, 1], "by_depth")
    assert res.relevance.shape == x.shape and res.relevance.dtype == torch.float32
    assert torch.isfinite(res.relevance).all()


def test_unknown_rule_and_composite_say_what_to_use(cnn, images):
    with pytest.raises(R.LRPError, match="unknown LRP rule 'alpha'.*lrp0, epsilon, gamma, zbox"):
        R.Rule("alpha")
    with pytest.raises(R.LRPError, match="unknown composite 'zplus'.*epsilon_gamma_box"):
        R.lrp(cnn, images, 0, "zplus")
    with pytest.raises(R.LRPError, match="needs the input box"):
        R.Rule("zbox")
    with pytest.raises(R.LRPError, match="composite must be"):
        R.lrp(cnn, images, 0, 3)


def test_layers_lrp_cannot_propagate_are_named():
    gelu_net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.LazyLinear(10))
    x = torch.randn(1, 3, 8, 8)
    gelu_net(x)
    with pytest.raises(R.LRPError, match=r"layer '1' \(GELU\).*gradient x input"):
        R.lrp(gelu_net, x, 0)
    bn_first = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 10)).eval()
    with pytest.raises(R.LRPError, match="BatchNorm2d.*right after a Conv2d"):
        R.lrp(bn_first, x, 0)


def test_unknown_containers_are_refused_not_silently_wrong():
    class AddTwice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return x + self.conv(x)  # an addition LRP would need to split

    net = nn.Sequential(AddTwice(), nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    with pytest.raises(R.LRPError, match="module '0' \\(AddTwice\\).*add or multiply"):
        R.lrp(net, torch.randn(1, 3, 8, 8), 0)


def test_efficientnet_lite0_is_refused_with_a_reason():
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0").eval()
    with pytest.raises(R.LRPError, match="cannot propagate"):
        R.lrp(net, torch.randn(1, 3, 64, 64), 0)


def test_bad_images_and_targets(cnn, images):
    with pytest.raises(ValueError, match="unsqueeze"):
        R.lrp(cnn, images[0], 0)
    with pytest.raises(ValueError, match="out of range"):
        R.lrp(cnn, images, 10)


def test_zennit_generic_canonizer_does_not_fit_efficientnet_lite0():
    """What notebook 09 says about EfficientNet-Lite0 and zennit: SequentialMergeBatchNorm merges none of its
    BatchNorms (every conv is a Conv2dStaticSamePadding with a padding child, so conv and BN are never adjacent
    leaves) and 16 of the 17 ReLU6 modules run twice per forward pass (zennit keeps one input per hooked module)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    net = _randomise_bn(EfficientNet.from_name("efficientnet-lite0").double().eval())
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 49
    assert SequentialMergeBatchNorm().apply(net) == []  # nothing merged
    calls: dict[int, int] = {}
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU6)]
    handles = [m.register_forward_hook(lambda mod, i, o: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1))
               for m in relus]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    assert len(relus) == 17 and sum(c == 2 for c in calls.values()) == 16
