"""Saving and loading the course's trained checkpoints, verified by SHA-256.

A checkpoint is a plain dict ``{"config": dict, "state_dict": dict, "meta": dict}`` saved with ``torch.save`` and
read back with ``torch.load(weights_only=True)``, so loading never runs pickled code. ``data/checkpoints/
manifest.json`` records the SHA-256 of every shipped file; a file whose hash differs is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import env
from .cifar_models import CNNConfig, ViTConfig, build_model, config_dict

__all__ = [
    "CHECKPOINT_DIR", "sha256_file", "save_checkpoint", "write_manifest", "load_checkpoint", "shipped_checkpoints",
    "TrainingCurve", "training_curves", "record_training_curve",
]

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"
MANIFEST = "manifest.json"
CURVES = "curves.json"

#: The architectures of the shipped checkpoints (tools/train_checkpoint.py trains exactly these).
ARCHITECTURES: dict[str, ViTConfig | CNNConfig] = {
    "vit_cifar10": ViTConfig(dim=128, depth=4, heads=4, mlp_ratio=2.0, tokenizer="resnet", stem_channels=(32, 64)),
    "cnn_cifar10": CNNConfig(),
    # notebook 07: the shape-classification CNN of helpers.synthetic (tools/train_shapes.py)
    "cnn_shapes": CNNConfig(num_classes=4, widths=(16, 32, 64, 128)),
    # notebook 07: a small ViT on the same shapes (linear 4-px patch tokens; tools/train_shapes.py --model vit_shapes)
    "vit_shapes": ViTConfig(num_classes=4, dim=64, depth=4, heads=4, mlp_ratio=2.0, tokenizer="linear"),
    # notebook 07: cnn_cifar10's architecture trained on permuted labels (tools/train_random_labels.py)
    "cnn_cifar10_random_labels": CNNConfig(),
    # notebook 08: the small deep ensemble (tools/train_ensemble.py): quarter-width CNNs, one seed each
    **{f"cnn_small_ens{k}": CNNConfig(widths=(16, 32, 64, 128)) for k in range(4)},
}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, has the wrong hash or does not fit the architecture."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def shipped_checkpoints(directory: str | Path = CHECKPOINT_DIR) -> dict[str, Any]:
    """The manifest: checkpoint name -> {"file", "sha256", ...metadata}."""
    return _read_manifest(Path(directory))


@dataclass(frozen=True)
class TrainingCurve:
    """One training run's validation accuracy after each epoch (a point per logged epoch).

    ``epochs`` and ``val_accuracy`` (in %, on the 5,000 held-out images) have equal length; ``images_seen`` is
    ``epochs * train_images``, the number of training images the model had been updated on at each point.
    """

    name: str
    label: str
    shipped: bool
    epochs: tuple[float, ...]
    val_accuracy: tuple[float, ...]
    train_images: int

    @property
    def images_seen(self) -> tuple[float, ...]:
        return tuple(e * self.train_images for e in self.epochs)

    def at_epoch(self, epoch: float) -> float:
        """The validation accuracy (%) logged after ``epoch``; ValueError if that epoch was not logged."""
        for e, acc in zip(self.epochs, self.val_accuracy, strict=True):
            if abs(e - epoch) < 1e-9:
                return acc
        raise ValueError(f"{self.name}: no point at epoch {epoch}; logged epochs {self.epochs[0]}..{self.epochs[-1]}")


def training_curves(directory: str | Path = CHECKPOINT_DIR) -> dict[str, TrainingCurve]:
    """The validation curves of the shipped checkpoints (and of runs the model card compares them with).

    Read from ``<directory>/curves.json``; raises :class:`CheckpointError` if the file is missing or malformed.
    """
    path = Path(directory) / CURVES
    if not path.exists():
        raise CheckpointError(f"{path} is missing; restore it with `git checkout -- {path}`")
    raw = json.loads(path.read_text())
    curves = {}
    for name, run in raw.get("runs", {}).items():
        epochs, acc = tuple(map(float, run["epochs"])), tuple(map(float, run["val_accuracy"]))
        if len(epochs) != len(acc) or not epochs or list(epochs) != sorted(epochs):
            raise CheckpointError(f"{path}: run {name!r} needs increasing epochs and one accuracy per epoch")
        curves[name] = TrainingCurve(name, run.get("label", name), bool(run.get("shipped", False)), epochs, acc,
                                     int(run.get("train_images", raw["train_images"])))
    return curves


def record_training_curve(
    name: str, label: str, epochs: list[float], val_accuracy: list[float], train_images: int,
    directory: str | Path = CHECKPOINT_DIR, shipped: bool = True,
) -> Path:
    """Add or replace run ``name`` in ``<directory>/curves.json``; ``val_accuracy`` as fractions in [0, 1]
    (as :class:`helpers.training.History` has them), stored in % with one decimal."""
    if len(epochs) != len(val_accuracy) or not epochs:
        raise ValueError(f"need one accuracy per epoch, got {len(epochs)} epochs and {len(val_accuracy)} accuracies")
    if not all(0.0 <= a <= 1.0 for a in val_accuracy):
        raise ValueError("val_accuracy must be fractions in [0, 1]")
    path = Path(directory) / CURVES
    raw = json.loads(path.read_text()) if path.exists() else {"train_images": train_images, "runs": {}}
    pct = [round(100 * a, 1) for a in val_accuracy]
    raw["runs"][name] = {"label": label, "shipped": shipped, "epochs": [round(e, 2) for e in epochs],
                         "val_accuracy": pct, "train_images": train_images}
    path.write_text(json.dumps(raw, indent=1) + "\n")
    return path


def save_checkpoint(
    model: nn.Module,
    name: str,
    meta: dict[str, Any] | None = None,
    directory: str | Path = CHECKPOINT_DIR,
    half: bool = False,
) -> Path:
    """Save a course model as ``<directory>/<name>.pt`` (CPU weights) and record its SHA-256 in the manifest.

    Floating-point tensors are stored as fp32, or as fp16 with ``half=True`` (half the file size; loading casts them
    back to the model's fp32 parameters, so the loaded model is the fp16-rounded one: measure accuracy after loading).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.pt"
    dtype = torch.float16 if half else torch.float32
    state = {
        k: v.detach().to(dtype).cpu().clone() if v.is_floating_point() else v.detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    torch.save({"config": config_dict(model), "state_dict": state, "meta": dict(meta or {})}, path)
    manifest = _read_manifest(directory)
    manifest[name] = {"file": path.name, "sha256": sha256_file(path), **(meta or {})}
    write_manifest(manifest, directory)
    return path


def write_manifest(manifest: dict[str, Any], directory: str | Path = CHECKPOINT_DIR) -> None:
    """Write ``manifest.json`` (name -> {"file", "sha256", ...}) into ``directory``, keys sorted."""
    (Path(directory) / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def load_checkpoint(
    name: str, directory: str | Path = CHECKPOINT_DIR, expected_config: dict | None = None
) -> nn.Module:
    """Load a checkpoint by name: the trained model, in eval mode, on the CPU.

    Raises :class:`CheckpointError` (with the fix) when the name is unknown, the file is missing, its SHA-256 does
    not match the manifest, it is not a course checkpoint, or its weights do not fit the architecture.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    if (
        name in ARCHITECTURES
        and (name not in manifest or not (directory / manifest[name]["file"]).exists())
        and env.offline()
    ):
        print(f"WARNING (XAI_OFFLINE=1): checkpoint {name!r} is not available; using RANDOMLY INITIALISED weights.")
        return build_model(ARCHITECTURES[name]).eval()
    if name not in manifest:
        known = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(f"unknown checkpoint {name!r}; shipped checkpoints: {known}")
    entry = manifest[name]
    path = directory / entry["file"]
    if not path.exists():
        raise CheckpointError(
            f"checkpoint file {path} is missing; restore it with `git checkout -- {path.name}` "
            "or re-create it with tools/train_checkpoint.py (see data/checkpoints/README.md)"
        )
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise CheckpointError(
            f"checkpoint {path} has SHA-256 {digest[:12]}..., expected {entry['sha256'][:12]}...: "
            "the file is corrupt or was changed. Restore it with git, or retrain and re-save it."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"could not read checkpoint {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or not {"config", "state_dict"} <= set(ckpt):
        raise CheckpointError(f"{path} is not a course checkpoint (expected keys 'config' and 'state_dict')")
    if expected_config is None and name in ARCHITECTURES:
        expected_config = config_dict(ARCHITECTURES[name])  # the config alone: the model is built once, below
    if expected_config is not None and dict(ckpt["config"]) != dict(expected_config):
        raise CheckpointError(f"checkpoint {name!r} was saved for another architecture: {ckpt['config']} "
                              f"differs from the expected {expected_config}")
    config = expected_config if expected_config is not None else ckpt["config"]
    try:
        model = build_model(config)
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {name!r} does not fit the architecture: {exc}") from exc
    model.meta = ckpt.get("meta", {})  # type: ignore[assignment]
    return model.eval()
