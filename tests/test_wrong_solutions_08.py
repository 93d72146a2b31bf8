"""Every exercise check of notebook 08 rejects a known wrong solution (issue #35), with the machinery of
``tests/test_wrong_solutions.py``: each exercise body is replaced by a typical mistake that runs and returns the right
shape, the notebook runs once (smoke, offline, ``XAI_STRICT=0``), and every check of the exercise must print
``❌ FAIL`` for a wrong *result* (not an error raised by the wrong code), none ``✅ PASS``.

8.1 is checked at the CNN's ``features.4`` (256 x 8 x 8, a spatial layer whose gradient differs between images),
not at ``features.5`` (right before global average pooling and the linear head, where every image has the same
gradient and TCAV scores are 0 or 1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_wrong_solutions as base

NAME = "08_concepts_and_uncertainty"

#: exercise function -> (exercise number its checks are named with, wrong body)
WRONG_08: dict[str, tuple[str, str]] = {
    # the rows not divided by their mean norm: C = 1 then regularises far less on raw activations (norms of tens),
    # so the logistic regression finds another direction
    "my_cav": ("8.1", """
        from sklearn.linear_model import LogisticRegression

        x = torch.cat([concept_acts, random_acts]).double()
        y = np.r_[np.ones(len(concept_acts)), np.zeros(len(random_acts))]
        w = torch.from_numpy(LogisticRegression(C=1.0, max_iter=2000).fit(x.numpy(), y).coef_[0])
        return (w / w.norm()).float()
    """),
    # the plain mean of the bins' gaps instead of the mean weighted by the share of images in each bin
    "my_ece": ("8.2", """
        conf, pred = probs.max(1)
        correct = (pred == labels).double()
        edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
        gaps = []
        for m in range(n_bins):
            in_bin = (conf > edges[m]) & (conf <= edges[m + 1]) if m else (conf <= edges[1])
            if in_bin.any():
                gaps.append(float((correct[in_bin].mean() - conf[in_bin].double().mean()).abs()))
        return sum(gaps) / len(gaps)
    """),
    # entropies in bits (log2) instead of nats
    "my_uncertainty": ("8.3", """
        def h(p):
            return -(torch.special.xlogy(p, p) / np.log(2)).sum(-1)

        total = h(probs.mean(0))
        return total, total - h(probs).mean(0)
    """),
}


@pytest.mark.notebook
def test_each_check_of_08_rejects_a_known_wrong_solution(fake_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.WRONG, NAME, WRONG_08)
    base.test_each_check_rejects_a_known_wrong_solution(NAME, fake_data_dir, monkeypatch)
