"""helpers.concepts (notebook 08): concept generators, CAVs on activations with a known direction, directional
derivatives against autograd, our TCAV against captum's, captum's stale cache (and that the wrapper avoids it), the
significance test, and exercise 8.1's check rejecting known wrong solutions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import checks, concepts
from helpers.cifar_models import CNNConfig, build_model


@pytest.fixture(scope="module")
def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_model(CNNConfig(num_classes=4, widths=(8, 8, 16, 16))).eval()


@pytest.mark.parametrize("name", list(concepts.CONCEPTS))
def test_generators_are_deterministic_uint8(name: str) -> None:
    a = concepts.make_concept(name, 6, seed=3)
    assert a.dtype == torch.uint8 and a.shape == (6, 3, 32, 32)
    assert torch.equal(a, concepts.make_concept(name, 6, seed=3))
    assert not torch.equal(a, concepts.make_concept(name, 6, seed=4))
    assert a.float().std(dim=(1, 2, 3)).min() > 2  # every image has some structure
    assert concepts.make_concept(name, 2, seed=0, size=16).shape == (2, 3, 16, 16)


def test_generators_differ_in_measurable_ways() -> None:
    def orientation_energy(x: torch.Tensor) -> torch.Tensor:
        g = x.float().mean(1)
        return (g[:, 1:, :] - g[:, :-1, :]).abs().mean(dim=(1, 2)) + (g[:, :, 1:] - g[:, :, :-1]).abs().mean((1, 2))

    # patterns have far more edges than colour patches, and red patches are red
    edges = {n: float(orientation_energy(concepts.make_concept(n, 20)).mean()) for n in
             ("stripes", "dots", "zigzags", "red_patches")}
    assert min(edges["stripes"], edges["dots"], edges["zigzags"]) > 3 * edges["red_patches"]
    red = concepts.make_concept("red_patches", 20).float().mean(dim=(0, 2, 3))
    assert red[0] > 2 * red[1] and red[0] > 2 * red[2]
    with pytest.raises(ValueError, match="unknown concept"):
        concepts.make_concept("plaid", 3)
    with pytest.raises(ValueError, match="positive"):
        concepts.stripes(0)


def test_cav_recovers_a_planted_direction() -> None:
    gen = torch.Generator().manual_seed(0)
    d = 50
    direction = torch.zeros(d)
    direction[7] = 1.0
    random_acts = torch.randn(60, d, generator=gen)
    concept_acts = torch.randn(60, d, generator=gen) + 3 * direction
    cav = concepts.train_cav(concept_acts, random_acts, seed=0)
    assert cav.vector.shape == (d,) and cav.vector.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert cav.vector[7] > 0.8  # points towards the concept, along the planted axis
    assert cav.accuracy > 0.9
    # swapping the sets flips the CAV
    flipped, _ = concepts.fit_cav(random_acts, concept_acts)
    full, _ = concepts.fit_cav(concept_acts, random_acts)
    torch.testing.assert_close(flipped, -full, atol=1e-3, rtol=0)
    # no signal: held-out accuracy near chance
    noise = concepts.train_cav(torch.randn(60, d, generator=gen), torch.randn(60, d, generator=gen))
    assert noise.accuracy < 0.8
    with pytest.raises(ValueError, match="differ in size"):
        concepts.fit_cav(torch.randn(5, 3), torch.randn(5, 4))


def test_layer_activations_and_directional_derivatives(small_cnn: nn.Module) -> None:
    images = concepts.make_concept("stripes", 5)
    acts = concepts.layer_activations(small_cnn, "features.5", images, batch_size=2)
    assert acts.shape == (5, 16 * 8 * 8)
    v = torch.nn.functional.normalize(torch.randn(acts.shape[1]), dim=0)
    dd = concepts.directional_derivatives(small_cnn, small_cnn.features[5], images, 2, v, batch_size=2)
    # autograd by hand: f(h) with the features after layer 5 replaced by h
    from helpers.training import normalize_uint8

    h = small_cnn.features(normalize_uint8(images)).detach().requires_grad_(True)
    small_cnn.fc(small_cnn.pool(h).flatten(1))[:, 2].sum().backward()
    torch.testing.assert_close(dd, h.grad.flatten(1) @ v, atol=1e-6, rtol=1e-5)
    assert concepts.tcav_score(torch.tensor([1.0, -1.0, 2.0, 0.0])) == 0.5
    with pytest.raises(ValueError, match="no submodule named"):
        concepts.layer_activations(small_cnn, "features.99", images)


def test_our_tcav_matches_captum_and_the_cache_is_fresh(small_cnn: nn.Module, tmp_path) -> None:
    pytest.importorskip("captum")
    images = concepts.make_concept("noise", 12, seed=9)
    sets = {"stripes": concepts.make_concept("stripes", 16), "red": concepts.make_concept("red_patches", 16)}
    randoms = [concepts.make_concept("noise", 16, seed=100 + k) for k in range(3)]
    layer = "features.4"
    theirs = concepts.captum_tcav(small_cnn, [layer], images, 1, sets, randoms, batch_size=5)
    ra = [concepts.layer_activations(small_cnn, layer, r) for r in randoms]
    for name, imgs in sets.items():
        ca = concepts.layer_activations(small_cnn, layer, imgs)
        ours = [concepts.tcav_score(concepts.directional_derivatives(
            small_cnn, layer, images, 1, concepts.fit_cav(ca, r)[0])) for r in ra]
        assert theirs[name][layer] == pytest.approx(ours, abs=1 / 12 + 1e-6), name  # at most one input flips
    null = [concepts.tcav_score(concepts.directional_derivatives(
        small_cnn, layer, images, 1, concepts.fit_cav(ra[0], r)[0])) for r in ra[1:]]
    assert theirs["random"][layer] == pytest.approx(null, abs=1 / 12 + 1e-6)

    # captum's cache, kept in one folder: new images under the same concept name and id reuse the stale CAV
    from captum.concept import TCAV, Concept
    from torch.utils.data import DataLoader

    from helpers.training import normalize_uint8

    def run(concept_imgs: torch.Tensor) -> float:
        c = Concept(0, "stripes", DataLoader(normalize_uint8(concept_imgs), batch_size=8))
        r = Concept(1, "random0", DataLoader(normalize_uint8(randoms[0]), batch_size=8))
        tcav = TCAV(small_cnn, [layer], model_id="m", classifier=concepts._SklearnCAVClassifier(),
                    save_path=str(tmp_path) + "/")
        tcav.interpret(normalize_uint8(images), [[c, r]], target=1)
        return tcav.cavs["0-1"][layer].stats["weights"].clone()

    first = run(sets["stripes"])
    stale = run(sets["red"])  # other images, same name and id, same folder
    assert torch.equal(first, stale), "captum no longer reuses its cache: update the notebook's warning"
    fresh_red = concepts.captum_tcav(small_cnn, [layer], images, 1, {"stripes": sets["red"]}, randoms)
    assert fresh_red["stripes"][layer] == theirs["red"][layer]  # the wrapper recomputed with the new images
    with pytest.raises(FileExistsError):
        concepts.captum_tcav(small_cnn, [layer], images, 1, sets, randoms, keep_cache=str(tmp_path))


def test_tcav_significance(small_cnn: nn.Module) -> None:
    from scipy import stats

    images = concepts.make_concept("noise", 10, seed=9)
    randoms = [concepts.make_concept("noise", 12, seed=200 + k) for k in range(4)]
    dots = concepts.make_concept("dots", 12)
    res = concepts.tcav_test(small_cnn, "features.4", images, 0, dots, randoms)
    assert len(res.scores) == 4 and len(res.random_scores) == 3 and len(res.accuracies) == 4
    assert all(0 <= s <= 1 for s in res.scores + res.random_scores)
    if max(res.scores) > min(res.scores) or max(res.random_scores) > min(res.random_scores):
        t, p = stats.ttest_ind(res.scores, res.random_scores, equal_var=False)
        assert res.p_value == pytest.approx(p) and res.t_statistic == pytest.approx(t)
    assert res.significant(alpha=1.0, n_tests=1) == (res.p_value < 1.0)
    # the table reuses gradients across CAVs: the same numbers as one test at a time, by hand
    table = concepts.tcav_table(small_cnn, ["features.4"], {0: images, 2: images}, {"dots": dots}, randoms)
    assert table["dots", 0, "features.4"].scores == res.scores
    cav = concepts.train_cav(concepts.layer_activations(small_cnn, "features.4", dots),
                             concepts.layer_activations(small_cnn, "features.4", randoms[1]), seed=1)
    by_hand = concepts.tcav_score(concepts.directional_derivatives(small_cnn, "features.4", images, 2, cav.vector))
    assert table["dots", 2, "features.4"].scores[1] == by_hand
    assert concepts.welch_test([0.5, 0.5], [0.5, 0.5]) == (0.0, 1.0)
    assert concepts.welch_test([1.0, 1.0], [0.5, 0.5])[1] == 0.0
    with pytest.raises(ValueError, match="at least 3"):
        concepts.tcav_test(small_cnn, "features.4", images, 0, images, randoms[:2])


def test_check_8_1_rejects_wrong_cavs() -> None:
    from sklearn.linear_model import LogisticRegression

    gen = torch.Generator().manual_seed(0)
    concept_acts = torch.randn(40, 30, generator=gen) + 0.8
    random_acts = torch.randn(40, 30, generator=gen)

    def reference(a, b):
        return concepts.fit_cav(a, b)[0]

    def right(a, b):
        x = torch.cat([a, b]).double().numpy()
        y = [1] * len(a) + [0] * len(b)
        scale = float(torch.cat([a, b]).double().norm(dim=1).mean())
        w = torch.from_numpy(LogisticRegression(C=1.0, max_iter=2000).fit(x / scale, y).coef_[0]).float()
        return w / w.norm()

    def towards_random(a, b):
        return -right(a, b)

    def unnormalised(a, b):
        x = torch.cat([a, b]).double().numpy()
        scale = float(torch.cat([a, b]).double().norm(dim=1).mean())
        return torch.from_numpy(LogisticRegression(max_iter=2000).fit(x / scale, [1] * 40 + [0] * 40).coef_[0]).float()

    def mean_difference(a, b):
        d = a.mean(0) - b.mean(0)
        return d / d.norm()

    def status(fn):
        return checks.check_close("8.1", fn, reference, args=(concept_acts, random_acts), atol=1e-3,
                                  strict=False).status

    assert status(right) == "passed"
    for wrong in (towards_random, unnormalised, mean_difference):
        assert status(wrong) == "failed", wrong.__name__


def test_tcav_warns_where_every_image_has_the_same_gradient(small_cnn: nn.Module) -> None:
    """After the last block come global average pooling and a linear layer: the gradient of a logit with respect to
    ``features.5`` is ``fc.weight[k] / (h w)`` for every image, so TCAV can only score 0 or 1 there."""
    import warnings

    images = concepts.make_concept("noise", 6, seed=9)
    randoms = [concepts.make_concept("noise", 8, seed=300 + k) for k in range(3)]
    grad = concepts.layer_gradients(small_cnn, "features.5", images, 1)
    torch.testing.assert_close(grad, grad[:1].expand_as(grad))
    with pytest.warns(UserWarning, match="same for every image"):
        res = concepts.tcav_table(small_cnn, ["features.5"], {1: images}, {"dots": concepts.make_concept("dots", 8)},
                                  randoms)
    assert set(res["dots", 1, "features.5"].scores + res["dots", 1, "features.5"].random_scores) <= {0.0, 1.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # features.4: the gradient goes through the last block
        concepts.tcav_table(small_cnn, ["features.4"], {1: images}, {"dots": concepts.make_concept("dots", 8)},
                            randoms)
