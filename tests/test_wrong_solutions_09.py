"""Every exercise check of notebook 09 rejects a known wrong solution (the machinery of test_wrong_solutions.py).

The notebook runs once (smoke, offline, ``XAI_STRICT=0``) with a typical student mistake in every exercise body;
each check of the exercise must print ``❌ FAIL`` for a wrong *result*, none ``✅ PASS``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_wrong_solutions as base

NAME = "09_relevance_and_shapley"

#: exercise function -> (exercise number its checks are named with, wrong body)
WRONG_09: dict[str, tuple[str, str]] = {
    # epsilon added without the sign of z: wrong wherever z < 0
    "my_epsilon_linear": ("9.1", """
        z = a @ weight.T + bias
        return a * ((r_out / (z + eps)) @ weight)
    """),
    # divided by the signed logit: the gap flips sign for negative logits
    "my_conservation_gap": ("9.2", """
        return (rel.flatten(1).sum(1) - logits) / logits
    """),
    # Banzhaf instead of Shapley: every coalition without i weighted 1 / 2^(n-1)
    "my_exact_shapley": ("9.3", """
        masks = shapley.all_coalitions(n_players)
        v = np.asarray(value_fn(masks), dtype=np.float64)
        index = (masks.astype(int) << np.arange(n_players)).sum(1)
        phi = np.zeros(n_players)
        for i in range(n_players):
            without = np.flatnonzero(~masks[:, i])
            phi[i] = np.sum(v[index[without] | (1 << i)] - v[without]) / 2 ** (n_players - 1)
        return phi
    """),
    # the binomial coefficient forgotten: the weight of all coalitions of a size, not of one
    "my_shapley_kernel": ("9.4", """
        sizes = np.asarray(sizes, dtype=np.float64)
        return (n_players - 1) / (sizes * (n_players - sizes))
    """),
}


@pytest.mark.notebook
def test_each_check_of_09_rejects_a_known_wrong_solution(fake_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.WRONG, NAME, WRONG_09)
    base.test_each_check_rejects_a_known_wrong_solution(NAME, fake_data_dir, monkeypatch)
