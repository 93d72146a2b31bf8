"""The shipped validation curves (data/checkpoints/curves.json) against the manifest and the model card."""

from __future__ import annotations

import json
import re

import pytest

from helpers.checkpoints import (
    CHECKPOINT_DIR,
    CheckpointError,
    record_training_curve,
    shipped_checkpoints,
    training_curves,
)

CARD = (CHECKPOINT_DIR / "README.md").read_text()


def _card_list(intro: str) -> list[float]:
    """The comma-separated percentages that follow ``intro`` in the model card."""
    i = CARD.index(intro) + len(intro)
    text = CARD[i:i + 800]
    head = re.match(r"\s*((?:\d+\.\d,\s*)+\d+\.\d)", text)
    assert head, f"no list after {intro!r}"
    return [float(v) for v in head.group(1).split(",")]


def test_shipped_curves_end_at_the_manifest_accuracy():
    curves, manifest = training_curves(), shipped_checkpoints()
    shipped = [c for c in curves.values() if c.shipped]
    assert {c.name for c in shipped} == {"vit_cifar10", "cnn_cifar10"}
    for c in shipped:
        assert c.val_accuracy[-1] == pytest.approx(100 * manifest[c.name]["val_accuracy"], abs=0.05)
        assert c.epochs[-1] == pytest.approx(manifest[c.name]["epochs"], abs=0.01)
        assert c.train_images == 45_000


def test_curves_are_the_model_cards_numbers():
    curves = training_curves()
    vit, cnn = curves["vit_cifar10"], curves["cnn_cifar10"]
    assert list(vit.val_accuracy) == _card_list("The shipped ViT's validation accuracy after each epoch:")
    assert list(cnn.val_accuracy) == _card_list("85 epochs in 90.7 minutes. Validation accuracy after each epoch:")
    assert list(curves["cnn_cifar10_10_epochs"].val_accuracy) == _card_list("Its first stage, from the training log:\n")
    assert curves["cnn_cifar10_10_epochs"].at_epoch(10) == 86.9
    with pytest.raises(ValueError, match="no point at epoch 3"):
        curves["cnn_cifar10_10_epochs"].at_epoch(3)


def test_images_seen():
    c = training_curves()["vit_cifar10"]
    assert c.images_seen[0] == 45_000 and c.images_seen[9] == 450_000


def test_record_training_curve_round_trip_and_errors(tmp_path):
    record_training_curve("toy", "a toy run", [0.5, 1.0], [0.25, 0.5], 1000, tmp_path)
    record_training_curve("toy", "replaced", [1.0, 2.0], [0.5, 0.625], 1000, tmp_path)
    c = training_curves(tmp_path)["toy"]
    assert c.label == "replaced" and c.val_accuracy == (50.0, 62.5) and c.images_seen == (1000.0, 2000.0)
    with pytest.raises(ValueError, match="fractions"):
        record_training_curve("bad", "x", [1.0], [86.1], 1000, tmp_path)
    with pytest.raises(ValueError, match="one accuracy per epoch"):
        record_training_curve("bad", "x", [1.0, 2.0], [0.5], 1000, tmp_path)
    raw = json.loads((tmp_path / "curves.json").read_text())
    raw["runs"]["toy"]["epochs"] = [2.0, 1.0]
    (tmp_path / "curves.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="increasing epochs"):
        training_curves(tmp_path)
    with pytest.raises(CheckpointError, match="missing"):
        training_curves(tmp_path / "nowhere")
