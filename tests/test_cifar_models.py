"""The course's CIFAR-10 models (helpers.cifar_models) and their checkpoints (helpers.checkpoints)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import checkpoints
from helpers.attention import record_attention
from helpers.checkpoints import CheckpointError, load_checkpoint, save_checkpoint, sha256_file
from helpers.cifar_models import (
    CNNConfig,
    CourseCNN,
    CourseViT,
    ViTConfig,
    build_model,
    config_dict,
)

TINY_VIT = dict(dim=32, depth=2, heads=4, mlp_ratio=2.0, stem_channels=(8, 16))
TINY_CNN = CNNConfig(widths=(8, 16, 32, 64))


def tiny_vit(tokenizer: str = "conv", seed: int = 0) -> CourseViT:
    torch.manual_seed(seed)
    return CourseViT(ViTConfig(tokenizer=tokenizer, **TINY_VIT)).eval()


def images(b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def manual_forward(model: CourseViT, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """An independent forward pass from the model's parameters, keeping every attention map (with its grad)."""
    t = model.tokens(x)
    attns = []
    for blk in model.blocks:
        a = blk.attn
        h = blk.norm1(t)
        b, n, d = h.shape
        q, k, v = F.linear(h, a.qkv.weight, a.qkv.bias).split(d, dim=-1)
        q, k, v = (z.reshape(b, n, a.heads, d // a.heads).transpose(1, 2) for z in (q, k, v))
        attn = torch.softmax(q @ k.transpose(-1, -2) / (d // a.heads) ** 0.5, dim=-1)
        attn.retain_grad()
        attns.append(attn)
        t = t + a.proj((attn @ v).transpose(1, 2).reshape(b, n, d))
        t = t + blk.mlp(blk.norm2(t))
    return model.head(model.norm(t)[:, 0]), attns


# ---------------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("tokenizer", ["linear", "conv", "resnet"])
def test_vit_shapes(tokenizer):
    model = tiny_vit(tokenizer)
    x = images(3)
    assert model(x).shape == (3, 10)
    assert model.tokens(x).shape == (3, 65, 32)
    assert model.forward_features(x).shape == (3, 65, 32)
    assert model.patch_embed(x).shape == (3, 64, 32)
    assert model.grid_size == 8 and model.num_prefix_tokens == 1


def test_resnet_tokenizer_receptive_field_and_bad_configs():
    """Token (i, j) of the hybrid's ResNet stem depends on exactly the pixel rows 4i-8 .. 4i+11 (columns alike)."""
    model = tiny_vit("resnet")
    x = images(1)
    i = j = 3
    base = model.patch_embed(x)[0, i * 8 + j]
    for row, inside in ((4 * i - 9, False), (4 * i - 8, True), (4 * i + 11, True), (4 * i + 12, False)):
        y = x.clone()
        y[0, :, row, 4 * j] += 100.0  # large enough to win every max-pool it reaches
        changed = not torch.equal(model.patch_embed(y)[0, i * 8 + j], base)
        assert changed == inside, (row, inside)
    with pytest.raises(ValueError, match="exactly 4"):
        CourseViT(ViTConfig(tokenizer="resnet", patch_size=8, **TINY_VIT))
    with pytest.raises(ValueError, match="two stem widths"):
        CourseViT(ViTConfig(tokenizer="resnet", **{**TINY_VIT, "stem_channels": (8, 16, 16)}))
    with pytest.raises(ValueError, match="unknown tokenizer 'vgg'"):
        CourseViT(ViTConfig(tokenizer="vgg", **TINY_VIT))


def test_shipped_architectures_build():
    vit = build_model(checkpoints.ARCHITECTURES["vit_cifar10"])
    cnn = build_model(checkpoints.ARCHITECTURES["cnn_cifar10"])
    assert isinstance(vit, CourseViT) and vit.config.dim == 128 and vit.config.depth == 4 and vit.config.heads == 4
    assert isinstance(cnn, CourseCNN)
    x = images(2)
    assert vit.eval()(x).shape == (2, 10)
    assert cnn.eval()(x).shape == (2, 10)
    assert cnn.features(x).shape == (2, 256, 8, 8)


def test_cnn_features_pool_fc():
    torch.manual_seed(0)
    cnn = CourseCNN(TINY_CNN).eval()
    x = images(2)
    feats = cnn.features(x)
    assert feats.shape == (2, 64, 8, 8)
    # GAP + fc: the logits are the spatial mean of the class activation maps (what CAM relies on)
    cam = torch.einsum("ck,bkhw->bchw", cnn.fc.weight, feats)
    torch.testing.assert_close(cam.mean((2, 3)) + cnn.fc.bias, cnn(x), atol=1e-5, rtol=1e-5)


def test_linear_tokenizer_is_patchify_and_project():
    model = tiny_vit("linear")
    x = images(2)
    p = model.config.patch_size
    patches = F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # (B, 64, 3*p*p), row-major patch order
    expected = patches @ model.patch_embed.proj.weight.flatten(1).T + model.patch_embed.proj.bias
    torch.testing.assert_close(model.patch_embed(x), expected, atol=1e-5, rtol=1e-5)


def test_attention_matches_nn_multiheadattention():
    model = tiny_vit("linear")
    attn = model.blocks[0].attn
    mha = nn.MultiheadAttention(32, 4, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 65, 32)
    expected, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)
    with record_attention(attn) as rec:
        attn(x)
    torch.testing.assert_close(rec.attentions[0], weights, atol=1e-6, rtol=1e-5)


def test_bad_inputs_rejected():
    model = tiny_vit()
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(TypeError, match="floating"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="tokenizer"):
        CourseViT(ViTConfig(tokenizer="nope", **TINY_VIT))
    with pytest.raises(ValueError, match="divisible"):
        CourseViT(ViTConfig(dim=30, depth=1, heads=4))
    with pytest.raises(ValueError, match="kind"):
        build_model({"kind": "mlp"})


# ---------------------------------------------------------------------------------------------------- attention
# (the recorder's contract -- errors, detaching, hooks released after an exception -- is tested for the course ViT
# and a timm ViT together in tests/test_attention.py)


@pytest.mark.parametrize("tokenizer", ["linear", "conv"])
def test_record_attention_shapes_and_rows(tokenizer):
    model = tiny_vit(tokenizer)
    x = images(2)
    with record_attention(model, qkv=True) as rec:
        model(x)
    assert len(rec.attentions) == model.config.depth
    for i in range(model.config.depth):
        a = rec.attentions[i]
        assert a.shape == (2, 4, 65, 65)
        assert not a.requires_grad
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 4, 65))
        assert (a >= 0).all()
        for t in (rec.queries[i], rec.keys[i], rec.values[i]):
            assert t.shape == (2, 4, 65, 8)
        # the recorded probabilities are softmax(q k^T / sqrt(d)) of the recorded q and k
        expected = torch.softmax(rec.queries[i] @ rec.keys[i].transpose(-1, -2) / 8**0.5, dim=-1)
        torch.testing.assert_close(a, expected, atol=1e-6, rtol=1e-5)


def test_recorded_forward_equals_fused_forward():
    model = tiny_vit("conv")
    x = images(4)
    fused = model(x)
    with record_attention(model) as rec:
        recorded = model(x)
    torch.testing.assert_close(recorded, fused, atol=1e-5, rtol=1e-5)
    expected, attns = manual_forward(model, x)
    torch.testing.assert_close(fused, expected, atol=1e-5, rtol=1e-5)
    for got, want in zip(rec.attentions, attns, strict=True):
        torch.testing.assert_close(got, want.detach(), atol=1e-6, rtol=1e-5)


def test_record_attention_gradients_aligned_with_layers():
    model = tiny_vit("conv")
    x = images(2)
    with record_attention(model, gradients=True) as rec:
        logits = model(x)
        logits[:, 3].sum().backward()
    assert all(a.requires_grad for a in rec.attentions)  # gradients=True keeps the graph
    ref_logits, attns = manual_forward(model, x)
    ref_logits[:, 3].sum().backward()
    grads = rec.gradients
    assert len(grads) == model.config.depth
    for i, (g, a) in enumerate(zip(grads, attns, strict=True)):
        assert g.shape == (2, 4, 65, 65)
        torch.testing.assert_close(g, a.grad, atol=1e-6, rtol=1e-4, msg=f"layer {i}")
    # the layers differ, so a misaligned list could not pass the check above
    assert not torch.allclose(grads[0], grads[-1])


# ---------------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture
def online(monkeypatch):
    """Checkpoint errors are only raised when not offline (offline, shipped names fall back to random weights)."""
    monkeypatch.delenv("XAI_OFFLINE", raising=False)


@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_checkpoint_round_trip(tmp_path, online, kind):
    model = tiny_vit() if kind == "vit" else CourseCNN(TINY_CNN).eval()
    path = save_checkpoint(model, f"tiny_{kind}", {"val_accuracy": 0.5}, directory=tmp_path)
    assert path.exists()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest[f"tiny_{kind}"]["sha256"] == sha256_file(path)
    loaded = load_checkpoint(f"tiny_{kind}", directory=tmp_path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.meta == {"val_accuracy": 0.5}
    x = images(2)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_checkpoint_half_precision_storage(tmp_path, online):
    """half=True stores fp16 tensors (about half the file) and loads them into the fp32 model, rounded to fp16."""
    model = CourseCNN(TINY_CNN).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so they are rounded too
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    full = save_checkpoint(model, "full", directory=tmp_path)
    half = save_checkpoint(model, "half", directory=tmp_path, half=True)
    stored = torch.load(half, weights_only=True)["state_dict"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint("half", directory=tmp_path)
    for key, value in loaded.state_dict().items():
        expected = model.state_dict()[key]
        if value.is_floating_point():
            assert value.dtype == torch.float32
            torch.testing.assert_close(value, expected.half().float(), atol=0, rtol=0)
        else:
            assert torch.equal(value, expected)
    x = images(2)
    torch.testing.assert_close(loaded(x), model(x), atol=1e-2, rtol=1e-2)
    assert not torch.equal(loaded.fc.weight, model.fc.weight)  # it really is rounded


def test_checkpoint_wrong_hash_rejected(tmp_path, online):
    path = save_checkpoint(tiny_vit(), "tiny", directory=tmp_path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint("tiny", directory=tmp_path)


def test_checkpoint_wrong_architecture_rejected(tmp_path, online):
    save_checkpoint(tiny_vit(), "tiny", directory=tmp_path)
    other = config_dict(CourseViT(ViTConfig(**{**TINY_VIT, "dim": 64})))
    with pytest.raises(CheckpointError, match="architecture"):
        load_checkpoint("tiny", directory=tmp_path, expected_config=other)
    # a file whose stored config and weights disagree (with a valid hash) is rejected too
    state = {k: v.clone() for k, v in tiny_vit().state_dict().items()}
    path = tmp_path / "mixed.pt"
    torch.save({"config": other, "state_dict": state, "meta": {}}, path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["mixed"] = {"file": path.name, "sha256": sha256_file(path)}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not fit the architecture"):
        load_checkpoint("mixed", directory=tmp_path)


def test_checkpoint_not_a_course_checkpoint(tmp_path, online):
    path = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    (tmp_path / "manifest.json").write_text(json.dumps({"junk": {"file": "junk.pt", "sha256": sha256_file(path)}}))
    with pytest.raises(CheckpointError, match="not a course checkpoint"):
        load_checkpoint("junk", directory=tmp_path)


def test_checkpoint_missing_file_and_unknown_name(tmp_path, online):
    path = save_checkpoint(tiny_vit(), "tiny", directory=tmp_path)
    with pytest.raises(CheckpointError, match="unknown checkpoint 'nope'.*tiny"):
        load_checkpoint("nope", directory=tmp_path)
    path.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint("tiny", directory=tmp_path)
    with pytest.raises(CheckpointError, match="unknown checkpoint"):
        load_checkpoint("vit_cifar10", directory=tmp_path / "empty")


def test_offline_shipped_name_falls_back_to_random_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XAI_OFFLINE", "1")
    model = load_checkpoint("vit_cifar10", directory=tmp_path)
    assert isinstance(model, CourseViT) and model.config.dim == 128
    assert "RANDOMLY INITIALISED" in capsys.readouterr().out


def test_shipped_name_with_other_architecture_rejected(tmp_path, online):
    """A file saved under a shipped name must hold that shipped architecture (helpers.checkpoints.ARCHITECTURES)."""
    save_checkpoint(tiny_vit(), "vit_cifar10", directory=tmp_path)
    with pytest.raises(CheckpointError, match="saved for another architecture"):
        load_checkpoint("vit_cifar10", directory=tmp_path)


def test_shipped_checkpoints_are_small_and_listed():
    """Each shipped file is at most 10 MB (the course's limit) and the card's "file size" row says how big it is."""
    manifest = json.loads((checkpoints.CHECKPOINT_DIR / "manifest.json").read_text())
    card = (checkpoints.CHECKPOINT_DIR / "README.md").read_text()
    sizes = next(line for line in card.splitlines() if line.startswith("| file size |"))
    for name in ("vit_cifar10", "cnn_cifar10"):
        size = (checkpoints.CHECKPOINT_DIR / manifest[name]["file"]).stat().st_size
        assert size <= 10_000_000, (name, size)
        assert f"{size / 1e6:.1f} MB" in sizes, (name, size, sizes)


def test_model_card_quotes_the_manifest():
    """data/checkpoints/README.md states what manifest.json records for each shipped model (validation accuracy,
    parameters, epochs, minutes): a card left stale after retraining fails here."""
    manifest = json.loads((checkpoints.CHECKPOINT_DIR / "manifest.json").read_text())
    card = (checkpoints.CHECKPOINT_DIR / "README.md").read_text()
    rows = {}
    for line in card.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3:
            rows.setdefault(cells[0], cells[1:])
    assert rows[""] == ["`vit_cifar10`", "`cnn_cifar10`"], "the card's model table lost its header"
    for column, name in enumerate(("vit_cifar10", "cnn_cifar10")):
        entry = manifest[name]
        accuracy = rows["**validation accuracy**"][column]
        assert accuracy.startswith(f"**{100 * entry['val_accuracy']:.1f} %**"), (name, accuracy)
        assert rows["parameters"][column] == f"{entry['parameters']:,}", name
        trained = rows["trained for"][column]
        assert trained.startswith(f"{round(entry['epochs'], 1):g} epochs, {entry['train_minutes']:.1f} min"), trained


def test_load_checkpoint_builds_the_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The expected config comes from the architecture's config, not from a second model built to read it."""
    built = []
    original = checkpoints.build_model
    monkeypatch.setattr(checkpoints, "build_model", lambda config: built.append(config) or original(config))
    model = load_checkpoint("cnn_cifar10")
    assert len(built) == 1 and isinstance(model, CourseCNN)
    assert config_dict(checkpoints.ARCHITECTURES["cnn_cifar10"]) == config_dict(model)
