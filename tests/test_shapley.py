"""helpers.shapley: exact values of games with known Shapley values, the axioms, Kernel SHAP against exact values
and against captum's KernelShap, the image game, and clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from helpers import shapley as S
from helpers.lime import grid_segments


def additive(a):
    return lambda m: m.astype(float) @ np.asarray(a)


def unanimity(members, n):
    t = np.zeros(n, bool)
    t[list(members)] = True
    return lambda m: np.all(m[:, t], axis=1).astype(float)


def random_game(n, seed=0):
    table = np.random.default_rng(seed).normal(size=2**n)
    return lambda m: table[(m.astype(int) << np.arange(n)).sum(1)]


def test_all_coalitions_are_the_binary_digits():
    c = S.all_coalitions(3)
    assert c.shape == (8, 3) and c.dtype == bool
    assert c[5].tolist() == [True, False, True]


def test_additive_game_gives_each_player_its_own_value():
    a = [0.5, -1.0, 2.0, 0.0, 3.5]
    np.testing.assert_allclose(S.exact_shapley(additive(a), 5), a, atol=1e-12)


def test_unanimity_game_splits_equally_among_the_carriers():
    phi = S.exact_shapley(unanimity({1, 3, 4}, 6), 6)
    np.testing.assert_allclose(phi, [0, 1 / 3, 0, 1 / 3, 1 / 3, 0], atol=1e-12)


def test_symmetric_players_get_equal_values_and_efficiency_holds():
    def v(m):  # players 0 and 1 are interchangeable; 2 interacts with 0 and 1
        return (m[:, 0] + m[:, 1]) * (1 + m[:, 2]) + 0.3 * m[:, 3] ** 2

    phi = S.exact_shapley(v, 4)
    assert phi[0] == pytest.approx(phi[1], abs=1e-12)
    full, empty = np.ones((1, 4), bool), np.zeros((1, 4), bool)
    assert phi.sum() == pytest.approx(float(v(full)[0] - v(empty)[0]), abs=1e-12)
    assert phi[3] == pytest.approx(0.3, abs=1e-12)


def test_exact_matches_the_permutation_definition():
    n = 5
    v = random_game(n, seed=1)
    phi = S.exact_shapley(v, n)
    from itertools import permutations

    ref = np.zeros(n)
    for perm in permutations(range(n)):
        m = np.zeros((1, n), bool)
        for i in perm:
            before = v(m)[0]
            m[0, i] = True
            ref[i] += v(m)[0] - before
    np.testing.assert_allclose(phi, ref / math.factorial(n), atol=1e-12)


def test_weights_and_kernel():
    n = 4
    # the Shapley weights of the coalitions without one player sum to 1
    total = sum(math.comb(n - 1, s) * S.shapley_weight(n, s) for s in range(n))
    assert total == pytest.approx(1.0)
    assert S.shapley_kernel(n, 2) == pytest.approx(3 / (6 * 2 * 2))
    assert np.isinf(S.shapley_kernel(n, 0)) and np.isinf(S.shapley_kernel(n, n))


def pairwise_game(n, seed=0):
    g = np.random.default_rng(seed)
    a, w = g.normal(size=n), g.normal(size=(n, n)) / n
    return lambda m: m.astype(float) @ a + np.einsum("mi,ij,mj->m", m.astype(float), w, m.astype(float))


# max |kernel - exact| / max |exact|. Measured over seeds 0-4 (n = 8): the i.i.d. random game (every interaction
# order) 0.03-0.06 at 40,000 samples and 0.10-0.16 at 4,000; error falls like 1 / sqrt(samples).
@pytest.mark.parametrize("n", [8, 9])
def test_kernel_shap_converges_to_exact(n):
    v = random_game(n, seed=n)
    exact = S.exact_shapley(v, n)
    est = S.kernel_shap(v, n, n_samples=40_000, seed=0)
    assert np.abs(est - exact).max() / np.abs(exact).max() < 0.1
    assert est.sum() == pytest.approx(exact.sum(), abs=1e-9)  # efficiency is imposed exactly
    few = S.kernel_shap(v, n, n_samples=400, seed=0)
    assert np.abs(few - exact).max() > np.abs(est - exact).max()  # fewer samples, larger error


def test_kernel_shap_on_a_pairwise_game():
    v = pairwise_game(10, seed=1)
    exact = S.exact_shapley(v, 10)
    est = S.kernel_shap(v, 10, n_samples=2000, seed=0)
    assert np.abs(est - exact).max() / np.abs(exact).max() < 0.05


def test_kernel_shap_is_exact_on_additive_games():
    a = np.arange(7.0) - 3
    np.testing.assert_allclose(S.kernel_shap(additive(a), 7, n_samples=50, seed=3), a, atol=1e-10)


def _tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(32, 10)).double().eval()


def test_image_game_and_captum_kernel_shap_agree_with_exact():
    captum_attr = pytest.importorskip("captum.attr")
    model = _tiny_cnn()
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fill = torch.zeros_like(x)
    seg = grid_segments((12, 12), 3)  # 9 players
    game = S.image_game(model, x, 4, seg, fill)
    exact = S.exact_shapley(game, 9)
    with torch.no_grad():
        gap = float(model(x)[0, 4] - model(fill)[0, 4])
    assert exact.sum() == pytest.approx(gap, abs=1e-10)
    ks = captum_attr.KernelShap(model).attribute(x, baselines=fill, target=4,
                                                 feature_mask=torch.as_tensor(seg)[None, None], n_samples=3000,
                                                 perturbations_per_eval=500)
    theirs = np.array([float(ks[0, 0][torch.as_tensor(seg) == k][0]) for k in range(9)])
    ours = S.kernel_shap(game, 9, n_samples=3000, seed=0)
    scale = np.abs(exact).max()
    assert np.abs(theirs - exact).max() / scale < 0.1
    assert np.abs(ours - exact).max() / scale < 0.1


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match=r"n_players=20 needs 2\^20.*kernel_shap"):
        S.exact_shapley(additive(np.ones(20)), 20)
    with pytest.raises(ValueError, match="positive int"):
        S.exact_shapley(additive([1.0]), 0)
    with pytest.raises(ValueError, match="one value per coalition"):
        S.exact_shapley(lambda m: np.zeros((len(m), 2)), 3)
    model = _tiny_cnn()
    x = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match="without gaps"):
        S.image_game(model, x, 0, grid_segments((12, 12), 3) + 1, torch.zeros_like(x))
    game = S.image_game(model, x, 0, grid_segments((12, 12), 3), torch.zeros_like(x))
    with pytest.raises(ValueError, match="boolean"):
        game(np.ones((2, 9)))
