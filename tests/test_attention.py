"""Tests for helpers.attention: rollout variants against hand computations and plain formulas, the timm recorder,
q/k similarity, mean attention distance, PCA (against scikit-learn) and Grad-CAM for ViT (against autograd)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers import attention as att
from helpers.cifar_models import CourseViT, ViTConfig
from tests.conftest import assert_no_hooks

timm = pytest.importorskip("timm")


def random_attention(b: int, heads: int, t: int, layers: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, heads, t, t, generator=g).mul(2).softmax(-1) for _ in range(layers)]


def plain_rollout(attentions: list[torch.Tensor], npt: int = 1) -> torch.Tensor:
    """The textbook formula, one sample at a time in NumPy float64: prod_l rownorm((mean_h A_l + I) / 2)."""
    out = []
    for b in range(attentions[0].shape[0]):
        t = attentions[0].shape[-1]
        joint = np.eye(t)
        for a in attentions:
            m = a[b].double().numpy().mean(axis=0)
            m = (m + np.eye(t)) / 2
            m = m / m.sum(axis=1, keepdims=True)
            joint = m @ joint
        out.append(joint[0, npt:])
    return torch.from_numpy(np.stack(out))


# ------------------------------------------------------------------------------------------------ rollout


def test_hand_computed_three_tokens():
    # tokens: CLS, patch 1, patch 2; one head; two blocks.
    a1 = torch.tensor([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]])
    a2 = torch.tensor([[0.2, 0.4, 0.4], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    # (A1 + I)/2 = [[.75,.125,.125],[.1,.8,.1],[.05,.15,.8]];  (A2 + I)/2 row 0 = [.6, .2, .2]
    # row 0 of the product = .6*[.75,.125,.125] + .2*[.1,.8,.1] + .2*[.05,.15,.8] = [.48, .265, .255]
    r = att.rollout([a1[None, None], a2[None, None]])
    torch.testing.assert_close(r, torch.tensor([[0.265, 0.255]]))
    # one block only: the CLS row of (A1 + I)/2 over the patches
    torch.testing.assert_close(att.rollout([a1[None, None]]), torch.tensor([[0.125, 0.125]]))


def test_hand_computed_discard_keeps_cls():
    # row 0 = [0.1, 0.5, 0.4]: the CLS column (0.1) is the smallest entry but must never be dropped;
    # discard_ratio=0.5 of N=2 patches drops 1 patch entry per row: 0.4 in row 0.
    a = torch.tensor([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.2, 0.2, 0.6]])
    # row 0 after discard: [0.1, 0.5, 0] + [1, 0, 0] = [1.1, 0.5, 0] (the /2 cancels), / 1.6
    r = att.rollout([a[None, None]], discard_ratio=0.5)
    torch.testing.assert_close(r, torch.tensor([[0.5 / 1.6, 0.0]]))
    fused = att.discard_lowest(a[None], 0.5, num_prefix_tokens=1)[0]
    torch.testing.assert_close(fused[:, 0], a[:, 0])  # CLS column untouched
    assert (fused[:, 1:] == 0).sum(dim=1).tolist() == [1, 1, 1]  # exactly one patch entry per row


def test_rows_stay_stochastic():
    attn = random_attention(2, 3, 6, layers=4)
    for fusion in att.HEAD_FUSIONS:
        for ratio in (0.0, 0.5, 0.9):
            maps = [att.fuse_heads(a, fusion) for a in attn]
            # the full joint matrix: rebuild it with the same steps to check every row, not only CLS
            joint = torch.eye(6).expand(2, 6, 6)
            for m in maps:
                m = (att.discard_lowest(m, ratio, 1) + torch.eye(6)) / 2
                m = m / m.sum(-1, keepdim=True)
                torch.testing.assert_close(m.sum(-1), torch.ones(2, 6))
                joint = m @ joint
            torch.testing.assert_close(joint.sum(-1), torch.ones(2, 6))
            r = att.rollout(attn, fusion, ratio)
            torch.testing.assert_close(r, joint[:, 0, 1:])
            assert (r >= 0).all() and (r.sum(-1) <= 1 + 1e-6).all()


def test_mean_fusion_equals_plain_formula():
    attn = random_attention(3, 4, 10, layers=5, seed=1)
    torch.testing.assert_close(att.rollout(attn, "mean", 0.0), plain_rollout(attn).float(), atol=1e-6, rtol=1e-5)
    attn2 = random_attention(2, 2, 11, layers=3, seed=2)
    torch.testing.assert_close(att.rollout(attn2, num_prefix_tokens=2), plain_rollout(attn2, 2).float(),
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("fusion", att.HEAD_FUSIONS)
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.8])
def test_batch_elements_independent(fusion, ratio):
    attn = random_attention(4, 3, 9, layers=3, seed=3)
    batch = att.rollout(attn, fusion, ratio)
    singles = torch.cat([att.rollout([a[i : i + 1] for a in attn], fusion, ratio) for i in range(4)])
    torch.testing.assert_close(batch, singles)
    grads = [torch.randn_like(a) for a in attn]
    batch = att.grad_rollout(attn, grads, ratio)
    singles = torch.cat([att.grad_rollout([a[i : i + 1] for a in attn], [g[i : i + 1] for g in grads], ratio)
                         for i in range(4)])
    torch.testing.assert_close(batch, singles)


def test_head_fusion_min_max():
    a = torch.tensor([[[[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]],
                       [[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]]])
    # max over heads, row 0: [0.6, 0.7, 0.2]; + I -> [1.6, 0.7, 0.2] / 2.5
    torch.testing.assert_close(att.rollout([a], "max"), torch.tensor([[0.7 / 2.5, 0.2 / 2.5]]))
    # min over heads, row 0: [0.2, 0.2, 0.1]; + I -> [1.2, 0.2, 0.1] / 1.5
    torch.testing.assert_close(att.rollout([a], "min"), torch.tensor([[0.2 / 1.5, 0.1 / 1.5]]))


def test_discard_never_drops_prefix_tokens():
    b, t, npt = 2, 12, 2
    fused = torch.rand(b, t, t)
    fused[..., :npt] = 1e-6  # prefix columns are the smallest entries of every row
    for ratio in (0.1, 0.5, 0.95):
        out = att.discard_lowest(fused, ratio, npt)
        torch.testing.assert_close(out[..., :npt], fused[..., :npt])
        k = math.floor(ratio * (t - npt))
        assert ((out[..., npt:] == 0).sum(-1) == k).all()
        kept = out[..., npt:]
        # every kept patch entry is >= every dropped one, per row
        dropped_max = torch.where(kept == 0, fused[..., npt:], torch.zeros(())).amax(-1)
        kept_min = torch.where(kept != 0, kept, torch.full((), 2.0)).amin(-1)
        assert (kept_min >= dropped_max).all()


def test_two_prefix_tokens():
    attn = random_attention(2, 3, 2 + 9, layers=3, seed=4)
    r = att.rollout(attn, num_prefix_tokens=2)
    assert r.shape == (2, 9)
    torch.testing.assert_close(r, plain_rollout(attn, 2).float(), atol=1e-6, rtol=1e-5)
    grads = [torch.randn_like(a) for a in attn]
    assert att.grad_rollout(attn, grads, num_prefix_tokens=2).shape == (2, 9)
    assert att.chefer_relevance(attn, grads, num_prefix_tokens=2).shape == (2, 9)


# ------------------------------------------------------------------------------------- class-specific maps


def test_gradient_layers_aligned():
    # block 0 has a gradient of ones, block 1 a gradient of zeros. Correct pairing: block 1 contributes the
    # identity and the result is the one-block rollout of A0. Backward-order pairing would give that of A1.
    a0, a1 = random_attention(1, 2, 5, layers=2, seed=5)
    grads = [torch.ones_like(a0), torch.zeros_like(a1)]
    expected = att.rollout([a0])
    torch.testing.assert_close(att.grad_rollout([a0, a1], grads), expected)
    assert not torch.allclose(att.grad_rollout([a0, a1], grads[::-1]), expected)
    # Chefer: R = I + mean(A0), so the CLS row over patches is mean(A0)[0, 1:]
    torch.testing.assert_close(att.chefer_relevance([a0, a1], grads), a0.mean(1)[:, 0, 1:])


def test_grad_rollout_clamps_before_head_mean():
    a = torch.full((1, 2, 3, 3), 1 / 3)
    g = torch.zeros(1, 2, 3, 3)
    g[0, 0, 0, 1], g[0, 1, 0, 1] = 3.0, -3.0  # head 0: +1 on (CLS, patch 1), head 1: -1
    # clamp then mean: 0.5 at (0, 1); (0.5 + I)/2 row 0 = [0.5, 0.25, 0], / 0.75
    torch.testing.assert_close(att.grad_rollout([a], [g]), torch.tensor([[1 / 3, 0.0]]))


def test_chefer_against_explicit_loop():
    attn = random_attention(2, 3, 7, layers=4, seed=6)
    grads = [torch.randn_like(a) for a in attn]
    for b in range(2):
        r = np.eye(7)
        for a, g in zip(attn, grads, strict=True):
            abar = np.clip(a[b].double().numpy() * g[b].double().numpy(), 0, None).mean(0)
            r = r + abar @ r
        torch.testing.assert_close(att.chefer_relevance(attn, grads)[b].double(), torch.from_numpy(r[0, 1:]),
                                   atol=1e-6, rtol=1e-5)


def test_course_vit_gradients_match_autograd():
    torch.manual_seed(0)
    vit = CourseViT(ViTConfig(image_size=16, patch_size=4, dim=32, depth=3, heads=2, tokenizer="linear")).eval()
    x = torch.randn(2, 3, 16, 16)
    with att.record(vit, gradients=True) as rec:
        vit(x)[:, 3].sum().backward()
    grads = rec.gradients
    # independent: d logit / d A_l by autograd on the recorded (graph-carrying) maps
    with att.record(vit, gradients=True) as rec2:
        score = vit(x)[:, 3].sum()
        auto = torch.autograd.grad(score, rec2.attentions)
    for g, a in zip(grads, auto, strict=True):
        torch.testing.assert_close(g, a)
    m = att.explain_vit(vit, x, "grad_rollout", target=3)
    expected = att.grad_rollout([a.detach() for a in rec2.attentions], list(auto))
    torch.testing.assert_close(m, expected.reshape(2, 4, 4))


# --------------------------------------------------------------------------------------------------- timm


def _deit(distilled: bool = False):
    name = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return timm.create_model(name, pretrained=False, img_size=64).eval()


def _attn_modules(model):
    return [m for m in model.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")]


@pytest.mark.parametrize("distilled", [False, True])
def test_timm_recorder_not_empty(distilled):
    model = _deit(distilled)
    mods = _attn_modules(model)
    for m in mods:
        m.fused_attn = True  # the fused path that defeats attn_drop hooks
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with att.record(model, qkv=True) as rec:
            out = model(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)  # recording does not change the model
    npt = 2 if distilled else 1
    t = npt + 16
    assert model.num_prefix_tokens == npt
    assert len(rec.attentions) == len(model.blocks) == 12
    for a, q, k in zip(rec.attentions, rec.queries, rec.keys, strict=True):
        assert a.shape == (2, 3, t, t)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 3, t))
        assert a.std() > 0
        torch.testing.assert_close((q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1), a)
    assert rollout_shape(rec.attentions, npt) == (2, 16)
    assert all(m.fused_attn is True for m in mods)


def rollout_shape(attentions, npt):
    return tuple(att.rollout(attentions, num_prefix_tokens=npt).shape)


# --------------------------------------------------------------------------------- one recorder, one contract


def _course_vit():
    torch.manual_seed(0)
    return CourseViT(ViTConfig(image_size=16, patch_size=4, dim=32, depth=3, heads=2, tokenizer="linear")).eval()


def _timm_vit():
    torch.manual_seed(0)  # q/k-norm on, so the recorded q and k must be the normalised ones
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4, depth=3,
                             qk_norm=True).eval()


#: kind -> (model, input size, its attention modules, heads of a module, q/k-norm of a module)
VITS = {
    "course": (_course_vit, 16, lambda m: [b.attn for b in m.blocks], lambda a: a.heads, lambda a: (None, None)),
    "timm": (_timm_vit, 32, lambda m: _attn_modules(m), lambda a: a.num_heads, lambda a: (a.q_norm, a.k_norm)),
}


def _by_hand(module, x, heads, norms):
    """q, k, v (B, heads, T, d) and softmax(q k^T / sqrt d) from a block's input tokens x (B, T, dim)."""
    b, t, dim = x.shape
    q, k, v = module.qkv(x).reshape(b, t, 3, heads, dim // heads).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = (q if norms[0] is None else norms[0](q)), (k if norms[1] is None else norms[1](k))
    return q, k, v, (q @ k.transpose(-2, -1) / math.sqrt(dim // heads)).softmax(-1)


@pytest.mark.parametrize("kind", list(VITS))
def test_recorded_attention_equals_attention_by_hand_from_the_blocks_qkv(kind):
    make, size, modules_of, heads_of, norms_of = VITS[kind]
    model = make()
    mods = modules_of(model)
    inputs: dict[int, torch.Tensor] = {}
    handles = [m.register_forward_pre_hook(lambda _m, args, i=i: inputs.__setitem__(i, args[0]))
               for i, m in enumerate(mods)]
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        plain = model(x)
        with att.record(model, qkv=True) as rec:
            recorded = model(x)
    for h in handles:
        h.remove()
    assert_no_hooks(model)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-4)  # recording does not change the output
    assert len(rec.attentions) == len(rec.queries) == len(mods) == 3
    heads, t = heads_of(mods[0]), 1 + (size // 4) ** 2
    for i, m in enumerate(mods):  # block order: entry i is module i's
        with torch.no_grad():
            q, k, v, a = _by_hand(m, inputs[i], heads_of(m), norms_of(m))
        assert rec.attentions[i].shape == (2, heads, t, t)
        assert rec.queries[i].shape == q.shape == (2, heads, t, m.head_dim)
        torch.testing.assert_close(rec.attentions[i], a, atol=1e-6, rtol=1e-5)
        for got, want in zip((rec.queries[i], rec.keys[i], rec.values[i]), (q, k, v), strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
        assert not rec.attentions[i].requires_grad and not rec.queries[i].requires_grad
    assert not torch.allclose(rec.attentions[0], rec.attentions[-1])
    with att.record(model, detach=False) as kept:  # grad mode on: detach=False keeps the graph
        model(x)
    assert all(a.requires_grad for a in kept.attentions)
    with pytest.raises(RuntimeError, match="gradients=True"):
        kept.gradients  # noqa: B018


@pytest.mark.parametrize("kind", list(VITS))
def test_recorded_gradients_match_autograd_in_block_order(kind):
    make, size, *_ = VITS[kind]
    model = make()
    x = torch.randn(2, 3, size, size)
    with att.record(model, gradients=True) as rec:
        score = model(x)[:, 3].sum()
        with pytest.raises(RuntimeError, match="backward"):
            rec.gradients  # noqa: B018
        auto = torch.autograd.grad(score, rec.attentions, retain_graph=True)
        score.backward()
    assert all(a.requires_grad for a in rec.attentions)  # gradients=True keeps the graph
    assert len(rec.gradients) == 3
    for g, a, attn in zip(rec.gradients, auto, rec.attentions, strict=True):
        assert g.shape == attn.shape and not g.requires_grad
        torch.testing.assert_close(g, a)
    assert not torch.allclose(rec.gradients[0], rec.gradients[-1])  # a misaligned list could not pass
    assert_no_hooks(model)


@pytest.mark.parametrize("kind", list(VITS))
def test_recorder_errors_and_release_after_an_exception(kind):
    make, size, modules_of, *_ = VITS[kind]
    model = make()
    mods = modules_of(model)
    if kind == "timm":
        for i, m in enumerate(mods):
            m.fused_attn = bool(i % 2)  # a mix: each flag must come back to its own value
    before = [getattr(m, "fused_attn", None) for m in mods]
    x = torch.randn(1, 3, size, size)
    with pytest.raises(KeyError):
        with att.record(model, qkv=True, gradients=True):
            model(x)
            if kind == "timm":
                assert all(m.fused_attn is False for m in mods)
                assert all(len(m.attn_drop._forward_hooks) == len(m.qkv._forward_hooks) == 1 for m in mods)
            else:
                assert all(m.recording is not None for m in mods)
            raise KeyError("boom")
    assert_no_hooks(model)
    assert [getattr(m, "fused_attn", None) for m in mods] == before
    assert all(getattr(m, "recording", None) is None for m in mods)
    with att.record(model) as rec:
        with pytest.raises(RuntimeError, match="already being recorded"):
            with att.record(model.blocks[1]):
                pass
    with pytest.raises(RuntimeError, match="recorded nothing"):
        rec.attentions  # noqa: B018
    for what in ("queries", "keys", "values"):
        with pytest.raises(RuntimeError, match="qkv=True"):
            getattr(rec, what)
    with pytest.raises(RuntimeError, match="gradients=True"):
        rec.gradients  # noqa: B018
    with torch.no_grad(), att.record(model.blocks[1]) as one:  # a part of the model, once the whole is released
        model(x)
    assert len(one.attentions) == 1
    with torch.no_grad(), att.record(model, qkv=True) as part:  # only the first block runs (as notebook 01 does)
        mods[0](torch.randn(1, 5, mods[0].qkv.in_features))
    assert part.attentions[0].shape[-1] == part.queries[0].shape[-2] == 5
    assert all(a is None for a in part.attentions[1:] + part.values[1:])
    with pytest.raises(ValueError, match="did not run"):
        att.rollout(part.attentions)
    with pytest.raises(ValueError, match="no attention modules"):
        with att.record(torch.nn.Linear(2, 2)):
            pass
    assert_no_hooks(model)


def test_old_recorder_names_are_the_one_recorder():
    from helpers import attention_recording

    assert att.timm_attention is att.record and att.record_attention is att.record
    assert att.record is attention_recording.record
    assert att.TimmAttentionRecording is att.AttentionRecording is attention_recording.AttentionRecording
    with pytest.raises(TypeError):
        att.record(_course_vit(), True)  # the options are keyword-only (the old names had different orders)


# ------------------------------------------------------------------------------------------ inside heads


def test_qk_similarity_softmax_is_attention_row():
    torch.manual_seed(0)
    vit = CourseViT(ViTConfig(image_size=16, patch_size=4, dim=32, depth=2, heads=2, tokenizer="linear")).eval()
    with torch.no_grad(), att.record(vit, qkv=True) as rec:
        vit(torch.randn(2, 3, 16, 16))
    q, k, a = rec.queries[1], rec.keys[1], rec.attentions[1]
    s = att.qk_similarity(q, k, (1, 2))  # patch 6 = token 7
    assert s.shape == (2, 2, 16)
    cls_logit = (q[:, :, 7] * k[:, :, 0]).sum(-1, keepdim=True) / math.sqrt(q.shape[-1])
    torch.testing.assert_close(torch.cat([cls_logit, s], -1).softmax(-1), a[:, :, 7])
    torch.testing.assert_close(att.qk_similarity(q, k, 6, scaled=False), s * math.sqrt(q.shape[-1]))
    with pytest.raises(IndexError):
        att.qk_similarity(q, k, 16)


def test_mean_attention_distance():
    n, grid = 4, (2, 2)
    eye = torch.eye(1 + n)[None, None]  # every token attends to itself: distance 0
    torch.testing.assert_close(att.mean_attention_distance(eye, grid), torch.zeros(1, 1))
    uniform = torch.full((1, 1, 1 + n, 1 + n), 1 / (1 + n))  # uniform over CLS + 4 patches
    # renormalised over the 4 patches: each query sees distances 0, 1, 1, sqrt(2) -> mean (2 + sqrt 2) / 4
    expected = torch.tensor([[(2 + math.sqrt(2)) / 4 * 16]])
    torch.testing.assert_close(att.mean_attention_distance(uniform, grid, patch_size=16), expected)


def test_pca_rgb_matches_sklearn():
    decomposition = pytest.importorskip("sklearn.decomposition")
    torch.manual_seed(0)
    tokens = torch.randn(2, 1 + 9, 8) @ torch.diag(torch.tensor([5.0, 4, 3, 1, 1, 1, 1, 1]))
    rgb = att.pca_rgb(tokens, 3, num_prefix_tokens=1)
    assert rgb.shape == (2, 3, 3, 3) and rgb.min() >= 0 and rgb.max() <= 1
    scores = decomposition.PCA(3).fit_transform(tokens[:, 1:].reshape(-1, 8).double().numpy())
    for c in range(3):
        ref = scores[:, c]
        ref = (ref - ref.min()) / (ref.max() - ref.min())
        got = rgb[..., c].reshape(-1).double().numpy()
        assert np.allclose(got, ref, atol=1e-5) or np.allclose(got, 1 - ref, atol=1e-5)  # sign is arbitrary
    per_head = tokens[:, None].expand(2, 2, 10, 8)
    assert att.pca_rgb(per_head, (3, 3), num_prefix_tokens=1).shape == (2, 3, 3, 3)


def test_attention_to_grid():
    row = torch.arange(12.0)
    assert att.attention_to_grid(row, (3, 4))[1, 0] == 4
    assert att.attention_to_grid(row[None].expand(2, 12), (3, 4)).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="h\\*w"):
        att.attention_to_grid(torch.zeros(13), 3)


# ------------------------------------------------------------------------------------------------ Grad-CAM


def test_vit_gradcam_matches_manual_gradcam():
    torch.manual_seed(0)
    model = _deit()
    x = torch.randn(1, 3, 64, 64)
    cam = att.vit_gradcam(model, x, 5)
    assert cam.shape == (1, 64, 64)
    store = {}
    handle = model.blocks[-1].norm1.register_forward_hook(lambda m, i, o: store.setdefault("a", o))
    try:
        out = model(x)
    finally:
        handle.remove()
    acts = store["a"]
    (grad,) = torch.autograd.grad(out[0, 5], acts)
    acts, grad = acts[0, 1:].detach(), grad[0, 1:]  # drop CLS: (16, C)
    weights = grad.mean(0)  # average gradient over the 4x4 positions
    manual = torch.relu(acts @ weights).reshape(1, 1, 4, 4)
    manual = (manual - manual.min()) / (manual.max() - manual.min())
    manual = torch.nn.functional.interpolate(manual, size=(64, 64), mode="bilinear", align_corners=False)[0]
    r = np.corrcoef(cam.reshape(-1).numpy(), manual.reshape(-1).detach().numpy())[0, 1]
    assert r > 0.99, r
    reshape = att.vit_reshape_transform(2, (2, 3))
    t = torch.arange(2 * 8 * 4.0).reshape(2, 8, 4)
    torch.testing.assert_close(reshape(t)[1, :, 1, 2], t[1, 2 + 5])


# ------------------------------------------------------------------------------------------------ errors


def test_bad_inputs():
    attn = random_attention(1, 2, 5, layers=2)
    grads = [torch.randn_like(a) for a in attn]
    with pytest.raises(ValueError, match="gradients"):
        att.grad_rollout(attn, grads[:1])
    with pytest.raises(ValueError, match="shape"):
        att.grad_rollout(attn, [g[:, :1] for g in grads])
    with pytest.raises(ValueError, match="shape"):
        att.rollout([attn[0], random_attention(1, 2, 6, 1)[0]])
    with pytest.raises(ValueError, match="B, heads, T, T"):
        att.rollout([attn[0][0]])
    with pytest.raises(ValueError, match="empty"):
        att.rollout([])
    with pytest.raises(TypeError):
        att.rollout(attn[0])
    for ratio in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="discard_ratio"):
            att.rollout(attn, discard_ratio=ratio)
    with pytest.raises(ValueError, match="head_fusion"):
        att.rollout(attn, head_fusion="median")
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        att.rollout(attn, num_prefix_tokens=0)
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        att.chefer_relevance(attn, grads, num_prefix_tokens=5)
    with pytest.raises(ValueError, match="method"):
        att.explain_vit(torch.nn.Linear(2, 2), torch.zeros(1, 2), "lrp")


def test_patch_deletion():
    torch.manual_seed(0)
    vit = CourseViT(ViTConfig(image_size=16, patch_size=4, dim=32, depth=2, heads=2, tokenizer="linear")).eval()
    x = torch.randn(1, 3, 16, 16)
    scores = torch.arange(16.0).reshape(4, 4)
    probs = att.patch_deletion(vit, x, scores, target=2, patch_size=4, fractions=(0.0, 0.25, 1.0))
    with torch.no_grad():
        full = vit(x).softmax(-1)[0, 2]
        empty = vit(torch.zeros_like(x)).softmax(-1)[0, 2]
        quarter = x.clone()
        quarter[..., 12:16, :] = 0  # the 4 highest scores are the last row of patches
        part = vit(quarter).softmax(-1)[0, 2]
    torch.testing.assert_close(probs, torch.stack([full, part, empty]))
    with pytest.raises(ValueError, match="patches"):
        att.patch_deletion(vit, x, torch.zeros(9), 2, 4)
