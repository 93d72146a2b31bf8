"""helpers.relevance_vit's AttnLRP rules against lxt (the AttnLRP authors' library), op by op on random tensors.

Dev-only and skipped unless lxt is installed. lxt 2.1 declares transformers, accelerate, bitsandbytes,
open_clip_torch and zennit as requirements, so it is NOT in requirements-dev.txt; install it in a throwaway
environment that sees the course's packages:

    python -m venv /tmp/lxtvenv
    echo "$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')" \
        > /tmp/lxtvenv/lib/python3.11/site-packages/course.pth
    /tmp/lxtvenv/bin/pip install lxt==2.1 "transformers<5"
    PYTHONPATH=. /tmp/lxtvenv/bin/python -m pytest tests/test_relevance_vit_lxt.py

(With transformers 5, ``import lxt.efficient`` fails: lxt's BERT patch imports ``find_pruneable_heads_and_indices``,
which transformers 5 removed; ``lxt.explicit`` imports either way, and this test loads ``lxt/efficient/rules.py``
by path, so it runs with both.) Checked with lxt 2.1, torch 2.14.1, transformers 4.57.6 and 5.25.0.

Each op: the same input, the same upstream relevance R_out; ours is gradient x input under
:func:`helpers.relevance_vit.lrp_forward` (upstream gradient R_out / y), lxt's explicit functions return the input
relevance from their backward. Agreement to 1e-5 (relative, float64), with lxt's stabilisers set to 1e-12.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers import relevance as R
from helpers import relevance_vit as RV
from helpers.cifar_models import CourseViT, ViTConfig

lf = pytest.importorskip("lxt.explicit.functional", reason="lxt not installed (dev-only; see this file's docstring)")

TOL = 1e-5
EPS = 1e-12


def _lxt_efficient_rules():
    """lxt/efficient/rules.py without lxt.efficient's __init__ (which imports transformers' model code)."""
    path = Path(importlib.util.find_spec("lxt").submodule_search_locations[0]) / "efficient" / "rules.py"
    spec = importlib.util.spec_from_file_location("lxt_efficient_rules", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def vit() -> CourseViT:
    torch.manual_seed(0)
    return CourseViT(ViTConfig(dim=32, depth=1, heads=4, tokenizer="linear")).double().eval()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ours(fn, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """Input relevance of ``fn`` in the gradient x input form: R_in = x * J^T (R_out / y)."""
    xx = x.detach().clone().requires_grad_(True)
    y = fn(xx)
    (g,) = torch.autograd.grad(y, xx, r_out / y)
    return (xx * g).detach()


def _lxt(fn, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    """Input relevance of an lxt explicit composition: its backward carries relevance itself."""
    xx = x.detach().clone().requires_grad_(True)
    fn(xx).backward(r_out)
    return xx.grad.detach()


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_softmax_rule(vit):
    x, r = torch.randn(2, 4, 9, 9, generator=_gen(1), dtype=torch.float64), torch.randn(2, 4, 9, 9, generator=_gen(2),
                                                                                      dtype=torch.float64)
    assert _rel_err(_ours(lambda t: t.softmax(-1), x, r), _lxt(lambda t: lf.softmax(t, -1), x, r)) < TOL


def test_layer_norm_rule(vit):
    ln = vit.blocks[0].norm1
    with torch.no_grad():
        ln.weight.copy_(torch.rand(32, generator=_gen(3), dtype=torch.float64) + 0.5)
        ln.bias.copy_(torch.randn(32, generator=_gen(4), dtype=torch.float64) * 0.1)
    x = torch.randn(2, 9, 32, generator=_gen(5), dtype=torch.float64)
    r = torch.randn(2, 9, 32, generator=_gen(6), dtype=torch.float64)
    with RV.lrp_forward(vit, "attnlrp"):
        ours = _ours(ln, x, r)
    theirs = _lxt(lambda t: lf.layer_norm_grad_fn.apply(t, ln.weight, ln.bias, ln.eps, EPS), x, r)
    assert _rel_err(ours, theirs) < TOL


def test_gelu_identity_rule(vit):
    rules = _lxt_efficient_rules()
    gelu = vit.blocks[0].mlp[1]
    x = torch.randn(2, 9, 64, generator=_gen(7), dtype=torch.float64)
    r = torch.randn(2, 9, 64, generator=_gen(8), dtype=torch.float64)
    with RV.lrp_forward(vit, "attnlrp"):
        ours = _ours(gelu, x, r)
    theirs = _ours(lambda t: rules.identity_rule_implicit(F.gelu, t), x, r)  # lxt's efficient form
    assert _rel_err(ours, theirs) < TOL
    torch.testing.assert_close(ours, r)  # the identity rule: relevance passes unchanged


def test_attention_uniform_rules_equal_lxts_explicit_matmul_softmax_chain(vit):
    attn = vit.blocks[0].attn
    x = torch.randn(2, 9, 32, generator=_gen(9), dtype=torch.float64)
    r = torch.randn(2, 9, 32, generator=_gen(10), dtype=torch.float64)

    def lxt_attention(t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        qkv = lf.linear_epsilon(t, attn.qkv.weight, attn.qkv.bias, epsilon=EPS)
        q, k, v = qkv.reshape(b, n, 3, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q = lf.mul2(q, torch.tensor(attn.scale, dtype=t.dtype))  # a constant factor: relevance unchanged
        a = lf.softmax(lf.matmul(q, k.transpose(-2, -1), epsilon=EPS), -1)
        out = lf.matmul(a, v, epsilon=EPS).transpose(1, 2).reshape(b, n, d)
        return lf.linear_epsilon(out, attn.proj.weight, attn.proj.bias, epsilon=EPS)

    with RV.lrp_forward(vit, "attnlrp"):
        ours = _ours(attn, x, r)
    assert _rel_err(ours, _lxt(lxt_attention, x, r)) < TOL
    with RV.lrp_forward(vit, "cp"):  # CP-LRP (detached attention) is a different rule: it must not agree
        assert _rel_err(_ours(attn, x, r), _lxt(lxt_attention, x, r)) > 1e-3


def test_linear_epsilon_rule_matches_for_a_small_epsilon_and_differs_in_the_sign_convention():
    a = torch.randn(6, 20, generator=_gen(11), dtype=torch.float64)
    w, b = torch.randn(5, 20, generator=_gen(12), dtype=torch.float64), torch.randn(5, generator=_gen(13),
                                                                                     dtype=torch.float64)
    r = torch.randn(6, 5, generator=_gen(14), dtype=torch.float64)
    theirs = _lxt(lambda t: lf.linear_epsilon(t, w, b, epsilon=EPS), a, r)
    assert _rel_err(R.linear_rule(R.epsilon(EPS), a, w, b, r), theirs) < TOL
    # with a large epsilon they differ where z < 0: lxt adds +epsilon whatever the sign of z, the course (and
    # zennit) add epsilon * sign(z)
    big = _lxt(lambda t: lf.linear_epsilon(t, w, b, epsilon=0.5), a, r)
    assert _rel_err(R.linear_rule(R.epsilon(0.5), a, w, b, r), big) > 1e-3
