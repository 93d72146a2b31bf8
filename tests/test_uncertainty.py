"""helpers.uncertainty (notebook 08): ECE against a hand-computed case and torchmetrics, the entropy / mutual
information decomposition, the dropout hook, MC dropout and ensemble shapes, and the exercise checks 8.2 and 8.3
rejecting known wrong solutions."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import checks, uncertainty
from helpers.cifar_models import CNNConfig, build_model
from tests.conftest import assert_no_hooks


@pytest.fixture(scope="module")
def small_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(CNNConfig(num_classes=4, widths=(8, 8, 16, 16))).eval()


def _probs(conf: list[float], pred: list[int], c: int = 2) -> torch.Tensor:
    """Rows with top-1 probability conf[i] on class pred[i] (the rest spread over the other classes)."""
    p = torch.zeros(len(conf), c, dtype=torch.float64)
    for i, (q, k) in enumerate(zip(conf, pred, strict=True)):
        p[i] = (1 - q) / (c - 1)
        p[i, k] = q
    return p


def test_ece_hand_computed() -> None:
    # 4 bins of width 0.25. Bin (0.5, 0.75]: confidences 0.6, 0.7 (mean 0.65), one right -> |0.5 - 0.65| = 0.15.
    # Bin (0.75, 1]: 0.8, 0.9, 1.0 (mean 0.9), all right -> |1 - 0.9| = 0.1. ECE = 2/5 * 0.15 + 3/5 * 0.1 = 0.12.
    probs = _probs([0.6, 0.7, 0.8, 0.9, 1.0], [0, 1, 0, 1, 0])
    labels = torch.tensor([0, 0, 0, 1, 0])
    assert uncertainty.expected_calibration_error(probs, labels, n_bins=4) == pytest.approx(0.12, abs=1e-12)
    b = uncertainty.calibration_bins(probs, labels, n_bins=4)
    assert b["count"].tolist() == [0, 0, 2, 3]
    assert b["accuracy"][2:].tolist() == pytest.approx([0.5, 1.0])
    # a confidence exactly on an edge belongs to the lower bin ((0.5, 0.75] holds 0.75)
    edge = uncertainty.calibration_bins(_probs([0.75], [0]), torch.tensor([0]), n_bins=4)
    assert edge["count"].tolist() == [0, 0, 1, 0]
    # perfectly calibrated: 0.75 confidence, 3 of 4 right -> ECE 0
    cal = _probs([0.75] * 4, [0] * 4)
    assert uncertainty.expected_calibration_error(cal, torch.tensor([0, 0, 0, 1]), n_bins=10) == pytest.approx(0.0)


def test_ece_matches_torchmetrics() -> None:
    tm = pytest.importorskip("torchmetrics")
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2000, 10, generator=gen)
    probs = logits.softmax(-1)
    labels = torch.where(torch.rand(2000, generator=gen) < 0.7, probs.argmax(1),
                         torch.randint(0, 10, (2000,), generator=gen))
    for n_bins in (5, 15):
        metric = tm.classification.MulticlassCalibrationError(num_classes=10, n_bins=n_bins, norm="l1")
        theirs = float(metric(probs, labels))
        ours = uncertainty.expected_calibration_error(probs, labels, n_bins)
        assert ours == pytest.approx(theirs, abs=1e-5), n_bins


def test_ece_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        uncertainty.expected_calibration_error(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        uncertainty.expected_calibration_error(torch.full((4, 2), 0.5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        uncertainty.expected_calibration_error(torch.full((4,), 0.5), torch.zeros(4, dtype=torch.long))


def test_entropy_and_mutual_information() -> None:
    # two members, each certain, disagreeing: total 1 bit = log 2 nats, aleatoric 0, epistemic log 2
    disagree = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert uncertainty.predictive_entropy(disagree).item() == pytest.approx(math.log(2))
    assert uncertainty.expected_entropy(disagree).item() == pytest.approx(0.0)
    assert uncertainty.mutual_information(disagree).item() == pytest.approx(math.log(2))
    # two members agreeing on 50/50: all aleatoric
    agree = torch.full((2, 1, 2), 0.5)
    assert uncertainty.mutual_information(agree).item() == pytest.approx(0.0)
    assert uncertainty.expected_entropy(agree).item() == pytest.approx(math.log(2))
    gen = torch.Generator().manual_seed(1)
    p = torch.randn(5, 7, 10, generator=gen).softmax(-1)
    mi = uncertainty.mutual_information(p)
    assert mi.shape == (7,) and (mi >= 0).all()
    torch.testing.assert_close(uncertainty.predictive_entropy(p), uncertainty.expected_entropy(p) + mi)
    assert uncertainty.entropy(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0  # 0 log 0 = 0, no NaN


def test_head_dropout_hook(small_cnn: torch.nn.Module) -> None:
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        clean = small_cnn(x)
        with uncertainty.head_dropout(small_cnn, 0.5):  # eval mode, mc=False: no dropout
            torch.testing.assert_close(small_cnn(x), clean)
        with uncertainty.head_dropout(small_cnn, 0.5, mc=True):
            assert not torch.allclose(small_cnn(x), clean)
        torch.testing.assert_close(small_cnn(x), clean)  # the hook is gone
    with pytest.raises(RuntimeError), uncertainty.head_dropout(small_cnn, 0.5, mc=True):
        raise RuntimeError("boom")
    assert_no_hooks(small_cnn)  # removed after an exception too
    with pytest.raises(ValueError, match="dropout rate"):
        with uncertainty.head_dropout(small_cnn, 1.0):
            pass


def test_mc_dropout_and_ensemble_shapes(small_cnn: torch.nn.Module) -> None:
    images = torch.randint(0, 256, (7, 3, 32, 32), dtype=torch.uint8)
    p = uncertainty.mc_dropout_probs(small_cnn, images, samples=5, p=0.5, seed=3, batch_size=3)
    assert p.shape == (5, 7, 4)
    torch.testing.assert_close(p.sum(-1), torch.ones(5, 7))
    torch.testing.assert_close(p, uncertainty.mc_dropout_probs(small_cnn, images, samples=5, p=0.5, seed=3))
    assert not torch.allclose(p[0], p[1])  # the samples differ
    # the same as running the hook-based model in MC mode with the same seed, batch by batch of one pass
    torch.manual_seed(3)
    with uncertainty.head_dropout(small_cnn, 0.5, mc=True), torch.no_grad():
        from helpers.training import normalize_uint8

        first = small_cnn(normalize_uint8(images)).softmax(-1)
    torch.testing.assert_close(p[0], first)
    # p=0: every sample is the deterministic prediction
    p0 = uncertainty.mc_dropout_probs(small_cnn, images, samples=3, p=0.0)
    torch.testing.assert_close(p0[2], uncertainty.softmax_probs(small_cnn, images))
    torch.manual_seed(1)
    other = build_model(CNNConfig(num_classes=4, widths=(8, 8, 16, 16))).eval()
    e = uncertainty.ensemble_probs([small_cnn, other], images)
    assert e.shape == (2, 7, 4)
    assert (uncertainty.mutual_information(e) > 0).all()


def test_reliability_diagram_returns_figure() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = _probs([0.6, 0.7, 0.8, 0.9, 1.0], [0, 1, 0, 1, 0])
    fig = uncertainty.reliability_diagram(probs, torch.tensor([0, 0, 0, 1, 0]), n_bins=4, title="toy")
    assert "ECE 12.0 %" in fig.axes[0].get_title()
    _, ax = plt.subplots()
    assert uncertainty.reliability_diagram(probs, torch.tensor([0, 0, 0, 1, 0]), ax=ax) is ax.figure
    plt.close("all")


# ---------------------------------------------------------------------------------------------- exercise checks
def _status(name, student, reference, args) -> str:
    return checks.check_close(name, student, reference, args=args, strict=False).status


def test_check_8_2_rejects_wrong_ece() -> None:
    probs, labels = uncertainty.probe_predictions(500, seed=0)  # the notebook's probe
    gap = abs(float((probs.argmax(1) == labels).float().mean() - probs.max(1).values.mean()))
    assert gap < 0.5 * uncertainty.expected_calibration_error(probs, labels)  # mixed over/under-confidence

    def right(p, y, n_bins):
        conf, pred = p.max(1)
        edges = torch.linspace(0, 1, n_bins + 1)
        ece = 0.0
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            inb = (conf > lo) & (conf <= hi)
            if inb.any():
                ece += inb.float().mean() * ((pred[inb] == y[inb]).float().mean() - conf[inb].mean()).abs()
        return float(ece)

    def unweighted(p, y, n_bins):  # averages the bins' gaps without weighting by their size
        conf, pred = p.max(1)
        edges = torch.linspace(0, 1, n_bins + 1)
        gaps = [((pred[m] == y[m]).float().mean() - conf[m].mean()).abs()
                for lo, hi in zip(edges[:-1], edges[1:], strict=True) if (m := (conf > lo) & (conf <= hi)).any()]
        return float(torch.stack(gaps).mean())

    def overall(p, y, n_bins):  # one bin: |accuracy - mean confidence|
        conf, pred = p.max(1)
        return float(((pred == y).float().mean() - conf.mean()).abs())

    args = (probs, labels, 15)
    assert _status("8.2", right, uncertainty.expected_calibration_error, args) == "passed"
    assert _status("8.2", unweighted, uncertainty.expected_calibration_error, args) == "failed"
    assert _status("8.2", overall, uncertainty.expected_calibration_error, args) == "failed"


def test_check_8_3_rejects_wrong_decomposition() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = (2 * torch.randn(4, 50, 10, generator=gen)).softmax(-1)

    def reference(p):
        return uncertainty.predictive_entropy(p), uncertainty.mutual_information(p)

    def right(p):
        h = -(p.mean(0) * p.mean(0).clamp_min(1e-30).log()).sum(-1)
        return h, h - (-(p * p.clamp_min(1e-30).log()).sum(-1)).mean(0)

    def swapped(p):  # entropy of each member averaged as the "total"
        h_each = (-(p * p.log()).sum(-1)).mean(0)
        return h_each, right(p)[1]

    def log2(p):  # bits instead of nats
        h, mi = right(p)
        return h / math.log(2), mi / math.log(2)

    assert _status("8.3", right, reference, (probs,)) == "passed"
    assert _status("8.3", swapped, reference, (probs,)) == "failed"
    assert _status("8.3", log2, reference, (probs,)) == "failed"


def test_shipped_ensemble_card_and_loading() -> None:
    """The members are in the manifest, load (SHA-256, weights_only) as quarter-width CNNs, and the model card's
    table quotes what the manifest records."""
    import json

    from helpers import checkpoints

    manifest = json.loads((checkpoints.CHECKPOINT_DIR / "manifest.json").read_text())
    card = (checkpoints.CHECKPOINT_DIR / "README.md").read_text()
    for name in uncertainty.ENSEMBLE_MEMBERS:
        entry = manifest[name]
        row = next(line for line in card.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"**{100 * entry['val_accuracy']:.1f} %** ({entry['val_accuracy']:.4f})" in row, row
        assert f"| {entry['epochs']} | {entry['train_minutes']:.1f} |" in row, row
        assert entry["dropout"] == uncertainty.DROPOUT_P
    models = uncertainty.load_ensemble()
    assert [m.config.widths for m in models] == [(16, 32, 64, 128)] * len(uncertainty.ENSEMBLE_MEMBERS)
    total = sum((checkpoints.CHECKPOINT_DIR / e["file"]).stat().st_size for e in manifest.values())
    assert total < 40_000_000, total  # the course's limit for all shipped checkpoints together


def test_fit_temperature_recovers_a_known_temperature() -> None:
    """Labels drawn from softmax(z), predictions softmax(3 z) (over-confident): the fitted T is close to 3, and
    scaling lowers the NLL and the ECE without changing any prediction."""
    gen = torch.Generator().manual_seed(0)
    z = 2.0 * torch.randn(4000, 10, generator=gen)
    labels = torch.multinomial(z.softmax(-1), 1, generator=gen).squeeze(1)
    probs = (3 * z).softmax(-1)
    t = uncertainty.fit_temperature(probs, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    scaled = uncertainty.apply_temperature(probs, t)
    assert torch.equal(scaled.argmax(1), probs.argmax(1))
    assert uncertainty.negative_log_likelihood(scaled, labels) < uncertainty.negative_log_likelihood(probs, labels)
    ece = uncertainty.expected_calibration_error
    assert ece(scaled, labels) < ece(probs, labels)
    assert torch.allclose(uncertainty.apply_temperature(probs, 1.0), probs, atol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        uncertainty.apply_temperature(probs, 0.0)


def test_bootstrap_metric_resamples_images_the_same_way_for_every_method() -> None:
    probs, labels = uncertainty.probe_predictions(300, seed=1)
    other, _ = uncertainty.probe_predictions(300, seed=2)
    stack = torch.stack([probs, other])  # K = 2 sets of predictions of the same 300 images
    for metric, fn in (("acc", lambda p, y: float((p.argmax(1) == y).double().mean())),
                       ("ece", uncertainty.expected_calibration_error),
                       ("nll", uncertainty.negative_log_likelihood)):
        draws = uncertainty.bootstrap_metric(stack, labels, metric, n_boot=50, seed=3)
        assert draws.shape == (50,)
        idx = torch.randint(0, 300, (50, 300), generator=torch.Generator().manual_seed(3))
        for b in (0, 17):  # each draw is the metric of one resample, averaged over the K sets
            want = (fn(probs[idx[b]], labels[idx[b]]) + fn(other[idx[b]], labels[idx[b]])) / 2
            assert float(draws[b]) == pytest.approx(want, abs=1e-9)
        assert torch.equal(draws, uncertainty.bootstrap_metric(stack, labels, metric, n_boot=50, seed=3))
    # paired: a method against itself differs by exactly 0 in every draw
    a = uncertainty.bootstrap_metric(probs, labels, "ece", n_boot=20, seed=0)
    b = uncertainty.bootstrap_metric(probs, labels, "ece", n_boot=20, seed=0)
    assert torch.equal(a - b, torch.zeros(20, dtype=a.dtype))
    with pytest.raises(ValueError, match="metric"):
        uncertainty.bootstrap_metric(probs, labels, "brier")
