"""helpers.cam: CAM / Grad-CAM against captum and pytorch-grad-cam, hooks, segmentation, bad input."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from helpers import cam
from helpers.cifar_models import CourseCNN, CourseViT, ViTConfig
from tests.conftest import assert_no_hooks


def _small_cnn(inplace: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=inplace),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(inplace=inplace),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=inplace),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).eval()


@functools.lru_cache(maxsize=1)
def _resnet18() -> nn.Module:
    """Built once per session (random init is the slow part); the tests never change its weights."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def _pgc_gradcam(model, x, target, layer, reshape=None):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as m:
        out = m(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in target])
    return torch.from_numpy(out)


CASES = [("small_cnn", lambda m: m[4], 16), ("resnet18", lambda m: m.layer4, 96), ("resnet18", lambda m: m.layer3, 64)]


@pytest.mark.parametrize("name,get_layer,size", CASES)
def test_grad_cam_matches_captum(name, get_layer, size):
    from captum.attr import LayerGradCam

    model = _small_cnn() if name == "small_cnn" else _resnet18()
    layer = get_layer(model)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([1, 3])
    ours = cam.grad_cam(model, x, target, layer)
    ref = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)[:, 0].detach()
    assert ours.shape == ref.shape and ours.ndim == 3
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cam.normalize_map(ours), cam.normalize_map(ref), atol=1e-5, rtol=0)
    raw = cam.grad_cam(model, x, target, layer, relu=False)
    ref_raw = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=False)[:, 0].detach()
    torch.testing.assert_close(raw, ref_raw, atol=1e-5, rtol=1e-4)
    assert_no_hooks(model)


@pytest.mark.parametrize("name,get_layer,size", CASES)
def test_grad_cam_matches_pytorch_grad_cam(name, get_layer, size):
    model = _small_cnn() if name == "small_cnn" else _resnet18()
    layer = get_layer(model)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    target = [0, 2]
    # pytorch-grad-cam: ReLU, normalise, resize (OpenCV bilinear), normalise again. The eps in the normalisation
    # makes the first step not exactly scale-free for the tiny maps of random networks, so repeat it exactly.
    ours = cam.normalize_map(cam.upsample(cam.normalize_map(cam.grad_cam(model, x, target, layer)), (size, size)))
    ref = _pgc_gradcam(model, x, target, layer)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    lib = cam.library_cam("gradcam", model, x, target, layer)
    torch.testing.assert_close(lib, ref, atol=0, rtol=0)
    assert_no_hooks(model)
    assert all(p.grad is None for p in model.parameters())


def test_grad_cam_vit_reshape_matches_pytorch_grad_cam():
    torch.manual_seed(0)
    vit = CourseViT(ViTConfig(dim=32, depth=2, heads=2, tokenizer="linear")).eval()
    x = torch.randn(2, 3, 32, 32)
    layer = vit.blocks[-1].norm1
    reshape = cam.reshape_for(vit)
    ours = cam.grad_cam(vit, x, [4, 7], layer, reshape=reshape)
    assert ours.shape == (2, 8, 8)
    ref = _pgc_gradcam(vit, x, [4, 7], layer, reshape=reshape)
    torch.testing.assert_close(cam.normalize_map(cam.upsample(cam.normalize_map(ours), 32)), ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="reshape"):
        cam.grad_cam(vit, x, 0, layer)  # tokens without reshape


def test_vit_reshape_layout():
    b, c, h, w = 2, 5, 3, 4
    grid = torch.arange(b * c * h * w, dtype=torch.float32).reshape(b, c, h, w)
    tokens = torch.cat([torch.full((b, 2, c), -1.0), grid.flatten(2).transpose(1, 2)], dim=1)  # 2 prefix tokens
    torch.testing.assert_close(cam.vit_reshape(tokens, num_prefix_tokens=2, grid=(h, w)), grid)
    with pytest.raises(ValueError, match="square"):
        cam.vit_reshape(tokens, num_prefix_tokens=1)
    with pytest.raises(ValueError):
        cam.vit_reshape(torch.zeros(2, 5))


def test_grad_cam_equals_cam_up_to_scale_on_course_cnn():
    torch.manual_seed(0)
    model = CourseCNN().eval()
    x = torch.randn(3, 3, 32, 32)
    target = torch.tensor([0, 5, 9])
    feats = model.features(x)
    assert feats.shape == (3, 256, 8, 8)
    c = cam.cam(feats, model.fc.weight, target)
    g = cam.grad_cam(model, x, target, model.features[-1], relu=False)
    # dy_c / dA_k(i, j) = w_ck / (h w), so Grad-CAM = CAM / (h w) exactly
    torch.testing.assert_close(g * 64, c, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cam.grad_cam(model, x, target, model.features[-1]) * 64, c.clamp(min=0),
                               atol=1e-5, rtol=1e-4)


class _Negated(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return -self.model(x)


def test_counterfactual_is_grad_cam_of_negated_gradients():
    model = _small_cnn()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    cf = cam.grad_cam(model, x, 1, model[4], counterfactual=True)
    torch.testing.assert_close(cf, cam.grad_cam(_Negated(model), x, 1, model[4]))
    torch.testing.assert_close(cf, (-cam.grad_cam(model, x, 1, model[4], relu=False)).clamp(min=0))
    assert (cf > 0).any() and (cam.grad_cam(model, x, 1, model[4]) > 0).any()


def test_layer_followed_by_inplace_relu():
    model = _small_cnn(inplace=True)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    layer = model[2]  # a conv whose output an in-place ReLU overwrites
    ours = cam.grad_cam(model, x, 2, layer, relu=False)
    inp = x.clone()
    a = model[1](model[0](inp).clone())
    z = model[2](a)
    z.retain_grad()
    out = model[7:](model[6](model[5](model[4](torch.relu(z)))))
    out[:, 2].sum().backward()
    expected = (z.grad.mean(dim=(2, 3), keepdim=True) * z).sum(1).detach()
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)


def test_capture_records_and_releases_hooks():
    model = _small_cnn()
    x = torch.randn(2, 3, 16, 16)
    with cam.capture(model, "4") as rec:
        y = model(x)
        assert rec.activations.shape == (2, 16, 8, 8) and rec.gradients is None and rec.calls == 1
        y[:, 0].sum().backward()
    assert rec.gradients.shape == (2, 16, 8, 8)
    assert_no_hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with cam.capture(model, model[4]):
            model(x)
            raise RuntimeError("boom")
    assert_no_hooks(model)
    with pytest.raises(ValueError, match="out of range"):
        cam.grad_cam(model, x, 99, model[4])  # fails inside the hooked forward pass
    assert_no_hooks(model)


def test_guided_grad_cam_matches_captum():
    from captum.attr import GuidedGradCam

    model = _small_cnn()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    target = torch.tensor([3, 1])
    ours = cam.guided_grad_cam(model, x, target, model[4], mode="nearest")
    ref = GuidedGradCam(model, model[4]).attribute(x, target=target).detach()
    assert ours.shape == x.shape
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    assert_no_hooks(model)


def test_bad_input():
    model = _small_cnn()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match="batch"):
        cam.grad_cam(model, x[0], 0, model[4])
    with pytest.raises(TypeError):
        cam.grad_cam(model, x.to(torch.uint8), 0, model[4])
    with pytest.raises(TypeError):
        cam.grad_cam(model, x.numpy(), 0, model[4])
    with pytest.raises(ValueError, match="not a submodule"):
        cam.grad_cam(model, x, 0, nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="no submodule"):
        cam.grad_cam(model, x, 0, "layer9")
    with pytest.raises(ValueError, match="targets"):
        cam.grad_cam(model, x, [0, 1, 2], model[4])
    with pytest.raises(TypeError):
        cam.grad_cam(model, x, 0.5, model[4])
    shared = nn.ReLU()
    twice = nn.Sequential(nn.Conv2d(3, 4, 3), shared, nn.Conv2d(4, 4, 3), shared, nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="2 times"):
        cam.grad_cam(twice, x, 0, shared)
    with pytest.raises(ValueError):
        cam.cam(torch.randn(2, 16, 4, 4), torch.randn(5, 8), 0)
    with pytest.raises(ValueError, match="range"):
        cam.cam(torch.randn(2, 16, 4, 4), torch.randn(5, 16), 5)
    with pytest.raises(ValueError):
        cam.upsample(torch.randn(1, 1, 4, 4), 8)
    with pytest.raises(ValueError, match="unknown method"):
        cam.library_cam("nocam", model, x, 0, model[4])
    with pytest.raises(ValueError, match="no rough mask"):
        cam.object_mask("dog")


def test_upsample_and_normalize():
    m = torch.tensor([[[0.0, 2.0], [4.0, 8.0]]])
    n = cam.normalize_map(m)
    assert float(n.min()) == 0.0 and abs(float(n.max()) - 1.0) < 1e-6
    assert torch.equal(cam.normalize_map(torch.ones(2, 3, 3)), torch.zeros(2, 3, 3))
    up = cam.upsample(m, 4)
    assert up.shape == (1, 4, 4) and cam.upsample(m[0], (6, 4)).shape == (6, 4)
    torch.testing.assert_close(up[0, 0, 0], m[0, 0, 0])  # corners keep their value (align_corners=False, clamped)


def test_threshold_segment_and_iou_on_hand_made_masks():
    heat = torch.zeros(4, 4)
    heat[1:3, 1:3] = 1.0
    heat[0, 0] = 0.5
    seg = cam.threshold_segment(heat, 0.6)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1:3, 1:3] = True
    assert torch.equal(seg, expected)
    assert int(cam.threshold_segment(heat, 0.45).sum()) == 5
    assert int(cam.threshold_segment(heat, 0.0).sum()) == 16
    batch = cam.threshold_segment(torch.stack([heat, 10 * heat + 3]), 0.6)  # per-map normalisation
    assert torch.equal(batch[0], batch[1])

    a = torch.zeros(4, 4, dtype=torch.bool)
    a[:2] = True  # 8 pixels
    b = torch.zeros(4, 4, dtype=torch.bool)
    b[1:3] = True  # 8 pixels, 4 shared
    assert float(cam.iou(a, b)) == pytest.approx(4 / 12)
    assert float(cam.iou(a, a)) == 1.0 and float(cam.iou(a, ~a)) == 0.0
    empty = torch.zeros(4, 4, dtype=torch.bool)
    assert float(cam.iou(empty, empty)) == 1.0
    torch.testing.assert_close(cam.iou(torch.stack([a, a]), torch.stack([b, a])), torch.tensor([1 / 3, 1.0]))
    with pytest.raises(TypeError):
        cam.iou(a.float(), b)
    with pytest.raises(ValueError):
        cam.iou(a, b[:2])
    with pytest.raises(ValueError):
        cam.threshold_segment(heat, 1.5)


def test_object_masks():
    m = cam.object_mask("chelsea")
    assert m.shape == (300, 451) and m.dtype == torch.bool
    assert 0.6 < float(m.float().mean()) < 0.95  # the cat fills most of the photo
    assert m[150, 200] and not m[10, 440]
    r = cam.object_mask("rocket", size=112)  # resized + centre-cropped like data.sample_photos(size=112)
    assert r.shape == (112, 112) and 0.01 < float(r.float().mean()) < 0.08 and r[70, 56] and not r[70, 20]
    c = cam.object_mask("coffee", size=224)
    assert c.shape == (224, 224) and 0.3 < float(c.float().mean()) < 0.8 and c[112, 112] and not c[5, 220]


def test_score_cam_draws_no_progress_bars(capfd):
    # ScoreCAM prints a tqdm bar per image (it has no switch): library_cam keeps notebook outputs clean
    model = _small_cnn()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    out = cam.library_cam("scorecam", model, x, [0, 1], model[4], batch_size=8)
    assert out.shape == (2, 16, 16) and torch.isfinite(out).all()
    assert "it/s" not in capfd.readouterr().err
    assert_no_hooks(model)
