"""helpers.relevance_vit: CP-LRP and AttnLRP on the course ViT (same outputs, restored forwards, conservation on a
bias-free ViT, clear errors)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import relevance_vit as RV
from helpers.cifar_models import CourseCNN, CourseViT, ViTConfig


def _vit(tokenizer: str = "resnet") -> CourseViT:
    torch.manual_seed(0)
    cfg = ViTConfig(dim=32, depth=2, heads=4, tokenizer=tokenizer, stem_channels=(8, 16))
    return CourseViT(cfg).double().eval()


def _bias_free(model: CourseViT) -> CourseViT:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm)) and m.bias is not None:
                m.bias.zero_()
        model.cls_token.zero_()
        model.pos_embed.zero_()
    return model


@pytest.mark.parametrize("mode", RV.MODES)
def test_outputs_unchanged_and_forward_restored(mode):
    model = _vit()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    ref = model(x)
    with RV.lrp_forward(model, mode) as m:
        torch.testing.assert_close(m(x), ref, rtol=1e-10, atol=1e-10)
    assert not any("forward" in vars(m) for m in model.modules())
    torch.testing.assert_close(model(x), ref)


def test_forwards_are_restored_after_an_error():
    model = _vit()
    with pytest.raises(RuntimeError, match="boom"), RV.lrp_forward(model, "cp"):
        raise RuntimeError("boom")
    assert not any("forward" in vars(m) for m in model.modules())


def test_cp_lrp_with_the_identity_rule_conserves_on_a_bias_free_vit():
    # attention and 1/std held constant, GELU by the identity rule, no biases: the network is then linear in x
    # along the backward pass, so gradient x input adds up to the logit exactly
    model = _bias_free(_vit("linear"))
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    rel, logit = RV.vit_relevance(model, x, [0, 1, 2], mode="cp", gelu="identity")
    torch.testing.assert_close(rel.flatten(1).sum(1), logit, rtol=1e-8, atol=1e-10)
    rel_g, _ = RV.vit_relevance(model, x, [0, 1, 2], mode="cp", gelu="gradient")  # GELU's gradient is not
    assert not torch.allclose(rel_g.flatten(1).sum(1), logit, rtol=1e-3)


def test_attnlrp_differs_from_cp_and_from_the_plain_gradient():
    model = _vit()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    a, _ = RV.vit_relevance(model, x, 1, "attnlrp")
    c, _ = RV.vit_relevance(model, x, 1, "cp")
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xg)[:, 1].sum(), xg)
    for r in (a, c):
        assert r.shape == x.shape and torch.isfinite(r).all()
        assert not torch.allclose(r, x * g, rtol=1e-3)
    assert not torch.allclose(a, c, rtol=1e-3)


def test_errors():
    with pytest.raises(ValueError, match="unknown mode 'lrp0'"):
        with RV.lrp_forward(_vit(), "lrp0"):
            pass
    with pytest.raises(TypeError, match="helpers.relevance.lrp"):
        with RV.lrp_forward(CourseCNN(), "cp"):
            pass
    with pytest.raises(ValueError, match="unknown GELU rule"):
        with RV.lrp_forward(_vit(), "cp", gelu="relu"):
            pass
