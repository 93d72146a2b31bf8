"""helpers.prototypes (notebook 08): MMD-critic on a toy case with an obvious prototype and an obvious criticism,
the greedy objective against brute force, MMD, and nearest examples."""

from __future__ import annotations

import itertools

import pytest
import torch

from helpers import prototypes
from helpers.cifar_models import CNNConfig, build_model
from tests.conftest import assert_no_hooks


def _toy() -> torch.Tensor:
    """A dense cluster of 30 points around (0, 0) with one point exactly at its centre, and one outlier."""
    gen = torch.Generator().manual_seed(0)
    cluster = 0.3 * torch.randn(30, 2, generator=gen)
    cluster -= cluster.mean(0)
    return torch.cat([cluster, torch.zeros(1, 2), torch.tensor([[4.0, 4.0]])])  # index 30: centre, 31: outlier


def test_obvious_prototype_and_criticism() -> None:
    x = _toy()
    protos = prototypes.select_prototypes(x, 1, gamma=0.5)
    assert protos.tolist() == [30]  # the centre of the cluster
    crit = prototypes.select_criticisms(x, protos, 1, gamma=0.5)
    assert crit.tolist() == [31]  # the outlier is what one prototype explains worst
    w = prototypes.witness(x, x[protos], 0.5)
    assert w[31] > 0 and w[31] > w[:31].max()  # under-represented: the largest witness
    # |witness| (the paper's score) picks a typical point next to the prototype instead: its negative witness
    # (over-represented by the point mass of one prototype) is larger in size than the outlier's 1/N
    absolute = prototypes.select_criticisms(x, protos, 1, gamma=0.5, signed=False)
    assert absolute.tolist() != [31] and w[absolute].item() < 0
    # with two clusters, two prototypes: one per cluster
    two = torch.cat([x[:31], x[:31] + 10])
    p2 = prototypes.select_prototypes(two, 2, gamma=1.0)
    assert sorted(p2.tolist()) == [30, 61]


def test_greedy_first_steps_match_brute_force() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(12, 3, generator=gen)
    gamma = prototypes.median_gamma(x)
    k = prototypes.rbf_kernel(x, x, gamma)

    def objective(s: tuple[int, ...]) -> float:
        s_ = list(s)
        return float(2 / (len(x) * len(s_)) * k[:, s_].sum() - k[s_][:, s_].sum() / len(s_) ** 2)

    greedy = prototypes.select_prototypes(x, 3, gamma).tolist()
    assert greedy[0] == max(range(12), key=lambda j: objective((j,)))
    second = max((j for j in range(12) if j != greedy[0]), key=lambda j: objective((greedy[0], j)))
    assert greedy[1] == second
    # J(S) = mean k - MMD^2(X, S): the greedy objective is the MMD
    for s in itertools.islice(itertools.combinations(range(12), 2), 5):
        assert objective(s) == pytest.approx(float(k.mean()) - prototypes.mmd2(x, x[list(s)], gamma), abs=1e-9)


def test_criticism_diversity_and_errors() -> None:
    x = torch.cat([_toy(), torch.tensor([[4.01, 4.0], [-4.0, 4.0]])])  # a twin of the outlier, and another one
    protos = prototypes.select_prototypes(x, 1, gamma=0.5)
    plain = prototypes.select_criticisms(x, protos, 2, gamma=0.5, diversity=False)
    diverse = prototypes.select_criticisms(x, protos, 2, gamma=0.5, diversity=True)
    assert set(plain.tolist()) == {31, 32}  # the twins both have the largest witness
    assert 33 in diverse.tolist()  # log det keeps the second criticism away from the first
    with pytest.raises(ValueError, match="m must be"):
        prototypes.select_prototypes(x, 0)
    with pytest.raises(ValueError, match="c must be"):
        prototypes.select_criticisms(x, protos, len(x))
    with pytest.raises(ValueError, match="gamma"):
        prototypes.rbf_kernel(x, x, 0.0)


def test_nearest_examples_and_embeddings() -> None:
    ref = torch.eye(4)
    idx, sims = prototypes.nearest_examples(torch.tensor([[0.0, 2.0, 0.1, 0.0]]), ref, k=2)
    assert idx.tolist() == [[1, 2]] and sims[0, 0] > sims[0, 1]
    torch.manual_seed(0)
    cnn = build_model(CNNConfig(num_classes=4, widths=(8, 8, 16, 16))).eval()
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    emb = prototypes.embeddings(cnn, images, batch_size=2)
    assert emb.shape == (5, 16)
    from helpers.training import normalize_uint8

    with torch.no_grad():
        torch.testing.assert_close(cnn.fc(emb), cnn(normalize_uint8(images)))
    assert_no_hooks(cnn)
