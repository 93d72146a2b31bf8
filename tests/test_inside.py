"""helpers.inside: the hand-run ViT equals the model, the logit lens, DLA sums to the logit, patching."""

from __future__ import annotations

import pytest
import torch

from helpers import inside
from helpers.checkpoints import ARCHITECTURES, load_checkpoint
from helpers.cifar_models import CourseCNN, CourseViT, ViTConfig


@pytest.fixture(scope="module")
def vit() -> CourseViT:
    torch.manual_seed(0)
    model = CourseViT(ViTConfig(dim=32, depth=3, heads=4, tokenizer="linear")).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias parameters, so DLA's frozen-scale algebra is tested
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.3)
            elif isinstance(mod, torch.nn.Linear) and mod.bias is not None:
                mod.bias.normal_(0, 0.1)
        model.head.weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_hand_run_equals_the_model(vit: CourseViT, images: torch.Tensor) -> None:
    logits, cache = inside.run_with_cache(vit, images)
    torch.testing.assert_close(logits, vit(images), atol=1e-5, rtol=1e-5)
    assert set(cache) == set(inside.site_names(vit))
    assert cache["resid_pre.0"].shape == (5, 65, 32) and cache["head.1.2"].shape == (5, 65, 8)
    assert cache["pattern.0"].shape == (5, 4, 65, 65)
    torch.testing.assert_close(cache["pattern.0"].sum(-1), torch.ones(5, 4, 65))
    # the stream is the sum of its parts
    torch.testing.assert_close(
        cache["resid_pre.1"], cache["resid_pre.0"] + cache["attn_out.0"] + cache["mlp_out.0"], atol=1e-6, rtol=0
    )


def test_the_shipped_vit_runs_by_hand() -> None:
    model = load_checkpoint("vit_cifar10")
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    logits, _ = inside.run_with_cache(model, x)
    torch.testing.assert_close(logits, model(x), atol=1e-4, rtol=1e-4)
    assert len(inside.site_names(model)) == 4 * (1 + 4 + 3) + 1


def test_logit_lens_ends_at_the_model_logits(vit: CourseViT, images: torch.Tensor) -> None:
    lens = inside.logit_lens(vit, images)
    assert lens.shape == (4, 5, 10)
    torch.testing.assert_close(lens[-1], vit(images), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(lens[0], lens[-1])


def test_dla_sums_to_the_logit(vit: CourseViT, images: torch.Tensor) -> None:
    targets = torch.tensor([0, 3, 9, 3, 1])
    parts = inside.direct_logit_attribution(vit, images, targets)
    assert list(parts)[:2] == ["embed", "block0.head0"] and list(parts)[-1] == "norm_bias"
    assert len(parts) == 1 + 3 * (4 + 2) + 1
    total = torch.stack(list(parts.values())).sum(0) + vit.head.bias[targets]
    expected = vit(images).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(total, expected, atol=1e-4, rtol=0)
    # an int target is one class for every image
    one = inside.direct_logit_attribution(vit, images, 3)
    torch.testing.assert_close(torch.stack(list(one.values())).sum(0) + vit.head.bias[3], vit(images)[:, 3],
                               atol=1e-4, rtol=0)


def test_dla_wrong_if_the_norm_scale_is_not_frozen(vit: CourseViT, images: torch.Tensor) -> None:
    """A decomposition that normalises each part by its own scale does not sum to the logit (the check can fail)."""
    _, cache = inside.run_with_cache(vit, images)
    part = cache["mlp_out.2"][:, 0]
    own = vit.head(vit.norm(part))[:, 3]
    frozen = inside.direct_logit_attribution(vit, images, 3)["block2.mlp"]
    assert not torch.allclose(own, frozen, atol=1e-3)


def test_patching_every_site_with_the_clean_run_restores_the_clean_logits(vit: CourseViT, images: torch.Tensor) -> None:
    clean, corrupted = images, images.flip(0)
    clean_logits = vit(clean)
    every_site = [s for s in inside.site_names(vit) if not s.startswith("pattern.")]
    torch.testing.assert_close(inside.patch_activations(vit, clean, corrupted, every_site), clean_logits,
                               atol=1e-5, rtol=1e-5)
    for site in ("resid_pre.0", "resid_pre.3"):  # the whole stream at one depth carries everything after it
        torch.testing.assert_close(inside.patch_activations(vit, clean, corrupted, site), clean_logits,
                                   atol=1e-5, rtol=1e-5)
    # the embedding plus every head and MLP output: everything the stream is made of
    parts = ["resid_pre.0"] + [s for s in every_site if s.startswith(("head.", "mlp_out."))]
    torch.testing.assert_close(inside.patch_activations(vit, clean, corrupted, parts), clean_logits,
                               atol=1e-5, rtol=1e-5)
    # one block's attention output alone is not enough
    assert not torch.allclose(inside.patch_activations(vit, clean, corrupted, "attn_out.2"), clean_logits, atol=1e-3)
    # one token of the stream is a partial patch: neither clean nor corrupted
    one = inside.patch_activations(vit, clean, corrupted, "resid_pre.1", tokens=[0])
    assert not torch.allclose(one, clean_logits) and not torch.allclose(one, vit(corrupted))


def test_patching_sweep_and_fraction_restored(vit: CourseViT, images: torch.Tensor) -> None:
    clean, corrupted = images[:2], images[2:4]
    grid = inside.patching_sweep(vit, clean, corrupted, answer=1, foil=2, kind="resid_pre")
    assert grid.shape == (4, 65)
    # patching CLS after the last block restores everything: the head reads only that token
    assert grid[-1, 0].item() == pytest.approx(1.0, abs=1e-4)
    assert grid[-1, 1:].abs().max().item() < 1e-4
    heads = inside.patching_sweep(vit, clean, corrupted, answer=1, foil=2, kind="head")
    assert heads.shape == (3, 4)
    r = inside.fraction_restored(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0]), torch.tensor([1.0, 2.0]))
    assert r[0].item() == 0.0 and torch.isnan(r[1])


def test_mean_ablation(vit: CourseViT, images: torch.Tensor) -> None:
    means = inside.head_means(vit, images, batch_size=2)
    assert means["head.0.0"].shape == (65, 8)
    torch.testing.assert_close(inside.ablate_heads(vit, images, [], means), vit(images), atol=1e-5, rtol=1e-5)
    ablated = inside.ablate_heads(vit, images, [(1, 2)], means)
    assert not torch.allclose(ablated, vit(images))
    # mean-ablating a head on the images its mean was taken over, one image: the same as not ablating
    one = inside.head_means(vit, images[:1])
    torch.testing.assert_close(inside.ablate_heads(vit, images[:1], [(0, 1)], one), vit(images[:1]),
                               atol=1e-5, rtol=1e-5)


def test_bad_input(vit: CourseViT, images: torch.Tensor) -> None:
    with pytest.raises(KeyError, match="unknown site 'resid_pre.9'.*out of range"):
        inside.patch_activations(vit, images, images, "resid_pre.9")
    with pytest.raises(KeyError, match="sites are named like"):
        inside.patch_activations(vit, images, images, "block2")
    with pytest.raises(ValueError, match="read-only"):
        inside.patch_activations(vit, images, images, "pattern.1")
    with pytest.raises(ValueError, match="one shape"):
        inside.patch_activations(vit, images, images[:2], "resid_pre.1")
    with pytest.raises(ValueError, match="patch for 'mlp_out.0' has shape"):
        inside.run_with_cache(vit, images, {"mlp_out.0": inside.Patch(torch.zeros(2, 3))})
    with pytest.raises(TypeError, match="course ViT"):
        inside.logit_lens(CourseCNN(ARCHITECTURES["cnn_cifar10"]), images)
    with pytest.raises(ValueError, match="target must be"):
        inside.direct_logit_attribution(vit, images, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="unknown kind"):
        inside.patching_sweep(vit, images, images, 1, 2, kind="neurons")
