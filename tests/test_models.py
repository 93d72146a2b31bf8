"""helpers.models: every course model builds offline with its preprocessing; download failures are explained."""

from __future__ import annotations

import socket
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data, models


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("XAI_OFFLINE", "1")


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def photo():
    return data.sample_photos(["chelsea"])["chelsea"]


def _official_transform(name, loaded):
    spec = models.MODELS[name]
    if spec.source == "torchvision":
        import torchvision.models as tvm

        enum, member = spec.weights.split(".")
        return getattr(getattr(tvm, enum), member).transforms()
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config(model=loaded.model)
    if "img_size" in spec.create_kwargs:  # built for another size than its weights' config (DINOv2 at 224 px)
        config["input_size"] = (3, spec.create_kwargs["img_size"], spec.create_kwargs["img_size"])
    return create_transform(**config)


EXPECTED = {  # name: (input size, family, prefix tokens, mean)
    "resnet50": (224, "cnn", 0, data.IMAGENET_MEAN),
    "resnet18": (224, "cnn", 0, data.IMAGENET_MEAN),
    "vgg16": (224, "cnn", 0, data.IMAGENET_MEAN),
    "inception_v3": (299, "cnn", 0, data.IMAGENET_MEAN),
    "googlenet": (224, "cnn", 0, data.IMAGENET_MEAN),
    "deit_tiny": (224, "vit", 1, data.IMAGENET_MEAN),
    "deit_tiny_distilled": (224, "vit", 2, data.IMAGENET_MEAN),
    "vit_b16": (224, "vit", 1, (0.5, 0.5, 0.5)),
    "dinov2_small": (224, "vit", 1, data.IMAGENET_MEAN),
    "dinov2_small_reg": (224, "vit", 5, data.IMAGENET_MEAN),
    "dinov2_base": (224, "vit", 1, data.IMAGENET_MEAN),
    "dinov2_base_reg": (224, "vit", 5, data.IMAGENET_MEAN),
}
FORWARD = {"googlenet", "deit_tiny", "deit_tiny_distilled", "resnet50", "resnet18"}


def test_every_model_is_listed():
    assert set(EXPECTED) == set(models.MODELS)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_load_offline(name, offline, no_network, photo, capsys):
    loaded = models.load_model(name)
    assert "WARNING" in capsys.readouterr().out
    size, family, prefix, mean = EXPECTED[name]
    assert loaded.name == name and not loaded.pretrained and not loaded.model.training
    assert (loaded.input_size, loaded.family, loaded.num_prefix_tokens) == (size, family, prefix)
    assert loaded.mean == pytest.approx(mean)
    x = loaded.preprocess(photo)
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    # identical to the official transform of the weights
    torch.testing.assert_close(x, _official_transform(name, loaded)(Image.fromarray(photo)), atol=1e-6, rtol=0)
    torch.testing.assert_close(loaded.normalize(loaded.pixels(photo)), x)
    assert loaded.target_layer is not None
    if name in FORWARD:
        with torch.no_grad():
            out = loaded.model(models.to_batch(loaded, [photo, photo]))
        assert out.shape == (2, 1000) and torch.isfinite(out).all()
    if family == "vit":
        assert loaded.grid_size == size // loaded.patch_size  # 14 (16 px patches), 16 (DINOv2's 14 px at 224)
        assert models.disable_fused_attention(loaded.model) == len(loaded.model.blocks)


@pytest.mark.parametrize("name", ["vgg16", "resnet18"])
def test_cnn_target_layer_is_rectified(name, offline, photo):
    """Grad-CAM's A must be the rectified map: VGG-16's target was conv5_3 itself (features[28]), whose negative
    pre-activations entered the map. Random weights suffice: about half of the pre-activations are negative."""
    from helpers import cam

    loaded = models.load_model(name)
    x = models.to_batch(loaded, [photo])[..., :128, :128]  # a smaller input: the same layers, less compute
    with cam.capture(loaded.model, loaded.target_layer) as rec:
        loaded.model(x)[0, 0].backward()
    assert rec.activations.min() >= 0 and (rec.activations == 0).any()
    if name == "vgg16":
        conv = loaded.model.features[28]
        with cam.capture(loaded.model, conv) as pre:
            loaded.model(x)
        assert pre.activations.min() < 0  # what the old target layer recorded
        torch.testing.assert_close(rec.activations, pre.activations.clamp(min=0))


def test_random_weights_are_reproducible(offline):
    a = models.load_model("deit_tiny").model.state_dict()
    torch.manual_seed(123)  # the global RNG does not matter
    b = models.load_model("deit_tiny").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_name():
    with pytest.raises(ValueError, match="resnet50"):
        models.load_model("resnet101")


def test_torchvision_download_failure_without_flag(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def fail(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.delenv("XAI_OFFLINE", raising=False)
    monkeypatch.setattr(WeightsEnum, "get_state_dict", fail)
    with pytest.raises(RuntimeError, match="XAI_OFFLINE=1") as info:
        models.load_model("googlenet")
    assert "internet" in str(info.value)


def test_timm_download_failure_without_flag(monkeypatch):
    import timm

    real = timm.create_model

    def fake(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(name, pretrained=False, **kwargs)

    monkeypatch.delenv("XAI_OFFLINE", raising=False)
    monkeypatch.setattr(timm, "create_model", fake)
    with pytest.raises(RuntimeError, match="XAI_OFFLINE=1"):
        models.load_model("deit_tiny")


def test_pretrained_path_matches_offline_architecture(monkeypatch, offline):
    """The random-weight model has the pretrained architecture (same parameters and shapes, same input transform)."""
    import torchvision.models as tvm
    from torchvision.models._api import WeightsEnum

    offline_model = models.load_model("googlenet").model
    file_state = tvm.googlenet(weights=None, aux_logits=True, init_weights=False).state_dict()  # as in the .pth
    monkeypatch.delenv("XAI_OFFLINE")
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: file_state)
    loaded = models.load_model("googlenet")
    assert loaded.pretrained
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(loaded.model) == shapes(offline_model)
    assert loaded.model.transform_input and offline_model.transform_input


def test_pretrained_false_is_silent(capsys):
    loaded = models.load_model("deit_tiny", pretrained=False)
    assert not loaded.pretrained and "WARNING" not in capsys.readouterr().out


def test_predict_topk_and_to_batch(offline, photo):
    loaded = models.load_model("deit_tiny")
    top = models.predict_topk(loaded, photo, k=3)
    assert len(top) == 3 and all(isinstance(n, str) for n, _ in top)
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    x = loaded.preprocess(photo)
    assert models.predict_topk(loaded, x, k=3) == top
    assert models.to_batch(loaded, x).shape == (1, 3, 224, 224)
    assert models.to_batch(loaded, np.stack([photo, photo])).shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match="one image"):
        models.predict_topk(loaded, torch.stack([x, x]))
    with pytest.raises(ValueError, match="empty"):
        models.to_batch(loaded, [])


def test_disable_fused_attention_changes_nothing_numerically(offline):
    loaded = models.load_model("deit_tiny")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        fused = loaded.model(x)
        assert models.disable_fused_attention(loaded.model) == 12
        explicit = loaded.model(x)
    torch.testing.assert_close(fused, explicit, atol=1e-4, rtol=1e-4)
    assert all(not blk.attn.fused_attn for blk in loaded.model.blocks)


def test_reexports_load_checkpoint():
    from helpers.checkpoints import load_checkpoint

    assert models.load_checkpoint is load_checkpoint
