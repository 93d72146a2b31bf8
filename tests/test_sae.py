"""helpers.sae: the TopK sparse autoencoder, against hand-made cases and the overcomplete library."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from helpers import sae as sae_mod
from helpers.sae import TopKSAE, fvu, train_sae


def test_identity_dictionary_reconstructs_exactly_with_k_equal_d_model() -> None:
    """With the dictionary [I, -I] (d_sae = 2 d_model) and k = d_model, each coordinate is carried by the one of
    +x_i, -x_i that is non-negative, so the reconstruction is exact."""
    d = 6
    sae = TopKSAE(d, 2 * d, k=d)
    with torch.no_grad():
        eye = torch.eye(d)
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=1))
        sae.b_enc.zero_()
        sae.b_pre.zero_()
    x = torch.randn(50, d, generator=torch.Generator().manual_seed(0))
    x_hat, z = sae(x)
    torch.testing.assert_close(x_hat, x)
    assert ((z > 0).sum(-1) <= d).all()
    assert fvu(x, x_hat).item() < 1e-10
    # k = d_model - 1 on the same dictionary loses the smallest coordinate: not exact any more
    sae.k = d - 1
    assert fvu(x, sae(x)[0]).item() > 1e-3


def test_encode_keeps_k_non_negative_codes_and_decode_is_linear() -> None:
    sae = TopKSAE(16, 64, k=5, seed=3)
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    z = sae.encode(x)
    assert z.shape == (40, 64) and (z >= 0).all() and ((z > 0).sum(-1) <= 5).all()
    pre = sae.pre_activations(x)
    kept = pre.topk(5, dim=-1).indices
    assert torch.equal(torch.zeros_like(pre, dtype=torch.bool).scatter(-1, kept, True) | (z == 0), torch.ones_like(
        pre, dtype=torch.bool))
    torch.testing.assert_close(sae.decode(z), z @ sae.W_dec.T + sae.b_pre)
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(64))


def test_training_lowers_the_fvu_and_keeps_unit_columns() -> None:
    gen = torch.Generator().manual_seed(0)
    atoms = torch.randn(12, 8, generator=gen)
    idx = torch.randint(0, 12, (2000, 2), generator=gen)
    acts = atoms[idx].sum(1) * torch.rand(2000, 1, generator=gen) + 0.5  # sparse combinations of 12 atoms
    sae = TopKSAE(8, 24, k=2, seed=0)
    before = sae.loss(acts)["fvu"].item()
    history = train_sae(sae, acts, steps=400, batch_size=256, lr=3e-3)
    after = sae.loss(acts)
    assert after["fvu"].item() < 0.5 * before and after["fvu"].item() < 0.3
    assert after["l0"].item() <= 2
    torch.testing.assert_close(sae.W_dec.norm(dim=0), torch.ones(24))
    assert history[0]["step"] == 0 and history[-1]["step"] == 399


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="k must lie in 1..d_sae = 8"):
        TopKSAE(4, 8, k=9)
    with pytest.raises(ValueError, match="k must lie"):
        TopKSAE(4, 8, k=0)
    sae = TopKSAE(4, 8, k=2)
    with pytest.raises(ValueError, match=r"expected activations \(N, 4\)"):
        sae.encode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"expected codes \(N, 8\)"):
        sae.decode(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="one shape"):
        fvu(torch.zeros(3, 4), torch.zeros(3, 5))


@pytest.mark.skipif(importlib.util.find_spec("overcomplete") is None, reason="overcomplete needs Python < 3.13")
def test_matches_overcomplete_topk_sae() -> None:
    """overcomplete's TopKSAE (no pre-encoder bias b_pre; ReLU, then top-k) with our weights gives our codes, and our
    reconstruction once their input is centred by our b_pre (ReLU then top-k keeps the non-zero values that top-k
    then ReLU keeps)."""
    import matplotlib
    import matplotlib.cm

    if not hasattr(matplotlib.cm, "get_cmap"):  # overcomplete 0.3 calls plt.cm.get_cmap at import (gone in mpl 3.9)
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    from overcomplete.sae import TopKSAE as OvTopKSAE
    from overcomplete.sae.modules import TieableEncoder

    d, m, k = 16, 48, 4
    ours = TopKSAE(d, m, k, seed=5)
    with torch.no_grad():
        ours.b_enc.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
        ours.b_pre.normal_(0, 1.0, generator=torch.Generator().manual_seed(3))
    encoder = TieableEncoder(d, m, bias=True)  # a linear encoder + ReLU, untied
    theirs = OvTopKSAE(d, nb_concepts=m, top_k=k, encoder_module=encoder)
    with torch.no_grad():
        encoder.weight.copy_(ours.W_enc)
        encoder.bias.copy_(ours.b_enc)
        theirs.dictionary._weights.copy_(ours.W_dec.T)  # (concepts, d), rows of unit norm ('l2' normalisation)
    theirs.eval()
    x = torch.randn(30, d, generator=torch.Generator().manual_seed(2)) * 3
    _, z_theirs, x_hat_theirs = theirs(x - ours.b_pre)  # their SAE has no b_pre: centre its input by ours
    z_ours = sae_mod.feature_activations(ours, x)
    assert (z_ours > 0).sum() > 0.5 * 30 * k
    torch.testing.assert_close(z_ours, z_theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours(x)[0], x_hat_theirs + ours.b_pre, atol=1e-5, rtol=1e-5)
