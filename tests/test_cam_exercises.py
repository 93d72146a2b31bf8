"""Notebook 04's exercise checks (4.1 Grad-CAM, 4.2 counterfactual Grad-CAM) pass the reference and reject known
wrong solutions: at the checked layers the gradient varies over positions, so CAM / HiResCAM cannot pass."""

from __future__ import annotations

import functools

import torch
from torch import nn

from helpers import cam
from helpers.checkpoints import load_checkpoint


@functools.lru_cache(maxsize=1)
def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return load_checkpoint("cnn_cifar10").eval()


@functools.lru_cache(maxsize=1)
def _resnet18() -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def _x(size: int = 32, n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _hooked(model, x, target, layer, score=lambda logits: logits, remove=True, finally_remove=True):
    """Grad-CAM's ingredients with raw hooks: returns (A, dA) of ``layer`` for the summed target scores."""
    store = {}

    def fwd(module, inputs, output):
        store["A"] = output
        output.register_hook(lambda g: store.__setitem__("dA", g))

    handle = layer.register_forward_hook(fwd)
    t = torch.as_tensor(target).reshape(-1).expand(x.shape[0])
    if finally_remove:
        try:
            score(model(x)).gather(1, t[:, None]).sum().backward()
        finally:
            if remove:
                handle.remove()
    else:
        score(model(x)).gather(1, t[:, None]).sum().backward()
        handle.remove()
    model.zero_grad(set_to_none=True)
    return store["A"].detach(), store["dA"]


def grad_cam_ok(model, x, target, layer):
    a, g = _hooked(model, x, target, layer)
    return (g.mean(dim=(2, 3), keepdim=True) * a).sum(1).clamp(min=0)


def hirescam(model, x, target, layer):  # element-wise gradient x activation: no average over positions
    a, g = _hooked(model, x, target, layer)
    return (g * a).sum(1).clamp(min=0)


def no_relu(model, x, target, layer):
    a, g = _hooked(model, x, target, layer)
    return (g.mean(dim=(2, 3), keepdim=True) * a).sum(1)


def of_probability(model, x, target, layer):  # explains p_c instead of the logit
    a, g = _hooked(model, x, target, layer, score=lambda y: y.softmax(-1))
    return (g.mean(dim=(2, 3), keepdim=True) * a).sum(1).clamp(min=0)


def fc_cam(model, x, target, layer):  # CAM with the classifier's weights: only valid before the GAP
    a, _ = _hooked(model, x, target, layer)
    return cam.cam(a, model.fc.weight, target).clamp(min=0)


def leaves_hooks(model, x, target, layer):
    a, g = _hooked(model, x, target, layer, remove=False)
    return (g.mean(dim=(2, 3), keepdim=True) * a).sum(1).clamp(min=0)


def no_finally(model, x, target, layer):  # removes its hook, but not when the forward pass raises
    a, g = _hooked(model, x, target, layer, finally_remove=False)
    return (g.mean(dim=(2, 3), keepdim=True) * a).sum(1).clamp(min=0)


def counterfactual_ok(model, x, target, layer):
    a, g = _hooked(model, x, target, layer)
    return (-g.mean(dim=(2, 3), keepdim=True) * a).sum(1).clamp(min=0)


def negated_after_relu(model, x, target, layer):
    return -grad_cam_ok(model, x, target, layer)


def _status(fn, model, x, target, layer, counterfactual=False) -> str:
    res = cam.check_grad_cam("4.x test", fn, model, x, target, layer, counterfactual=counterfactual, strict=False)
    assert cam.count_hooks(model) == 0  # the check itself never leaves a hook, whatever the student did
    return res.status


def _clean(model: nn.Module) -> None:
    for m in model.modules():
        m._forward_hooks.clear()


def test_4_1_check_passes_the_reference_and_rejects_wrong_solutions() -> None:
    model, x = _cnn(), _x()
    layer = model.features[2]  # the notebook's layer: the middle stage (16 x 16), gradient varies over positions
    target = torch.tensor([3, 5, 1])
    assert _status(grad_cam_ok, model, x, target, layer) == "passed"
    for wrong in (hirescam, no_relu, of_probability, fc_cam):
        assert _status(wrong, model, x, target, layer) == "failed", wrong.__name__
    for wrong in (leaves_hooks, no_finally):
        res = cam.check_grad_cam("4.x", wrong, model, x, target, layer, strict=False)
        _clean(model)
        assert res.status == "failed" and "hook" in res.message, wrong.__name__


def test_at_the_last_layer_before_gap_the_wrong_solutions_would_pass() -> None:
    """Why the check moved: right before GAP + linear, dy/dA is constant over positions, so HiResCAM and CAM give
    Grad-CAM's normalised map (the old 4.1 check at features[-1] passed them)."""
    model, x = _cnn(), _x()
    target = torch.tensor([3, 5, 1])
    for same in (hirescam, fc_cam):
        assert _status(same, model, x, target, model.features[-1]) == "passed", same.__name__


def test_4_2_counterfactual_check_rejects_plain_and_negated_maps() -> None:
    model, x = _resnet18(), _x(64, 2)
    layer = model.layer3  # the notebook's layer for 4.2 (ResNet-50 layer3 there)
    assert _status(counterfactual_ok, model, x, 281, layer, counterfactual=True) == "passed"
    for wrong in (grad_cam_ok, negated_after_relu, hirescam):
        assert _status(wrong, model, x, 281, layer, counterfactual=True) == "failed", wrong.__name__


def test_not_done_is_reported() -> None:
    def todo(model, x, target, layer):
        raise NotImplementedError

    assert _status(todo, _cnn(), _x(), 0, _cnn().features[2]) == "not done"


def test_upsampled_maps_fail_with_a_shape_message() -> None:
    model, x = _cnn(), _x()

    def upsampled(model, x, target, layer):
        return cam.upsample(grad_cam_ok(model, x, target, layer), 32)

    res = cam.check_grad_cam("4.x", upsampled, model, x, 0, model.features[2], strict=False)
    assert res.status == "failed" and "not upsampled" in res.message
